-- Serves the certificate in credentials/tls.pem (chain, then key) from ssl_certificate_by_lua.
--
-- nginx's own `ssl_certificate $variable` opens the file twice per handshake (certificate,
-- then key): a rename in between pairs an old certificate with a new key and the handshake
-- fails. Here one read gives both, parsed once and cached until stat(2) shows a new file. The
-- stat runs on every handshake (a microsecond next to the handshake's own cryptography), so
-- every worker presents a renewed certificate from the next handshake on, with no reload. A
-- missing or broken file fails the handshake (closed) and logs one error line.
local ssl = require "ngx.ssl"
local store = require "gateway.store"

local _M = {}

local cache = { signature = nil, cert = nil, key = nil, problem = "not loaded" }

local function load(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, nil, "is unreadable: " .. tostring(err) end
  local content = f:read("*a")
  f:close()
  local certs, key = {}, nil
  for block in (content or ""):gmatch("%-%-%-%-%-BEGIN [^\n]+%-%-%-%-%-.-%-%-%-%-%-END [^\n]+%-%-%-%-%-") do
    if block:find("^%-%-%-%-%-BEGIN CERTIFICATE%-") then
      certs[#certs + 1] = block
    elseif block:find("^%-%-%-%-%-BEGIN [%u ]*PRIVATE KEY%-") then
      key = block
    end
  end
  if #certs == 0 or not key then return nil, nil, "has no certificate or no private key" end
  local cert_cdata, cert_err = ssl.parse_pem_cert(table.concat(certs, "\n"))
  if not cert_cdata then return nil, nil, "has a bad certificate: " .. tostring(cert_err) end
  local key_cdata, key_err = ssl.parse_pem_priv_key(key)
  if not key_cdata then return nil, nil, "has a bad private key: " .. tostring(key_err) end
  return cert_cdata, key_cdata
end

local function refresh()
  local path = ngx.config.prefix() .. "credentials/tls.pem"
  local signature = store.file_signature(path)
  if signature and signature == cache.signature then return end
  local cert, key, problem
  if signature then
    cert, key, problem = load(path)
  else
    problem = "is missing"
  end
  if problem ~= cache.problem and problem then
    ngx.log(ngx.ERR, "ollama-gateway: TLS file credentials/tls.pem ", problem, "; refusing TLS handshakes until it is fixed")
  end
  -- A broken file is read again on the next check even if stat(2) shows no change.
  cache.signature = problem and nil or signature
  cache.cert, cache.key, cache.problem = cert, key, problem
end

function _M.set_certificate()
  refresh()
  if not cache.cert then
    return ngx.exit(ngx.ERROR)
  end
  local ok, err = ssl.clear_certs()
  if ok then ok, err = ssl.set_cert(cache.cert) end
  if ok then ok, err = ssl.set_priv_key(cache.key) end
  if not ok then
    ngx.log(ngx.ERR, "ollama-gateway: cannot set the TLS certificate: ", err)
    return ngx.exit(ngx.ERROR)
  end
end

return _M
