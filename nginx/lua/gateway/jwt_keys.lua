-- Parser of `credentials/jwt-keys`, the JWT verification keys (loaded by gateway.store like the
-- other credential files: re-read when it changes, fail closed when it is bad).
--
--   # ollama-gateway jwt-keys v1
--   # alg<TAB>kid<TAB>key (HS256: base64 of the secret; RS256/ES256: base64 of the DER public key)
--   HS256<TAB>-<TAB>c2VjcmV0...
--   HS256<TAB>hs256-41<TAB>b2xkZXI...<TAB>1795000000
--   RS256<TAB>2026-01<TAB>MIIBIjAN...
--   # end 3
--
-- The optional fourth field is a notAfter (unix seconds): a rotated-out secret verifies tokens
-- until then and no longer, whether or not a deployment runs.
--
-- Each key is bound to one algorithm: an HS256 secret is never tried for RS256 and an RSA key
-- never becomes an HMAC secret (the classic HS/RS confusion). Public keys are parsed into
-- EVP_PKEYs once per load, not per request.
local jws = require "gateway.jws"

local _M = {}

_M.HEADER = "# ollama-gateway jwt-keys v1"
local ALGS = { HS256 = true, RS256 = true, ES256 = true }
local MAX_KEYS = 256

--- Returns { by_kid = { [kid] = entry }, by_alg = { HS256 = { entry... }, ... }, count = n }
--- or nil and a reason. `data_lines` is the store's header/trailer checker.
function _M.parse(content, data_lines)
  local lines, err = data_lines(content, _M.HEADER)
  if not lines then return nil, err end
  if #lines > MAX_KEYS then return nil, "more than " .. MAX_KEYS .. " keys" end
  local keys = { by_kid = {}, by_alg = { HS256 = {}, RS256 = {}, ES256 = {} }, count = #lines }
  for i, line in ipairs(lines) do
    local alg, kid, encoded, rest = line:match("^([%w]+)\t([\33-\126]+)\t([%w%+/]+=*)(.*)$")
    local not_after = rest and rest:match("^\t(%d%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?)$")
    if not alg or not ALGS[alg] or #kid > 128 or (rest ~= "" and not not_after) then
      return nil, "entry " .. i .. " is malformed"
    end
    local material = ngx.decode_base64(encoded)
    if not material or material == "" then return nil, "entry " .. i .. ": key is not base64" end
    local entry = { alg = alg, kid = kid ~= "-" and kid or nil, not_after = not_after and tonumber(not_after) }
    if alg == "HS256" then
      if #material < 32 then return nil, "entry " .. i .. ": HS256 secrets need at least 32 bytes" end
      entry.secret = material
    else
      local pkey, key_err = jws.load_public_key(alg, material)
      if not pkey then return nil, "entry " .. i .. ": " .. key_err end
      entry.pkey = pkey
    end
    if entry.kid then
      if keys.by_kid[entry.kid] then return nil, "entry " .. i .. " repeats the kid " .. entry.kid end
      keys.by_kid[entry.kid] = entry
    end
    local list = keys.by_alg[alg]
    list[#list + 1] = entry
  end
  return keys
end

return _M
