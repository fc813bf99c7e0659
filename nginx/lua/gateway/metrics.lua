-- Prometheus metrics: counters and histograms in a shared dict (every worker adds to the same
-- numbers), written in the log phase and served as the text exposition format on the metrics
-- listener (spec `metrics`).
--
-- Labels never take an unbounded value from a request: `caller` is a credential's name from the
-- store (JWT and external-auth callers count as "(jwt)" and "(external)"), `model` is set only
-- for a model that was served (a 200 with token counts), `route_class`, `status`, `reason` and
-- `limit` come from fixed sets. Callers and models are also capped (policy.series_cap): past
-- the cap a new value counts as "(other)".
local policy = require "gateway.policy"
local concurrency = require "gateway.concurrency"
local pool = require "gateway.pool"
local config = require "gateway.config"
local ffi = require "ffi"

local ngx = ngx
local dict = ngx.shared.gw_metrics
local concat, sort = table.concat, table.sort
local find, sub, format = string.find, string.sub, string.format
local tonumber, tostring = tonumber, tostring

local _M = {}

local FAMILIES = {
  ollama_gateway_requests_total = { "counter", "Requests answered, by caller, route class and status." },
  ollama_gateway_tokens_total = { "counter", "Tokens Ollama reported, by caller, model and kind (prompt or completion)." },
  ollama_gateway_request_duration_seconds = { "histogram", "Time from the request's first byte to the response's last, by route class." },
  ollama_gateway_time_to_first_byte_seconds = { "histogram", "Time from the request's first byte to the response's first, by route class." },
  ollama_gateway_in_flight_requests = { "gauge", "Requests in progress, by caller." },
  ollama_gateway_auth_failures_total = { "counter", "Requests refused for their credentials, by reason." },
  ollama_gateway_rate_limited_total = { "counter", "Requests refused with 429, by caller and limit." },
  ollama_gateway_credential_file_loaded_timestamp_seconds = { "gauge", "When a worker last loaded the credential file (unix seconds)." },
  ollama_gateway_credential_file_age_seconds = { "gauge", "Seconds since a worker last loaded the credential file." },
  ollama_gateway_credential_file_ok = { "gauge", "1 when the last read of the credential file succeeded, 0 when it failed (its credentials are refused)." },
  ollama_gateway_credential_file_errors_total = { "counter", "Failed reads of the credential file, summed over workers." },
  ollama_gateway_tls_certificate_expiry_timestamp_seconds = { "gauge", "When the server certificate in credentials/tls.pem expires (unix seconds)." },
  ollama_gateway_backend_up = { "gauge", "1 while a pool's Ollama backend answers its probes, 0 while it is down or not yet probed." },
  ollama_gateway_backend_in_flight_requests = { "gauge", "Requests in progress on a pool's Ollama backend, through this gateway." },
}

-- libcrypto, which nginx is linked with: the certificate's notAfter, read at scrape time.
for _, declaration in ipairs({
  "typedef struct bio_st BIO;", "typedef struct x509_st X509;", "typedef struct asn1_string_st ASN1_TIME;",
  "BIO *BIO_new_mem_buf(const void *buf, int len);", "int BIO_free(BIO *a);",
  "X509 *PEM_read_bio_X509(BIO *bp, X509 **x, void *cb, void *u);", "void X509_free(X509 *a);",
  "const ASN1_TIME *X509_get0_notAfter(const X509 *x);",
  "int ASN1_TIME_diff(int *pday, int *psec, const ASN1_TIME *from, const ASN1_TIME *to);",
}) do
  pcall(ffi.cdef, declaration)
end

-- Unix time at which the first certificate in credentials/tls.pem expires; nil without TLS.
local function certificate_expiry()
  if not config.plain_http then return nil end
  local f = io.open(ngx.config.prefix() .. "credentials/tls.pem", "rb")
  if not f then return nil end
  local pem = (f:read("*a") or ""):match("%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-.-%-%-%-%-%-END CERTIFICATE%-%-%-%-%-")
  f:close()
  if not pem then return nil end
  local ok, expiry = pcall(function()
    local C = ffi.C
    local bio = C.BIO_new_mem_buf(pem, #pem)
    local cert = C.PEM_read_bio_X509(bio, nil, nil, nil)
    C.BIO_free(bio)
    if cert == nil then return nil end
    local days, secs = ffi.new("int[1]"), ffi.new("int[1]")
    local diffed = C.ASN1_TIME_diff(days, secs, nil, C.X509_get0_notAfter(cert))
    C.X509_free(cert)
    if diffed ~= 1 then return nil end
    return ngx.time() + days[0] * 86400 + secs[0]
  end)
  return ok and expiry or nil
end

local BUCKETS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600 }

-- Fixed sets: a value outside them is never a label.
local AUTH_REASONS = {
  none = "missing", malformed = "malformed", bearer = "api_key", ["x-api-key"] = "api_key",
  basic = "basic", jwt = "jwt", external = "external",
}
local ROUTE_CLASSES = { read = true, inference = true, admin = true, blocked = true }

-- Each worker adds up in a Lua table and moves the sums to the shared dict a second after the
-- first change (and when it exits: nginx then runs pending timers early): a table update costs a
-- tenth of a dict operation, which takes a lock. A scrape therefore lags by up to a second. A
-- one-shot timer, armed by a change, rather than one every second: an idle worker (or one busy
-- with a long stream, counted only when it ends) then runs no timer at all.
local FLUSH_SECONDS = 1
local pending = {}
local flush_armed = false

local function flush()
  flush_armed = false
  local batch = pending
  pending = {}
  for key, by in pairs(batch) do dict:incr(key, by, 0) end
end

local function add(key, by)
  pending[key] = (pending[key] or 0) + by
  if not flush_armed then
    -- Fails only when the worker has too many timers; the next change tries again.
    flush_armed = ngx.timer.at(FLUSH_SECONDS, flush) and true or false
  end
end

local function counter(name, labels, by)
  add("c\t" .. name .. "\t" .. labels, by or 1)
end

-- The dict keys of the per-request series, built once per worker and label values (all from
-- bounded sets): a request then makes no new string, which costs more than the counting.
-- requests[caller][class][status] = key; tokens[caller][model] = { prompt = key, completion = key };
-- histograms[name][class] = { key of bucket 1, ..., key of +Inf, sum = key }.
local request_keys, token_keys = {}, {}
local histogram_keys = { ollama_gateway_request_duration_seconds = {}, ollama_gateway_time_to_first_byte_seconds = {} }

local function branch(tree, key)
  local child = tree[key]
  if not child then
    child = {}
    tree[key] = child
  end
  return child
end

local function requests_key(caller, class, status)
  local by_status = branch(branch(request_keys, caller), class)
  local key = by_status[status]
  if not key then
    key = 'c\tollama_gateway_requests_total\tcaller="' .. caller .. '",route_class="' .. class .. '",status="' .. status .. '"'
    by_status[status] = key
  end
  return key
end

local function tokens_keys(caller, model)
  local by_model = branch(token_keys, caller)
  local keys = by_model[model]
  if not keys then
    local labels = 'c\tollama_gateway_tokens_total\tcaller="' .. caller .. '",model="' .. model .. '",kind='
    keys = { prompt = labels .. '"prompt"', completion = labels .. '"completion"' }
    by_model[model] = keys
  end
  return keys
end

local function histogram(name, class)
  local by_class = histogram_keys[name]
  local series = by_class[class]
  if not series then
    local key = name .. '\troute_class="' .. class .. '"'
    series = { sum = "s\t" .. key }
    for i = 1, #BUCKETS + 1 do series[i] = "h\t" .. key .. "\t" .. i end
    by_class[class] = series
  end
  return series
end

local function observe(series, value)
  local i = 1
  while i <= #BUCKETS and value > BUCKETS[i] do i = i + 1 end
  add(series[i], 1)
  add(series.sum, value)
end

-- Values this worker already saw admitted (at most the caps' worth): no dict lookup for them.
local admitted = { caller = {}, model = {} }

-- `value` as a label, or "(other)" once `cap` values of this kind have been seen.
local function bounded(kind, value, cap)
  if admitted[kind][value] then return value end
  local key = "l\t" .. kind .. "\t" .. value
  if dict:get(key) then
    admitted[kind][value] = true
    return value
  end
  local count = dict:incr("n\t" .. kind, 1, 0)
  if count and count <= cap and dict:safe_add(key, 1) then return value end
  if count then dict:incr("n\t" .. kind, -1) end
  return dict:get(key) and value or "(other)"
end

--- The caller label for a request, from $gw_caller and $gw_auth.
local function caller_of(var)
  local auth = var.gw_auth
  if auth == "jwt" then return "(jwt)" end
  if auth == "external" then return "(external)" end
  local caller = var.gw_caller
  if not caller or caller == "" then return "(none)" end
  return caller
end

local function route_class(var)
  local path = var.gw_path
  if not path or path == "" then return "none" end
  local class = require("gateway.access").classify(var.request_method, path)
  return ROUTE_CLASSES[class] and class or "none"
end

--- Log phase: counts one request. `gw` is what governance.lua's admit left in ngx.ctx (nil for
--- a request refused before it, or after an internal redirect), `usage` what usage.lua read.
function _M.observe(gw, usage)
  local var = ngx.var
  local status = ngx.status
  -- A forwarded request's facts come from ngx.ctx; the rest (refusals, error pages) from variables.
  local caller, class
  if gw then
    caller, class = gw.caller, gw.class
  else
    caller, class = caller_of(var), route_class(var)
  end
  if caller ~= "(none)" then caller = bounded("caller", caller, policy.series_cap.callers) end
  add(requests_key(caller, class, status), 1)
  observe(histogram("ollama_gateway_request_duration_seconds", class), ngx.now() - ngx.req.start_time())
  if usage then
    observe(histogram("ollama_gateway_time_to_first_byte_seconds", class), usage.ttft / 1000)
    if usage.prompt and gw and status == 200 then
      local keys = tokens_keys(caller, bounded("model", gw.model ~= "" and gw.model or "(none)", policy.series_cap.models))
      add(keys.prompt, usage.prompt)
      add(keys.completion, usage.completion)
    end
  end

  if status == 401 then
    counter("ollama_gateway_auth_failures_total", 'reason="' .. (AUTH_REASONS[var.gw_auth] or "unsupported_scheme") .. '"')
  elseif status == 429 then
    local limited = var.gw_limited
    if caller ~= "(none)" then
      counter("ollama_gateway_rate_limited_total", 'caller="' .. caller .. '",limit="' .. ((limited and limited ~= "") and limited or "rate") .. '"')
    elseif var.gw_auth and var.gw_auth ~= "" then
      -- Refused before any credential was accepted: too many failed logins from the address.
      counter("ollama_gateway_auth_failures_total", 'reason="locked_out"')
    else
      counter("ollama_gateway_rate_limited_total", 'caller="(none)",limit="connections_per_address"')
    end
  end
end

--- Credential store hook (store.lua): a file was loaded, or failed to load.
function _M.note_credential_file(file, ok)
  if not policy.metrics then return end
  local labels = 'file="' .. file .. '"'
  dict:set("g\tollama_gateway_credential_file_ok\t" .. labels, ok and 1 or 0)
  if ok then
    dict:set("g\tollama_gateway_credential_file_loaded_timestamp_seconds\t" .. labels, ngx.time())
  else
    counter("ollama_gateway_credential_file_errors_total", labels)
  end
end

local function number(value)
  if value == math.floor(value) and value < 1e15 and value > -1e15 then return format("%d", value) end
  return format("%.15g", value)
end

-- One line per series, grouped by family, sorted, in the text exposition format.
local function exposition()
  local now = ngx.time()
  local families = {}
  local function add(name, line)
    local list = branch(families, name)
    list[#list + 1] = line
  end
  local histograms = {}
  for _, key in ipairs(dict:get_keys(0)) do
    local kind = sub(key, 1, 1)
    if kind == "c" or kind == "g" or kind == "h" or kind == "s" then
      local _, name_end = find(key, "\t", 3, true)
      local name = sub(key, 3, name_end - 1)
      local rest = sub(key, name_end + 1)
      local value = dict:get(key)
      if value then
        if kind == "c" or kind == "g" then
          add(name, name .. "{" .. rest .. "} " .. number(value))
          if name == "ollama_gateway_credential_file_loaded_timestamp_seconds" then
            add("ollama_gateway_credential_file_age_seconds", "ollama_gateway_credential_file_age_seconds{" .. rest .. "} " .. number(now - value))
          end
        else
          local labels, bucket = rest, nil
          if kind == "h" then
            local tab = find(rest, "\t[0-9]+$")
            labels, bucket = sub(rest, 1, tab - 1), tonumber(sub(rest, tab + 1))
          end
          local byname = branch(histograms, name)
          local series = byname[labels] or { counts = {}, sum = 0 }
          byname[labels] = series
          if bucket then series.counts[bucket] = value else series.sum = value end
        end
      end
    end
  end
  for name, byname in pairs(histograms) do
    for labels, series in pairs(byname) do
      local cumulative = 0
      for i = 1, #BUCKETS + 1 do
        cumulative = cumulative + (series.counts[i] or 0)
        local le = BUCKETS[i] and tostring(BUCKETS[i]) or "+Inf"
        add(name, format('%s_bucket{%s,le="%s"} %s', name, labels, le, number(cumulative)))
      end
      add(name, format("%s_sum{%s} %s", name, labels, number(series.sum)))
      add(name, format("%s_count{%s} %s", name, labels, number(cumulative)))
    end
  end
  local expiry = certificate_expiry()
  if expiry then
    add("ollama_gateway_tls_certificate_expiry_timestamp_seconds", "ollama_gateway_tls_certificate_expiry_timestamp_seconds " .. number(expiry))
  end
  for caller, count in pairs(concurrency.snapshot()) do
    add("ollama_gateway_in_flight_requests", format('ollama_gateway_in_flight_requests{caller="%s"} %s', caller, number(count)))
  end
  -- A pool's backends, named in the spec: a bounded set.
  if pool.enabled then
    for _, b in ipairs(pool.backend_gauges()) do
      add("ollama_gateway_backend_up", format('ollama_gateway_backend_up{backend="%s"} %d', b.name, b.up))
      add("ollama_gateway_backend_in_flight_requests", format('ollama_gateway_backend_in_flight_requests{backend="%s"} %d', b.name, b.in_flight))
    end
  end
  local names = {}
  for name in pairs(FAMILIES) do names[#names + 1] = name end
  sort(names)
  local out = {}
  for _, name in ipairs(names) do
    local lines = families[name]
    if lines then
      -- A histogram's lines stay in bucket order; the other families are sorted.
      if FAMILIES[name][1] ~= "histogram" then sort(lines) end
      out[#out + 1] = "# HELP " .. name .. " " .. FAMILIES[name][2]
      out[#out + 1] = "# TYPE " .. name .. " " .. FAMILIES[name][1]
      for _, line in ipairs(lines) do out[#out + 1] = line end
    end
  end
  out[#out + 1] = ""
  return concat(out, "\n")
end

--- content_by_lua of GET /metrics on the metrics listener.
function _M.serve()
  ngx.header["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
  ngx.header["Cache-Control"] = "no-store"
  ngx.print(exposition())
end

return _M
