-- JWT bearer tokens (spec `jwt`): HS256 / RS256 / ES256 verified in the proxy, claims checked,
-- a claim mapped to a gateway scope. Keys come from credentials/jwt-keys (gateway.store).
--
-- Order of checks: size and shape, strict base64url, header JSON, `alg` among the configured
-- algorithms (so never `none`), no `crit`, key by `kid` (bound to one algorithm), signature,
-- and only then the payload: exp / nbf / iat with clock skew, iss, aud, the caller name and
-- the scope claim.
local config = require "gateway.config"
local store = require "gateway.store"
local errors = require "gateway.errors"
local credentials = require "gateway.credentials"
local json = require "gateway.json"
local jws = require "gateway.jws"
local names = require "gateway.names"
local failed_auth = require "gateway.failed_auth"
local scopes = require "gateway.scopes"

local ngx = ngx
local cfg = config.jwt

local _M = {}

local CHALLENGE = { ["WWW-Authenticate"] = 'Bearer realm="' .. config.realm .. '", error="invalid_token"' }
local SEGMENT = "[%w%-_]+"
local JWT_SHAPE = "^" .. SEGMENT .. "%." .. SEGMENT .. "%." .. SEGMENT .. "$"

local KEYS_UNAVAILABLE = errors.refusal(503, "JWT verification keys are unavailable: the gateway's credential store could not be read")

-- Counted per client address with wrong API keys (gateway/failed_auth.lua).
local function unauthorized(message)
  return nil, failed_auth.token_refused(message, CHALLENGE)
end

--- Whether a Bearer token is one for this module: JWT is configured and the token is three
--- base64url segments separated by two dots. The caller checks the API key table first.
function _M.looks_like_jwt(token)
  return cfg ~= nil and token:find(JWT_SHAPE) ~= nil
end

-- Strict base64url without padding: the decoded bytes must encode back to the same text, so
-- one token has exactly one spelling (no ignored trailing bits).
local function b64url_decode(segment)
  local rem = #segment % 4
  if rem == 1 then return nil end
  local std = segment:gsub("[%-_]", { ["-"] = "+", ["_"] = "/" })
  if rem > 0 then std = std .. string.rep("=", 4 - rem) end
  local decoded = ngx.decode_base64(std)
  if not decoded then return nil end
  local again = ngx.encode_base64(decoded, true):gsub("[%+/]", { ["+"] = "-", ["/"] = "_" })
  if again ~= segment then return nil end
  return decoded
end

local function audience_matches(aud)
  if aud == cfg.audience then return true end
  if json.is_array(aud) then
    for _, v in ipairs(aud) do
      if v == cfg.audience then return true end
    end
  end
  return false
end

local function verify_signature(alg, kid, input, signature)
  local keys = store.jwt_keys
  local candidates
  if kid ~= nil then
    local entry = keys.by_kid[kid]
    if not entry or entry.alg ~= alg then return false, "unknown key id" end
    candidates = { entry }
  else
    candidates = keys.by_alg[alg] or {}
  end
  local now = ngx.time()
  for _, entry in ipairs(candidates) do
    local ok
    if entry.not_after and now >= entry.not_after then
      ok = false -- a rotated-out key past its overlap
    elseif alg == "HS256" then
      ok = jws.verify_hs256(entry.secret, input, signature)
    else
      ok = jws.verify_pkey(alg, entry.pkey, input, signature)
    end
    if ok then return true end
  end
  return false, "invalid token signature"
end

--- Verifies `token` and returns the caller record (gateway/credentials.lua), or nil and the
--- refusal: 401 for a token that is not valid (429 past `failedAuth.token`), 403 for a valid one
--- that grants no scope, 503 when the key file is unusable.
function _M.authenticate(token)
  if #token > cfg.max_token_bytes then
    return unauthorized("token too large")
  end
  if store.jwt_keys_status ~= "ok" then
    return nil, KEYS_UNAVAILABLE
  end
  local h64, p64, s64 = token:match("^([^.]+)%.([^.]+)%.([^.]+)$")
  local header_text = h64 and b64url_decode(h64)
  local payload_text = p64 and b64url_decode(p64)
  local signature = s64 and b64url_decode(s64)
  if not header_text or not payload_text or not signature then
    return unauthorized("malformed token")
  end
  local header = json.decode(header_text, { max_depth = 4, max_bytes = 2048 })
  if not json.is_object(header) then
    return unauthorized("malformed token header")
  end
  local alg = header.alg
  if type(alg) ~= "string" or not cfg.algorithms[alg] then
    return unauthorized("token algorithm not accepted")
  end
  if header.crit ~= nil then
    return unauthorized("token has critical extensions the gateway does not support")
  end
  local kid = header.kid
  if kid ~= nil and type(kid) ~= "string" then
    return unauthorized("malformed token header")
  end
  local ok, why = verify_signature(alg, kid, h64 .. "." .. p64, signature)
  if not ok then
    return unauthorized(why)
  end

  local claims = json.decode(payload_text, { max_depth = 8, max_bytes = cfg.max_token_bytes })
  if not json.is_object(claims) then
    return unauthorized("malformed token claims")
  end
  local now, skew = ngx.time(), cfg.clock_skew
  if type(claims.exp) ~= "number" then
    return unauthorized("token has no exp claim")
  end
  if now >= claims.exp + skew then
    return unauthorized("token expired")
  end
  if claims.nbf ~= nil and (type(claims.nbf) ~= "number" or now + skew < claims.nbf) then
    return unauthorized("token not yet valid")
  end
  if claims.iat ~= nil and (type(claims.iat) ~= "number" or claims.iat > now + skew) then
    return unauthorized("token issued in the future")
  end
  if claims.iss ~= cfg.issuer then
    return unauthorized("token issuer not accepted")
  end
  if not audience_matches(claims.aud) then
    return unauthorized("token audience not accepted")
  end
  local exact = names.exact(claims[cfg.name_claim])
  if not exact then
    return unauthorized("token has no usable '" .. cfg.name_claim .. "' claim (a string, or an integer of at most 2^53 - 1)")
  end
  local name = names.loggable(exact)
  ngx.var.gw_caller = name
  local scope = scopes.map(claims[cfg.scope_claim], cfg.scope_values)
  if not scope then
    return nil, errors.refusal(403, "the token grants no gateway scope (claim '" .. cfg.scope_claim .. "')", nil, "insufficient_scope")
  end
  -- `grants`: the claim, for models granted per value (gateway/governance.lua).
  local caller = credentials.caller("jwt", name, scope, exact)
  caller.grants, caller.cloud = claims[cfg.scope_claim], cfg.cloud
  return caller
end

return _M
