-- Runs in nginx's thread pool (ngx.run_worker_thread), in its own Lua VM: verifies a password
-- against a bcrypt hash with the C library's crypt_r, away from the event loop.
local ffi = require "ffi"

pcall(ffi.cdef, [[
  char *crypt_r(const char *phrase, const char *setting, void *data);
]])

-- struct crypt_data differs between libcs (libxcrypt: 32 KiB, musl: 260 bytes); one generous
-- zeroed buffer per VM, and each pool thread has its own VM, so calls never share it.
local CRYPT_DATA_SIZE = 262144
local data = ffi.new("char[?]", CRYPT_DATA_SIZE)

local _M = {}

--- Returns true when `password` matches `hash`, false when not, nil and a reason on error.
local function verify(password, hash)
  ffi.fill(data, CRYPT_DATA_SIZE)
  local result = ffi.C.crypt_r(password, hash, data)
  if result == nil then
    return nil, "crypt_r failed (does this libc support bcrypt?)"
  end
  local computed = ffi.string(result)
  if #computed ~= #hash or computed:sub(1, 1) == "*" then
    return false
  end
  -- Constant-time comparison.
  local diff = 0
  for i = 1, #hash do
    diff = bit.bor(diff, bit.bxor(computed:byte(i), hash:byte(i)))
  end
  return diff == 0
end

--- The position of the first of `...` (bcrypt hashes) that `password` matches, 0 when none
--- does, nil and a reason on error. A wrong password is checked against every hash, so it
--- costs the same however many of them are real (access.lua pads the list with decoys).
function _M.first_match(password, ...)
  for i = 1, select("#", ...) do
    local matched, err = verify(password, (select(i, ...)))
    if matched == nil then return nil, err end
    if matched then return i end
  end
  return 0
end

return _M
