-- Access phase of every API request: path safety, CORS, credentials, route scope, rate
-- limit. Sets $gw_caller, $gw_scope, $gw_auth, $gw_path and $gw_model for the access log.
local config = require "gateway.config"
local routes = require "gateway.routes"
local store = require "gateway.store"
local crypto = require "gateway.crypto"
local errors = require "gateway.errors"
local ratelimit = require "gateway.ratelimit"
local jwt = require "gateway.jwt"
local external_auth = require "gateway.external_auth"
local edge = require "gateway.edge"
local body = require "gateway.body"
local pool = require "gateway.pool"
local failed_auth = require "gateway.failed_auth"
local scopes = require "gateway.scopes"
local credentials = require "gateway.credentials"
local governance = require "gateway.governance"

local ngx = ngx
local ngx_var = ngx.var
local re_find = ngx.re.find
local str_find = string.find
local str_sub = string.sub
local basic_cache = ngx.shared.gw_basic_cache
local unpack = unpack

local _M = {}

-- WWW-Authenticate names the schemes that can succeed: Basic only while there are Basic users.
local BEARER_CHALLENGE = { ["WWW-Authenticate"] = 'Bearer realm="' .. config.realm .. '"' }
local BOTH_CHALLENGE = { ["WWW-Authenticate"] = BEARER_CHALLENGE["WWW-Authenticate"]
  .. ', Basic realm="' .. config.realm .. '", charset="UTF-8"' }
-- RFC 6750 token68: what a Bearer token (and an X-API-Key) may contain.
local RE_TOKEN68 = "^[A-Za-z0-9\\-._~+/]+=*\\z"
-- Character scans run as (cached, JIT-compiled) PCRE: a Lua pattern with a character class
-- costs tens of instructions per byte. "o": compiled once per worker; "j": PCRE JIT if there.
-- Header values: control bytes other than tab.
local RE_CONTROL_BYTES = "[\\x00-\\x08\\x0a-\\x1f\\x7f]"
-- Path: anything outside the characters Ollama's routes and model names use (%w is [A-Za-z0-9]).
local RE_PATH_FORBIDDEN = "[^A-Za-z0-9\\-._~/:@!$&'()*+,;=]"
local RE_NON_ASCII = "[\\x80-\\xff]"
-- Empty or dot segments: "//", "/./", "/../", or "/." or "/.." at the end.
local RE_BAD_SEGMENT = "//|/\\.\\.?(?:/|\\z)"

-- Whether `subject` contains a match of `regex`. A regex error (e.g. a PCRE limit) counts as a
-- match, so the checks below refuse rather than let through what they could not scan.
local function contains(subject, regex)
  local from, _, err = re_find(subject, regex, "jo")
  return from ~= nil or err ~= nil
end

local function challenge()
  return next(store.users) and BOTH_CHALLENGE or BEARER_CHALLENGE
end

-- The credential checks below return the caller record (gateway/credentials.lua), or nil and a
-- refusal (gateway/errors.lua) that _M.handle answers.
local function unauthorized(message)
  return nil, errors.refusal(401, message, challenge())
end

-- A wrong API key: counted per client address (gateway/failed_auth.lua).
local function token_refused(message)
  return nil, failed_auth.token_refused(message, challenge())
end

local KEYS_UNAVAILABLE = errors.refusal(503, "API keys are unavailable: the gateway's credential store could not be read")
local USERS_UNAVAILABLE = errors.refusal(503, "Basic users are unavailable: the gateway's credential store could not be read")
local BCRYPT_UNAVAILABLE = errors.refusal(503, "password verification is unavailable")

-- Raw paths that nginx and Ollama's router could read differently are refused: percent
-- escapes (%2F, %2e...), dot segments, doubled slashes, backslashes and anything outside
-- the characters Ollama's routes and model names use. What passes is forwarded byte for byte.
local function check_path(raw_path)
  if raw_path:sub(1, 1) ~= "/" then
    return "the request target must be a path starting with /"
  end
  if contains(raw_path, RE_PATH_FORBIDDEN) then
    return "the path contains characters the gateway does not forward (percent escapes, spaces or control bytes)"
  end
  if contains(raw_path, RE_BAD_SEGMENT) then
    return "the path contains empty or dot segments"
  end
  return nil
end

-- The route's class, and where it names a model ("json", "multipart", or the path's model).
local function classify(method, path)
  local route_key = method .. " " .. path
  local class = routes.exact[route_key]
  if class then return class, routes.model_in[route_key] end
  for _, route in ipairs(routes.prefixed) do
    if route.method == method and path:sub(1, #route.prefix) == route.prefix then
      local rest = path:sub(#route.prefix + 1)
      if rest ~= "" and not rest:find("/", 1, true) then
        return route.class, route.model_in == "path" and "path" or nil, rest
      end
    end
  end
  return nil
end

local function live(record, now)
  return record.not_after == nil or now < record.not_after
end

-- Whether a token has an API key's shape: RFC 6750 token68, at most 512 bytes.
local function key_shaped(token)
  return #token <= 512 and re_find(token, RE_TOKEN68, "jo") ~= nil
end

-- An API key is found by its SHA-256 in a hash table, so the cost is the same for 10 keys or
-- 100,000, and for wrong keys too. The one lookup per request serves every method that asks:
-- the record, false for an unknown key, nil when the store is unreadable or when no one but
-- check_api_key would ask (it refuses a malformed token before any digest).
local function find_key(token, shaped, jwt_like)
  if store.api_keys_status ~= "ok" or not (shaped or jwt_like or external_auth.mode) then return nil end
  return store.api_keys[crypto.sha256_hex(token)] or false
end

-- `source` names the header in messages; `key` is find_key's answer.
local function check_api_key(shaped, key, source)
  if not shaped then
    return token_refused("malformed " .. source)
  end
  if store.api_keys_status ~= "ok" then
    return nil, KEYS_UNAVAILABLE
  end
  if not key or not live(key, ngx.time()) then
    return token_refused("invalid API key")
  end
  return key
end

-- Basic: bcrypt is verified in the thread pool once; afterwards a digest of (hash, password)
-- in a shared dict proves the pair was verified. The digest includes the stored hash, so a
-- changed or removed password never matches a cached entry.
-- A wrong password costs the same bcrypts whoever it is for: every check runs against two hashes,
-- the user's live ones padded with decoys (a real hash's cost, a salt no password was hashed
-- with). So timing tells neither which names exist nor who is mid-rotation (a live `previous`).
local DECOY_SALT_CHARS = { "a", "b", "c" }
local function decoy(hash, i)
  local salt_char = str_sub(hash, 8, 8)
  for _, c in ipairs(DECOY_SALT_CHARS) do
    if c ~= salt_char then
      i = i - 1
      if i == 0 then return { hash = str_sub(hash, 1, 7) .. c .. str_sub(hash, 9), decoy = true } end
    end
  end
end

local function candidates(name, now)
  local list = {}
  for _, entry in ipairs(store.users[name] or {}) do
    if live(entry, now) then list[#list + 1] = entry end
  end
  local model = list[1]
  if not model then
    local _, any = next(store.users)
    model = any and any[1]
  end
  while model and #list < 2 do list[#list + 1] = decoy(model.hash, #list + 1) end
  return list
end

local BAD_PASSWORD = "invalid user name or password"

local function basic_refused()
  return nil, failed_auth.basic_refused(BAD_PASSWORD, BOTH_CHALLENGE)
end

local function check_basic(encoded)
  local decoded = #encoded <= 1024 and ngx.decode_base64(encoded)
  local name, password
  if decoded then name, password = credentials.basic_pair(decoded) end
  if not name then
    return unauthorized("malformed Basic credentials")
  end
  -- crypt_r reads the password as a C string and bcrypt uses only its first 72 bytes: refuse
  -- what it would silently cut (otherwise "password\0anything" would match "password").
  if #password > 72 or password:find("\0", 1, true) then
    return basic_refused()
  end
  if store.users_status ~= "ok" then
    return nil, USERS_UNAVAILABLE
  end
  local entries = candidates(name, ngx.time())
  local cache_keys, hashes, unverified = {}, {}, false
  for i, entry in ipairs(entries) do
    cache_keys[i] = crypto.sha256_hex(entry.hash .. "\0" .. password)
    hashes[i] = entry.hash
    local cached = basic_cache:get(cache_keys[i])
    if cached == 1 and not entry.decoy then
      return entry
    end
    if cached == nil then unverified = true end
  end
  -- No Basic users at all, or this password was found wrong for every hash a minute ago.
  if not unverified then return basic_refused() end

  -- Counted as a failure before it starts; 429 past the limit or when no slot is free.
  local ticket, refusal = failed_auth.start_bcrypt()
  if not ticket then return nil, refusal end
  local ok, matched, err = ngx.run_worker_thread("gw_bcrypt", "gateway.bcrypt_worker", "first_match", password, unpack(hashes))
  local entry = ok and matched and entries[matched]
  local verified = entry and not entry.decoy
  -- Only a completed check that found the password wrong stays counted as a failure.
  failed_auth.finish_bcrypt(ticket, verified or not ok or matched == nil)
  if not ok then
    -- The worker's thread VMs or the pool's queue are all taken: a capacity limit, not a fault.
    local reason = tostring(matched)
    if reason:find("no available Lua vm", 1, true) or reason:find("task_post", 1, true) then
      ngx.log(ngx.WARN, "ollama-gateway: bcrypt verification refused: ", reason)
      return nil, failed_auth.BUSY
    end
  end
  if not ok or matched == nil then
    ngx.log(ngx.ERR, "ollama-gateway: bcrypt verification failed: ", tostring(ok and err or matched))
    return nil, BCRYPT_UNAVAILABLE
  end
  -- The worker stops at the first match: hashes before it are known wrong, after it unknown.
  for i = 1, matched == 0 and #entries or matched do
    basic_cache:set(cache_keys[i], i == matched and 1 or 0, i == matched and config.basic_cache_ttl or config.basic_negative_ttl)
  end
  if verified then
    return entry
  end
  -- Counted already, by start_bcrypt.
  return nil, errors.refusal(401, BAD_PASSWORD, BOTH_CHALLENGE)
end

local function by_external_service()
  ngx_var.gw_auth = "external"
  return external_auth.authenticate()
end

-- The caller record, or nil and the refusal. One parse of Authorization / X-API-Key and at
-- most one API key lookup serve every method.
local function authenticate(headers)
  local kind, scheme, token = credentials.parse(headers["authorization"], headers["x-api-key"])
  if not kind then return nil, scheme end
  -- spec `externalAuth`: credentials the gateway does not recognise go to the external service.
  local external_mode = external_auth.mode
  if external_mode == "exclusive" then return by_external_service() end
  local shaped, jwt_like, key
  if kind == "x-api-key" or scheme == "bearer" then
    shaped = key_shaped(token)
    -- spec `jwt`: a token shaped like a JWT that is not a known API key is verified as a JWT.
    jwt_like = scheme == "bearer" and jwt.looks_like_jwt(token)
    key = find_key(token, shaped, jwt_like)
  end
  if external_mode and not external_auth.decided_locally(kind, scheme, key, jwt_like) then
    return by_external_service()
  end
  if kind == "x-api-key" then
    ngx_var.gw_auth = "x-api-key"
    return check_api_key(shaped, key, "X-API-Key")
  end
  if kind == "none" then
    ngx_var.gw_auth = "none"
    return unauthorized("missing credentials: send Authorization: Bearer <key>, X-API-Key or Basic credentials")
  end
  if kind == "malformed" then
    ngx_var.gw_auth = "malformed"
    return unauthorized("malformed Authorization header")
  end
  ngx_var.gw_auth = str_sub(scheme, 1, 16)
  if scheme == "bearer" then
    if jwt_like and not key then
      ngx_var.gw_auth = "jwt"
      return jwt.authenticate(token)
    end
    return check_api_key(shaped, key, "Bearer token")
  elseif scheme == "basic" then
    return check_basic(token)
  end
  return unauthorized("unsupported authorization scheme")
end

local ORIGIN_REFUSED = errors.refusal(403, "origin not allowed by the gateway's CORS settings", nil, "origin_not_allowed")

-- CORS: the proxy answers preflights itself and is the only origin check (Origin is removed
-- before forwarding, so Ollama's own check cannot refuse what the proxy allowed). Returns a
-- refusal for an origin not allowed.
local function handle_cors(headers, method)
  local origin = headers["origin"]
  if origin == nil then return end
  if type(origin) == "table" or not config.cors_origins[origin] then
    return ORIGIN_REFUSED
  end
  ngx.ctx.cors_origin = origin
  if method == "OPTIONS" and headers["access-control-request-method"] then
    ngx.header["Access-Control-Allow-Origin"] = origin
    ngx.header["Access-Control-Allow-Methods"] = "GET, HEAD, POST, DELETE, OPTIONS"
    ngx.header["Access-Control-Allow-Headers"] = "Authorization, Content-Type, X-API-Key"
    ngx.header["Access-Control-Max-Age"] = "600"
    ngx.header["Vary"] = "Origin"
    ngx.header["Content-Length"] = "0"
    ngx.status = 204
    return ngx.exit(204)
  end
end

function _M.add_cors_headers()
  local origin = ngx.ctx.cors_origin
  if origin then
    ngx.header["Access-Control-Allow-Origin"] = origin
    ngx.header["Access-Control-Expose-Headers"] = "Retry-After"
    ngx.header["Vary"] = "Origin"
  end
end

-- The model a request names, read as Ollama reads it: from the path, or from the JSON body
-- (memory or temporary file). Returns { model, cloud } or nil, status, message.
local function inspect_request(headers, model_in, path_model)
  if model_in == "path" then
    return { model = body.printable(path_model), cloud = body.is_cloud_model(path_model) and "cloud model '" .. body.printable(path_model) .. "'" or nil }
  end
  -- Ollama decodes zstd bodies itself (cloud passthrough): a compressed body would hide its
  -- model from the gateway.
  local encoding = headers["content-encoding"]
  if encoding ~= nil and (type(encoding) == "table" or encoding:lower():match("^%s*(.-)%s*$") ~= "identity") then
    return nil, 415, "compressed request bodies (Content-Encoding) are not accepted on this route; send the body uncompressed"
  end
  local data, err = body.read()
  if not data then
    ngx.log(ngx.ERR, "ollama-gateway: could not read the request body: ", err)
    return nil, 500, "the gateway could not read the request body"
  end
  if model_in == "multipart" then
    return body.inspect_multipart(data, headers["content-type"], ngx_var.args)
  end
  return body.inspect_json(data)
end

function _M.handle()
  local method = ngx.req.get_method()
  local request_uri = ngx_var.request_uri
  local query_at = str_find(request_uri, "?", 1, true)
  local raw_path = query_at and str_sub(request_uri, 1, query_at - 1) or request_uri
  -- $request_uri has no scheme and host even for an absolute-form target (GET http://h/p):
  -- look at the request line itself.
  local path_problem = check_path(raw_path)
  if not path_problem and not ngx_var.request:find("^%S+ +/") then
    path_problem = "the request target must be a path starting with / (absolute-form targets are refused)"
  end
  -- nginx passes raw non-ASCII bytes in the query string on; parsers behind it disagree about them.
  if not path_problem and contains(request_uri, RE_NON_ASCII) then
    path_problem = "the query string contains raw non-ASCII bytes (percent-encode them)"
  end
  if path_problem then
    ngx_var.gw_path = "(refused) " .. edge.loggable_path(raw_path)
    return errors.exit(400, path_problem)
  end
  ngx_var.gw_path = raw_path

  local headers, headers_err = ngx.req.get_headers(100)
  if headers_err == "truncated" then
    return errors.exit(400, "too many request headers")
  end
  -- nginx refuses NUL, CR and LF in header values but passes other control bytes on;
  -- parsers behind it disagree about them, so none is forwarded.
  for _, value in pairs(headers) do
    if type(value) == "table" then value = table.concat(value, " ") end
    if contains(value, RE_CONTROL_BYTES) then
      return errors.exit(400, "a request header contains control bytes")
    end
  end

  local refusal = handle_cors(headers, method)
  local record
  if not refusal then record, refusal = authenticate(headers) end
  if refusal then
    return errors.exit(refusal.status, refusal.message, refusal.headers, refusal.code)
  end
  ngx_var.gw_caller = record.name
  ngx_var.gw_scope = record.scope

  local class, model_in, path_model = classify(method, raw_path)
  if not class then
    return errors.exit(404, "unknown route: the gateway forwards only Ollama's API routes")
  end
  if class == "blocked" then
    return errors.exit(403, "this Ollama route is disabled by the gateway", nil, "route_disabled")
  end
  -- The model is read before the scope check, so a refused request still logs what it asked for.
  -- $gw_model is "" already (gateway-common.conf): a request naming no model costs no write.
  local asked
  if model_in then
    local status, message
    asked, status, message = inspect_request(headers, model_in, path_model)
    if not asked then return errors.exit(status, message) end
    if asked.model ~= "" then ngx_var.gw_model = asked.model end
  end
  if not scopes.allows(record.scope, class) then
    return errors.exit(403, "the credential's scope '" .. record.scope .. "' does not allow this route (needs '" .. class .. "')", nil, "insufficient_scope")
  end
  -- Cloud models and server-side web tools act with the Ollama server's ollama.com identity.
  if asked and asked.cloud and not record.cloud then
    return errors.exit(403, asked.cloud .. " is refused by the gateway: the credential is not allowed to use Ollama's cloud features", nil, "model_not_allowed")
  end

  local retry_after = ratelimit.take(record.rate_key, record.rate or config.rate)
  if retry_after then
    return errors.exit(429, "rate limit exceeded for " .. record.name, { ["Retry-After"] = tostring(retry_after) })
  end

  -- Request limits and the caller's in-flight slot (gateway/governance.lua, issue 16).
  governance.admit(record.rate_key, record, asked, class, raw_path)

  -- spec `upstreams`: the backend(s) for the request, or an answer from all of them.
  if pool.enabled then return pool.route(method, raw_path, asked and asked.model, record, headers) end
end

-- The route class of a method and raw path; metrics.lua labels requests with it.
_M.classify = classify

return _M
