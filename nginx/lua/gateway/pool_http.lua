-- The little HTTP the pool needs: GET a path from one backend over a cosocket, and resolve a
-- backend's host name. Hand-written because Debian ships neither lua-resty-http nor
-- lua-resty-dns, and nginx's own resolver needs a fixed DNS server address in the config,
-- which a bundle rendered for Docker, Kubernetes and hosts alike cannot know.
local ffi = require "ffi"

local ngx = ngx
local find, sub, match = string.find, string.sub, string.match

local _M = {}

pcall(ffi.cdef, [[
struct gw_addrinfo {
  int ai_flags; int ai_family; int ai_socktype; int ai_protocol;
  unsigned int ai_addrlen; void *ai_addr; char *ai_canonname; struct gw_addrinfo *ai_next;
};
int getaddrinfo(const char *node, const char *service, const struct gw_addrinfo *hints, struct gw_addrinfo **res);
void freeaddrinfo(struct gw_addrinfo *res);
const char *inet_ntop(int af, const void *src, char *dst, unsigned int size);
]])
local C = ffi.C
local AF_INET, AF_INET6, SOCK_STREAM = 2, 10, 1

local function is_ip(host)
  return match(host, "^%d+%.%d+%.%d+%.%d+$") ~= nil or find(host, ":", 1, true) ~= nil
end

--- The address to connect to: the host itself when it is an IP address, else the first address
--- getaddrinfo gives (IPv4 first). getaddrinfo blocks, so it is only called from the probe timer,
--- once per backend and interval; requests use the address the probe stored.
function _M.resolve(b)
  if is_ip(b.host) then return b.host end
  for _, family in ipairs({ AF_INET, AF_INET6 }) do
    local hints = ffi.new("struct gw_addrinfo")
    hints.ai_family, hints.ai_socktype = family, SOCK_STREAM
    local res = ffi.new("struct gw_addrinfo *[1]")
    if C.getaddrinfo(b.host, nil, hints, res) == 0 and res[0] ~= nil then
      local buf = ffi.new("char[64]")
      -- sin_addr sits 4 bytes into a sockaddr_in, sin6_addr 8 bytes into a sockaddr_in6.
      local addr = ffi.cast("char *", res[0].ai_addr) + (family == AF_INET and 4 or 8)
      local text = C.inet_ntop(family, addr, buf, 64)
      local ip = text ~= nil and ffi.string(text) or nil
      C.freeaddrinfo(res[0])
      if ip then return ip end
    end
  end
  -- /healthz shows this to anyone: the backend's name says which, its host stays private.
  return nil, "its host name did not resolve"
end

--- GET `path` from backend `b` at `addr`: status, body; or nil, nil, error. HTTP/1.0, so the
--- backend closes the connection after one unchunked answer.
function _M.get(b, addr, path, timeout_ms)
  local sock = ngx.socket.tcp()
  sock:settimeouts(timeout_ms, timeout_ms, timeout_ms)
  local ok, err = sock:connect(addr, b.port)
  if not ok then return nil, nil, "connect: " .. tostring(err) end
  if b.scheme == "https" then
    -- As nginx's proxy_pass does by default (proxy_ssl_verify off): encrypted, not verified.
    ok, err = sock:sslhandshake(nil, b.host, false)
    if not ok then sock:close() return nil, nil, "TLS: " .. tostring(err) end
  end
  ok, err = sock:send("GET " .. path .. " HTTP/1.0\r\nHost: " .. b.host_header ..
    "\r\nUser-Agent: ollama-gateway\r\nAccept: application/json\r\n\r\n")
  if not ok then sock:close() return nil, nil, "send: " .. tostring(err) end
  local data, rerr, partial = sock:receive("*a")
  sock:close()
  data = data or partial
  if not data or data == "" then return nil, nil, "read: " .. tostring(rerr) end
  local status = tonumber(match(data, "^HTTP/1%.%d (%d%d%d)"))
  local head_end = find(data, "\r\n\r\n", 1, true)
  if not status or not head_end then return nil, nil, "malformed HTTP answer" end
  return status, sub(data, head_end + 4)
end

return _M
