-- Caller names taken from a JWT claim or an external service's header: the exact name (for the
-- rate-limit bucket) and a log-safe form of it (for $gw_caller and messages).
local crypto = require "gateway.crypto"

local _M = {}

-- Integers a double holds exactly: a larger number may be another integer rounded.
local MAX_EXACT = 2 ^ 53 - 1
local LOG_SAFE = "[^%w%._@:%-]"

--- The caller named by a claim value: a non-empty string as it is, or an integer of at most
--- 2^53 - 1 in decimal. Anything else (1.5, 1e300, true, arrays) names no caller: nil.
function _M.exact(value)
  if type(value) == "number" then
    if value ~= math.floor(value) or value > MAX_EXACT or value < -MAX_EXACT then return nil end
    return string.format("%d", value)
  end
  if type(value) ~= "string" or value == "" then return nil end
  return value
end

--- The name as logged: as it is when it is at most 64 of [A-Za-z0-9._@:-]; otherwise cut to 55,
--- other characters as "_", and marked with "~" and 8 hex of its SHA-256, so two different names
--- never look alike in the log ("~" is never part of a clean name).
function _M.loggable(name)
  if #name <= 64 and not name:find(LOG_SAFE) then return name end
  local cleaned = name:sub(1, 55):gsub(LOG_SAFE, "_")
  return cleaned .. "~" .. crypto.sha256_hex(name):sub(1, 8)
end

return _M
