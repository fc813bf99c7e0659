-- JWS signature checks (HS256, RS256, ES256) through LuaJIT FFI into the libcrypto that nginx
-- already links: no lua-resty-string or lua-resty-openssl needed, so Debian's nginx works too.
-- Only functions that exist, undeprecated, in OpenSSL 3 (Debian bookworm, OpenResty's Alpine
-- image): HMAC, EVP_sha256, d2i_PUBKEY, EVP_PKEY_get_base_id/get_bits/get_group_name,
-- EVP_MD_CTX_new/free, EVP_DigestVerifyInit/Update/Final, CRYPTO_memcmp, ERR_clear_error.
local ffi = require "ffi"

-- One cdef per declaration, each in pcall: a declaration another module already made (e.g.
-- lua-resty-openssl in OpenResty) must not keep the others from being declared.
for _, declaration in ipairs({
  "typedef struct evp_md_st EVP_MD;",
  "typedef struct evp_md_ctx_st EVP_MD_CTX;",
  "typedef struct evp_pkey_st EVP_PKEY;",
  "typedef struct engine_st ENGINE;",
  "typedef struct evp_pkey_ctx_st EVP_PKEY_CTX;",
  "const EVP_MD *EVP_sha256(void);",
  [[unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
    const unsigned char *data, size_t data_len, unsigned char *md, unsigned int *md_len);]],
  "EVP_PKEY *d2i_PUBKEY(EVP_PKEY **a, const unsigned char **pp, long length);",
  "void EVP_PKEY_free(EVP_PKEY *pkey);",
  "int EVP_PKEY_get_base_id(const EVP_PKEY *pkey);",
  "int EVP_PKEY_get_bits(const EVP_PKEY *pkey);",
  "int EVP_PKEY_get_group_name(const EVP_PKEY *pkey, char *name, size_t name_sz, size_t *gname_len);",
  "EVP_MD_CTX *EVP_MD_CTX_new(void);",
  "void EVP_MD_CTX_free(EVP_MD_CTX *ctx);",
  [[int EVP_DigestVerifyInit(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const EVP_MD *type,
    ENGINE *e, EVP_PKEY *pkey);]],
  "int EVP_DigestVerifyUpdate(EVP_MD_CTX *ctx, const void *d, size_t cnt);",
  "int EVP_DigestVerifyFinal(EVP_MD_CTX *ctx, const unsigned char *sig, size_t siglen);",
  "int CRYPTO_memcmp(const void *a, const void *b, size_t len);",
  "void ERR_clear_error(void);",
}) do
  pcall(ffi.cdef, declaration)
end

local C = ffi.C
local char, byte, sub = string.char, string.byte, string.sub

local _M = {}

local EVP_PKEY_RSA = 6   -- NID_rsaEncryption
local EVP_PKEY_EC = 408  -- NID_X9_62_id_ecPublicKey

local md_buf = ffi.new("unsigned char[32]")
local md_len = ffi.new("unsigned int[1]")

--- HS256: constant-time comparison of HMAC-SHA256(secret, input) with `signature`.
function _M.verify_hs256(secret, input, signature)
  if #signature ~= 32 then return false end
  if C.HMAC(C.EVP_sha256(), secret, #secret, input, #input, md_buf, md_len) == nil then
    C.ERR_clear_error()
    return false
  end
  return md_len[0] == 32 and C.CRYPTO_memcmp(md_buf, signature, 32) == 0
end

--- Parses a DER SubjectPublicKeyInfo into an EVP_PKEY of the type `alg` needs (RSA of at least
--- 2048 bits for RS256, P-256 for ES256). Returns the key (freed by the GC) or nil and a reason.
function _M.load_public_key(alg, der)
  local buf = ffi.new("unsigned char[?]", #der)
  ffi.copy(buf, der, #der)
  local pp = ffi.new("const unsigned char*[1]", buf)
  local pkey = C.d2i_PUBKEY(nil, pp, #der)
  if pkey == nil then
    C.ERR_clear_error()
    return nil, "not a DER public key"
  end
  pkey = ffi.gc(pkey, C.EVP_PKEY_free)
  if pp[0] ~= buf + #der then return nil, "trailing bytes after the public key" end
  local base = C.EVP_PKEY_get_base_id(pkey)
  if alg == "RS256" then
    if base ~= EVP_PKEY_RSA then return nil, "RS256 needs an RSA key" end
    if C.EVP_PKEY_get_bits(pkey) < 2048 then return nil, "RSA keys need at least 2048 bits" end
  elseif alg == "ES256" then
    if base ~= EVP_PKEY_EC then return nil, "ES256 needs an EC key" end
    local name = ffi.new("char[64]")
    local len = ffi.new("size_t[1]")
    if C.EVP_PKEY_get_group_name(pkey, name, 64, len) ~= 1 or ffi.string(name, len[0]) ~= "prime256v1" then
      C.ERR_clear_error()
      return nil, "ES256 needs a P-256 key"
    end
  else
    return nil, "unsupported algorithm " .. tostring(alg)
  end
  return pkey
end

-- One DER INTEGER from a big-endian unsigned byte string (minimal, non-negative).
local function der_integer(bytes)
  local i = 1
  while i < #bytes and byte(bytes, i) == 0 do i = i + 1 end
  bytes = sub(bytes, i)
  if byte(bytes, 1) >= 0x80 then bytes = "\0" .. bytes end
  return "\2" .. char(#bytes) .. bytes
end

--- A JWS ES256 signature (raw r || s, 32 bytes each) as the DER ECDSA-Sig-Value EVP expects.
function _M.es256_to_der(raw)
  if #raw ~= 64 then return nil end
  local body = der_integer(sub(raw, 1, 32)) .. der_integer(sub(raw, 33, 64))
  return "\48" .. char(#body) .. body -- at most 70 bytes: short-form length
end

--- RS256 / ES256 with a key from `load_public_key`.
function _M.verify_pkey(alg, pkey, input, signature)
  if alg == "ES256" then
    signature = _M.es256_to_der(signature)
    if not signature then return false end
  elseif alg == "RS256" then
    if #signature ~= math.ceil(C.EVP_PKEY_get_bits(pkey) / 8) then return false end
  else
    return false
  end
  local ctx = C.EVP_MD_CTX_new()
  if ctx == nil then return false end
  local ok = C.EVP_DigestVerifyInit(ctx, nil, C.EVP_sha256(), nil, pkey) == 1
    and C.EVP_DigestVerifyUpdate(ctx, input, #input) == 1
    and C.EVP_DigestVerifyFinal(ctx, signature, #signature) == 1
  C.EVP_MD_CTX_free(ctx)
  C.ERR_clear_error()
  return ok
end

return _M
