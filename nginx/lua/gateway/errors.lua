-- JSON error responses in the envelope of the API family the request addressed, as Ollama
-- itself answers them (clients parse what the route family promises):
--   /v1/messages  Anthropic: {"type":"error","error":{"type":"...","message":"..."}}
--   other /v1/*   OpenAI:    {"error":{"message":"...","type":"...","param":null,"code":"..."}}
--   the rest      Ollama:    {"error":"..."}
-- The HTTP status is the same in every envelope; `code` (OpenAI) is a stable machine code.
local _M = {}

local str_find, str_sub = string.find, string.sub

local function json_string(s)
  -- Messages are ours (model names in them are printable already), but escape anyway so the
  -- body is always valid JSON.
  return '"' .. s:gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

-- Machine code per status, used when a call site names none (OpenAI's `code`).
local CODES = {
  [400] = "invalid_request_error",
  [401] = "invalid_api_key",
  [403] = "permission_denied",
  [404] = "not_found",
  [405] = "method_not_allowed",
  [408] = "request_timeout",
  [413] = "request_too_large",
  [414] = "request_too_large",
  [415] = "unsupported_media_type",
  [429] = "rate_limit_exceeded",
  [431] = "request_too_large",
  [500] = "internal_error",
  [502] = "upstream_unreachable",
  [503] = "service_unavailable",
  [504] = "upstream_timeout",
}

-- OpenAI's `type`: what its API answers for the same status (4xx: invalid_request_error, a
-- request-rate 429: requests, 5xx: server_error).
local function openai_type(status)
  if status == 429 then return "requests" end
  if status >= 500 then return "server_error" end
  return "invalid_request_error"
end

-- Anthropic's error types, by status as its API documents them.
local ANTHROPIC_TYPES = {
  [401] = "authentication_error",
  [403] = "permission_error",
  [404] = "not_found_error",
  [413] = "request_too_large",
  [429] = "rate_limit_error",
}
local function anthropic_type(status)
  return ANTHROPIC_TYPES[status] or (status >= 500 and "api_error" or "invalid_request_error")
end

-- The family of the request's own path: $request_uri keeps it through error_page redirects.
-- The raw path is compared byte for byte, as access.lua forwards it.
local function family()
  local uri = ngx.var.request_uri
  if not uri then return "ollama" end
  local query_at = str_find(uri, "?", 1, true)
  local path = query_at and str_sub(uri, 1, query_at - 1) or uri
  if path == "/v1/messages" or str_sub(path, 1, 13) == "/v1/messages/" then return "anthropic" end
  if str_sub(path, 1, 4) == "/v1/" then return "openai" end
  return "ollama"
end

--- The response body for `status` and `message` in the request's envelope.
local function body(status, message, code)
  local kind = family()
  if kind == "openai" then
    code = code or CODES[status]
    return '{"error":{"message":' .. json_string(message) .. ',"type":"' .. openai_type(status)
      .. '","param":null,"code":' .. (code and '"' .. code .. '"' or "null") .. '}}\n'
  elseif kind == "anthropic" then
    return '{"type":"error","error":{"type":"' .. anthropic_type(status) .. '","message":'
      .. json_string(message) .. '}}\n'
  end
  return '{"error":' .. json_string(message) .. '}\n'
end
_M.body = body

local function send(status, message, code)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json; charset=utf-8"
  ngx.header["Cache-Control"] = "no-store"
  ngx.print(body(status, message, code))
end

--- Ends the request with `status` and `message` in the route family's envelope. `headers` are
--- added first; `code` overrides the status's machine code (OpenAI's `code` field).
function _M.exit(status, message, headers, code)
  if headers then
    for name, value in pairs(headers) do
      ngx.header[name] = value
    end
  end
  send(status, message, code)
  return ngx.exit(status)
end

--- A refusal that a check returns instead of ending the request itself; the handler that
--- called the check answers it with `exit(r.status, r.message, r.headers, r.code)`.
function _M.refusal(status, message, headers, code)
  return { status = status, message = message, headers = headers, code = code }
end

local MESSAGES = {
  [400] = "bad request",
  [401] = "unauthorized",
  [403] = "forbidden",
  [404] = "not found",
  [405] = "method not allowed",
  [408] = "request timed out: the client sent its request too slowly",
  [413] = "request body too large",
  [414] = "request URI too long",
  -- Only limit_conn's 429 comes here (the Lua checks answer their own).
  [429] = "too many requests in progress from this address; retry later",
  [431] = "request headers too large",
  [494] = "request headers too large",
  [500] = "internal error in the gateway",
  [502] = "upstream Ollama server is unreachable",
  [503] = "service unavailable",
  [504] = "upstream Ollama server timed out",
}

--- Content of the error_page location: turns nginx's own error pages into JSON.
function _M.from_status()
  local status = ngx.status
  -- 501 (unknown Transfer-Encoding) and 505 (HTTP version) are nginx refusing a malformed
  -- request: a client error, not a failure of the gateway.
  -- nginx's 497 (plain HTTP on the HTTPS port) arrives as a 400; gateway-common.conf marks it.
  local message = ngx.var.args == "plain-http" and "plain HTTP was sent to the HTTPS port; use https://"
  if status == 494 or status == 501 or status == 505 then status = 400 end
  if not MESSAGES[status] then status = 500 end
  message = message or MESSAGES[status]
  if status == 429 then ngx.header["Retry-After"] = "1" end
  send(status, message)
end

return _M
