-- Unit tests of the data plane's pure Lua parts, run by plain LuaJIT without nginx
-- (test/lua-units.test.ts renders gateway/config.lua and runs this file):
--   luajit test/lua/units.lua <dir holding gateway/config.lua> <dir holding gateway/*.lua>
-- Prints one line per test ("ok" / "FAIL") and exits 1 when any test fails.
local config_dir, lua_dir = arg[1], arg[2]
assert(config_dir and lua_dir, "usage: luajit test/lua/units.lua <config dir> <lua dir>")
package.path = config_dir .. "/?.lua;" .. lua_dir .. "/?.lua;" .. package.path

-- The little of `ngx` the modules under test read; each test sets what it needs.
ngx = { var = {} }
-- Modules with nginx-only dependencies, replaced by what the tested functions read.
package.loaded["gateway.store"] = { api_keys = {}, api_keys_status = "ok", users = {}, users_status = "ok" }
package.loaded["gateway.names"] = {}

local credentials = require "gateway.credentials"
local scopes = require "gateway.scopes"
local errors = require "gateway.errors"
local json = require "gateway.json"
local external_auth = require "gateway.external_auth"
local store = package.loaded["gateway.store"]

local tests = {}
local function test(name, fn) tests[#tests + 1] = { name = name, fn = fn } end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

-- Compares a function's return values with `expected` (a list; n = how many).
local function returns(expected, ...)
  local got = { n = select("#", ...), ... }
  for i = 1, math.max(expected.n or #expected, got.n) do
    if got[i] ~= expected[i] then
      local shown = {}
      for j = 1, got.n do shown[j] = show(got[j]) end
      error("return " .. i .. ": expected " .. show(expected[i]) .. ", got (" .. table.concat(shown, ", ") .. ")", 2)
    end
  end
end

local function eq(want, got, what)
  if want ~= got then error((what or "value") .. ": expected " .. show(want) .. ", got " .. show(got), 2) end
end

-- credentials.parse -------------------------------------------------------------------------

test("parse: no credential", function()
  returns({ "none", n = 1 }, credentials.parse(nil, nil))
end)

test("parse: X-API-Key is taken as it is", function()
  returns({ "x-api-key", nil, "k 1", n = 3 }, credentials.parse(nil, "k 1"))
end)

test("parse: repeated headers and both headers are refused with 400", function()
  local _, refusal = credentials.parse({ "a", "b" }, nil)
  eq(400, refusal.status, "status")
  eq("send exactly one Authorization or X-API-Key header", refusal.message, "message")
  _, refusal = credentials.parse(nil, { "a", "b" })
  eq("send exactly one Authorization or X-API-Key header", refusal.message, "message")
  _, refusal = credentials.parse("Bearer x", "y")
  eq(400, refusal.status, "status")
  eq("send either Authorization or X-API-Key, not both", refusal.message, "message")
  eq(nil, (credentials.parse("Bearer x", "y")), "kind")
end)

test("parse: the scheme is case-insensitive, spaces before the one token", function()
  returns({ "authorization", "bearer", "abc", n = 3 }, credentials.parse("Bearer abc"))
  returns({ "authorization", "basic", "dTpw", n = 3 }, credentials.parse("bAsIc dTpw"))
  returns({ "authorization", "bearer", "abc", n = 3 }, credentials.parse("BEARER    abc"))
  returns({ "authorization", "digest", "x=y", n = 3 }, credentials.parse("Digest x=y"))
  -- A scheme named like a kind is still a scheme.
  returns({ "authorization", "none", "x", n = 3 }, credentials.parse("None x"))
  -- The token is every byte up to the end but spaces (tabs included).
  returns({ "authorization", "bearer", "a\tb", n = 3 }, credentials.parse("Bearer a\tb"))
end)

test("parse: anything but a scheme and one token is malformed", function()
  for _, value in ipairs({ "", "Bearer", "Bearer ", "Bearer  ", " Bearer abc", "Bearer abc def",
      "Bearer abc ", "Bearer\tabc", "Bear3r abc", "Bearer-x abc", "abc", "=Bearer abc" }) do
    local kind, scheme, token = credentials.parse(value)
    if kind ~= "malformed" or scheme ~= nil or token ~= nil then
      error(show(value) .. ": expected malformed, got " .. show(kind) .. " " .. show(scheme) .. " " .. show(token))
    end
  end
end)

-- credentials.basic_pair ------------------------------------------------------------------------

test("basic_pair: the name ends at the first colon", function()
  returns({ "alice", "pa:ss", n = 2 }, credentials.basic_pair("alice:pa:ss"))
  returns({ "a", "\0", n = 2 }, credentials.basic_pair("a:\0"))
end)

test("basic_pair: no colon, an empty name or an empty password is nothing", function()
  for _, decoded in ipairs({ "", "alice", ":pw", "alice:", ":" }) do
    returns({ nil, n = 1 }, credentials.basic_pair(decoded))
  end
end)

-- credentials.caller ----------------------------------------------------------------------------

test("caller: every method's record carries its rate-limit key", function()
  local key = credentials.caller("api_key", "ci", "read")
  eq("api_key", key.method) eq("ci", key.name) eq("read", key.scope) eq("key:ci", key.rate_key)
  eq("user:carol", credentials.caller("basic", "carol", "admin").rate_key)
  -- JWT and external callers: the bucket is the exact name, not its log-safe form.
  eq("jwt:a b", credentials.caller("jwt", "a_b~12345678", "read", "a b").rate_key)
  eq("ext:x@y", credentials.caller("external", "x@y", "inference", "x@y").rate_key)
end)

test("caller: fills the record it is given", function()
  local record = { hash = "h", not_after = 5 }
  eq(record, credentials.caller("basic", "carol", "read", nil, record))
  eq("h", record.hash) eq(5, record.not_after) eq("user:carol", record.rate_key) eq("basic", record.method)
end)

test("caller: an unknown method is an error, not a shared bucket", function()
  eq(false, (pcall(credentials.caller, "cookie", "x", "read")))
end)

-- scopes ----------------------------------------------------------------------------------------

test("scopes: each scope allows the route classes up to its own rank", function()
  local allowed = {
    read = { read = true },
    inference = { read = true, inference = true },
    admin = { read = true, inference = true, admin = true },
  }
  for _, scope in ipairs({ "read", "inference", "admin" }) do
    for _, class in ipairs({ "read", "inference", "admin", "blocked" }) do
      eq(allowed[scope][class] == true, scopes.allows(scope, class), scope .. " on " .. class)
    end
  end
  eq(false, scopes.allows(nil, "read"), "no scope")
  eq(false, scopes.allows("root", "read"), "unknown scope")
end)

test("scopes: higher", function()
  eq("admin", scopes.higher("read", "admin"))
  eq("inference", scopes.higher("inference", "read"))
  eq("read", scopes.higher(nil, "read"))
  eq("read", scopes.higher("read", nil))
  eq(nil, scopes.higher(nil, nil))
end)

test("scopes: granted values from a string or an array", function()
  local values = scopes.granted_values("a  b,c\td")
  eq(4, #values) eq("a", values[1]) eq("d", values[4])
  values = scopes.granted_values(json.decode('["x", 1, "y"]'))
  eq(2, #values) eq("x", values[1]) eq("y", values[2])
  eq(0, #scopes.granted_values({ "not", "json" }), "a plain table is no JSON array")
  eq(0, #scopes.granted_values(7))
end)

test("scopes: map picks the highest scope granted", function()
  local values = { r = "read", i = "inference", boss = "admin" }
  eq("admin", scopes.map("r boss i", values))
  eq("inference", scopes.map("i,r", values))
  eq(nil, scopes.map("nothing here", values))
  eq(nil, scopes.map("", values))
end)

-- errors ----------------------------------------------------------------------------------------

test("errors.refusal: the shape the handler answers", function()
  local headers = { ["Retry-After"] = "1" }
  local r = errors.refusal(429, "slow down", headers, "rate_limit_exceeded")
  eq(429, r.status) eq("slow down", r.message) eq(headers, r.headers) eq("rate_limit_exceeded", r.code)
end)

test("errors.body: each route family's envelope", function()
  ngx.var.request_uri = "/api/chat?x=1"
  eq('{"error":"no \\u0022way\\u0022"}\n', errors.body(401, 'no "way"'))
  ngx.var.request_uri = "/v1/chat/completions"
  eq('{"error":{"message":"no","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}\n', errors.body(401, "no"))
  eq('{"error":{"message":"no","type":"requests","param":null,"code":"x"}}\n', errors.body(429, "no", "x"))
  ngx.var.request_uri = "/v1/messages"
  eq('{"type":"error","error":{"type":"authentication_error","message":"no"}}\n', errors.body(401, "no"))
  ngx.var.request_uri = nil
end)

-- external_auth.decided_locally (mode fallback) ------------------------------------------------

test("external auth: which credentials the gateway decides itself", function()
  local record = {}
  store.api_keys_status, store.users_status, store.users = "ok", "ok", {}
  eq(true, external_auth.decided_locally("x-api-key", nil, record, false) and true, "known key")
  eq(false, external_auth.decided_locally("x-api-key", nil, false, false), "unknown key")
  eq(true, external_auth.decided_locally("authorization", "bearer", record, false) and true, "known bearer key")
  eq(true, external_auth.decided_locally("authorization", "bearer", false, true), "JWT-shaped token")
  eq(false, external_auth.decided_locally("authorization", "bearer", false, false), "unknown bearer key")
  eq(false, external_auth.decided_locally("none"), "no credential")
  eq(true, external_auth.decided_locally("malformed"), "malformed Authorization")
  eq(false, external_auth.decided_locally("authorization", "digest"), "another scheme")
  eq(false, external_auth.decided_locally("authorization", "basic"), "Basic without local users")
  store.users = { carol = {} }
  eq(true, external_auth.decided_locally("authorization", "basic"), "Basic with local users")
  -- An unreadable store keeps its kind of credential local (503), never sent away.
  store.api_keys_status, store.users_status, store.users = "is missing", "is missing", {}
  eq(true, external_auth.decided_locally("x-api-key", nil, nil, false), "key, store unreadable")
  eq(true, external_auth.decided_locally("authorization", "bearer", nil, false), "bearer, store unreadable")
  eq(true, external_auth.decided_locally("authorization", "basic"), "Basic, store unreadable")
  store.api_keys_status, store.users_status = "ok", "ok"
end)

-- Runner ----------------------------------------------------------------------------------------

local failed = 0
for _, t in ipairs(tests) do
  local ok, err = pcall(t.fn)
  if ok then
    print("ok    " .. t.name)
  else
    failed = failed + 1
    print("FAIL  " .. t.name .. ": " .. tostring(err))
  end
end
print(string.format("%d tests, %d failed", #tests, failed))
os.exit(failed == 0 and 0 or 1)
