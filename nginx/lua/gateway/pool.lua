-- A pool of Ollama backends (spec `upstreams`): what each backend holds and whether it is up,
-- and the choice of backend for each request. Loaded only when the spec lists more than one
-- backend; with one, nginx proxies to it directly as it always did.
--
-- State lives in the gw_pool shared dict so every worker routes on the same facts:
--   up:<name>      "up" or "down" (absent until the first probe)
--   err:<name>     why it is down
--   models:<name>  "\n"-separated model keys from GET /api/tags ("\n" at both ends)
--   loaded:<name>  the same from GET /api/ps
--   busy:<name>    requests in progress through this gateway
--   addr:<name>    the address its host name resolved to
--   version        bumped on every change of the above (workers cache them until it moves)
--   caller:<key>   the backend a caller last used (affinity "caller")
-- One worker at a time probes (a lock in the dict), every `probeIntervalSeconds`: GET
-- /api/version, then /api/tags and /api/ps. Nothing is ever generated to learn a fact.
local config = require "gateway.config"
local errors = require "gateway.errors"
local http = require "gateway.pool_http"

local ngx = ngx
local find, lower, gsub, sub = string.find, string.lower, string.gsub, string.sub
local concat = table.concat

local _M = { enabled = config.pool ~= nil }
if not _M.enabled then return _M end

local cjson = require "cjson.safe"
local dict = ngx.shared.gw_pool
local pool = config.pool
local backends = pool.backends
local by_name = {}
for _, b in ipairs(backends) do by_name[b.name] = b end
_M.backends, _M.by_name = backends, by_name

local PROBE_LOCK = "probe-lock"
-- A caller's backend is remembered this long after its last request (affinity "caller").
local AFFINITY_TTL = 600
-- Routes that change one server's models: they go only where X-Ollama-Backend says.
local ADMIN_EXACT = { ["/api/pull"] = true, ["/api/push"] = true, ["/api/create"] = true,
  ["/api/copy"] = true, ["/api/delete"] = true }
local ADMIN_PREFIX = "/api/blobs/"
local BACKEND_HEADER = "x-ollama-backend"

local NAMES = {}
for i, b in ipairs(backends) do NAMES[i] = b.name end
NAMES = concat(NAMES, ", ")

--- The key a model is known by: Ollama's names are case-insensitive, `registry.ollama.ai/library/`
--- is implied, and a name without a tag means `:latest`.
function _M.model_key(name)
  -- (gsub's second result must not reach the outer gsub, where it would cap the replacements.)
  local key = gsub((gsub(lower(name), "^registry%.ollama%.ai/", "")), "^library/", "")
  if not find(key, ":", (find(key, "/[^/]*$") or 1), true) then key = key .. ":latest" end
  return key
end

local function model_list(body, field)
  local doc = cjson.decode(body or "")
  if type(doc) ~= "table" or type(doc[field]) ~= "table" then return nil end
  local keys = {}
  for _, m in ipairs(doc[field]) do
    local name = type(m) == "table" and (m.model or m.name)
    if type(name) == "string" then keys[#keys + 1] = _M.model_key(name) end
  end
  return "\n" .. concat(keys, "\n") .. "\n"
end

-- Every change to what routing reads bumps "version", so each worker re-reads the facts only
-- when they changed, not on every request.
local function changed() dict:incr("version", 1, 0) end

local function mark_down(b, why)
  dict:set("err:" .. b.name, why)
  if dict:get("up:" .. b.name) ~= "down" then
    dict:set("up:" .. b.name, "down")
    changed()
  end
end

local function key_set(list)
  local set = {}
  for key in string.gmatch(list or "", "[^\n]+") do set[key] = true end
  return set
end

-- This worker's copy of the routing facts: { up = {name = state}, models = {name = set|nil},
-- loaded = {name = set}, addr = {name = address} }.
local facts = { version = -1 }
local function current_facts()
  local version = dict:get("version") or 0
  if version ~= facts.version then
    local up, models, loaded, addr = {}, {}, {}, {}
    for _, b in ipairs(backends) do
      local name = b.name
      up[name] = dict:get("up:" .. name)
      local list = dict:get("models:" .. name)
      models[name] = list and key_set(list)
      loaded[name] = key_set(dict:get("loaded:" .. name))
      addr[name] = dict:get("addr:" .. name) or b.host
    end
    facts = { version = version, up = up, models = models, loaded = loaded, addr = addr }
  end
  return facts
end
_M.current_facts = current_facts

-- One backend's probe: version (health), then models on disk and in memory.
local function probe(b)
  local addr, rerr = http.resolve(b)
  if not addr then return mark_down(b, rerr) end
  if dict:get("addr:" .. b.name) ~= addr then
    dict:set("addr:" .. b.name, addr)
    changed()
  end
  local timeout = math.min(2000, pool.probe_interval * 1000)
  local status, _, err = http.get(b, addr, "/api/version", timeout)
  if status ~= 200 then return mark_down(b, err or ("GET /api/version answered " .. status)) end
  local tags_status, tags = http.get(b, addr, "/api/tags", timeout)
  local ps_status, ps = http.get(b, addr, "/api/ps", timeout)
  local models = tags_status == 200 and model_list(tags, "models")
  if not models then return mark_down(b, "GET /api/tags did not list models") end
  dict:set("models:" .. b.name, models)
  dict:set("loaded:" .. b.name, ps_status == 200 and model_list(ps, "models") or "\n")
  dict:delete("err:" .. b.name)
  dict:set("up:" .. b.name, "up")
  changed()
end

function _M.probe_all(premature)
  if premature then return end
  -- One worker probes per interval; the others read what it found.
  if not dict:add(PROBE_LOCK, true, pool.probe_interval * 0.9) then return end
  local threads = {}
  for i, b in ipairs(backends) do threads[i] = ngx.thread.spawn(probe, b) end
  for _, t in ipairs(threads) do ngx.thread.wait(t) end
end

--- Called from init_worker: probe at once, then every interval.
function _M.start()
  -- Workers forked from one master share a seed; ties between backends must not.
  math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
  ngx.timer.at(0, _M.probe_all)
  local ok, err = ngx.timer.every(pool.probe_interval, _M.probe_all)
  if not ok then ngx.log(ngx.ERR, "ollama-gateway: cannot start the backend probes: ", err) end
end

--- Passive health, from the balancer: a refused or broken connection (nginx reports it as 502,
--- like a 502 answer) or a timeout (504) takes the backend out until the next good probe; a 503
--- (Ollama's queue is full) does not: the backend is busy, not broken.
function _M.note_failure(name, status)
  if status ~= 503 then mark_down(by_name[name], "request failed (" .. tostring(status) .. ")") end
end

local function busy(name) return dict:get("busy:" .. name) or 0 end

--- Moves this request's in-progress count from one backend to another (nil: none). The name
--- counted is kept in $gw_pool_busy, which (unlike ngx.ctx) survives the internal redirect to
--- an error page, so the log phase always gives the count back.
function _M.move(from, to)
  if from then dict:incr("busy:" .. from, -1, 1) end
  if to then dict:incr("busy:" .. to, 1, 0) end
  ngx.var.gw_pool_busy = to or ""
end

-- How well a backend suits a model: 1 loaded, 2 on disk, 3 not probed yet; nil: not at all.
local function tier(f, name, key)
  local state = f.up[name]
  if state == "down" then return nil end
  local models = f.models[name]
  if state == nil or models == nil then return 3 end
  if key == nil then return 2 end
  if f.loaded[name][key] then return 1 end
  if models[key] then return 2 end
  return nil
end

--- Backends for a request, best first: loaded before on disk, fewest requests in progress per
--- weight, ties shared by weight; those at maxConcurrent are left out. Returns the list, and
--- whether some backend had the model but was full.
function _M.candidates(key, preferred)
  local list, full, f = {}, false, current_facts()
  for _, b in ipairs(backends) do
    local t = tier(f, b.name, key)
    if t then
      local n = busy(b.name)
      if b.max_concurrent and n >= b.max_concurrent then
        full = true
      else
        local pref = (b.name == preferred and t <= 2) and 0 or t
        list[#list + 1] = { b = b, tier = pref, load = n / b.weight, roll = math.random() ^ (1 / b.weight) }
      end
    end
  end
  table.sort(list, function(x, y)
    if x.tier ~= y.tier then return x.tier < y.tier end
    if x.load ~= y.load then return x.load < y.load end
    return x.roll > y.roll -- weighted random among equals (Efraimidis-Spirakis)
  end)
  return list, full
end

local function any_up()
  local f = current_facts()
  for _, b in ipairs(backends) do
    if f.up[b.name] ~= "down" then return true end
  end
  return false
end

-- The down backends that listed `key` when last seen up, or nil: the model exists, its servers
-- are away, so the answer is "retry later" rather than "not found".
local function on_down_backends(key)
  local f, names = current_facts(), {}
  for _, b in ipairs(backends) do
    if f.up[b.name] == "down" and f.models[b.name] and f.models[b.name][key] then names[#names + 1] = b.name end
  end
  return names[1] and concat(names, ", ") or nil
end

-- Counts the request against the first backend of `order` that still has a slot, dropping the
-- full ones before it; nil when none has. candidates() read the counts a moment ago, but another
-- worker may have taken the last slot since: the count itself decides (shared-dict incr is atomic).
local function claim(order)
  while order[1] do
    local b = by_name[order[1]]
    local n = dict:incr("busy:" .. b.name, 1, 0)
    if not b.max_concurrent or n <= b.max_concurrent then
      ngx.var.gw_pool_busy = b.name
      return order
    end
    dict:incr("busy:" .. b.name, -1, 1)
    table.remove(order, 1)
  end
  return nil
end

-- Every backend that has the model is at its maxConcurrent: Ollama's own queue-full answer.
local function all_full(key, model)
  return errors.exit(503, "server busy, please try again: every backend " ..
    (key and "with model '" .. model .. "' " or "") .. "is at its maxConcurrent")
end

-- Sends the request to `order` (names, tried in turn by the balancer); `claimed`: its first
-- backend counts the request already.
local function send_to(order, caller_key, claimed)
  ngx.ctx.pool = { order = order, try = 1 }
  if not claimed then _M.move(nil, order[1]) end
  ngx.var.gw_backend_host = by_name[order[1]].host_header
  if caller_key then dict:set(caller_key, order[1], AFFINITY_TTL) end
end

--- The access phase's last step (after credentials, scope and rate limit): answers aggregated
--- read routes itself, checks X-Ollama-Backend, and picks the backends a request may go to.
function _M.route(method, path, model, record, headers)
  local pinned = headers[BACKEND_HEADER]
  if type(pinned) == "table" then return errors.exit(400, "send one X-Ollama-Backend header") end
  if pinned and not by_name[pinned] then
    return errors.exit(400, "X-Ollama-Backend names no backend of this gateway; use one of: " .. NAMES)
  end
  local admin = ADMIN_EXACT[path] or sub(path, 1, #ADMIN_PREFIX) == ADMIN_PREFIX
  if pinned then
    -- After a model changed on that disk, look again at once rather than at the next probe.
    if admin then ngx.ctx.reprobe = true end
    return send_to({ pinned })
  end
  if admin then
    return errors.exit(400, "this route changes one server's models: name it in an X-Ollama-Backend header (one of: " .. NAMES .. ")")
  end
  if method == "GET" or method == "HEAD" then
    local aggregate = require("gateway.aggregate")
    if aggregate.handles(path) then return aggregate.answer(path) end
  end
  local key = model and model ~= "" and _M.model_key(model) or nil
  local caller_key = pool.affinity_caller and ("caller:" .. record.rate_key) or nil
  local list, full = _M.candidates(key, caller_key and dict:get(caller_key))
  if #list == 0 then
    if full then
      return all_full(key, model)
    end
    if not any_up() then return errors.exit(503, "no Ollama backend is healthy") end
    local down = key and on_down_backends(key)
    if down then
      return errors.exit(503, "model '" .. model .. "' is only on backends that are down (" .. down .. "); retry later")
    end
    -- OpenAI answers an unknown model with this code; on /api/* the body is Ollama's own.
    return errors.exit(404, "model '" .. model .. "' not found", nil, "model_not_found")
  end
  local order = {}
  for i, c in ipairs(list) do order[i] = c.b.name end
  if not claim(order) then
    return all_full(key, model)
  end
  return send_to(order, caller_key, true)
end

--- Log phase: the request no longer counts against its backend, and a failed last attempt
--- (the balancer is not called again after it) counts like the others.
function _M.finish()
  local name = ngx.var.gw_pool_busy
  if name == nil or name == "" then return end
  _M.move(name, nil)
  if ngx.ctx.reprobe and ngx.status < 300 then ngx.timer.at(0, function() probe(by_name[name]) end) end
  local last = string.match(ngx.var.upstream_status or "", "(%d+)%s*$")
  if last == "502" or last == "504" then _M.note_failure(name, tonumber(last)) end
end

--- Per-backend gauges for the metrics listener (gateway/metrics.lua): `up` is 1 once a probe
--- answered and 0 while the backend is down or not yet probed; `in_flight` as /healthz counts it.
function _M.backend_gauges()
  local out = {}
  for i, b in ipairs(backends) do
    out[i] = { name = b.name, up = dict:get("up:" .. b.name) == "up" and 1 or 0, in_flight = busy(b.name) }
  end
  return out
end

--- /healthz with a pool: each backend's state; 200 while one is up and credentials load.
function _M.health(credentials_ok)
  local up, list = 0, {}
  for i, b in ipairs(backends) do
    local state = dict:get("up:" .. b.name)
    if state == "up" then up = up + 1 end
    local function count(k)
      local _, n = gsub(dict:get(k .. b.name) or "", "[^\n]+", "")
      return n
    end
    list[i] = {
      name = b.name,
      state = state == "up" and "healthy" or state == "down" and "unhealthy" or "unknown",
      error = dict:get("err:" .. b.name),
      models = count("models:"),
      loaded = count("loaded:"),
      in_flight = busy(b.name),
    }
  end
  local healthy = up > 0 and credentials_ok
  ngx.status = healthy and 200 or 503
  ngx.header["Content-Type"] = "application/json; charset=utf-8"
  ngx.header["Cache-Control"] = "no-store"
  ngx.print(cjson.encode({
    status = healthy and "ok" or "unavailable",
    upstream = up > 0 and "ok" or "failed (no healthy backend)",
    credentials = credentials_ok and "ok" or "unavailable",
    backends = list,
  }), "\n")
end

return _M
