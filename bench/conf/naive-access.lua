-- The common recipe this benchmark compares against ("nginx Bearer token from a file in Lua"):
-- on EVERY request, open the plain-text key file and compare the token with each line.
-- bench/run.ts inlines this file into an access_by_lua_block of conf/plain.conf.template
-- (so the naive proxy is the plain proxy plus this check, nothing else).
local auth = ngx.var.http_authorization
local token = auth and auth:match("^Bearer%s+(%S+)$")
if not token then
  return ngx.exit(401)
end
local file = io.open(ngx.config.prefix() .. "keys.txt", "r")
if not file then
  return ngx.exit(500)
end
for line in file:lines() do
  if line == token then
    file:close()
    return
  end
end
file:close()
return ngx.exit(401)
