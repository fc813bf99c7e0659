-- wrk script for the attacker in the abuse test: alternates wrong Bearer keys (well-formed,
-- each different) and wrong Basic passwords for an existing user (each different, so no cache
-- can answer them), as fast as the connections allow.
local user = os.getenv("BENCH_FLOOD_USER") or "basic-0"
local counter = 0

local function b64(data)
  local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  return ((data:gsub(".", function(x)
    local r, b = "", x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return chars:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#data % 3 + 1])
end

function setup(thread)
  thread:set("id", tostring(math.random(1, 1e9)))
end

function request()
  counter = counter + 1
  local headers = {}
  if counter % 2 == 0 then
    headers["Authorization"] = string.format("Bearer wrong-key-%s-%012d-padding-xx", id or "0", counter)
  else
    headers["Authorization"] = "Basic " .. b64(string.format("%s:wrong-password-%s-%d", user, id or "0", counter))
  end
  return wrk.format("GET", "/api/version", headers)
end

