/**
 * npm run bench:pool [-- --quick] [-- --no-write]
 *
 * A pool of Ollama backends (spec `upstreams`) through the real nginx, in front of stand-in
 * Ollama processes on 127.0.0.1 (one worker process each gateway):
 * 1. overhead: a pool of 4 backends vs 1, POST /api/generate with wrk, rounds alternating side
 *    by side in one run, as a throughput ratio and a p50 latency difference;
 * 2. spread: 1,000 requests (8 at a time) over two backends holding the same model;
 * 3. failover: a backend killed (SIGKILL) under load: requests failed, and the time from the kill
 *    to the last failed request;
 * 4. recovery: the backend started again on its address: time until /healthz reports it healthy
 *    and until it serves a request again.
 * Writes bench/results/pool.md.
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import { type RunningGateway, startGateway } from "../harness/nginx";
import { childPids, type Running, startFakeOllamaProcess } from "./lib/procs";
import { describeWrk, runWrk, type WrkOptions } from "./lib/wrk";

const QUICK = process.argv.includes("--quick");
const WRITE = !process.argv.includes("--no-write");
const ROUNDS = QUICK ? 2 : 6;
const SECONDS = QUICK ? 3 : 6;
const KEY = "bench-pool-key-0000000000000000000000";
const MODEL = "gemma3:1b";
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const backend = (port?: number) => startFakeOllamaProcess({ chunks: 3, chunkIntervalMs: 1, models: [MODEL], port });

function gatewaySpec(backends: Running[]) {
  return {
    ...(backends.length === 1 ? { upstream: backends[0].url } : { upstreams: backends.map((b, i) => ({ name: `b${i}`, url: b.url })) }),
    workerProcesses: 1 as const,
    probeIntervalSeconds: 1,
    apiKeys: [{ name: "bench", key: KEY, scope: "inference" as const }],
    rateLimit: { requestsPerSecond: 100_000, burst: 100_000 },
    connectionsPerAddress: 10_000,
    accessLog: "logs/access.log",
  };
}

async function healthy(gateway: RunningGateway, name: string): Promise<boolean> {
  const response = await fetch(`${gateway.url}/healthz`);
  const body = (await response.json()) as { backends?: { name: string; state: string }[] };
  return body.backends?.find((b) => b.name === name)?.state === "healthy";
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error("bench:pool: condition not met in time");
    await sleep(20);
  }
}

const generate = (gateway: RunningGateway) =>
  fetch(`${gateway.url}/api/generate`, {
    method: "POST",
    headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
    body: JSON.stringify({ model: MODEL, prompt: "hi", stream: false }),
  }).then(async (r) => (await r.text(), r.status), () => 0);

/** SIGKILL: the backend dies with connections open, as a crashed server does. */
function kill(b: Running) {
  for (const pid of [...childPids(b.pid), b.pid]) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

async function overhead() {
  const backends = await Promise.all([0, 1, 2, 3].map(() => backend()));
  const one = await startGateway({ spec: gatewaySpec(backends.slice(0, 1)) });
  const four = await startGateway({ spec: gatewaySpec(backends) });
  await waitFor(async () => (await fetch(`${four.url}/healthz`)).status === 200, 5000);
  const wrk = (gateway: RunningGateway): WrkOptions => ({
    url: gateway.url,
    threads: 2,
    connections: 16,
    durationSeconds: SECONDS,
    script: path.join(__dirname, "wrk", "generate.lua"),
    env: { BENCH_KEY: KEY, BENCH_MODEL: MODEL },
  });
  const rounds: { one: number; four: number; oneP50: number; fourP50: number; errors: number }[] = [];
  try {
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate which goes first, so drift in the machine's load hits both alike.
      const order = round % 2 === 0 ? [one, four] : [four, one];
      const results = new Map<RunningGateway, Awaited<ReturnType<typeof runWrk>>>();
      for (const gateway of order) results.set(gateway, await runWrk(wrk(gateway)));
      const a = results.get(one)!;
      const b = results.get(four)!;
      rounds.push({ one: a.requestsPerSecond, four: b.requestsPerSecond, oneP50: a.p50, fourP50: b.p50, errors: a.non2xx + b.non2xx + a.socketErrors + b.socketErrors });
    }
  } finally {
    await one.stop();
    await four.stop();
    for (const b of backends) await b.stop();
  }
  const command = describeWrk({ ...wrk(one), script: "bench/wrk/generate.lua", url: "http://127.0.0.1:<port>" });
  return { rounds, command };
}

async function spreadFailoverRecovery() {
  const backends = [await backend(), await backend()];
  const gateway = await startGateway({ spec: gatewaySpec(backends) });
  try {
    await waitFor(async () => (await healthy(gateway, "b0")) && (await healthy(gateway, "b1")), 5000);
    // Spread: 1,000 requests, 8 at a time.
    const before = gateway.accessLog().length;
    let next = 0;
    const statuses: number[] = [];
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (next < 1000) {
        next++;
        statuses.push(await generate(gateway));
      }
    }));
    const log = (await gateway.settledAccessLog()).slice(before).filter((e) => e.path === "/api/generate");
    const spread = { b0: log.filter((e) => e.backend === "b0").length, b1: log.filter((e) => e.backend === "b1").length, failed: statuses.filter((s) => s !== 200).length };

    // Failover: load from 8 clients; kill b0; note every failure's time.
    let stop = false;
    let total = 0;
    const failures: number[] = [];
    let killedAt = 0;
    const load = Promise.all(Array.from({ length: 8 }, async () => {
      while (!stop) {
        const status = await generate(gateway);
        total++;
        if (status !== 200) failures.push(performance.now());
      }
    }));
    await sleep(1000);
    const port = backends[0].port;
    killedAt = performance.now();
    kill(backends[0]);
    await waitFor(async () => !(await healthy(gateway, "b0")), 5000);
    const markedDownMs = performance.now() - killedAt;
    await sleep(2000);
    const totalDuringFailover = total;

    // Recovery: start b0 again on its port, under the same load.
    const logBefore = gateway.accessLog().length;
    const restartedAt = performance.now();
    backends[0] = await backend(port);
    const listeningMs = performance.now() - restartedAt;
    await waitFor(() => healthy(gateway, "b0"), 10_000);
    const healthyMs = performance.now() - restartedAt;
    await waitFor(async () => gateway.accessLog().slice(logBefore).some((e) => e.backend === "b0" && e.path === "/api/generate"), 10_000);
    const servingMs = performance.now() - restartedAt;
    stop = true;
    await load;
    return {
      spread,
      failover: {
        requests: totalDuringFailover,
        failed: failures.length,
        lastFailureMs: failures.length ? Math.max(...failures) - killedAt : undefined,
        markedDownMs,
      },
      recovery: { listeningMs, healthyMs, servingMs, failedAfterRestart: failures.filter((t) => t > restartedAt).length },
    };
  } finally {
    await gateway.stop();
    for (const b of backends) await b.stop();
  }
}

async function main() {
  const started = new Date();
  const over = await overhead();
  const rest = await spreadFailoverRecovery();
  const ratios = over.rounds.map((r) => r.four / r.one);
  const p50Diff = over.rounds.map((r) => r.fourP50 - r.oneP50);
  const f = (n: number, digits = 2) => n.toFixed(digits);
  const md = [
    "# Pool of Ollama backends",
    "",
    `Measured ${started.toISOString().slice(0, 16).replace("T", " ")} UTC with \`npm run bench:pool${QUICK ? " -- --quick" : ""}\` (bench/pool.ts) on the project's`,
    "2-CPU machine (shared with other work): Debian's nginx with one worker per gateway, stand-in Ollama processes",
    "(harness/fake-ollama.ts) on 127.0.0.1, non-streamed `POST /api/generate` naming `gemma3:1b`, which every backend holds.",
    "",
    "## Overhead: a pool of 4 vs 1 backend",
    "",
    `Rounds alternate the two gateways side by side (${ROUNDS} rounds of ${SECONDS} s each): \`${over.command}\`.`,
    "Both read the body's model (cloud check, log); the pool of 4 also picks a backend in Lua (balancer_by_lua) and counts requests in progress;",
    "the gateway with one backend proxies to it directly, as before pools existed. One confound: with 4 backends the",
    "stand-ins share the load four ways (each is one Node process), which favours the pool if a stand-in is near its limit.",
    "",
    "| round | 1 backend req/s | 4 backends req/s | ratio 4/1 | p50 1 (ms) | p50 4 (ms) | errors |",
    "|---|---|---|---|---|---|---|",
    ...over.rounds.map((r, i) => `| ${i + 1} | ${f(r.one, 0)} | ${f(r.four, 0)} | ${f(r.four / r.one)} | ${f(r.oneP50)} | ${f(r.fourP50)} | ${r.errors} |`),
    "",
    `**Median throughput ratio (4 backends / 1): ${f(median(ratios))}**; median p50 difference ${f(median(p50Diff))} ms.`,
    "",
    "## Spread of 1,000 requests over two backends holding the same model",
    "",
    `8 clients at a time, counted from the access log's \`backend\` field: b0 ${rest.spread.b0}, b1 ${rest.spread.b1} (failed: ${rest.spread.failed}).`,
    "The backend with fewer requests in progress gets the next one (a faster backend gets more); with equal counts,",
    "ties are broken at random by weight (both weight 1).",
    "",
    "## A backend dies under load",
    "",
    `8 clients in a loop against a pool of two; b0 killed with SIGKILL (connections open).`,
    "",
    "| what | value |",
    "|---|---|",
    `| requests during the run | ${rest.failover.requests} |`,
    `| failed requests | ${rest.failover.failed} |`,
    `| kill to last failed request | ${rest.failover.lastFailureMs === undefined ? "none failed" : `${f(rest.failover.lastFailureMs, 0)} ms`} |`,
    `| kill to \`/healthz\` showing b0 unhealthy | ${f(rest.failover.markedDownMs, 0)} ms |`,
    "",
    "## The backend comes back",
    "",
    "b0 started again on its address (probe interval 1 s), under the same load.",
    "",
    "| what | value |",
    "|---|---|",
    `| process start to listening (Node start-up, not the gateway) | ${f(rest.recovery.listeningMs, 0)} ms |`,
    `| listening to \`/healthz\` showing b0 healthy | ${f(rest.recovery.healthyMs - rest.recovery.listeningMs, 0)} ms |`,
    `| listening to b0 serving a request again | ${f(rest.recovery.servingMs - rest.recovery.listeningMs, 0)} ms |`,
    `| failed requests after the restart | ${rest.recovery.failedAfterRestart} |`,
    "",
    "Taking a backend back waits for the next probe (`probeIntervalSeconds`, here 1 s) after it listens; taking one out",
    "does not wait for a probe: the first refused connection marks it down and the request is retried on the other.",
    "",
  ].join("\n");
  console.log(md);
  if (WRITE) writeFileSync(path.join(__dirname, "results", "pool.md"), md);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
