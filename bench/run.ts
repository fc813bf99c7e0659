/**
 * `npm run bench`: the gateway measured against a plain nginx proxy, a naive Lua key-file proxy
 * and the stand-in Ollama directly, all on this machine, in one run. See bench/README.md.
 *
 * Every configuration runs at the same time as its own nginx (1 worker each), and the load runs
 * alternate between them round after round, so drift on a shared machine hits all of them alike.
 * Results are medians over rounds; ratios are medians of per-round ratios (each configuration
 * against the plain proxy measured in the same round).
 *
 * BENCH_QUICK=1: short runs, one round (a smoke test, under ~2 minutes).
 */
import { execFileSync, execSync, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { sha256Hex } from "../bundle/credentials";
import { renderBundle, renderCredentialFiles } from "../bundle/render";
import { type GatewaySpecInput, validateSpec } from "../bundle/spec";
import { writeBundle } from "../bundle/write";
import { BASIC_USERS, basicHeader, type BenchCredentials, makeCredentials, validKey } from "./lib/credentials";
import { startDistributedFlood } from "./lib/flood";
import { plotLatency, plotScaling, type LatencyBar, type ScalingPoint } from "./lib/plot";
import {
  BENCH_DIR,
  freePort,
  makePrefix,
  ROOT,
  type Running,
  startFakeOllamaProcess,
  startNginx,
  threadTicks,
  waitIdle,
  writeFile,
} from "./lib/procs";
import { destroyAgents, type StreamKind, type StreamSample, streamOnce } from "./lib/stream";
import { describeWrk, runWrk, type WrkOptions, type WrkResult } from "./lib/wrk";

const QUICK = process.env.BENCH_QUICK === "1";
const P = QUICK
  ? { rounds: 1, seconds: 2, naiveSlowSeconds: 2, warmupSeconds: 1, abuseRounds: 1, abuseSeconds: 4, streamReps: 20, pulumiCredentials: 100, renderReps: 1 }
  : { rounds: 3, seconds: 4, naiveSlowSeconds: 3, warmupSeconds: 1, abuseRounds: 3, abuseSeconds: 6, streamReps: 100, pulumiCredentials: 1000, renderReps: 3 };
/** wrk load for throughput runs: the same for every configuration. */
const LOAD = { threads: 2, connections: 32 };
/** The legitimate caller during the abuse test: few connections, paced. */
const LEGIT = { threads: 1, connections: 4, delayMs: 10 };
const FLOOD = { threads: 1, connections: 32 };
const KEY_COUNTS = [10, 1_000, 10_000, 100_000];
/** Naive proxy runs whose key file is this large get the short duration. */
const NAIVE_SLOW_FROM = 100_000;
const STREAM = { chunks: 10, chunkIntervalMs: 10 };
const RESULTS_DIR = path.join(BENCH_DIR, "results");
const PLAIN_TEMPLATE = path.join(BENCH_DIR, "conf", "plain.conf.template");
const NAIVE_LUA = path.join(BENCH_DIR, "conf", "naive-access.lua");
const DEBIAN_MODULES = ["load_module /usr/lib/nginx/modules/ndk_http_module.so;", "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;"].join("\n");

// ---------------------------------------------------------------------------------------------
// Statistics and small helpers

const median = (values: number[]) => quantile(values, 0.5);
function quantile(values: number[], q: number): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const index = (sorted.length - 1) * q;
  const low = Math.floor(index);
  const high = Math.ceil(index);
  return sorted[low] + (sorted[high] - sorted[low]) * (index - low);
}
const round = (value: number, digits = 2) => (Number.isFinite(value) ? Number(value.toFixed(digits)) : Number.NaN);
const fmt = (value: number, digits = 2) => (Number.isFinite(value) ? value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 }) : "n/a");
const pct = (share: number) => (Number.isFinite(share) ? `${Math.round(share * 100)}%` : "n/a");
const log = (message: string) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}`);


function machine() {
  const cpuModel = /model name\s*:\s*(.*)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "unknown";
  const nginxVersion = spawnSync("nginx", ["-v"], { encoding: "utf8" }).stderr.trim();
  const luaModule = (() => {
    try {
      return execSync("dpkg-query -W -f='${Version}' libnginx-mod-http-lua", { encoding: "utf8" }).trim();
    } catch {
      return "unknown";
    }
  })();
  const wrkVersion = (() => {
    const out = spawnSync("wrk", ["-v"], { encoding: "utf8" });
    return (out.stdout + out.stderr).split("\n")[0].trim();
  })();
  return {
    nproc: Number(execFileSync("nproc", { encoding: "utf8" }).trim()),
    cpuModel,
    memoryGiB: round(os.totalmem() / 2 ** 30, 1),
    kernel: os.release(),
    nginx: nginxVersion,
    luaModule: `libnginx-mod-http-lua ${luaModule}`,
    wrk: wrkVersion,
    node: process.version,
    date: new Date().toISOString(),
    loadAverageAtStart: os.loadavg().map((v) => round(v, 2)),
  };
}

// ---------------------------------------------------------------------------------------------
// The instances

interface Instances {
  fake: Running;
  plain: Running;
  ours: Map<number, Running>;
  naive: Map<number, Running>;
  all: Running[];
}


function oursSpec(upstream: string, port: number, creds: BenchCredentials, keyCount: number): GatewaySpecInput {
  return {
    upstream,
    listen: { address: "127.0.0.1", http: port },
    workerProcesses: 1,
    // Far above the load, so the rate limiter is exercised but never refuses.
    rateLimit: { requestsPerSecond: 100_000, burst: 100_000 },
    apiKeys: creds.keys.slice(0, keyCount).map((key, i) => ({ name: `key-${i}`, keySha256: sha256Hex(key), scope: "inference" as const })),
    basicUsers: creds.basicUsers,
  };
}

async function startOurs(upstream: string, creds: BenchCredentials, keyCount: number): Promise<Running> {
  const port = await freePort();
  const spec = validateSpec(oursSpec(upstream, port, creds, keyCount));
  const dir = makePrefix(`ours-${keyCount}`);
  writeBundle(dir, renderBundle(spec, { flavor: "debian" }).files);
  return startNginx(`ours-${keyCount}`, dir, port);
}

function plainConf(port: number, upstream: string, access: string, modules: string): string {
  const hostPort = new URL(upstream).host;
  return readFileSync(PLAIN_TEMPLATE, "utf8")
    .replaceAll("{{modules}}", modules)
    .replaceAll("{{upstream}}", hostPort)
    .replaceAll("{{port}}", String(port))
    .replaceAll("{{access}}", access);
}

async function startPlain(upstream: string): Promise<Running> {
  const port = await freePort();
  const dir = makePrefix("plain");
  writeFile(dir, "conf/nginx.conf", plainConf(port, upstream, "            # no authentication", ""));
  return startNginx("plain", dir, port);
}

async function startNaive(upstream: string, creds: BenchCredentials, keyCount: number): Promise<Running> {
  const port = await freePort();
  const dir = makePrefix(`naive-${keyCount}`);
  const lua = readFileSync(NAIVE_LUA, "utf8")
    .split("\n")
    .map((line) => `                ${line}`)
    .join("\n");
  writeFile(dir, "conf/nginx.conf", plainConf(port, upstream, `            access_by_lua_block {\n${lua}\n            }`, DEBIAN_MODULES));
  writeFile(dir, "keys.txt", `${creds.keys.slice(0, keyCount).join("\n")}\n`);
  return startNginx(`naive-${keyCount}`, dir, port);
}

// ---------------------------------------------------------------------------------------------
// Section 1 + 2: throughput and latency, interleaved

interface LoadConfig {
  id: string;
  label: string;
  section: "overhead" | "scaling";
  instance: Running;
  headers: Record<string, string>;
  seconds: number;
  /** For the scaling plot. */
  series?: string;
  credentials?: number;
}

interface Aggregate {
  id: string;
  label: string;
  section: string;
  series?: string;
  credentials?: number;
  seconds: number;
  command: string;
  rounds: Omit<WrkResult, "raw">[];
  median: { requestsPerSecond: number; p50: number; p75: number; p90: number; p99: number };
  /** Median over rounds of (req/s of this configuration / req/s of the plain proxy in that round). */
  ratioToPlain: number;
  /** Median over rounds of (p50 or p99 of this / the same of the plain proxy). */
  p50RatioToPlain: number;
  p99RatioToPlain: number;
  /** req/s ratio against the adjacent plain run, one per round. */
  perRoundRatios: number[];
  non2xx: number;
  socketErrors: number;
}

function loadConfigs(inst: Instances, creds: BenchCredentials): LoadConfig[] {
  const small = KEY_COUNTS[0];
  const key = validKey(creds, small);
  const configs: LoadConfig[] = [
    { id: "direct", label: "stand-in directly (no proxy)", section: "overhead", instance: inst.fake, headers: {}, seconds: P.seconds },
    { id: "plain", label: "plain nginx proxy (no auth)", section: "overhead", instance: inst.plain, headers: {}, seconds: P.seconds },
    { id: "ours-bearer", label: `gateway, Bearer (${small} keys)`, section: "overhead", instance: inst.ours.get(small)!, headers: { Authorization: `Bearer ${key}` }, seconds: P.seconds, series: "gateway (Bearer)", credentials: small },
    { id: "ours-x-api-key", label: `gateway, X-API-Key (${small} keys)`, section: "overhead", instance: inst.ours.get(small)!, headers: { "X-API-Key": key }, seconds: P.seconds },
    { id: "ours-basic", label: `gateway, Basic bcrypt-10, repeat caller (${BASIC_USERS} users)`, section: "overhead", instance: inst.ours.get(small)!, headers: { Authorization: basicHeader(creds.basicUser, creds.basicPassword) }, seconds: P.seconds },
  ];
  for (const count of KEY_COUNTS.slice(1)) {
    configs.push({ id: `ours-bearer-${count}`, label: `gateway, Bearer (${count.toLocaleString("en-US")} keys)`, section: "scaling", instance: inst.ours.get(count)!, headers: { Authorization: `Bearer ${validKey(creds, count)}` }, seconds: P.seconds, series: "gateway (Bearer)", credentials: count });
  }
  for (const count of KEY_COUNTS) {
    configs.push({
      id: `naive-${count}`,
      label: `naive Lua key file (${count.toLocaleString("en-US")} keys)`,
      section: "scaling",
      instance: inst.naive.get(count)!,
      headers: { Authorization: `Bearer ${validKey(creds, count)}` },
      seconds: count >= NAIVE_SLOW_FROM ? P.naiveSlowSeconds : P.seconds,
      series: "naive: Lua reads key file per request",
      credentials: count,
    });
  }
  return configs;
}

function wrkFor(config: LoadConfig, seconds: number): WrkOptions {
  return { url: `${config.instance.url}/api/version`, ...LOAD, durationSeconds: seconds, headers: config.headers };
}

async function settle(inst: Instances, config: LoadConfig): Promise<void> {
  await waitIdle([...config.instance.busyPids(), ...inst.fake.busyPids()]);
}

async function throughput(inst: Instances, creds: BenchCredentials): Promise<Aggregate[]> {
  const configs = loadConfigs(inst, creds);
  log(`warm-up: ${configs.length} configurations, ${P.warmupSeconds} s each`);
  for (const config of configs) {
    // The slowest naive runs get no warm-up: there is nothing to warm and it would take long.
    if ((config.credentials ?? 0) >= NAIVE_SLOW_FROM && config.id.startsWith("naive-")) continue;
    const result = await runWrk(wrkFor(config, P.warmupSeconds));
    // Every configuration answers 200 to its valid caller (counted again in every round).
    if (result.non2xx > 0 || result.requests === 0) throw new Error(`${config.id}: ${result.non2xx} non-2xx of ${result.requests} in warm-up:\n${result.raw}`);
    await settle(inst, config);
  }
  // Every configuration is measured right next to a run of the plain proxy (before it in one
  // round, after it in the next), and its ratio is taken against that neighbour: on a shared
  // machine whose speed drifts by 2x within a minute, only adjacent runs are comparable.
  const plainConfig = configs.find((c) => c.id === "plain")!;
  const others = configs.filter((c) => c !== plainConfig);
  const runs = new Map<string, WrkResult[]>(configs.map((c) => [c.id, []]));
  const ratios = new Map<string, { rps: number; p50: number; p99: number }[]>(configs.map((c) => [c.id, []]));
  const measure = async (config: LoadConfig, r: number): Promise<WrkResult> => {
    const result = await runWrk(wrkFor(config, config.seconds));
    runs.get(config.id)!.push(result);
    log(`round ${r + 1}/${P.rounds} ${config.id.padEnd(18)} ${fmt(result.requestsPerSecond, 0).padStart(7)} req/s  p50 ${fmt(result.p50)} ms  p99 ${fmt(result.p99)} ms${result.non2xx ? `  non-2xx ${result.non2xx}` : ""}${result.socketErrors ? `  socket errors ${result.socketErrors}` : ""}`);
    await settle(inst, config);
    return result;
  };
  for (let r = 0; r < P.rounds; r++) {
    // Rotate the order every round so no configuration always runs first or after the slow one.
    const order = others.map((_, i) => others[(i + r * 3) % others.length]);
    for (const [j, config] of order.entries()) {
      const plainFirst = (j + r) % 2 === 0;
      const before = plainFirst ? await measure(plainConfig, r) : undefined;
      const result = await measure(config, r);
      const plain = before ?? (await measure(plainConfig, r));
      ratios.get(config.id)!.push({ rps: result.requestsPerSecond / plain.requestsPerSecond, p50: result.p50 / plain.p50, p99: result.p99 / plain.p99 });
    }
  }
  ratios.set("plain", [{ rps: 1, p50: 1, p99: 1 }]);
  return configs.map((config) => {
    const rounds = runs.get(config.id)!;
    const ratio = (pick: (x: { rps: number; p50: number; p99: number }) => number) => median(ratios.get(config.id)!.map(pick));
    return {
      id: config.id,
      label: config.label,
      section: config.section,
      series: config.series,
      credentials: config.credentials,
      seconds: config.seconds,
      command: describeWrk(wrkFor(config, config.seconds)),
      rounds: rounds.map(({ raw: _raw, ...rest }) => rest),
      median: {
        requestsPerSecond: median(rounds.map((w) => w.requestsPerSecond)),
        p50: median(rounds.map((w) => w.p50)),
        p75: median(rounds.map((w) => w.p75)),
        p90: median(rounds.map((w) => w.p90)),
        p99: median(rounds.map((w) => w.p99)),
      },
      ratioToPlain: ratio((x) => x.rps),
      p50RatioToPlain: ratio((x) => x.p50),
      p99RatioToPlain: ratio((x) => x.p99),
      perRoundRatios: ratios.get(config.id)!.map((x) => round(x.rps, 3)),
      non2xx: rounds.reduce((sum, w) => sum + w.non2xx, 0),
      socketErrors: rounds.reduce((sum, w) => sum + w.socketErrors, 0),
    };
  });
}

// ---------------------------------------------------------------------------------------------
// Section 3: abuse

type Condition = "alone" | "wrkFlood" | "distributedFlood";
const CONDITIONS: Condition[] = ["alone", "wrkFlood", "distributedFlood"];
const DISTRIBUTED = { addresses: 256, concurrency: 32 };

interface AbuseResult {
  legitCommand: string;
  floodCommand: string;
  distributedFlood: string;
  rounds: {
    legit: Record<Condition, Omit<WrkResult, "raw">>;
    /** Gateway worker CPU (share of one CPU) during the legit run: event loop and bcrypt thread pool. */
    cpu: Record<Condition, { eventLoop: number; threadPool: number }>;
    wrkFlood: Omit<WrkResult, "raw">;
    distributedFlood: { requests: number; seconds: number; statuses: Record<string, number> };
  }[];
  median: Record<Condition, { p50: number; p90: number; p99: number; requestsPerSecond: number; workerEventLoopCpu: number; workerThreadPoolCpu: number }>;
  /** Median over rounds of (legit p99 under that flood / legit p99 alone in the same round). */
  p99Ratio: { wrkFlood: number; distributedFlood: number };
  wrkFloodRequestsPerSecond: number;
  wrkFloodNon2xx: number;
  wrkFloodRequests: number;
  distributedFloodRequestsPerSecond: number;
  distributedFloodStatuses: Record<string, number>;
  legitNon2xx: number;
  accessLogStatuses: Record<string, number>;
}

async function abuse(inst: Instances, creds: BenchCredentials): Promise<AbuseResult> {
  const target = inst.ours.get(KEY_COUNTS[0])!;
  const legit: WrkOptions = {
    url: `${target.url}/api/version`,
    threads: LEGIT.threads,
    connections: LEGIT.connections,
    durationSeconds: P.abuseSeconds,
    script: path.join(BENCH_DIR, "wrk", "legit.lua"),
    env: { BENCH_LEGIT_KEY: validKey(creds, KEY_COUNTS[0]), BENCH_LEGIT_DELAY_MS: String(LEGIT.delayMs) },
  };
  const flood: WrkOptions = {
    url: `${target.url}/api/version`,
    threads: FLOOD.threads,
    connections: FLOOD.connections,
    durationSeconds: P.abuseSeconds + 2,
    script: path.join(BENCH_DIR, "wrk", "flood.lua"),
    env: { BENCH_FLOOD_USER: creds.basicUser },
  };
  const strip = ({ raw: _raw, ...rest }: WrkResult) => rest;
  const idle = () => waitIdle([...target.busyPids(), ...inst.fake.busyPids()]);
  const accessLogFile = path.join(target.dir!, "logs", "access.log");
  const logOffset = readFileSync(accessLogFile).length;
  await runWrk({ ...legit, durationSeconds: 1 }); // warm-up, discarded
  await idle();
  const rounds: AbuseResult["rounds"] = [];
  for (let r = 0; r < P.abuseRounds; r++) {
    const order = CONDITIONS.map((_, i) => CONDITIONS[(i + r) % CONDITIONS.length]);
    const legitResults = {} as Record<Condition, Omit<WrkResult, "raw">>;
    const cpu = {} as Record<Condition, { eventLoop: number; threadPool: number }>;
    // The gateway worker's CPU while the legitimate caller runs: its event loop (main thread)
    // and its bcrypt thread pool (the other threads), as a share of one CPU.
    const legitRun = async (condition: Condition) => {
      const worker = target.busyPids()[0];
      const before = threadTicks(worker);
      const t0 = performance.now();
      const result = await runWrk(legit);
      const seconds = (performance.now() - t0) / 1000;
      const after = threadTicks(worker);
      cpu[condition] = { eventLoop: (after.main - before.main) / 100 / seconds, threadPool: (after.others - before.others) / 100 / seconds };
      return strip(result);
    };
    let wrkFlood: WrkResult | undefined;
    let distributed: { requests: number; seconds: number; statuses: Record<string, number> } | undefined;
    for (const condition of order) {
      if (condition === "alone") {
        legitResults.alone = await legitRun("alone");
      } else if (condition === "wrkFlood") {
        const floodRun = runWrk(flood);
        await new Promise((resolve) => setTimeout(resolve, 1000));
        legitResults.wrkFlood = await legitRun("wrkFlood");
        wrkFlood = await floodRun;
      } else {
        const handle = startDistributedFlood(target.url, creds.basicUser, DISTRIBUTED);
        await new Promise((resolve) => setTimeout(resolve, 1000));
        legitResults.distributedFlood = await legitRun("distributedFlood");
        distributed = await handle.stop();
      }
      await idle();
    }
    log(`abuse round ${r + 1}/${P.abuseRounds}: legit p99 ${fmt(legitResults.alone.p99)} ms alone, ${fmt(legitResults.wrkFlood.p99)} ms under the wrk flood (${fmt(wrkFlood!.requestsPerSecond, 0)}/s), ${fmt(legitResults.distributedFlood.p99)} ms under the distributed bcrypt flood (${fmt(distributed!.requests / distributed!.seconds, 0)}/s)`);
    rounds.push({ legit: legitResults, cpu, wrkFlood: strip(wrkFlood!), distributedFlood: distributed! });
  }
  // What the floods got back, from the gateway's own access log (this section's lines only).
  const lines = readFileSync(accessLogFile).subarray(logOffset).toString("utf8").split("\n").filter(Boolean);
  const accessLogStatuses: Record<string, number> = {};
  for (const line of lines) {
    const status = /"status":(\d+)/.exec(line)?.[1] ?? "?";
    accessLogStatuses[status] = (accessLogStatuses[status] ?? 0) + 1;
  }
  const med = (c: Condition) => ({
    p50: median(rounds.map((x) => x.legit[c].p50)),
    p90: median(rounds.map((x) => x.legit[c].p90)),
    p99: median(rounds.map((x) => x.legit[c].p99)),
    requestsPerSecond: median(rounds.map((x) => x.legit[c].requestsPerSecond)),
    workerEventLoopCpu: median(rounds.map((x) => x.cpu[c].eventLoop)),
    workerThreadPoolCpu: median(rounds.map((x) => x.cpu[c].threadPool)),
  });
  const distributedStatuses: Record<string, number> = {};
  for (const x of rounds) for (const [k, v] of Object.entries(x.distributedFlood.statuses)) distributedStatuses[k] = (distributedStatuses[k] ?? 0) + v;
  return {
    legitCommand: `BENCH_LEGIT_DELAY_MS=${LEGIT.delayMs} ${describeWrk(legit)}`,
    floodCommand: describeWrk(flood),
    distributedFlood: `bench/lib/flood.ts: ${DISTRIBUTED.concurrency} concurrent requests from ${DISTRIBUTED.addresses} source addresses (127.1.x.y), wrong Basic passwords, each different`,
    rounds,
    median: { alone: med("alone"), wrkFlood: med("wrkFlood"), distributedFlood: med("distributedFlood") },
    p99Ratio: {
      wrkFlood: median(rounds.map((x) => x.legit.wrkFlood.p99 / x.legit.alone.p99)),
      distributedFlood: median(rounds.map((x) => x.legit.distributedFlood.p99 / x.legit.alone.p99)),
    },
    wrkFloodRequestsPerSecond: median(rounds.map((x) => x.wrkFlood.requestsPerSecond)),
    wrkFloodNon2xx: rounds.reduce((sum, x) => sum + x.wrkFlood.non2xx, 0),
    wrkFloodRequests: rounds.reduce((sum, x) => sum + x.wrkFlood.requests, 0),
    distributedFloodRequestsPerSecond: median(rounds.map((x) => x.distributedFlood.requests / x.distributedFlood.seconds)),
    distributedFloodStatuses: distributedStatuses,
    legitNon2xx: rounds.reduce((sum, x) => sum + CONDITIONS.reduce((s2, c) => s2 + x.legit[c].non2xx, 0), 0),
    accessLogStatuses,
  };
}

// ---------------------------------------------------------------------------------------------
// Section 4: streaming

interface StreamStats {
  kind: StreamKind;
  path: string;
  direct: { firstMedian: number; firstP99: number; gapMedian: number; gapP99: number; events: number };
  proxy: { firstMedian: number; firstP99: number; gapMedian: number; gapP99: number; events: number };
  firstMedianDelta: number;
  firstP99Delta: number;
  gapMedianDelta: number;
  gapP99Delta: number;
  repetitions: number;
}

async function streaming(inst: Instances, creds: BenchCredentials): Promise<StreamStats[]> {
  const proxy = inst.ours.get(KEY_COUNTS[0])!;
  const auth = { Authorization: `Bearer ${validKey(creds, KEY_COUNTS[0])}` };
  const out: StreamStats[] = [];
  for (const kind of ["ndjson", "sse"] as StreamKind[]) {
    const samples: { direct: StreamSample[]; proxy: StreamSample[] } = { direct: [], proxy: [] };
    // Warm-up (connections, upstream keepalive), then alternate direct and proxy.
    for (let i = 0; i < 5; i++) {
      await streamOnce(inst.fake.url, kind, {});
      await streamOnce(proxy.url, kind, auth);
    }
    for (let i = 0; i < P.streamReps; i++) {
      if (i % 2 === 0) {
        samples.direct.push(await streamOnce(inst.fake.url, kind, {}));
        samples.proxy.push(await streamOnce(proxy.url, kind, auth));
      } else {
        samples.proxy.push(await streamOnce(proxy.url, kind, auth));
        samples.direct.push(await streamOnce(inst.fake.url, kind, {}));
      }
    }
    const summarize = (list: StreamSample[]) => {
      const firsts = list.map((s) => s.firstMs);
      const gaps = list.flatMap((s) => s.gapsMs);
      return {
        firstMedian: median(firsts),
        firstP99: quantile(firsts, 0.99),
        gapMedian: median(gaps),
        gapP99: quantile(gaps, 0.99),
        events: median(list.map((s) => s.events)),
      };
    };
    const direct = summarize(samples.direct);
    const viaProxy = summarize(samples.proxy);
    const stats: StreamStats = {
      kind,
      path: kind === "ndjson" ? "POST /api/generate" : "POST /v1/chat/completions (stream:true)",
      direct,
      proxy: viaProxy,
      firstMedianDelta: viaProxy.firstMedian - direct.firstMedian,
      firstP99Delta: viaProxy.firstP99 - direct.firstP99,
      gapMedianDelta: viaProxy.gapMedian - direct.gapMedian,
      gapP99Delta: viaProxy.gapP99 - direct.gapP99,
      repetitions: P.streamReps,
    };
    log(`streaming ${kind}: first event ${fmt(direct.firstMedian)} ms direct, ${fmt(viaProxy.firstMedian)} ms via gateway (p99 ${fmt(direct.firstP99)} / ${fmt(viaProxy.firstP99)}); gap median ${fmt(direct.gapMedian)} / ${fmt(viaProxy.gapMedian)} ms`);
    out.push(stats);
  }
  destroyAgents();
  return out;
}

// ---------------------------------------------------------------------------------------------
// Section 5: deployment side

interface DeployResult {
  render: { keys: number; validateMs: number; renderCredentialFilesMs: number; renderBundleAndWriteMs: number; apiKeysFileBytes: number; repetitions: number; error?: string };
  pulumi: { credentials: number; moduleLoadMs: number; evaluateMs: number; resources: number } | { skipped: string };
}

async function deployment(creds: BenchCredentials): Promise<DeployResult> {
  const count = Math.max(...KEY_COUNTS);
  const input = oursSpec("http://127.0.0.1:11434", 8080, { ...creds, basicUsers: [] }, count);
  const validate: number[] = [];
  const render: number[] = [];
  const whole: number[] = [];
  let bytes = 0;
  for (let i = 0; i < P.renderReps; i++) {
    let t = performance.now();
    const spec = validateSpec(input);
    validate.push(performance.now() - t);
    t = performance.now();
    const files = renderCredentialFiles(spec);
    render.push(performance.now() - t);
    bytes = Buffer.byteLength(files["credentials/api-keys"]);
    const dir = makePrefix("render");
    t = performance.now();
    writeBundle(dir, renderBundle(validateSpec(input), { flavor: "debian" }).files);
    whole.push(performance.now() - t);
    execFileSync("rm", ["-rf", dir]);
  }
  const result: DeployResult = {
    render: {
      keys: count,
      validateMs: median(validate),
      renderCredentialFilesMs: median(render),
      renderBundleAndWriteMs: median(whole),
      apiKeysFileBytes: bytes,
      repetitions: P.renderReps,
    },
    pulumi: { skipped: "not run" },
  };
  log(`render ${count} keys: validateSpec ${fmt(result.render.validateMs, 0)} ms, renderCredentialFiles ${fmt(result.render.renderCredentialFilesMs, 0)} ms, validate+render+write ${fmt(result.render.renderBundleAndWriteMs, 0)} ms`);
  const tsx = path.join(ROOT, "node_modules", ".bin", "tsx");
  const run = spawnSync(tsx, [path.join(BENCH_DIR, "pulumi-eval.ts"), String(P.pulumiCredentials)], { cwd: ROOT, encoding: "utf8", timeout: 240_000 });
  const line = run.stdout?.trim().split("\n").pop() ?? "";
  try {
    result.pulumi = JSON.parse(line);
    const p = result.pulumi as { evaluateMs: number; resources: number };
    log(`pulumi program under mocks with ${P.pulumiCredentials} API keys: ${fmt(p.evaluateMs, 0)} ms, ${p.resources} resources`);
  } catch {
    result.pulumi = { skipped: `bench/pulumi-eval.ts failed (status ${run.status}): ${(run.stderr || run.error?.message || "").slice(0, 500)}` };
    log(`pulumi evaluation skipped: ${(result.pulumi as { skipped: string }).skipped}`);
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Report

interface Target {
  name: string;
  target: string;
  measured: string;
  met: boolean;
}

function targets(agg: Aggregate[], ab: AbuseResult, st: StreamStats[]): Target[] {
  const get = (id: string) => agg.find((a) => a.id === id)!;
  const big = get(`ours-bearer-${Math.max(...KEY_COUNTS)}`);
  const basic = get("ours-basic");
  const list: Target[] = [
    { name: `Bearer throughput, ${Math.max(...KEY_COUNTS).toLocaleString("en-US")} keys`, target: "≥ 0.9 × plain proxy", measured: `${fmt(big.ratioToPlain, 3)} × plain`, met: big.ratioToPlain >= 0.9 },
    { name: "Basic (bcrypt cost 10) throughput, repeat caller", target: "≥ 0.9 × plain proxy", measured: `${fmt(basic.ratioToPlain, 3)} × plain`, met: basic.ratioToPlain >= 0.9 },
    { name: "legit p99 under the wrk flood (wrong keys + wrong passwords, one client address)", target: "≤ 2 × p99 without flood", measured: `${fmt(ab.p99Ratio.wrkFlood, 2)} × (${fmt(ab.median.wrkFlood.p99)} ms vs ${fmt(ab.median.alone.p99)} ms)`, met: ab.p99Ratio.wrkFlood <= 2 },
    { name: "legit p99 under the distributed bcrypt flood (256 client addresses; beyond the brief)", target: "≤ 2 × p99 without flood", measured: `${fmt(ab.p99Ratio.distributedFlood, 2)} × (${fmt(ab.median.distributedFlood.p99)} ms vs ${fmt(ab.median.alone.p99)} ms)`, met: ab.p99Ratio.distributedFlood <= 2 },
  ];
  for (const s of st) {
    list.push({ name: `${s.kind === "ndjson" ? "first NDJSON line" : "first SSE event"}, median`, target: "proxy − direct ≤ 5 ms", measured: `${fmt(s.firstMedianDelta)} ms`, met: s.firstMedianDelta <= 5 });
    list.push({ name: `${s.kind === "ndjson" ? "first NDJSON line" : "first SSE event"}, p99`, target: "proxy − direct ≤ 5 ms", measured: `${fmt(s.firstP99Delta)} ms`, met: s.firstP99Delta <= 5 });
    list.push({ name: `${s.kind === "ndjson" ? "NDJSON" : "SSE"} inter-chunk gap, median / p99`, target: "proxy − direct ≤ 5 ms", measured: `${fmt(s.gapMedianDelta)} / ${fmt(s.gapP99Delta)} ms`, met: s.gapMedianDelta <= 5 && s.gapP99Delta <= 5 });
  }
  return list;
}

function markdown(data: {
  machine: ReturnType<typeof machine>;
  command: string;
  quick: boolean;
  wallSeconds: number;
  agg: Aggregate[];
  ab: AbuseResult;
  st: StreamStats[];
  dep: DeployResult;
  targets: Target[];
}): string {
  const { machine: m, agg, ab, st, dep } = data;
  const yes = (met: boolean) => (met ? "**met**" : "**missed**");
  const row = (cells: (string | number)[]) => `| ${cells.join(" | ")} |`;
  const lines: string[] = [];
  lines.push("# ollama-gateway benchmark results", "");
  if (data.quick) lines.push("> **BENCH_QUICK=1 smoke run**: one round of short runs; numbers are indicative only.", "");
  lines.push(
    `Command: \`${data.command}\`, run ${m.date}, took ${fmt(data.wallSeconds, 0)} s.`,
    "",
    `Machine: ${m.nproc} CPUs (\`nproc\`), ${m.cpuModel}, ${m.memoryGiB} GiB, Linux ${m.kernel}; ${m.nginx}, ${m.luaModule}; ${m.wrk}; Node ${m.node}. Load average at start: ${m.loadAverageAtStart.join(", ")}.`,
    "",
    "Everything (wrk, nginx, the Node stand-in for Ollama) shares these CPUs, so absolute numbers are",
    "low and noisy; the **ratios** are the result. Each nginx has `worker_processes 1`. Configurations run",
    `in alternation, ${P.rounds} round(s), order rotated every round; numbers are medians over rounds, and each ratio`,
    "is the median of per-round ratios against the plain proxy measured in the same round.",
    "",
    "## Targets",
    "",
    row(["What", "Target", "Measured", "Result"]),
    row(["---", "---", "---", "---"]),
    ...data.targets.map((t) => row([t.name, t.target, t.measured, yes(t.met)])),
    "",
  );

  const table = (rows: Aggregate[]) => [
    row(["Configuration", "req/s", "× plain", "p50 ms", "p75 ms", "p90 ms", "p99 ms", "p50 × plain", "p99 × plain", "non-2xx", "run"]),
    row(["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---"]),
    ...rows.map((a) =>
      row([
        a.label,
        fmt(a.median.requestsPerSecond, 0),
        fmt(a.ratioToPlain, 3),
        fmt(a.median.p50),
        fmt(a.median.p75),
        fmt(a.median.p90),
        fmt(a.median.p99),
        fmt(a.p50RatioToPlain, 2),
        fmt(a.p99RatioToPlain, 2),
        String(a.non2xx),
        `${a.seconds} s × ${a.rounds.length}`,
      ]),
    ),
  ];

  lines.push(
    "## 1. Overhead: `GET /api/version`",
    "",
    `wrk \`-t${LOAD.threads} -c${LOAD.connections} --latency\`, every caller valid. Basic is one user among ${BASIC_USERS.toLocaleString("en-US")}, bcrypt cost 10,`,
    "the same caller repeating (its verified password is cached in a shared dict after the first bcrypt).",
    "",
    ...table(agg.filter((a) => a.section === "overhead")),
    "",
    "![latency](latency.png)",
    "",
    "## 2. Scaling with the number of credentials (Bearer)",
    "",
    "The naive proxy is the plain proxy plus an `access_by_lua_block` that opens the plain key file and",
    "compares the token with each line on every request (`bench/conf/naive-access.lua`). The caller's key is",
    `the middle line (a wrong key scans the whole file: twice the cost). Naive runs with ${NAIVE_SLOW_FROM.toLocaleString("en-US")}+ keys last`,
    `${P.naiveSlowSeconds} s. The gateway instances also hold ${BASIC_USERS.toLocaleString("en-US")} Basic users.`,
    "",
    ...table(
      agg
        .filter((a) => a.series !== undefined || a.id === "plain")
        .sort((x, y) => (x.series ?? "").localeCompare(y.series ?? "") || (x.credentials ?? 0) - (y.credentials ?? 0)),
    ),
    "",
    "![throughput vs credentials](throughput-vs-credentials.png)",
    "",
  );

  lines.push(
    "## 3. Abuse: a legitimate caller during a wrong-credential flood",
    "",
    `Legitimate caller: \`${ab.legitCommand}\` (valid Bearer key; each connection pauses ${LEGIT.delayMs} ms between requests, which wrk does not count as latency).`,
    "Three conditions, alternating every round (order rotated), each flood started 1 s before the caller:",
    "",
    "- **alone**: no flood;",
    `- **wrk flood** (the brief's test): \`${ab.floodCommand}\` with \`BENCH_FLOOD_USER=<an existing user>\`, alternating wrong Bearer keys`,
    "  and wrong Basic passwords, every one different. It connects from 127.0.0.1 only, so after 20 failed Basic attempts in a minute",
    "  the gateway answers its Basic attempts 429 without bcrypt: the flood is cheap for the gateway.",
    `- **distributed bcrypt flood** (added, the worst case): ${ab.distributedFlood}. Each address gets its 20`,
    "  bcrypt verifications a minute, enough to keep the bcrypt thread pool busy the whole run.",
    "",
    row(["Condition", "legit p50 ms", "legit p90 ms", "legit p99 ms", "p99 × alone", "legit req/s", "flood req/s", "worker event loop CPU", "bcrypt pool CPU"]),
    row(["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:"]),
    row(["alone", fmt(ab.median.alone.p50), fmt(ab.median.alone.p90), fmt(ab.median.alone.p99), "1", fmt(ab.median.alone.requestsPerSecond, 0), "–", pct(ab.median.alone.workerEventLoopCpu), pct(ab.median.alone.workerThreadPoolCpu)]),
    row(["wrk flood", fmt(ab.median.wrkFlood.p50), fmt(ab.median.wrkFlood.p90), fmt(ab.median.wrkFlood.p99), `**${fmt(ab.p99Ratio.wrkFlood, 2)}**`, fmt(ab.median.wrkFlood.requestsPerSecond, 0), fmt(ab.wrkFloodRequestsPerSecond, 0), pct(ab.median.wrkFlood.workerEventLoopCpu), pct(ab.median.wrkFlood.workerThreadPoolCpu)]),
    row(["distributed bcrypt flood", fmt(ab.median.distributedFlood.p50), fmt(ab.median.distributedFlood.p90), fmt(ab.median.distributedFlood.p99), `**${fmt(ab.p99Ratio.distributedFlood, 2)}**`, fmt(ab.median.distributedFlood.requestsPerSecond, 0), fmt(ab.distributedFloodRequestsPerSecond, 0), pct(ab.median.distributedFlood.workerEventLoopCpu), pct(ab.median.distributedFlood.workerThreadPoolCpu)]),
    "",
    "Values are medians over rounds; \"p99 × alone\" is the median of per-round ratios. CPU columns: the gateway worker's CPU time",
    `during the legitimate caller's run, as a share of one CPU (100% = one of the machine's ${data.machine.nproc} CPUs fully used), split into nginx's event-loop`,
    "thread and the bcrypt thread pool (from /proc/<worker>/task/*/stat).",
    `The wrk flood got ${ab.wrkFloodNon2xx.toLocaleString("en-US")} non-2xx of ${ab.wrkFloodRequests.toLocaleString("en-US")} responses (all should be). Distributed flood answers: ${Object.entries(ab.distributedFloodStatuses).map(([k, v]) => `${k} × ${v.toLocaleString("en-US")}`).join(", ")}.`,
    `The gateway's access log for this section, by status: ${Object.entries(ab.accessLogStatuses).map(([k, v]) => `${k} × ${v.toLocaleString("en-US")}`).join(", ")} (401: wrong key or password; 429: address over 20 failed Basic attempts a minute, no bcrypt; 503: bcrypt queue full).`,
    `The legitimate caller got ${ab.legitNon2xx} non-2xx responses.`,
    "",
    "Per round:",
    "",
    row(["round", "p99 alone ms", "p99 wrk flood ms", "p99 distributed ms", "wrk flood req/s", "distributed req/s"]),
    row(["---", "---:", "---:", "---:", "---:", "---:"]),
    ...ab.rounds.map((r, i) => row([i + 1, fmt(r.legit.alone.p99), fmt(r.legit.wrkFlood.p99), fmt(r.legit.distributedFlood.p99), fmt(r.wrkFlood.requestsPerSecond, 0), fmt(r.distributedFlood.requests / r.distributedFlood.seconds, 0)])),
    "",
  );

  lines.push(
    "## 4. Streaming: time to first line/event and inter-chunk gaps",
    "",
    `Node client (keep-alive), ${st[0]?.repetitions ?? 0} streams per path and route, direct and via the gateway alternating. The stand-in`,
    `sends ${STREAM.chunks} content chunks ${STREAM.chunkIntervalMs} ms apart plus a final one, with no model-load delay, so the direct first event is`,
    "almost immediate and any buffering in the proxy would show as tens of ms.",
    "",
    row(["Stream", "first event direct p50 / p99 ms", "via gateway p50 / p99 ms", "Δ p50 / Δ p99 ms", "gap direct p50 / p99 ms", "gap via gateway p50 / p99 ms", "Δ gap p50 / p99 ms"]),
    row(["---", "---:", "---:", "---:", "---:", "---:", "---:"]),
    ...st.map((s) =>
      row([
        s.path,
        `${fmt(s.direct.firstMedian)} / ${fmt(s.direct.firstP99)}`,
        `${fmt(s.proxy.firstMedian)} / ${fmt(s.proxy.firstP99)}`,
        `${fmt(s.firstMedianDelta)} / ${fmt(s.firstP99Delta)}`,
        `${fmt(s.direct.gapMedian)} / ${fmt(s.direct.gapP99)}`,
        `${fmt(s.proxy.gapMedian)} / ${fmt(s.proxy.gapP99)}`,
        `${fmt(s.gapMedianDelta)} / ${fmt(s.gapP99Delta)}`,
      ]),
    ),
    "",
  );

  const pulumi = dep.pulumi;
  lines.push(
    "## 5. Deployment side",
    "",
    row(["Step", "ms (median)", "notes"]),
    row(["---", "---:", "---"]),
    row([`\`validateSpec\` with ${dep.render.keys.toLocaleString("en-US")} \`keySha256\` keys`, fmt(dep.render.validateMs, 0), `${dep.render.repetitions} repetition(s)`]),
    row([`\`renderCredentialFiles\` (${dep.render.keys.toLocaleString("en-US")} keys)`, fmt(dep.render.renderCredentialFilesMs, 0), `api-keys file ${fmt(dep.render.apiKeysFileBytes / 2 ** 20, 1)} MiB`]),
    row(["validate + `renderBundle` + `writeBundle` into a fresh directory", fmt(dep.render.renderBundleAndWriteMs, 0), "what `npm run render` does, minus reading the JSON"]),
    "skipped" in pulumi
      ? row(["Pulumi program under mocks", "skipped", pulumi.skipped.replaceAll("|", "\\|").replaceAll("\n", " ")])
      : row([
          `Pulumi program (\`index.ts\`) under mocks, ${pulumi.credentials.toLocaleString("en-US")} API keys`,
          fmt(pulumi.evaluateMs, 0),
          `${pulumi.resources} resources registered; loading the libraries first took ${fmt(pulumi.moduleLoadMs, 0)} ms (not included)`,
        ]),
    "",
    ...(dep.render.error ? [`**The render step failed in this run:** ${dep.render.error}`, ""] : []),
    "## Files",
    "",
    "`results.json` (every round's numbers), `throughput-vs-credentials.png`/`.svg`, `latency.png`/`.svg`.",
    "",
  );
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const started = performance.now();
  const command = QUICK ? "BENCH_QUICK=1 npm run bench" : "npm run bench";
  for (const tool of ["nginx", "wrk"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0)
      throw new Error(`${tool} is missing: sudo apt-get install -y nginx libnginx-mod-http-lua wrk`);
  }
  const info = machine();
  log(`${QUICK ? "QUICK " : ""}run on ${info.nproc} CPUs (${info.cpuModel}), ${info.nginx}`);
  const creds = makeCredentials(Math.max(...KEY_COUNTS));
  const started_: Running[] = [];
  const stopAll = async () => {
    for (const p of started_.reverse()) await p.stop().catch(() => undefined);
  };
  process.once("SIGINT", () => void stopAll().then(() => process.exit(130)));
  try {
    const fake = await startFakeOllamaProcess(STREAM);
    started_.push(fake);
    const plain = await startPlain(fake.url);
    started_.push(plain);
    const ours = new Map<number, Running>();
    const naive = new Map<number, Running>();
    for (const count of KEY_COUNTS) {
      const o = await startOurs(fake.url, creds, count);
      started_.push(o);
      ours.set(count, o);
      const n = await startNaive(fake.url, creds, count);
      started_.push(n);
      naive.set(count, n);
    }
    const inst: Instances = { fake, plain, ours, naive, all: started_ };
    log(`started ${started_.length} processes (stand-in, plain, ${KEY_COUNTS.length} gateway and ${KEY_COUNTS.length} naive nginx instances)`);

    const agg = await throughput(inst, creds);
    const ab = await abuse(inst, creds);
    const st = await streaming(inst, creds);
    await stopAll();
    started_.length = 0;
    // A failure here (e.g. the renderer mid-edit in the working tree) must not lose the sections above.
    const dep: DeployResult = await deployment(creds).catch((error: Error) => {
      log(`deployment section failed: ${error.message}`);
      return {
        render: { keys: Math.max(...KEY_COUNTS), validateMs: Number.NaN, renderCredentialFilesMs: Number.NaN, renderBundleAndWriteMs: Number.NaN, apiKeysFileBytes: 0, repetitions: 0, error: error.message },
        pulumi: { skipped: `not run: the render step failed first (${error.message})` },
      };
    });

    const wallSeconds = (performance.now() - started) / 1000;
    const tg = targets(agg, ab, st);
    mkdirSync(RESULTS_DIR, { recursive: true });
    const json = { command, quick: QUICK, machine: info, parameters: { ...P, load: LOAD, legit: LEGIT, flood: FLOOD, keyCounts: KEY_COUNTS, basicUsers: BASIC_USERS, stream: STREAM }, wallSeconds, targets: tg, throughput: agg, abuse: ab, streaming: st, deployment: dep };
    writeFileSync(path.join(RESULTS_DIR, "results.json"), `${JSON.stringify(json, (_k, v) => (typeof v === "number" ? round(v, 3) : v), 2)}\n`);
    writeFileSync(path.join(RESULTS_DIR, "results.md"), markdown({ machine: info, command, quick: QUICK, wallSeconds, agg, ab, st, dep, targets: tg }));

    const plainRps = agg.find((a) => a.id === "plain")!.median.requestsPerSecond;
    const points: ScalingPoint[] = [
      ...agg.filter((a) => a.series && a.credentials).map((a) => ({ credentials: a.credentials!, series: a.series!, requestsPerSecond: a.median.requestsPerSecond })),
      ...KEY_COUNTS.map((count) => ({ credentials: count, series: "plain proxy, no auth (reference)", requestsPerSecond: plainRps })),
    ];
    const subtitle = `${info.nproc} CPUs ${info.cpuModel}; wrk -t${LOAD.threads} -c${LOAD.connections}; ${QUICK ? "QUICK run" : `median of ${P.rounds} rounds`}; ${info.date.slice(0, 10)}`;
    await plotScaling(points, path.join(RESULTS_DIR, "throughput-vs-credentials.png"), subtitle);
    const bars: LatencyBar[] = agg
      .filter((a) => a.section === "overhead" || a.id === `ours-bearer-${Math.max(...KEY_COUNTS)}` || a.id === "naive-1000")
      .flatMap((a) => (["p50", "p90", "p99"] as const).map((p) => ({ configuration: a.label, percentile: p, ms: round(a.median[p], 3) })));
    bars.push(
      ...(["p50", "p90", "p99"] as const).flatMap((p) => [
        { configuration: "abuse: legit caller alone", percentile: p, ms: round(ab.median.alone[p], 3) },
        { configuration: "abuse: legit under wrk flood", percentile: p, ms: round(ab.median.wrkFlood[p], 3) },
        { configuration: "abuse: legit under distributed bcrypt flood", percentile: p, ms: round(ab.median.distributedFlood[p], 3) },
      ]),
    );
    await plotLatency(bars, path.join(RESULTS_DIR, "latency.png"), "Latency per configuration (GET /api/version)", subtitle);

    log(`done in ${fmt(wallSeconds, 0)} s; results in ${path.relative(ROOT, RESULTS_DIR)}/`);
    for (const t of tg) log(`${t.met ? "MET   " : "MISSED"} ${t.name}: ${t.measured} (target ${t.target})`);
  } finally {
    await stopAll();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
