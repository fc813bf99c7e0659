-- Token accounting as the response passes. Where image/proxy/usage-module/ (a C body filter) is loaded, it
-- does the work and from_module() reads its variables; elsewhere (OpenResty, or a host without
-- the built module) body_filter() does the same in Lua, at ~50 times the CPU per streamed chunk:
-- every chunk goes on to the client unchanged and at once; only references to the last line,
-- and a 40-byte tail, are kept. Either way the log phase (governance.lua) gets
-- { ttft (ms since the request arrived), prompt, completion, chunks }, and puts them in the
-- access log and the metrics. The two must give the same numbers (test/governance.test.ts).
--
-- Where the numbers come from (docs/governance.md):
-- - /api/generate and /api/chat: the last line (NDJSON stream) or the whole body (stream:false),
--   decoded as JSON: its top-level `prompt_eval_count` and `eval_count` when `done` is true.
--   Decoding matters: a tool call's arguments are an object the model writes, and in a
--   GenerateResponse they come after the counts, so a text search could be fooled.
-- - other routes (/api/embed, /v1/*): the last `prompt_tokens`/`input_tokens`/`prompt_eval_count`
--   and `completion_tokens`/`output_tokens`/`eval_count` field in the body. In these bodies usage
--   comes last and nothing the model writes is an unescaped object, so the last one is Ollama's.
-- - an OpenAI-compatible stream without `stream_options.include_usage` carries no usage: null.
local cjson = require "cjson.safe"
local ffi = require "ffi"
local get_request = require("resty.core.base").get_request

local ngx = ngx
local byte, find, sub = string.byte, string.find, string.sub
local concat, floor, tonumber = table.concat, math.floor, tonumber
local re_gmatch = ngx.re.gmatch

local _M = {}

-- The final line of a native response is kept up to this size (a GenerateResponse's `context`
-- grows with the conversation); past it the counts are unknown.
local MAX_FINAL_LINE = 8 * 1024 * 1024
local TAIL = 40
local FIELDS = [["(prompt_tokens|input_tokens|prompt_eval_count|completion_tokens|output_tokens|eval_count)":[ ]*([0-9]+)(?=[^0-9])]]
local PROMPT_FIELD = { prompt_tokens = true, input_tokens = true, prompt_eval_count = true }

local function scan(u, text)
  if not (find(text, '_tokens"', 1, true) or find(text, '_count"', 1, true)) then return end
  for m in re_gmatch(text, FIELDS, "jo") do
    -- At most 18 digits, as the C filter reads them: a longer run would make a float (1e+25, inf).
    local n = tonumber(sub(m[2], 1, 18))
    if PROMPT_FIELD[m[1]] then u.prompt = n else u.completion = n end
  end
end

-- Whether text is only line ends: after a line, it leaves that line the last one.
local function blank(text)
  return not find(text, "[^\r\n]")
end

-- A decoded count as the C filter takes it: an integer from 0 to below 10^18, else 0 (not a
-- string, 1.5, 1e999 or NaN, which would reach the access log as `inf` or `nan`: not JSON; not
-- negative, which would give tokens back against a budget).
local function count(v)
  if type(v) ~= "number" or v ~= floor(v) or v >= 1e18 or v < 0 then return 0 end
  return v + 0 -- -0 is 0
end

-- The counts in the last line of `text`, when it is Ollama's final (done) response.
local function final_line_counts(u, text)
  local last_end = #text
  while last_end > 0 and (byte(text, last_end) == 10 or byte(text, last_end) == 13) do last_end = last_end - 1 end
  local line_start, from = 1, 1
  while true do
    local nl = find(text, "\n", from, true)
    if not nl or nl >= last_end then break end
    line_start, from = nl + 1, nl + 1
  end
  local final = cjson.decode(sub(text, line_start, last_end))
  if type(final) == "table" and final.done == true then
    u.prompt = count(final.prompt_eval_count)
    u.completion = count(final.eval_count)
  end
end

--- What the C body filter read, in body_filter's shape; nil when it saw no response body.
-- The module's own getter (ngx_http_gateway_usage_get): one FFI call instead of four variable
-- reads, ~2,500 instructions a request less. Looked up on first use; where the symbol cannot be
-- found (a module built before it had one), the variables are read.
local getter, usage_out
local function module_getter()
  local ok, found = pcall(function()
    ffi.cdef("int ngx_http_gateway_usage_get(void *r, int64_t *out);")
    return ffi.C.ngx_http_gateway_usage_get
  end)
  usage_out = ffi.new("int64_t[4]")
  return ok and found or false
end

function _M.from_module()
  if getter == nil then getter = module_getter() end
  if getter then
    if getter(get_request(), usage_out) ~= 0 then return nil end
    local prompt = tonumber(usage_out[1])
    return {
      ttft = tonumber(usage_out[0]),
      prompt = prompt >= 0 and prompt or nil,
      completion = prompt >= 0 and tonumber(usage_out[2]) or nil,
      chunks = tonumber(usage_out[3]),
    }
  end
  local var = ngx.var
  local ttft = var.gateway_ttft_ms
  if not ttft then return nil end
  return {
    ttft = tonumber(ttft),
    prompt = tonumber(var.gateway_prompt_tokens),
    completion = tonumber(var.gateway_completion_tokens),
    chunks = tonumber(var.gateway_chunks),
  }
end

function _M.body_filter()
  local ctx = ngx.ctx
  local u = ctx.usage
  -- Timed already and nothing to count: not even the chunk is read (ngx.arg makes a string).
  if u and u.mode == "none" then return end
  local chunk = ngx.arg[1]
  if not u then
    if chunk == "" and not ngx.arg[2] then return end
    -- governance.lua's admit left ctx.gw for forwarded requests; refusals have none.
    local gw = ctx.gw
    u = { mode = "none", chunks = 0, ttft = floor((ngx.now() - ngx.req.start_time()) * 1000 + 0.5) }
    ctx.usage = u
    if gw and gw.class == "inference" and ngx.status == 200 then
      u.mode = gw.final and "final" or "scan"
    end
  end
  local mode = u.mode
  if mode == "none" then return end

  if chunk ~= "" then
    u.chunks = u.chunks + 1
    if mode == "final" then
      if byte(chunk, -1) == 10 then
        -- Complete lines: keep a reference to the newest (no copy), plus any split line before it.
        if u.pieces then
          u.pieces[#u.pieces + 1] = chunk
          local text = concat(u.pieces)
          u.pieces, u.size = nil, 0
          if not blank(text) then u.last = text end
        elseif not blank(chunk) then
          u.last = chunk
        end
      else
        local pieces = u.pieces or {}
        u.pieces, u.size = pieces, (u.size or 0) + #chunk
        if u.size > MAX_FINAL_LINE then
          u.mode = "none"
          return
        end
        pieces[#pieces + 1] = chunk
      end
    else
      if u.tail then scan(u, u.tail .. sub(chunk, 1, TAIL)) end
      scan(u, chunk)
      u.tail = #chunk >= TAIL and sub(chunk, -TAIL) or sub((u.tail or "") .. chunk, -TAIL)
    end
  end

  if ngx.arg[2] and mode == "final" then
    local text = u.pieces and concat(u.pieces)
    if not text or blank(text) then text = u.last end
    if text then final_line_counts(u, text) end
  end
end

return _M
