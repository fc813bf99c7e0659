-- Token budgets per credential (spec `tokenBudget: {perMinute, perDay}`): tokens Ollama reported
-- (prompt + completion) are added up per caller in fixed windows, the clock minute and the UTC
-- day, in a shared dict every worker sees. A request is admitted while its caller's windows are
-- below the budget, and charged in the log phase, when its counts are known: so requests in
-- flight can overshoot a budget, each by its own tokens (docs/governance.md#token-budgets).
local spent = ngx.shared.gw_budget

local floor = math.floor

local _M = {}

local function keys(caller, now)
  return "m\t" .. caller .. "\t" .. floor(now / 60), "d\t" .. caller .. "\t" .. floor(now / 86400)
end

--- nil when `caller` may start a request; otherwise seconds until its window ends, and which
--- window ("minute" or "day") is spent.
function _M.check(caller, budget)
  local now = ngx.time()
  local minute_key, day_key = keys(caller, now)
  if budget.day and (spent:get(day_key) or 0) >= budget.day then
    return 86400 - now % 86400, "day"
  end
  if budget.minute and (spent:get(minute_key) or 0) >= budget.minute then
    return 60 - now % 60, "minute"
  end
  return nil
end

--- Adds `tokens` to `caller`'s current windows.
function _M.charge(caller, budget, tokens)
  if tokens <= 0 then return end
  local minute_key, day_key = keys(caller, ngx.time())
  if budget.minute then spent:incr(minute_key, tokens, 0, 120) end
  if budget.day then spent:incr(day_key, tokens, 0, 2 * 86400) end
end

return _M
