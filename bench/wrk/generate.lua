-- wrk script: a non-streamed POST /api/generate naming BENCH_MODEL, with a valid Bearer key.
wrk.method = "POST"
wrk.path = "/api/generate"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"' .. (os.getenv("BENCH_MODEL") or "gemma3:1b") .. '","prompt":"hi","stream":false}'
