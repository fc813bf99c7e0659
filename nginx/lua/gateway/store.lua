-- Credential store: API key digests and Basic users, parsed once per worker and re-read only
-- when a file changes (checked every second with stat(2): inode, size, mtime and ctime), so the
-- cost of a request does not depend on the number of credentials.
--
-- Fails closed: a missing, empty, unreadable, truncated or malformed file leaves its kind of
-- credential refused (503) until the file is fixed, and logs one clear error line.
local ffi = require "ffi"
local credentials = require "gateway.credentials"

pcall(ffi.cdef, [[
  int stat(const char *path, void *buf);
]])

local _M = {
  -- Records are caller records (gateway/credentials.lua), built once per load.
  api_keys = {},            -- sha256 hex -> { name, scope, method, rate_key, not_after, rate, cloud }
  api_keys_status = "not loaded",
  users = {},               -- name -> list of { hash, name, scope, method, rate_key, not_after, rate, cloud }
  users_status = "not loaded",
}

local CHECK_INTERVAL = 1 -- seconds; credential changes take effect within about this long

local API_KEYS_HEADER = "# ollama-gateway api-keys v1"
local HTPASSWD_HEADER = "# ollama-gateway htpasswd v1"
local SCOPES = { read = true, inference = true, admin = true }
local SLOTS = { current = true, previous = true }
local NAME_PATTERN = "^[%w][%w%._@%-]*$"

-- stat(2) through FFI: the offsets of st_ino, st_size, st_mtim and st_ctim are the same in the
-- kernel's struct stat on x86_64 and aarch64, for glibc and musl alike.
local stat_buf = ffi.new("uint64_t[32]")
local stat_ok = pcall(function() return ffi.C.stat end)

-- stat(2) follows symlinks: in a Kubernetes Secret volume (`name -> ..data/name`, `..data` swapped
-- by a rename) it sees the current version's file, whose inode differs from the previous one's.
local function file_signature(path)
  if stat_ok then
    if ffi.C.stat(path, stat_buf) ~= 0 then
      return nil
    end
    -- ctime catches chmod and chown, which change who can read the file.
    return table.concat({ tostring(stat_buf[1]), tostring(stat_buf[6]), tostring(stat_buf[11]),
      tostring(stat_buf[12]), tostring(stat_buf[13]), tostring(stat_buf[14]) }, ":")
  end
  -- No stat symbol: fall back to the content's digest (reads the file every check).
  local f = io.open(path, "rb")
  if not f then return nil end
  local content = f:read("*a")
  f:close()
  return content and ngx.md5(content)
end

local function parse_attributes(scope, slot, not_after, rate)
  -- `inference+cloud`: the credential may use Ollama's cloud features.
  local cloud = scope:sub(-6) == "+cloud"
  if cloud then scope = scope:sub(1, -7) end
  if not SCOPES[scope] then return nil, "unknown scope " .. scope end
  if not SLOTS[slot] then return nil, "unknown slot " .. slot end
  local record = { scope = scope, slot = slot, cloud = cloud }
  if not_after ~= "-" then
    record.not_after = tonumber(not_after)
    if not record.not_after then return nil, "bad notAfter" end
  end
  if rate ~= "-" then
    local rps, burst = rate:match("^(%d+%.?%d*)/(%d+)$")
    if not rps then return nil, "bad rate" end
    record.rate = { rps = tonumber(rps), burst = tonumber(burst) }
  end
  return record
end

-- Iterates over the data lines of a credential file after checking its header and its
-- "# end N" trailer (which tells a complete file from a truncated one).
local function data_lines(content, header)
  if content == "" then return nil, "file is empty" end
  local lines = {}
  for line in content:gmatch("[^\n]+") do
    lines[#lines + 1] = line
  end
  if lines[1] ~= header then return nil, "first line is not '" .. header .. "'" end
  local count = tonumber((lines[#lines] or ""):match("^# end (%d+)$"))
  if not count then return nil, "no '# end N' trailer (truncated?)" end
  local data = {}
  for i = 2, #lines - 1 do
    if lines[i]:sub(1, 1) ~= "#" then data[#data + 1] = lines[i] end
  end
  if #data ~= count then
    return nil, "trailer says " .. count .. " entries, file has " .. #data
  end
  return data
end

local function parse_api_keys(content)
  local lines, err = data_lines(content, API_KEYS_HEADER)
  if not lines then return nil, err end
  local keys, slots = {}, {}
  for i, line in ipairs(lines) do
    local name, scope, slot, not_after, rate, digest =
      line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]+)\t([0-9a-f]+)$")
    if not name or #digest ~= 64 or not name:match(NAME_PATTERN) then
      return nil, "entry " .. i .. " is malformed"
    end
    local record, attr_err = parse_attributes(scope, slot, not_after, rate)
    if not record then return nil, "entry " .. i .. ": " .. attr_err end
    if keys[digest] then return nil, "entry " .. i .. " repeats a key" end
    if slots[name .. "\0" .. slot] then
      return nil, "entry " .. i .. " repeats the name " .. name .. " (" .. slot .. ")"
    end
    slots[name .. "\0" .. slot] = true
    keys[digest] = credentials.caller("api_key", name, record.scope, nil, record)
  end
  return keys
end

local function parse_htpasswd(content)
  local lines, err = data_lines(content, HTPASSWD_HEADER)
  if not lines then return nil, err end
  local users = {}
  for i, line in ipairs(lines) do
    local name, hash, scope, slot, not_after, rate =
      line:match("^([^:]+):(%$2[aby]%$%d%d%$[%./%w]+):(%S+) (%S+) (%S+) (%S+)$")
    if not name or #hash ~= 60 or not name:match(NAME_PATTERN) then
      return nil, "entry " .. i .. " is malformed"
    end
    local record, attr_err = parse_attributes(scope, slot, not_after, rate)
    if not record then return nil, "entry " .. i .. ": " .. attr_err end
    record.hash = hash
    credentials.caller("basic", name, record.scope, nil, record)
    local list = users[name] or {}
    for _, other in ipairs(list) do
      if other.slot == slot then
        return nil, "entry " .. i .. " repeats the name " .. name .. " (" .. slot .. ")"
      end
    end
    list[#list + 1] = record
    users[name] = list
  end
  return users
end

local STORES = {
  { file = "credentials/api-keys", field = "api_keys", parse = parse_api_keys },
  { file = "credentials/htpasswd", field = "users", parse = parse_htpasswd },
}
-- JWT verification keys, only when the spec has `jwt` (gateway/jwt_keys.lua).
_M.jwt_keys = { by_kid = {}, by_alg = {} }
_M.jwt_keys_status = "not loaded"
if require("gateway.config").jwt then
  STORES[#STORES + 1] = { file = "credentials/jwt-keys", field = "jwt_keys", empty = { by_kid = {}, by_alg = {} },
    parse = function(content) return require("gateway.jwt_keys").parse(content, data_lines) end }
end

--- Whether every credential file in use is loaded (for /healthz).
function _M.all_ok()
  for _, store in ipairs(STORES) do
    if _M[store.field .. "_status"] ~= "ok" then return false end
  end
  return true
end
local signatures = {}

local function set_status(store, status, count)
  local key = store.field .. "_status"
  if _M[key] ~= status then
    if status == "ok" then
      ngx.log(ngx.NOTICE, "ollama-gateway: loaded ", count, " entries from ", store.file)
    else
      ngx.log(ngx.ERR, "ollama-gateway: credential file ", store.file, " ", status,
        "; refusing these credentials until it is fixed")
    end
  end
  _M[key] = status
  -- Governance metrics (gateway/metrics.lua): load time, failures.
  require("gateway.metrics").note_credential_file(store.file, status == "ok")
end

local function refresh(store)
  local path = ngx.config.prefix() .. store.file
  local signature = file_signature(path)
  if signature and signature == signatures[store.file] then
    return
  end
  signatures[store.file] = signature
  _M[store.field] = store.empty or {}
  if not signature then
    return set_status(store, "is missing")
  end
  local f, open_err = io.open(path, "rb")
  if not f then
    return set_status(store, "is unreadable: " .. tostring(open_err))
  end
  local content = f:read("*a")
  f:close()
  if not content then
    return set_status(store, "is unreadable")
  end
  local parsed, err = store.parse(content)
  if not parsed then
    signatures[store.file] = nil -- re-read next time even if only the content changes
    return set_status(store, "is invalid: " .. err)
  end
  local count = 0
  if store.empty then
    count = parsed.count
  else
    for _ in pairs(parsed) do count = count + 1 end
  end
  _M[store.field] = parsed
  set_status(store, "ok", count)
end

function _M.refresh_all()
  for _, store in ipairs(STORES) do
    local ok, err = pcall(refresh, store)
    if not ok then
      _M[store.field] = store.empty or {}
      signatures[store.file] = nil
      set_status(store, "could not be loaded: " .. tostring(err))
    end
  end
end

--- Called from init_worker: load now, then check for changes every second.
function _M.start()
  _M.refresh_all()
  local ok, err = ngx.timer.every(CHECK_INTERVAL, _M.refresh_all)
  if not ok then
    ngx.log(ngx.ERR, "ollama-gateway: cannot start the credential watcher: ", err)
  end
end

_M.file_signature = file_signature

return _M
