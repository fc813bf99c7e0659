-- The edge of every request, run in the server-rewrite phase: before nginx looks for a location
-- or checks the body size, so before anything about the request can reach the error log.
-- It sets a log-safe $gw_path, drops the Referer, refuses credentials in the query string and,
-- on the plain-HTTP port when TLS is on, refuses credentials altogether.
local config = require "gateway.config"
local errors = require "gateway.errors"

local ngx = ngx
local ngx_var = ngx.var
local re_find = ngx.re.find
local re_gsub = ngx.re.gsub
local str_find = string.find
local str_sub = string.sub
local str_format = string.format

local _M = {}

-- Query parameter names that carry credentials in common APIs (?key=, ?api_key=, ?access_token=,
-- ?auth=, ?password=, ?sig=...). Ollama's API reads no query parameter, so a false match costs nothing.
local RE_CREDENTIAL_NAME = "key|token|auth|pass|secret|session|sig|jwt|bearer|credential"
-- Request headers that carry credentials.
local CREDENTIAL_HEADERS = { "authorization", "proxy-authorization", "x-api-key", "cookie" }

local function percent_escape(m)
  return str_format("%%%02X", m[0]:byte())
end

local RE_UNPRINTABLE = "[^\\x21-\\x7e]"

--- The path as the access log may show it: at most 200 bytes, every byte outside printable
--- ASCII percent-escaped, so a log line is valid UTF-8 JSON whatever the client sent.
function _M.loggable_path(raw_path)
  local path = str_sub(raw_path, 1, 200)
  -- ngx.re.gsub with a function allocates (and zeroes) a 4 KB buffer per call: only when needed.
  local from, _, err = re_find(path, RE_UNPRINTABLE, "jo")
  if not from and not err then return path end
  return (re_gsub(path, RE_UNPRINTABLE, percent_escape, "jo"))
end

-- Whether the query string has a parameter named like a credential (or too many to check).
local function credential_in_query()
  if ngx_var.args == nil then return false end
  local args, err = ngx.req.get_uri_args(100)
  if err == "truncated" then return true end
  for name in pairs(args) do
    if type(name) ~= "string" or re_find(name, RE_CREDENTIAL_NAME, "joi") then return true end
  end
  return false
end

local function credential_in_headers()
  local headers = ngx.req.get_headers(100)
  for _, name in ipairs(CREDENTIAL_HEADERS) do
    if headers[name] ~= nil then return true end
  end
  return false
end

local function https_hint(plain)
  return plain.https_base or ("HTTPS on port " .. plain.https_port)
end

--- server_rewrite_by_lua of every server.
function _M.early()
  -- An error page's internal redirect: keep what the request itself logged.
  if ngx.req.is_internal() then return end
  local request_uri = ngx_var.request_uri
  local query_at = str_find(request_uri, "?", 1, true)
  ngx_var.gw_path = _M.loggable_path(query_at and str_sub(request_uri, 1, query_at - 1) or request_uri)
  -- nginx's error log appends `referrer: "..."` to every line about a request, and a Referer can
  -- carry a page's tokens; nothing behind the gateway needs it.
  ngx.req.clear_header("Referer")

  local plain = config.plain_http
  if plain and ngx_var.scheme == "http" then
    if credential_in_headers() or credential_in_query() then
      return errors.exit(403, "credentials must not be sent over plain HTTP; this request was not forwarded. Use "
        .. https_hint(plain) .. " (and replace a credential that has crossed the network in clear)")
    end
    return
  end
  if query_at and credential_in_query() then
    return errors.exit(400, "a query parameter named like a credential was refused: send credentials in the "
      .. "Authorization or X-API-Key header, never in the URL")
  end
end

--- Content of `location /` on the plain-HTTP port when TLS is on (credentials refused already).
function _M.redirect_to_https()
  local plain = config.plain_http
  if not plain.https_base then
    -- No fixed host (serverName `_`, no redirectHost): the client's Host is never trusted for it.
    return errors.exit(400, "this port answers only /healthz over plain HTTP; use " .. https_hint(plain))
  end
  return errors.exit(308, "use " .. plain.https_base, { Location = plain.https_base .. ngx_var.request_uri })
end

return _M
