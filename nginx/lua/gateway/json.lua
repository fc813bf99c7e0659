-- A small, strict JSON decoder (RFC 8259) for JWT headers and claims. Kept beside lua-cjson
-- (which gateway/body.lua uses for request bodies) because cjson silently keeps the last of two
-- duplicate keys and accepts some non-JSON (NaN, Infinity): a token whose `sub` or `scope` two
-- readers could read differently must be refused, not decoded. It accepts exactly the JSON
-- grammar and refuses everything else: trailing commas,
-- comments, single quotes, leading zeros, NaN/Infinity, control bytes in strings, invalid
-- UTF-8, lone surrogates, duplicate object keys (two readers of one token must never see
-- different claims), nesting deeper than `max_depth`, input larger than `max_bytes`, and
-- anything after the value.
--
-- Objects and arrays are Lua tables marked with a metatable (`is_object`, `is_array`), so an
-- empty object and an empty array stay distinct; null is the `null` sentinel.
local byte, sub, find, char = string.byte, string.sub, string.find, string.char
local tonumber, setmetatable, getmetatable = tonumber, setmetatable, getmetatable

local _M = {}

local OBJECT = { __name = "json object" }
local ARRAY = { __name = "json array" }
_M.null = setmetatable({}, { __name = "json null", __tostring = function() return "null" end })

function _M.is_object(v) return type(v) == "table" and getmetatable(v) == OBJECT end
function _M.is_array(v) return type(v) == "table" and getmetatable(v) == ARRAY end

local DEFAULT_MAX_DEPTH = 16
local DEFAULT_MAX_BYTES = 16384

-- Checks that `s` is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
local function valid_utf8(s)
  local i, n = 1, #s
  while i <= n do
    local c = byte(s, i)
    if c < 0x80 then
      i = i + 1
    else
      local len, min
      if c >= 0xC2 and c <= 0xDF then len, min = 2, 0x80
      elseif c >= 0xE0 and c <= 0xEF then len, min = 3, 0x800
      elseif c >= 0xF0 and c <= 0xF4 then len, min = 4, 0x10000
      else return false end
      if i + len - 1 > n then return false end
      local cp = c % (2 ^ (7 - len))
      for j = i + 1, i + len - 1 do
        local cc = byte(s, j)
        if cc < 0x80 or cc > 0xBF then return false end
        cp = cp * 64 + (cc - 0x80)
      end
      if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return false end
      i = i + len
    end
  end
  return true
end

local function utf8_encode(cp)
  if cp < 0x80 then return char(cp) end
  if cp < 0x800 then return char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64) end
  if cp < 0x10000 then
    return char(0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
  end
  return char(0xF0 + math.floor(cp / 262144), 0x80 + math.floor(cp / 4096) % 64,
    0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
end

local ESCAPES = { [0x22] = '"', [0x5C] = "\\", [0x2F] = "/", [0x62] = "\b", [0x66] = "\f",
  [0x6E] = "\n", [0x72] = "\r", [0x74] = "\t" }

-- Parser state lives in upvalues of one decode call (no globals, re-entrant per call).
local function decoder(s, max_depth)
  local pos = 1

  local function fail(what)
    error({ json_error = what .. " at byte " .. pos }, 0)
  end

  local function skip_ws()
    local _, e = find(s, "^[ \t\r\n]*", pos)
    pos = e + 1
  end

  local function parse_string()
    -- pos is at the opening quote
    pos = pos + 1
    local parts, np = {}, 0
    while true do
      local start = pos
      local _, e = find(s, '^[^"\\%z\1-\31]*', pos)
      if e >= start then
        np = np + 1
        parts[np] = sub(s, start, e)
      end
      pos = e + 1
      local c = byte(s, pos)
      if c == nil then fail("unterminated string") end
      if c == 0x22 then
        pos = pos + 1
        return table.concat(parts)
      elseif c == 0x5C then
        local e2 = byte(s, pos + 1)
        if e2 == 0x75 then -- \uXXXX
          local hex = sub(s, pos + 2, pos + 5)
          if not find(hex, "^%x%x%x%x$") then fail("bad \\u escape") end
          local cp = tonumber(hex, 16)
          pos = pos + 6
          if cp >= 0xD800 and cp <= 0xDBFF then
            local low = sub(s, pos, pos + 5)
            if not find(low, "^\\u%x%x%x%x$") then fail("lone surrogate") end
            local lo = tonumber(sub(low, 3), 16)
            if lo < 0xDC00 or lo > 0xDFFF then fail("lone surrogate") end
            cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
            pos = pos + 6
          elseif cp >= 0xDC00 and cp <= 0xDFFF then
            fail("lone surrogate")
          end
          np = np + 1
          parts[np] = utf8_encode(cp)
        else
          local out = e2 and ESCAPES[e2]
          if not out then fail("bad escape") end
          np = np + 1
          parts[np] = out
          pos = pos + 2
        end
      else
        fail("control byte in string")
      end
    end
  end

  -- -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  local function parse_number()
    if find(s, "^%-?0%d", pos) then fail("leading zero") end
    local int = s:match("^%-?%d+", pos)
    if not int then fail("bad number") end
    local p = pos + #int
    local frac = s:match("^%.%d+", p)
    if frac then p = p + #frac elseif byte(s, p) == 0x2E then fail("bad fraction") end
    local exp = s:match("^[eE][%+%-]?%d+", p)
    if exp then p = p + #exp elseif byte(s, p) == 0x65 or byte(s, p) == 0x45 then fail("bad exponent") end
    local value = tonumber(sub(s, pos, p - 1))
    if not value or value ~= value or value == math.huge or value == -math.huge then fail("number out of range") end
    pos = p
    return value
  end

  local parse_value

  -- An object's or array's members after its opening byte, up to `close`: `read_member` reads
  -- one into `into` (pairs check their keys, so duplicates are refused); `expected` words a
  -- missing separator.
  local function parse_members(into, close, expected, read_member, depth)
    pos = pos + 1
    skip_ws()
    if byte(s, pos) == close then pos = pos + 1 return into end
    while true do
      read_member(into, depth)
      skip_ws()
      local c = byte(s, pos)
      if c == close then pos = pos + 1 return into end
      if c ~= 0x2C then fail(expected) end
      pos = pos + 1
    end
  end

  local function read_pair(obj, depth)
    skip_ws()
    if byte(s, pos) ~= 0x22 then fail("expected a string key") end
    local key = parse_string()
    if obj[key] ~= nil then fail("duplicate key") end
    skip_ws()
    if byte(s, pos) ~= 0x3A then fail("expected ':'") end
    pos = pos + 1
    obj[key] = parse_value(depth)
  end

  -- No item is nil (null is a sentinel), so `#arr` counts them.
  local function read_item(arr, depth)
    arr[#arr + 1] = parse_value(depth)
  end

  function parse_value(depth)
    skip_ws()
    local c = byte(s, pos)
    if c == 0x7B or c == 0x5B then
      if depth >= max_depth then fail("nesting too deep") end
      if c == 0x7B then return parse_members(setmetatable({}, OBJECT), 0x7D, "expected ',' or '}'", read_pair, depth + 1) end
      return parse_members(setmetatable({}, ARRAY), 0x5D, "expected ',' or ']'", read_item, depth + 1)
    elseif c == 0x22 then
      return parse_string()
    elseif c == 0x74 and sub(s, pos, pos + 3) == "true" then
      pos = pos + 4
      return true
    elseif c == 0x66 and sub(s, pos, pos + 4) == "false" then
      pos = pos + 5
      return false
    elseif c == 0x6E and sub(s, pos, pos + 3) == "null" then
      pos = pos + 4
      return _M.null
    elseif c == 0x2D or (c and c >= 0x30 and c <= 0x39) then
      return parse_number()
    end
    fail("unexpected " .. (c and ("'" .. char(c) .. "'") or "end of input"))
  end

  return function()
    local value = parse_value(0)
    skip_ws()
    if pos <= #s then fail("trailing data") end
    return value
  end
end

--- Decodes `s`. Returns the value, or nil and a short reason. Never throws.
--- opts: { max_depth = 16, max_bytes = 16384 }
function _M.decode(s, opts)
  if type(s) ~= "string" then return nil, "not a string" end
  local max_bytes = opts and opts.max_bytes or DEFAULT_MAX_BYTES
  if #s > max_bytes then return nil, "larger than " .. max_bytes .. " bytes" end
  if not valid_utf8(s) then return nil, "invalid UTF-8" end
  local ok, value = pcall(decoder(s, opts and opts.max_depth or DEFAULT_MAX_DEPTH))
  if ok then return value end
  if type(value) == "table" and value.json_error then return nil, value.json_error end
  return nil, "malformed JSON"
end

return _M
