-- GET /healthz, without credentials: 200 when the proxy is up, its credential files are
-- readable and Ollama answers /api/version; 503 otherwise. The probe has 2-3 s timeouts.
-- With a pool (spec `upstreams`): each backend's state as the pool's probes last saw it, 200
-- while at least one is healthy (gateway/pool.lua).
local store = require "gateway.store"

local _M = {}

function _M.handle()
  ngx.var.gw_path = "/healthz"
  local method = ngx.req.get_method()
  if method ~= "GET" and method ~= "HEAD" then
    return require("gateway.errors").exit(405, "use GET /healthz")
  end
  local pool = require "gateway.pool"
  if pool.enabled then return pool.health(store.all_ok()) end
  local probe = ngx.location.capture("/_gw/upstream-version")
  local upstream_ok = probe.status == 200
  local credentials_ok = store.all_ok()
  local healthy = upstream_ok and credentials_ok
  ngx.status = healthy and 200 or 503
  ngx.header["Content-Type"] = "application/json; charset=utf-8"
  ngx.header["Cache-Control"] = "no-store"
  ngx.print(string.format('{"status":"%s","upstream":"%s","credentials":"%s"}\n',
    healthy and "ok" or "unavailable",
    upstream_ok and "ok" or ("failed (" .. probe.status .. ")"),
    credentials_ok and "ok" or "unavailable"))
end

return _M
