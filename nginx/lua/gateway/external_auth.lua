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
-- credentials are not used.
local config = require "gateway.config"
local store = require "gateway.store"
local crypto = require "gateway.crypto"
local errors = require "gateway.errors"
local jwt = require "gateway.jwt"
local names = require "gateway.names"

local ngx = ngx
local cfg = config.external_auth

local _M = {}

local function known_api_key(token)
  if store.api_keys_status ~= "ok" then return true end
  return store.api_keys[crypto.sha256_hex(token)] ~= nil
end

-- Whether the request's credential is one the gateway decides itself.
local function local_credential(authorization, api_key)
  if api_key then return known_api_key(api_key) end
  if not authorization then return false end
  local scheme, credentials = authorization:match("^(%a+) +([^ ]+)$")
  if not scheme then return true end -- malformed: refused locally with 401
  scheme = scheme:lower()
  if scheme == "bearer" then
    return jwt.looks_like_jwt(credentials) or known_api_key(credentials)
  elseif scheme == "basic" then
    -- While there are local Basic users, every Basic credential is decided locally: an unknown
    -- name gets the same 401 (after the same decoy bcrypt) as a known name with a wrong
    -- password, so names cannot be told apart by who answers.
    return store.users_status ~= "ok" or next(store.users) ~= nil
  end
  return false
end

--- Whether this request is decided by the external service.
function _M.wants(authorization, api_key)
  if cfg == nil then return false end
  if cfg.mode == "exclusive" then return true end
  return not local_credential(authorization, api_key)
end

local function response_header(headers, wanted)
  for name, value in pairs(headers) do
    if name:lower() == wanted then return value end
  end
  return nil
end

--- Asks the service; returns the caller record { name, scope, rate_key } or ends the request.
function _M.authenticate()
  local res = ngx.location.capture("/_gw/external-auth", { method = ngx.HTTP_GET })
  local status = res.status
  if status == 401 or status == 403 then
    local challenge = response_header(res.header, "www-authenticate")
    return errors.exit(status, status == 401 and "the external authentication service refused the credentials"
      or "the external authentication service denied access",
      status == 401 and type(challenge) == "string" and { ["WWW-Authenticate"] = challenge:sub(1, 512) } or nil)
  end
  if status < 200 or status > 299 then
    ngx.log(ngx.ERR, "ollama-gateway: external authentication service answered ", status,
      " (timeout, unreachable or failing); refusing the request")
    return errors.exit(503, "the external authentication service is unavailable")
  end
  local exact = names.exact(response_header(res.header, cfg.name_header))
  if not exact then
    return errors.exit(403, "the external authentication service named no caller")
  end
  local name = names.loggable(exact)
  ngx.var.gw_caller = name
  local scope_value = response_header(res.header, cfg.scope_header)
  local scope = type(scope_value) == "string" and jwt.map_scope(scope_value, cfg.scope_values) or nil
  if not scope then
    return errors.exit(403, "the external authentication service granted no gateway scope", nil, "insufficient_scope")
  end
  -- `grants`: the header, for models granted per value (gateway/governance.lua).
  return { name = name, scope = scope, rate_key = "ext:" .. exact, grants = scope_value }
end

return _M
