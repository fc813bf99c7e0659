-- Governance at the edge (issue 16), called by access.lua once a request is authenticated and
-- allowed, and by the log phase of every request: request limits, then an in-flight slot per
-- caller; in the log phase the slot is given back, the access log's usage fields are set and the
-- request is counted in the metrics.
--
-- What the later phases need travels in ngx.ctx.gw (cheaper than nginx variables). ngx.ctx does
-- not survive an internal redirect (nginx's own error pages), so the slot is kept by request.
local policy = require "gateway.policy"
local limits = require "gateway.limits"
local concurrency = require "gateway.concurrency"
local errors = require "gateway.errors"
local models = require "gateway.models"
local budget = require "gateway.budget"
local pool = require "gateway.pool"
local get_request = require("resty.core.base").get_request
local ffi = require "ffi"
-- Required on first use: only when metrics are on.
local metrics
local usage_module = require("gateway.config").usage_module
local read_usage = require("gateway.usage").from_module

local ngx = ngx
local ngx_var = ngx.var
local sub, lower = string.sub, string.lower

local _M = {}

-- This worker's in-flight slots by nginx request (the same one after an internal redirect, unlike
-- ngx.ctx; cheaper than a variable). The log phase, which every request reaches, removes its entry.
local slots = {}

-- The request's address as a number: resty.core hands out a new cdata for it on each call.
local function request_id()
  return tonumber(ffi.cast("intptr_t", get_request()))
end

-- OpenAI-compatible routes whose streams carry usage only when the client asks for it.
local STREAM_USAGE_ROUTES = { ["/v1/chat/completions"] = true, ["/v1/completions"] = true }
-- Routes whose answer ends with Ollama's final (done) object (gateway/usage.lua), rendered from
-- bundle/routes.ts as the C filter's are.
local FINAL_OBJECT_ROUTES = require("gateway.routes").final_object

-- The caller as metrics and in-flight counts name it: a credential's name, or one name for all
-- JWT or external-auth callers (their names come from tokens: unbounded).
local function caller_label(caller_key, name)
  local kind = sub(caller_key, 1, 4)
  if kind == "jwt:" then return "(jwt)" end
  if kind == "ext:" then return "(external)" end
  return name
end

-- A model list (/api/tags, /api/ps, /v1/models) for a caller with `models`: Ollama's answer,
-- fetched by a subrequest (gateway-locations.conf, /_gw/upstream/), with the other models cut out;
-- with a pool, the union of the backends' answers (gateway/aggregate.lua), cut out likewise.
local function serve_list(allowed_models, path)
  if pool.enabled then return require("gateway.aggregate").answer(path, allowed_models) end
  local res = ngx.location.capture("/_gw/upstream" .. path, { method = ngx.HTTP_GET })
  local text = res.body
  if res.status == 200 then
    text = models.filter_list(allowed_models, path, text)
    if not text then return errors.exit(502, "the gateway could not read Ollama's model list") end
  end
  ngx.status = res.status
  ngx.header["Content-Type"] = "application/json; charset=utf-8"
  if ngx.req.get_method() ~= "HEAD" then ngx.print(text) end
  return ngx.exit(res.status)
end

-- The union of the models that `granted` (a claim or header) grants through `grants`.
local function union_of(grants, granted)
  local union = { exact = {}, globs = {} }
  for _, value in ipairs(require("gateway.scopes").granted_values(granted)) do
    local listed = grants[value]
    if listed then
      for name in pairs(listed.exact) do union.exact[name] = true end
      for _, glob in ipairs(listed.globs) do union.globs[#union.globs + 1] = glob end
    end
  end
  return union
end

-- JWT and external-auth callers: the union of the models their granted values have (spec
-- `jwt.modelGrants`, `externalAuth.modelGrants`); nil, every model, when that is not set.
-- No closures on per-request paths: LuaJIT 2.1 does not compile a return from a function that
-- made one (UCLO), and the whole request's trace then falls back to the interpreter.
local function granted_models(caller_key, record)
  local kind = sub(caller_key, 1, 4)
  local grants = (kind == "jwt:" and policy.model_grants.jwt) or (kind == "ext:" and policy.model_grants.ext) or nil
  if not grants then return nil end
  return union_of(grants, record.grants)
end

-- Whether `stream_options` asks for usage as Ollama (Go, keys in any case, the last one wins)
-- reads it: every key that folds to include_usage must be true.
local function asks_for_usage(options)
  if type(options) ~= "table" then return false end
  local found = false
  for key, value in pairs(options) do
    if type(key) == "string" and lower(key) == "include_usage" then
      if value ~= true then return false end
      found = true
    end
  end
  return found
end

--- `caller_key` is the rate limiter's key (`key:<name>`, `user:<name>`, `jwt:...`, `ext:...`);
--- `asked` what body.lua read from the request (nil for routes that name no model); `class`
--- the route's class; `path` the raw path.
function _M.admit(caller_key, record, asked, class, path)
  local own = policy.callers[caller_key]
  local allowed_models = own and own.models or granted_models(caller_key, record)
  if allowed_models and asked then
    local problem = models.check(allowed_models, asked)
    if problem then return errors.exit(403, problem, nil, "model_not_allowed") end
  end
  local request_limits = own and own.limits or policy.limits
  if asked and asked.value and next(request_limits) then
    local problem = limits.check(asked.value, request_limits)
    if problem then return errors.exit(400, problem) end
  end
  local label = caller_label(caller_key, record.name)
  local token_budget = own and own.budget
  if token_budget then
    -- A stream without usage could never be charged: the client has to ask for it.
    if asked and asked.value and STREAM_USAGE_ROUTES[path] and asked.value("stream") == true then
      if not asks_for_usage(asked.value("stream_options")) then
        return errors.exit(400, "`stream_options.include_usage` must be true on streamed requests of a credential with a token budget"
          .. " (otherwise Ollama reports no token counts); add \"stream_options\": {\"include_usage\": true}")
      end
    end
    local retry_after, window = budget.check(label, token_budget)
    if retry_after then
      ngx_var.gw_limited = "token_budget_" .. window
      return errors.exit(429, "token budget per " .. window .. " of " .. record.name .. " is spent; retry in "
        .. retry_after .. " seconds", { ["Retry-After"] = tostring(retry_after) })
    end
  end
  local max = own and own.max_concurrent
  -- Only a limit and the in-flight gauge read the count: without either, no slot is taken.
  if max or policy.metrics then
    if not concurrency.enter(label, max) then
      ngx_var.gw_limited = "concurrency"
      return errors.exit(429, "too many requests in progress for " .. record.name .. " (at most " .. max
        .. " at once); retry when one has finished", { ["Retry-After"] = "1" })
    end
    slots[request_id()] = label
  end
  ngx.ctx.gw = {
    caller = label, class = class, model = asked and asked.model or "", final = FINAL_OBJECT_ROUTES[path], budget = token_budget,
  }
  if allowed_models and models.is_list(path) then return serve_list(allowed_models, path) end
end

--- Log phase: runs once per request, after the response or the client's disconnect, and
--- before the access log line is written.
function _M.log()
  local r = request_id()
  local slot = slots[r]
  if slot then
    slots[r] = nil
    concurrency.leave(slot)
  end
  local ctx = ngx.ctx
  local gw = ctx.gw
  local usage
  if usage_module then
    -- The access log reads the C filter's variables itself; only budgets and metrics need them here.
    if (gw and gw.budget) or policy.metrics then usage = read_usage() end
  else
    usage = ctx.usage
  end
  if usage and not usage_module then
    ngx_var.gw_ttft_ms = usage.ttft
    if usage.prompt or usage.completion then
      usage.prompt, usage.completion = usage.prompt or 0, usage.completion or 0
      ngx_var.gw_prompt_tokens = usage.prompt
      ngx_var.gw_completion_tokens = usage.completion
    end
  end
  if gw and gw.budget and usage then
    -- Without counts (a stream cut short), each chunk received counts as one token.
    local tokens = usage.prompt and (usage.prompt + usage.completion) or usage.chunks or 0
    budget.charge(gw.caller, gw.budget, tokens)
  end
  if policy.metrics then
    metrics = metrics or require("gateway.metrics")
    metrics.observe(gw, usage)
  end
end

return _M
