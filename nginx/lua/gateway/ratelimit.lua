-- Per-caller rate limit: GCRA (a leaky bucket) over a shared dict, so all workers share it.
-- Like lua-resty-limit-traffic's limit.req, the read and the write are two dict operations;
-- a race between workers can admit a request more than the limit, never refuse one wrongly.
local shared = ngx.shared.gw_rate

local _M = {}

--- Takes one request for `key` at `rate` ({rps, burst}). Returns nil when admitted, or the
--- number of seconds to wait when over the limit.
function _M.take(key, rate)
  local now = ngx.now()
  local interval = 1 / rate.rps
  local tolerance = interval * rate.burst
  local tat = shared:get(key) or now
  if tat < now then tat = now end
  local allow_at = tat - tolerance
  if now < allow_at then
    return math.max(1, math.ceil(allow_at - now))
  end
  local new_tat = tat + interval
  shared:set(key, new_tat, math.ceil(new_tat - now) + 1)
  return nil
end

return _M
