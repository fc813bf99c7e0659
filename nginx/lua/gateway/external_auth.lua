-- External authentication service (spec `externalAuth`), e.g. oauth2-proxy's /oauth2/auth or
-- an in-house service: asked through the internal location /_gw/external-auth (a subrequest:
-- no body; the client's headers, Authorization, X-API-Key and Cookie included; the original
-- method and URI in X-Original-Method / X-Original-URI).
--
--   2xx           allowed; caller from `nameHeader`, scope from `scopeHeader` (through
--                 `scopeValues`); no usable name or scope -> 403
--   401, 403      refused with the same status and a JSON error
--   anything else refused with 503 (fail closed): 5xx, 3xx, 404, timeout, connection refused
--
-- Mode `fallback` (default): credentials the gateway recognises itself are decided locally
-- (a known API key, a JWT when `jwt` is configured, Basic credentials while any local Basic
-- user exists, and any credential of a kind whose local store is unreadable); everything else
-- (no credentials, unknown keys, Basic when there are no local users, other schemes, cookies)
-- goes to the service. Mode `exclusive`: every request goes to the service and local
-- credentials are not used. The decision reads the credential access.lua parsed once
-- (gateway/credentials.lua) and the API key it looked up: nothing is parsed or hashed here.
local config = require "gateway.config"
local store = require "gateway.store"
local errors = require "gateway.errors"
local credentials = require "gateway.credentials"
local names = require "gateway.names"
local scopes = require "gateway.scopes"

local ngx = ngx
local cfg = config.external_auth

local _M = {}

--- nil (no external service), "exclusive" or "fallback".
_M.mode = cfg and cfg.mode

--- Mode `fallback`: whether the gateway decides the credential itself. `kind`, `scheme`: from
--- credentials.parse; `key`: the API key record for the token, false for an unknown key;
--- `jwt_like`: whether a Bearer token is one for gateway/jwt.lua.
function _M.decided_locally(kind, scheme, key, jwt_like)
  if kind == "x-api-key" then return key or store.api_keys_status ~= "ok" end
  if kind == "malformed" then return true end -- refused locally with 401
  if kind ~= "authorization" then return false end
  if scheme == "bearer" then
    return jwt_like or key or store.api_keys_status ~= "ok"
  elseif scheme == "basic" then
    -- While there are local Basic users, every Basic credential is decided locally: an unknown
    -- name gets the same 401 (after the same decoy bcrypt) as a known name with a wrong
    -- password, so names cannot be told apart by who answers.
    return store.users_status ~= "ok" or next(store.users) ~= nil
  end
  return false
end

local function response_header(headers, wanted)
  for name, value in pairs(headers) do
    if name:lower() == wanted then return value end
  end
  return nil
end

local UNAVAILABLE = errors.refusal(503, "the external authentication service is unavailable")
local NO_CALLER = errors.refusal(403, "the external authentication service named no caller")
local NO_SCOPE = errors.refusal(403, "the external authentication service granted no gateway scope", nil, "insufficient_scope")

--- Asks the service; returns the caller record (gateway/credentials.lua), or nil and the refusal.
function _M.authenticate()
  local res = ngx.location.capture("/_gw/external-auth", { method = ngx.HTTP_GET })
  local status = res.status
  if status == 401 or status == 403 then
    local challenge = response_header(res.header, "www-authenticate")
    return nil, errors.refusal(status, status == 401 and "the external authentication service refused the credentials"
      or "the external authentication service denied access",
      status == 401 and type(challenge) == "string" and { ["WWW-Authenticate"] = challenge:sub(1, 512) } or nil)
  end
  if status < 200 or status > 299 then
    ngx.log(ngx.ERR, "ollama-gateway: external authentication service answered ", status,
      " (timeout, unreachable or failing); refusing the request")
    return nil, UNAVAILABLE
  end
  local exact = names.exact(response_header(res.header, cfg.name_header))
  if not exact then return nil, NO_CALLER end
  local name = names.loggable(exact)
  ngx.var.gw_caller = name
  local scope_value = response_header(res.header, cfg.scope_header)
  local scope = type(scope_value) == "string" and scopes.map(scope_value, cfg.scope_values) or nil
  if not scope then return nil, NO_SCOPE end
  -- `grants`: the header, for models granted per value (gateway/governance.lua).
  local caller = credentials.caller("external", name, scope, exact)
  caller.grants, caller.cloud = scope_value, cfg.cloud
  return caller
end

return _M
