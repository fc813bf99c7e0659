/** The benchmark's parameters, shared by its suites and its report (BENCH_QUICK=1: a smoke run). */
import path from "node:path";
import { BENCH_DIR } from "../lib/procs";

export const QUICK = process.env.BENCH_QUICK === "1";
export const P = QUICK
  ? { rounds: 1, seconds: 2, naiveSlowSeconds: 2, warmupSeconds: 1, abuseRounds: 1, abuseSeconds: 4, streamReps: 20, pulumiCredentials: 100, renderReps: 1 }
  : { rounds: 3, seconds: 4, naiveSlowSeconds: 3, warmupSeconds: 1, abuseRounds: 3, abuseSeconds: 6, streamReps: 100, pulumiCredentials: 1000, renderReps: 3 };
/** wrk load for throughput runs: the same for every configuration. */
export const LOAD = { threads: 2, connections: 32 };
/** The legitimate caller during the abuse test: few connections, paced. */
export const LEGIT = { threads: 1, connections: 4, delayMs: 10 };
export const FLOOD = { threads: 1, connections: 32 };
export const KEY_COUNTS = [10, 1_000, 10_000, 100_000];
/** Naive proxy runs whose key file is this large get the short duration. */
export const NAIVE_SLOW_FROM = 100_000;
export const STREAM = { chunks: 10, chunkIntervalMs: 10 };
export const RESULTS_DIR = path.join(BENCH_DIR, "results");
export const PLAIN_TEMPLATE = path.join(BENCH_DIR, "conf", "plain.conf.template");
export const NAIVE_LUA = path.join(BENCH_DIR, "conf", "naive-access.lua");
export const DEBIAN_MODULES = ["load_module /usr/lib/nginx/modules/ndk_http_module.so;", "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;"].join("\n");
