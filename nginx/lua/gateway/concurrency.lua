-- In-flight requests per caller (spec `maxConcurrent`), counted in a shared dict so every worker
-- sees the same number. A slot is taken at the end of the access phase (when a limit or the
-- metrics read the count) and given back in the log phase, which nginx runs for every request
-- that got one: finished, failed upstream, error page, or abandoned by its client. The dict
-- survives a reload (same name and size); the old workers give their slots back as their
-- requests end. The counts are also the in-flight gauge.
local inflight = ngx.shared.gw_inflight

local _M = {}

--- Takes a slot for `caller`. Returns true, or false when `max` are in flight already.
function _M.enter(caller, max)
  local count, err = inflight:incr(caller, 1, 0)
  if not count then
    -- The dict is full (it holds one number per caller: should never happen). Refuse only a
    -- caller with a limit, so a counting failure never lets one exceed it.
    ngx.log(ngx.ERR, "ollama-gateway: cannot count in-flight requests: ", err)
    return max == nil
  end
  if max and count > max then
    inflight:incr(caller, -1)
    return false
  end
  return true
end

--- Gives the slot back.
function _M.leave(caller)
  inflight:incr(caller, -1)
end

--- caller -> requests in flight now.
function _M.snapshot()
  local counts = {}
  for _, caller in ipairs(inflight:get_keys(0)) do
    counts[caller] = inflight:get(caller)
  end
  return counts
end

return _M
