-- Governance at the edge (issue 16), called by access.lua once a request is authenticated and
-- allowed, and by the log phase of every request: request limits, then an in-flight slot per
-- caller; in the log phase the slot is given back and the request is counted in the metrics.
local policy = require "gateway.policy"
local limits = require "gateway.limits"
local concurrency = require "gateway.concurrency"
local errors = require "gateway.errors"

local ngx = ngx
local ngx_var = ngx.var
local sub = string.sub

local _M = {}

-- The caller as metrics and in-flight counts name it: a credential's name, or one name for all
-- JWT or external-auth callers (their names come from tokens: unbounded).
local function caller_label(caller_key, name)
  local kind = sub(caller_key, 1, 4)
  if kind == "jwt:" then return "(jwt)" end
  if kind == "ext:" then return "(external)" end
  return name
end
_M.caller_label = caller_label

--- `caller_key` is the rate limiter's key (`key:<name>`, `user:<name>`, `jwt:...`, `ext:...`);
--- `asked` what body.lua read from the request (nil for routes that name no model).
function _M.admit(caller_key, record, asked)
  local own = policy.callers[caller_key]
  local request_limits = own and own.limits or policy.limits
  if asked and asked.value and next(request_limits) then
    local problem = limits.check(asked.value, request_limits)
    if problem then return errors.exit(400, problem) end
  end
  local label = caller_label(caller_key, record.name)
  local max = own and own.max_concurrent
  if not concurrency.enter(label, max) then
    ngx_var.gw_limited = "concurrency"
    return errors.exit(429, "too many requests in progress for " .. record.name .. " (at most " .. max
      .. " at once); retry when one has finished", { ["Retry-After"] = "1" })
  end
  ngx_var.gw_inflight = label
end

--- Log phase: runs once per request, after the response or the client's disconnect.
function _M.log()
  local slot = ngx_var.gw_inflight
  if slot and slot ~= "" then concurrency.leave(slot) end
  if policy.metrics then require("gateway.metrics").observe() end
end

return _M
