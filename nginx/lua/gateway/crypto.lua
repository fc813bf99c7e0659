-- SHA-256 through LuaJIT FFI into the libcrypto nginx already links (no lua-resty-string
-- on Debian), and hex encoding.
local ffi = require "ffi"

-- pcall: a second cdef of the same declaration (module reloaded in another VM) must not fail.
pcall(ffi.cdef, [[
  unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);
]])

local C = ffi.C
local digest = ffi.new("unsigned char[32]")
local _M = {}

local HEX = {}
for i = 0, 255 do HEX[i] = string.format("%02x", i) end

--- Lowercase hex SHA-256 of a string.
function _M.sha256_hex(s)
  C.SHA256(s, #s, digest)
  local out = {}
  for i = 0, 31 do out[i + 1] = HEX[digest[i]] end
  return table.concat(out)
end

return _M
