-- balancer_by_lua for a pool: sends the request to the backends gateway/pool.lua chose, in
-- order. nginx calls it again after a refused or broken connection, a 502 or a 503 (Ollama's
-- queue-full answer) that came before any byte reached the client (proxy_next_upstream);
-- once the response has started nothing is retried.
local balancer = require "ngx.balancer"
local pool = require "gateway.pool"

local ngx = ngx

local _M = {}

function _M.balance()
  local ctx = ngx.ctx.pool
  local state, status = balancer.get_last_failure()
  if state then
    pool.note_failure(ctx.order[ctx.try], status)
    local next_name = ctx.order[ctx.try + 1]
    pool.move(ctx.order[ctx.try], next_name)
    ctx.try = ctx.try + 1
  elseif #ctx.order > 1 then
    balancer.set_more_tries(#ctx.order - 1)
  end
  local name = ctx.order[ctx.try]
  local port = pool.by_name[name].port
  ngx.var.gw_backend = name
  local ok, err = balancer.set_current_peer(pool.current_facts().addr[name], port)
  if not ok then
    ngx.log(ngx.ERR, "ollama-gateway: backend ", name, ": ", err)
    return ngx.exit(502)
  end
end

return _M
