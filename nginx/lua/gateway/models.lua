-- Per-credential model allow-lists (spec `apiKeys[].models`, `basicUsers[].models`): which models a
-- request may name, and the model lists (/api/tags, /api/ps, /v1/models) cut down to them.
-- Names compare as bundle/governance.ts normalizes the list: lower case, Ollama's default
-- registry and namespace removed, `:latest` added when there is no tag.
local body = require "gateway.body"
local cjson = require "cjson.safe"

local byte, find, sub, lower, gsub, match = string.byte, string.find, string.sub, string.lower, string.gsub, string.match
local concat = table.concat

local _M = {}

-- Top-level JSON fields that name a model (as in body.lua).
local MODEL_FIELDS = { "model", "name", "from", "source", "destination" }
-- The lists: the array field, and the entry fields that name the model.
local LISTS = {
  ["/api/tags"] = { array = "models", names = { "name", "model" } },
  ["/api/ps"] = { array = "models", names = { "name", "model" } },
  ["/v1/models"] = { array = "data", names = { "id" } },
}

function _M.normalize(name)
  local n = gsub(gsub(lower(match(name, "^%s*(.-)%s*$")), "^registry%.ollama%.ai/", ""), "^library/", "")
  if not find(match(n, "[^/]*$"), ":", 1, true) then n = n .. ":latest" end
  return n
end

local function allowed(models, name)
  local n = _M.normalize(name)
  if models.exact[n] then return true end
  for _, pattern in ipairs(models.globs) do
    if find(n, pattern) then return true end
  end
  return false
end

--- nil when every model the request names is in `models`; otherwise the refusal's message.
--- `asked` is what body.lua read: `value` for JSON bodies, else `model` (path or form field).
function _M.check(models, asked)
  local names = {}
  if asked.value then
    for _, field in ipairs(MODEL_FIELDS) do
      local v = asked.value(field)
      if type(v) == "string" and v ~= "" then names[#names + 1] = v end
    end
  elseif asked.model ~= "" then
    names[1] = asked.model
  end
  if #names == 0 then
    return "the request names no model, and this credential may use only some models; name one"
  end
  for _, name in ipairs(names) do
    if not allowed(models, name) then
      return "model '" .. body.printable(name) .. "' is not one this credential may use"
    end
  end
  return nil
end

--- Whether `path` is a model list the gateway filters.
function _M.is_list(path)
  return LISTS[path] ~= nil
end

-- The objects of the JSON array that starts at `from` (a "["), as text slices.
local function array_objects(text, from)
  local out, depth, start, i = {}, 0, nil, from
  while true do
    local p = find(text, '[{}%[%]"]', i)
    if not p then return nil end
    local c = byte(text, p)
    if c == 34 then
      local e = body.string_end(text, p)
      if not e then return nil end
      i = e + 1
    else
      if c == 123 or c == 91 then
        depth = depth + 1
        if depth == 2 and c == 123 then start = p end
      else
        depth = depth - 1
        if depth == 1 and start then
          out[#out + 1] = sub(text, start, p)
          start = nil
        end
        if depth == 0 then return out, p end
      end
      i = p + 1
    end
  end
end

--- Ollama's answer to a list route with only the entries of allowed models, every byte of
--- what is kept unchanged; nil when the answer is not the expected shape.
function _M.filter_list(models, path, text)
  local list = LISTS[path]
  local fields = body.top_level(text)
  if not fields then return nil end
  for _, field in ipairs(fields) do
    if field[1] == list.array and field[2] and field[3] then
      local open = find(text, "[^ \t\r\n]", field[2])
      if open and sub(text, open, open + 3) == "null" then return text end
      if not open or byte(text, open) ~= 91 then return nil end
      local objects, close = array_objects(text, open)
      if not objects then return nil end
      local kept = {}
      for _, object in ipairs(objects) do
        local entry = cjson.decode(object)
        if type(entry) ~= "table" then return nil end
        for _, name_field in ipairs(list.names) do
          local name = entry[name_field]
          if type(name) == "string" then
            if allowed(models, name) then kept[#kept + 1] = object end
            break
          end
        end
      end
      return sub(text, 1, open) .. concat(kept, ",") .. sub(text, close)
    end
  end
  return nil
end

return _M
