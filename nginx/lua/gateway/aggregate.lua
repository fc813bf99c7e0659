-- Read routes a pool answers as one server would: GET /api/tags, /api/ps and /v1/models are the
-- union of every healthy backend's answer (each model once, the first backend's entry), asked
-- live and in parallel. Entries are copied as the backends wrote them (re-encoding would turn
-- an empty JSON array into an object: Debian's lua-cjson cannot tell them apart).
local cjson = require "cjson.safe"
local errors = require "gateway.errors"
local pool = require "gateway.pool"
local http = require "gateway.pool_http"

local ngx = ngx
local byte, sub, concat = string.byte, string.sub, table.concat

local _M = {}

-- path -> the list's field, the field naming an entry, and the envelope around the list.
local ROUTES = {
  ["/api/tags"] = { list = "models", id = "name", open = '{"models":[', close = "]}", type = "application/json; charset=utf-8" },
  ["/api/ps"] = { list = "models", id = "name", open = '{"models":[', close = "]}", type = "application/json; charset=utf-8" },
  ["/v1/models"] = { list = "data", id = "id", open = '{"object":"list","data":[', close = "]}\n", type = "application/json" },
}

function _M.handles(path) return ROUTES[path] ~= nil end

local QUOTE, BACKSLASH, COMMA = 34, 92, 44
local OPEN = { [91] = true, [123] = true }  -- [ {
local CLOSE = { [93] = true, [125] = true } -- ] }

--- The raw text of each element of the top-level array field `field` of a JSON object (valid
--- JSON only: it comes from cjson-checked backend answers).
function _M.raw_elements(text, field)
  local depth, i, n = 0, 1, #text
  local key, capture, start, out = nil, false, nil, {}
  while i <= n do
    local c = byte(text, i)
    if c == QUOTE then
      local j = i + 1
      while true do
        local d = byte(text, j)
        if d == BACKSLASH then j = j + 2 elseif d == QUOTE then break else j = j + 1 end
      end
      if depth == 1 then key = sub(text, i + 1, j - 1) end
      if capture and depth == 2 and not start then start = i end
      i = j
    elseif OPEN[c] then
      depth = depth + 1
      if depth == 2 and c == 91 and key == field then capture = true
      elseif capture and depth == 3 and not start then start = i end
    elseif CLOSE[c] then
      if capture and depth == 2 then
        if start then out[#out + 1] = sub(text, start, i - 1) end
        return out
      end
      depth = depth - 1
    elseif capture and depth == 2 then
      if c == COMMA then
        out[#out + 1] = sub(text, start, i - 1)
        start = nil
      elseif not start and c > 32 then start = i end
    end
    i = i + 1
  end
  return out
end

local function fetch(b, addr, path)
  local status, body = http.get(b, addr, path, 5000)
  if status ~= 200 then return nil end
  return body
end

--- `allowed_models`: a caller's model list (gateway/models.lua), or nil for every model.
function _M.answer(path, allowed_models)
  local route = ROUTES[path]
  local threads, names, facts = {}, {}, pool.current_facts()
  for _, b in ipairs(pool.backends) do
    if facts.up[b.name] ~= "down" then
      threads[#threads + 1] = ngx.thread.spawn(fetch, b, facts.addr[b.name], path)
      names[#names + 1] = b.name
    end
  end
  local seen, entries, answered = {}, {}, {}
  for i, t in ipairs(threads) do
    local ok, body = ngx.thread.wait(t)
    local doc = ok and body and cjson.decode(body)
    local list = type(doc) == "table" and doc[route.list]
    if type(list) == "table" then
      answered[#answered + 1] = names[i]
      local raw = _M.raw_elements(body, route.list)
      for k, entry in ipairs(list) do
        local id = type(entry) == "table" and entry[route.id]
        if type(id) == "string" and raw[k] and not seen[pool.model_key(id)] then
          seen[pool.model_key(id)] = true
          entries[#entries + 1] = raw[k]
        end
      end
    end
  end
  if #answered == 0 then return errors.exit(503, "no Ollama backend is healthy") end
  ngx.var.gw_backend = concat(answered, ",")
  local text = route.open .. concat(entries, ",") .. route.close
  if allowed_models then
    text = require("gateway.models").filter_list(allowed_models, path, text)
    if not text then return errors.exit(502, "the gateway could not read Ollama's model list") end
  end
  ngx.status = 200
  ngx.header["Content-Type"] = route.type
  if ngx.req.get_method() ~= "HEAD" then ngx.print(text) end
  return ngx.exit(200)
end

return _M
