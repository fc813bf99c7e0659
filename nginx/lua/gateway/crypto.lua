-- SHA-256 through LuaJIT FFI into the libcrypto nginx already links (no lua-resty-string
-- on Debian), and hex encoding.
--
-- OpenSSL 3's one-shot SHA256() looks the algorithm up (EVP fetch) on every call, which costs
-- more than hashing a key; SHA256_Init/Update/Final on a context allocated once do not. They
-- are deprecated in OpenSSL 3 but still exported; a libcrypto built without them falls back
-- to SHA256().
local ffi = require "ffi"
local bit = require "bit"

-- pcall: a second cdef of the same declaration (module reloaded in another VM) must not fail.
-- One cdef per declaration, so one that already exists does not keep the others out.
pcall(ffi.cdef, [[
  unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);
]])
-- SHA256_CTX is 112 bytes in OpenSSL; the context here is larger, so its layout does not matter.
pcall(ffi.cdef, [[ typedef struct { unsigned int opaque[64]; } gw_sha256_ctx; ]])
pcall(ffi.cdef, [[ int SHA256_Init(gw_sha256_ctx *c); ]])
pcall(ffi.cdef, [[ int SHA256_Update(gw_sha256_ctx *c, const void *data, size_t len); ]])
pcall(ffi.cdef, [[ int SHA256_Final(unsigned char *md, gw_sha256_ctx *c); ]])

local C = ffi.C
local ffi_string = ffi.string
local band, rshift = bit.band, bit.rshift
local digest = ffi.new("unsigned char[32]")
local hex = ffi.new("unsigned char[64]")
local HEX_DIGITS = ffi.new("const unsigned char[16]", { 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 97, 98, 99, 100, 101, 102 })
local ctx = ffi.new("gw_sha256_ctx")
local low_level = pcall(function() return C.SHA256_Init and C.SHA256_Update and C.SHA256_Final end)

local _M = {}

local function sha256(s)
  if low_level then
    C.SHA256_Init(ctx)
    C.SHA256_Update(ctx, s, #s)
    C.SHA256_Final(digest, ctx)
  else
    C.SHA256(s, #s, digest)
  end
end

--- Lowercase hex SHA-256 of a string.
function _M.sha256_hex(s)
  sha256(s)
  for i = 0, 31 do
    local b = digest[i]
    hex[2 * i] = HEX_DIGITS[rshift(b, 4)]
    hex[2 * i + 1] = HEX_DIGITS[band(b, 15)]
  end
  return ffi_string(hex, 64)
end

return _M
