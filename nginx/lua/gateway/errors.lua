-- JSON error responses in Ollama's shape: {"error": "..."}.
local _M = {}

local function json_string(s)
  -- Messages are ours (ASCII, no user input), but escape anyway so the body is always valid JSON.
  return '"' .. s:gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

--- Ends the request with `status` and {"error": message}. `headers` are added first.
function _M.exit(status, message, headers)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json; charset=utf-8"
  ngx.header["Cache-Control"] = "no-store"
  if headers then
    for name, value in pairs(headers) do
      ngx.header[name] = value
    end
  end
  ngx.print('{"error":', json_string(message), '}\n')
  return ngx.exit(status)
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
  ngx.status = status
  if status == 429 then ngx.header["Retry-After"] = "1" end
  ngx.header["Content-Type"] = "application/json; charset=utf-8"
  ngx.header["Cache-Control"] = "no-store"
  ngx.print('{"error":', json_string(message), '}\n')
end

return _M
