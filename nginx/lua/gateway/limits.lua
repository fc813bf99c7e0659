-- Request limits (spec `limits`, `apiKeys[].limits`, `basicUsers[].limits`): what one request may
-- ask Ollama for. A check returns every problem at once, or nil; governance.lua answers 400.
-- Values are read as Ollama reads them: `options` is a map with exact keys, top-level fields
-- match case-insensitively (body.lua folds them), `keep_alive` is a number of seconds or a Go
-- duration string, and a negative one means "forever".
local cjson = require "cjson.safe"

local type, tostring, tonumber = type, tostring, tonumber
local concat, floor = table.concat, math.floor

local _M = {}

-- time.ParseDuration's units.
local UNITS = { ns = 1e-9, us = 1e-6, ["\194\181s"] = 1e-6, ["\206\188s"] = 1e-6, ms = 1e-3, s = 1, m = 60, h = 3600 }

--- Seconds in a Go duration string ("300ms", "1h30m", "-1m"), or nil when Go would refuse it.
function _M.go_duration(text)
  local sign, rest = 1, text
  local first = rest:sub(1, 1)
  if first == "-" or first == "+" then
    sign = first == "-" and -1 or 1
    rest = rest:sub(2)
  end
  if rest == "0" then return 0 end
  if rest == "" then return nil end
  local total = 0
  while rest ~= "" do
    local number, unit, tail = rest:match("^([0-9]*%.?[0-9]*)([^0-9%.]+)(.*)$")
    if not number or number == "" or number == "." or not UNITS[unit] then return nil end
    total = total + tonumber(number) * UNITS[unit]
    rest = tail
  end
  return sign * total
end

local function shown(value)
  if type(value) == "string" then
    return '"' .. value:sub(1, 40):gsub("[^%w%.%-:_ ]", "?") .. '"'
  end
  if value == cjson.null then return "null" end
  return tostring(value)
end

local function absent(value)
  return value == nil or value == cjson.null
end

-- A token count field: number or absent. `problems` collects the messages.
local function check_count(problems, field, value, limit, what)
  if absent(value) or not limit then return end
  if type(value) ~= "number" then
    problems[#problems + 1] = "`" .. field .. "` is " .. shown(value) .. "; use a whole number"
  elseif value < 0 then
    problems[#problems + 1] = "`" .. field .. "` is " .. shown(value) .. " (no limit), but the gateway allows at most "
      .. limit .. " " .. what .. "; ask for " .. limit .. " or less"
  elseif value > limit then
    problems[#problems + 1] = "`" .. field .. "` is " .. shown(value) .. ", above the gateway's limit of " .. limit
      .. " " .. what .. "; ask for " .. limit .. " or less"
  end
end

local function check_keep_alive(problems, value, limits)
  local max, forever = limits.keep_alive, limits.keep_alive_forever
  if forever == nil then forever = max == nil end
  if absent(value) or (max == nil and forever) then return end
  local seconds
  if type(value) == "number" then
    seconds = value
  elseif type(value) == "string" then
    seconds = _M.go_duration(value)
  end
  if seconds == nil then
    problems[#problems + 1] = "`keep_alive` is " .. shown(value) .. "; use a number of seconds or a duration such as \"5m\""
  elseif seconds < 0 then
    if not forever then
      problems[#problems + 1] = "`keep_alive` is " .. shown(value) .. " (keep the model loaded forever), which the gateway does not allow"
        .. (max and "; use at most " .. max .. " seconds" or "; use a number of seconds")
    end
  elseif max and seconds > max then
    problems[#problems + 1] = "`keep_alive` is " .. shown(value) .. " (" .. floor(seconds) .. " seconds), above the gateway's limit of "
      .. max .. " seconds; use " .. max .. " seconds or less"
  end
end

--- Checks a JSON body's fields against `limits`; `value(name)` returns a top-level field's
--- decoded value by its folded name. Returns nil, or one message listing every problem.
function _M.check(value, limits)
  local problems = {}
  local options = value("options")
  if type(options) == "table" then
    check_count(problems, "options.num_ctx", options.num_ctx, limits.num_ctx, "tokens of context")
    check_count(problems, "options.num_predict", options.num_predict, limits.num_predict, "tokens to generate")
  elseif not absent(options) and (limits.num_ctx or limits.num_predict) then
    problems[#problems + 1] = "`options` is " .. shown(options) .. "; use a JSON object"
  end
  for _, field in ipairs({ "max_tokens", "max_completion_tokens", "max_output_tokens" }) do
    check_count(problems, field, value(field), limits.num_predict, "tokens to generate")
  end
  check_keep_alive(problems, value("keep_alive"), limits)
  if #problems == 0 then return nil end
  return concat(problems, "; ")
end

return _M
