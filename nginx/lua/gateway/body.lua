-- What a request body asks Ollama for, read the way Ollama (Go's encoding/json) reads it: the
-- model(s) it names and the server-side tools it asks for. Checks return a verdict; access.lua
-- decides the response.
--
-- Go matches object keys to struct fields case-insensitively (Unicode simple folding, so
-- "MODEL" and "modeL" are `model`) and keeps the last of duplicate keys. A body with two
-- top-level keys that fold to the same name is refused, so the model the gateway checks and
-- logs is the one Ollama uses.
--
-- Values come from lua-cjson (C, shipped by Debian and OpenResty); cjson cannot report
-- duplicate keys, so a scan over the body's structural characters lists the top-level keys.
-- (gateway/json.lua detects duplicates at every depth but is written for 16 KiB JWTs: per-byte
-- Lua, far too slow for 100 MB bodies of base64 images.) The scan is only correct for valid
-- JSON, which is enough: Ollama refuses a body that is not, so it never acts on one the scan
-- misread.
local cjson = require "cjson.safe"

local byte, find, sub, lower, gsub, match = string.byte, string.find, string.sub, string.lower, string.gsub, string.match
local io_open = io.open

local _M = {}

-- Top-level fields that name a model in some Ollama request: `model` (all), `name` (show, pull,
-- push, delete, create), `from` (create), `source` and `destination` (copy).
local MODEL_FIELDS = { "model", "name", "from", "source", "destination" }
-- /api/create with `remote_host` makes a model that Ollama proxies to another server (ollama.com).
local REMOTE_HOST_FIELD = "remote_host"
local TOOLS_FIELD = "tools"

-- Go's key folding for the names above: ASCII case, plus the two non-ASCII runes that fold into
-- ASCII letters (U+017F LONG S -> s, U+212A KELVIN SIGN -> k).
local function fold(key)
  return (gsub(gsub(lower(key), "\197\191", "s"), "\226\132\170", "k"))
end

-- Bytes that can be part of a model name ([A-Za-z0-9._:/-]); Ollama trims spaces around a tag.
local function name_byte(b)
  return (b >= 48 and b <= 58) or (b >= 65 and b <= 90) or (b >= 97 and b <= 122)
    or b == 45 or b == 46 or b == 95 or b == 47
end

-- A cloud model, as Ollama's modelref.ParseRef sees it (case-insensitive, the tag trimmed of
-- Unicode spaces): a `:cloud` tag, or a tag ending in `-cloud` (gpt-oss:120b-cloud). Any byte
-- that cannot be part of a model name counts as such a space, and a name ending in `-cloud`
-- without a tag counts too (a pulled cloud stub): refusing a strange name costs nothing.
-- Byte loops and plain finds only: the value may be a large form field.
function _M.is_cloud_model(name)
  local last = #name
  while last > 0 and not name_byte(byte(name, last)) do last = last - 1 end
  local colon, from = nil, 1
  while true do
    local c = find(name, ":", from, true)
    if not c or c > last then break end
    colon, from = c, c + 1
  end
  local first = colon and colon + 1 or 1
  while first <= last and not name_byte(byte(name, first)) do first = first + 1 end
  local tag = lower(sub(name, last - 5 >= first and last - 5 or first, last))
  return (colon ~= nil and tag == "cloud") or tag == "-cloud"
end

-- Whether a (decoded JSON) tools value asks for a server-side web search or fetch: any object
-- at any depth with a `type` key (in any case) whose value starts with web_search or web_fetch
-- (Anthropic `web_search_20250305`, Responses API `web_search`).
local function server_tool(value, depth)
  if type(value) ~= "table" or depth > 32 then return nil end
  for k, v in pairs(value) do
    if type(k) == "string" and type(v) == "string" and fold(k) == "type" then
      local t = lower(v):gsub("^%s+", "")
      if find(t, "^web_search") or find(t, "^web_fetch") then return v end
    end
    local found = server_tool(v, depth + 1)
    if found then return found end
  end
  return nil
end

--- The body as one string: from memory, or read once from nginx's temporary file when it was
--- larger than client_body_buffer_size. Returns nil, err when the file cannot be read.
function _M.read()
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  if data then return data end
  local path = ngx.req.get_body_file()
  if not path then return "" end
  local f, err = io_open(path, "rb")
  if not f then return nil, err end
  data = f:read("*a")
  f:close()
  return data or ""
end

-- The end of the JSON string starting at `s` (the index of its closing quote), or nil.
local function string_end(body, s)
  local i = s + 1
  while true do
    local q = find(body, '["\\]', i)
    if not q then return nil end
    if byte(body, q) == 34 then return q end
    i = q + 2
  end
end

-- Top-level keys of the object `body` holds: a list of { key, value_from, value_to }, keys
-- unescaped. nil, message when the body is not one JSON object.
local function top_level(body)
  local s = find(body, "[^ \t\r\n]")
  if not s then return {} end
  if byte(body, s) ~= 123 then return nil, "the request body must be a JSON object" end
  local fields, depth, expect_key, current = {}, 1, true, nil
  local i = s + 1
  while true do
    local p = find(body, '[{}%[%]",:]', i)
    if not p then return nil, "the request body is not valid JSON" end
    local c = byte(body, p)
    if c == 34 then
      local e = string_end(body, p)
      if not e then return nil, "the request body is not valid JSON" end
      if depth == 1 and expect_key then
        local raw = sub(body, p, e)
        local key = find(raw, "\\", 1, true) and cjson.decode(raw) or sub(raw, 2, -2)
        if type(key) ~= "string" then return nil, "the request body is not valid JSON" end
        current = { key }
        fields[#fields + 1] = current
        expect_key = false
      end
      i = e + 1
    else
      if c == 123 or c == 91 then
        depth = depth + 1
      elseif c == 125 or c == 93 then
        depth = depth - 1
        if depth == 0 then
          if current and current[2] then current[3] = p - 1 end
          if find(body, "[^ \t\r\n]", p + 1) then
            return nil, "the request body has data after its JSON object"
          end
          return fields
        end
      elseif depth == 1 and c == 58 then
        if current then current[2] = p + 1 end
      elseif depth == 1 and c == 44 then
        if current and current[2] then current[3] = p - 1 end
        expect_key = true
      end
      i = p + 1
    end
  end
end

local function printable(value)
  return (gsub(sub(value, 1, 128), "[^%w%._:/@%- ]", "?"))
end
_M.printable = printable

--- Reads a JSON request body. Returns a result table:
---   { model = "<for the log>", cloud = "<a cloud model or tool, for the refusal>" }
--- or nil, status, message for a body the gateway refuses.
function _M.inspect_json(body)
  local fields, err = top_level(body)
  if not fields then return nil, 400, err end
  local by_name = {}
  for _, field in ipairs(fields) do
    local name = fold(field[1])
    if by_name[name] then
      return nil, 400, "the request body has the key '" .. printable(field[1]) ..
        "' twice (keys differing only in case count as the same); send each key once"
    end
    by_name[name] = field
  end
  local function value(name)
    local field = by_name[name]
    if not field or not field[3] then return nil end
    return cjson.decode(sub(body, field[2], field[3]))
  end
  -- `value` also serves the request limits (gateway/limits.lua).
  local result = { model = "", value = value }
  for _, name in ipairs(MODEL_FIELDS) do
    local v = value(name)
    if type(v) == "string" then
      if result.model == "" and v ~= "" then result.model = printable(v) end
      if not result.cloud and _M.is_cloud_model(v) then result.cloud = "cloud model '" .. printable(v) .. "'" end
    end
  end
  local remote = value(REMOTE_HOST_FIELD)
  if not result.cloud and type(remote) == "string" and remote ~= "" then
    result.cloud = "a model on a remote host ('remote_host')"
  end
  local tool = server_tool(value(TOOLS_FIELD), 1)
  if not result.cloud and tool then
    result.cloud = "server-side tool '" .. printable(tool) .. "'"
  end
  return result
end

--- Reads a multipart/form-data body (/v1/audio/transcriptions) as Go's Request.FormValue
--- does: the `model` of the query string first, then the form's. Every value the form or
--- the query names `model` is a candidate; more than one is refused. To be safe against the
--- many ways a part can be named (quoting, RFC 2231), every part is also checked for a cloud
--- model, whatever its name.
function _M.inspect_multipart(data, content_type, args)
  local candidates = {}
  local query = args and ngx.decode_args(args, 100) or {}
  for key, v in pairs(query) do
    if key == "model" then
      if type(v) == "table" then return nil, 400, "the query string names `model` more than once" end
      candidates[#candidates + 1] = type(v) == "string" and v or ""
    end
  end
  local result = { model = "" }
  -- Not a form: Ollama refuses it before reading any model.
  local ctype = type(content_type) == "string" and lower(content_type) or ""
  if not find(ctype, "^%s*multipart/form%-data") then return result end
  local boundary = match(content_type, '[Bb][Oo][Uu][Nn][Dd][Aa][Rr][Yy]="?([^";]+)"?')
  if not boundary then
    return nil, 400, "this route takes a multipart/form-data body with a boundary"
  end
  local delimiter = "--" .. boundary
  local from = 1
  while true do
    local d = find(data, delimiter, from, true)
    local part = sub(data, from, d and d - 1 or #data)
    if from > 1 and part ~= "" then
      local head_end = find(part, "\r\n\r\n", 1, true) or find(part, "\n\n", 1, true)
      local head = head_end and sub(part, 1, head_end) or ""
      if _M.is_cloud_model(part) then result.cloud = "a cloud model in a form field" end
      if match(lower(head), 'content%-disposition:[^\r\n]*[; ]name="?model"?[;\r\n ]') then
        local value = match(sub(part, head_end), "^%s*(.-)\r?\n?$") or ""
        candidates[#candidates + 1] = value
      end
    end
    if not d then break end
    from = d + #delimiter
  end
  if #candidates > 1 then return nil, 400, "the request names `model` more than once (form fields and query string)" end
  local model = candidates[1] or ""
  result.model = printable(model)
  if not result.cloud and _M.is_cloud_model(model) then result.cloud = "cloud model '" .. printable(model) .. "'" end
  return result
end

-- The same scanners serve models.lua, which cuts Ollama's model lists down to a caller's models.
_M.string_end = string_end
_M.top_level = top_level

return _M
