-- wrk script for the legitimate caller in the abuse test: a valid Bearer key at a modest,
-- paced rate (each connection waits BENCH_LEGIT_DELAY_MS between requests; wrk does not
-- count the wait in the latency it reports).
local key = os.getenv("BENCH_LEGIT_KEY")
local pause = tonumber(os.getenv("BENCH_LEGIT_DELAY_MS") or "10")
wrk.method = "GET"
wrk.path = "/api/version"
wrk.headers["Authorization"] = "Bearer " .. key

function delay()
  return pause
end
