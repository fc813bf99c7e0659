-- The request's credential, parsed once for every method (API key, Basic, JWT, external auth),
-- and the caller record every method returns. Pure: no ngx.shared, no ngx.req (unit-tested by
-- test/lua/units.lua without nginx).
local errors = require "gateway.errors"

local str_find, str_sub, str_lower, type = string.find, string.sub, string.lower, type

local _M = {}

local ONE_HEADER = errors.refusal(400, "send exactly one Authorization or X-API-Key header")
local NOT_BOTH = errors.refusal(400, "send either Authorization or X-API-Key, not both")

--- The credential in the Authorization and X-API-Key headers (each nil, a string, or a table
--- when repeated, as ngx.req.get_headers gives them): `kind, scheme, token`, where kind is
---   "x-api-key"      token: the header's value
---   "authorization"  scheme: in lower case ("bearer", "basic", ...); token: the one after it
---   "none"           no credential
---   "malformed"      an Authorization header that is not a scheme and one token
--- or nil and a refusal (400) for a repeated header or both headers.
function _M.parse(authorization, api_key)
  if type(authorization) == "table" or type(api_key) == "table" then return nil, ONE_HEADER end
  if api_key then
    if authorization then return nil, NOT_BOTH end
    return "x-api-key", nil, api_key
  end
  if not authorization then return "none" end
  -- The scheme is case-insensitive (RFC 9110): letters, nothing before them; then spaces and
  -- exactly one token.
  local _, scheme_end = str_find(authorization, "^[A-Za-z]+ ")
  if not scheme_end then return "malformed" end
  local from = str_find(authorization, "[^ ]", scheme_end + 1)
  if not from or str_find(authorization, " ", from, true) then return "malformed" end
  return "authorization", str_lower(str_sub(authorization, 1, scheme_end - 1)), str_sub(authorization, from)
end

--- The user name and password of a Basic credential (already base64-decoded): the name ends at
--- the first colon; the password is everything after it. nil when either is empty.
function _M.basic_pair(decoded)
  local colon = str_find(decoded, ":", 1, true)
  if not colon or colon == 1 or colon == #decoded then return nil end
  return str_sub(decoded, 1, colon - 1), str_sub(decoded, colon + 1)
end

-- Each method's rate-limit bucket prefix. The keys are also what spec `callers` policies and the
-- metrics' caller labels are keyed by (gateway/governance.lua), so they never change.
local RATE_PREFIX = { api_key = "key:", basic = "user:", jwt = "jwt:", external = "ext:" }

--- The caller record every credential check returns: { method, name, scope, rate_key, ... }.
--- `method`: "api_key", "basic", "jwt" or "external"; `name`: as logged; `rate_key`: the
--- caller's bucket, from `exact`, the name as the credential carries it when `name` is only its
--- log-safe form (a JWT claim, an external service's header), so callers that log alike never
--- share one. Fills `record` when given (store.lua's records, built once per file load).
function _M.caller(method, name, scope, exact, record)
  local rate_key = RATE_PREFIX[method] .. (exact or name)
  -- Per request (JWT, external auth): one table, its fields sized by the constructor.
  if not record then return { method = method, name = name, scope = scope, rate_key = rate_key } end
  record.method, record.name, record.scope, record.rate_key = method, name, scope, rate_key
  return record
end

return _M
