-- Failed authentications per client address (spec `failedAuth`), and the bcrypt work a client
-- may have in flight. Counters live in the gw_failures shared dict, so every worker sees them:
--   "b:<addr>"  failed Basic logins, counted *before* bcrypt starts (a success takes it back),
--               so concurrent wrong passwords cannot all get a bcrypt before the first is counted
--   "t:<addr>"  failed API keys and JWTs
--   "f:<addr>"  bcrypt verifications in flight for the address
-- Past a limit the answer is 429 JSON with Retry-After, never a 5xx. The functions return the
-- refusal (gateway/errors.lua); the caller's handler answers it.
local config = require "gateway.config"
local errors = require "gateway.errors"

local ngx = ngx
local failures = ngx.shared.gw_failures
local cfg = config.failed_auth
local ceil, max, tostring = math.ceil, math.max, tostring

local _M = {}

-- bcrypt verifications this worker has started and not finished (running or queued for the
-- thread pool). Each holds one of the worker's thread-VMs (lua_worker_thread_vm_pool_size).
local in_flight = 0

-- The address counted: IPv4 whole, IPv6 by its /64 (one host usually holds a whole /64).
local function client()
  local addr = ngx.var.binary_remote_addr
  if #addr == 16 then return addr:sub(1, 8) end
  return addr
end

local function too_many(key)
  local ttl = failures:ttl(key)
  return errors.refusal(429, "too many failed authentication attempts from this address; retry later",
    { ["Retry-After"] = tostring(max(1, ceil(ttl or cfg.window_seconds))) })
end

local BUSY = errors.refusal(429, "too many password checks in progress; retry shortly", { ["Retry-After"] = "1" })
--- The refusal when the bcrypt capacity is taken.
_M.BUSY = BUSY

-- Counts one failure under `key`; the first one of a window starts the window.
local function count(key)
  return failures:incr(key, 1, 0, cfg.window_seconds) or 0
end

--- A refused API key or JWT: the refusal, 401 with `headers`, or 429 once the address has had
--- more than `failedAuth.token` of them in the window. Checking a key costs one digest lookup, so a valid
--- key from such an address is still served (see docs/security.md).
function _M.token_refused(message, headers)
  local key = "t:" .. client()
  if count(key) > cfg.token then return too_many(key) end
  return errors.refusal(401, message, headers)
end

--- A refused Basic login that cost no bcrypt (malformed, cached wrong password): counted,
--- then the refusal: 401 with `headers`, or 429 past `failedAuth.basic`.
function _M.basic_refused(message, headers)
  local key = "b:" .. client()
  if count(key) > cfg.basic then return too_many(key) end
  return errors.refusal(401, message, headers)
end

--- Before a bcrypt verification: counts it as a failure, then takes an in-flight slot for the
--- address and one for this worker. Returns a ticket for `finish_bcrypt`, or nil and a 429
--- refusal (past the failure limit, or no slot free: then nothing stays counted).
function _M.start_bcrypt()
  local addr = client()
  local failed_key, flight_key = "b:" .. addr, "f:" .. addr
  if count(failed_key) > cfg.basic then return nil, too_many(failed_key) end
  if in_flight >= cfg.bcrypt_per_worker then
    failures:incr(failed_key, -1)
    return nil, BUSY
  end
  -- The TTL only bounds a count a crashed worker never gave back.
  if (failures:incr(flight_key, 1, 0, 60) or 0) > cfg.bcrypt_per_address then
    failures:incr(flight_key, -1)
    failures:incr(failed_key, -1)
    return nil, BUSY
  end
  in_flight = in_flight + 1
  return { failed_key = failed_key, flight_key = flight_key }
end

--- After the verification: gives the slots back, and the failure back unless the check found
--- the password wrong (`not_failed`: it matched, or it could not run). incr without an initial
--- value: a counter that expired meanwhile is not recreated negative.
function _M.finish_bcrypt(ticket, not_failed)
  in_flight = in_flight - 1
  failures:incr(ticket.flight_key, -1)
  if not_failed then failures:incr(ticket.failed_key, -1) end
end

return _M
