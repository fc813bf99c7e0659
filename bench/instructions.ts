/**
 * `npm run bench:instructions`: CPU instructions per request, counted by valgrind's callgrind,
 * for the plain proxy, the gateway (Bearer at 10 and 100,000 keys, X-API-Key, Basic repeat
 * caller) and the naive key-file proxy. Instruction counts do not depend on machine load, so
 * this decides what wrk on a shared machine cannot: how much more CPU per request the gateway
 * spends than the plain proxy. See bench/README.md.
 *
 * Each nginx runs as ONE process under callgrind (`-g "daemon off; master_process off;"`, so
 * the worker is the process valgrind watches); the stand-in Ollama runs natively. Per
 * configuration: W warm-up requests, `callgrind_control --zero`, then two measured segments of
 * N sequential keep-alive requests each, each ended by `callgrind_control --dump`. A segment's
 * instruction total divided by N is one estimate; the two estimates show the repeatability.
 *
 * Options (all optional):
 *   --requests N     measured requests per segment (default 2000)
 *   --warmup W       warm-up requests (default 200)
 *   --only a,b       configuration ids to run (plain, ours-bearer-10, ours-bearer-100000,
 *                    ours-x-api-key, ours-basic, naive-1000; with --governance: plain, baseline,
 *                    no-accounting, default, on, stream-no-accounting, stream-default, stream-on)
 *   --lua-dir DIR    copy DIR/*.lua over the bundle's lua/gateway/ (bisecting a scratch copy)
 *   --conf-dir DIR   copy DIR/*.conf over the bundle's conf/ (the same, for the nginx config)
 *   --keep DIR       keep the callgrind files (for callgrind_annotate) in DIR
 *   --no-write       print only; do not write bench/results/instructions.md
 *   --usage-module SO  the gateway with the C token-accounting filter (scripts/build-usage-module.sh
 *                    prints SO) instead of the Lua one; the "no accounting" variant has neither
 * A run with --only, --lua-dir or --conf-dir never writes the results file.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { renderBundle } from "../bundle/render";
import { validateSpec } from "../bundle/spec";
import { writeBundle } from "../bundle/write";
import { BASIC_USERS, basicHeader, type BenchCredentials, makeCredentials, validKey } from "./lib/credentials";
import { BENCH_DIR, freePort, makePrefix, ROOT, type Running, startFakeOllamaProcess, startNginx } from "./lib/procs";
import { governanceOn, oursSpec, writeNaiveConf, writePlainConf } from "./suites/instances";

const { values: args } = parseArgs({
  options: {
    requests: { type: "string", default: "2000" },
    warmup: { type: "string", default: "200" },
    only: { type: "string" },
    "lua-dir": { type: "string" },
    "conf-dir": { type: "string" },
    keep: { type: "string" },
    "no-write": { type: "boolean", default: false },
    governance: { type: "boolean", default: false },
    "stream-chunks": { type: "string", default: "10000" },
    "stream-warmup": { type: "string", default: "200" },
    baseline: { type: "string" },
    "usage-module": { type: "string" },
  },
});
const N = Number(args.requests);
const WARMUP = Number(args.warmup);
const ONLY = args.only ? new Set(args.only.split(",")) : undefined;
const LUA_DIR = args["lua-dir"] ? path.resolve(args["lua-dir"]) : undefined;
const CONF_DIR = args["conf-dir"] ? path.resolve(args["conf-dir"]) : undefined;
const USAGE_MODULE = args["usage-module"] ? path.resolve(args["usage-module"]) : undefined;
const KEEP = args.keep ? path.resolve(args.keep) : undefined;
const WRITE = !args["no-write"] && !ONLY && !LUA_DIR && !CONF_DIR;
/** `--governance`: the issue-16 comparison instead (bench/results/governance.md). */
const GOVERNANCE = args.governance;
const STREAM_CHUNKS = Number(args["stream-chunks"]);
/**
 * Non-streamed /api/generate requests per gateway before its streams are measured: they run the
 * per-request Lua (access, governance, log phase) often enough for LuaJIT to compile its hot
 * loops, which a handful of measured streams would otherwise pay for as a one-off.
 */
const STREAM_WARMUP = Number(args["stream-warmup"]);
/** Streams per gateway in each measured segment (`--governance`). */
const STREAMS_PER_SEGMENT = 4;
/** `--baseline DIR`: a checkout of the gateway before issue 16 (with node_modules), measured alongside. */
const BASELINE = args.baseline ? path.resolve(args.baseline) : undefined;

const RESULTS_FILE = path.join(BENCH_DIR, "results", "instructions.md");
const REQUEST_PATH = "/api/version";

const log = (message: string) => console.log(`[instructions ${new Date().toISOString().slice(11, 19)}] ${message}`);
const fmt = (value: number, digits = 0) => value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });


// ---------------------------------------------------------------------------------------------
// Instances: a prefix directory, then nginx as a single process under callgrind

interface Instance {
  id: string;
  /** Prepares conf/nginx.conf (and the rest) in `dir` listening on `port`. */
  prepare(dir: string, port: number, upstream: string): void;
}

const plainInstance: Instance = { id: "plain", prepare: (dir, port, upstream) => writePlainConf(dir, port, upstream) };

function naiveInstance(creds: BenchCredentials, count: number): Instance {
  return { id: `naive-${count}`, prepare: (dir, port, upstream) => writeNaiveConf(dir, port, upstream, creds, count) };
}

/**
 * Governance variants (issue 16): * `on` = metrics, request limits, maxConcurrent and a model list on every key;
 * `no-accounting` = the body filter and the log phase taken out of the rendered config (no token
 * accounting, no metrics, no slot release: the nearest this tree gets to the gateway before it).
 */
type GovernanceVariant = "default" | "on" | "no-accounting";

function oursInstance(creds: BenchCredentials, count: number, variant: GovernanceVariant = "default", metricsPort = 0): Instance {
  return {
    id: `ours-${count}${variant === "default" ? "" : `-${variant}`}`,
    prepare(dir, port, upstream) {
      const base = oursSpec(upstream, port, creds, count);
      const spec = variant === "on" ? governanceOn(base, metricsPort) : base;
      const usageModule = variant === "no-accounting" ? undefined : USAGE_MODULE;
      const files = renderBundle(validateSpec(spec), { flavor: "debian", usageModule }).files;
      if (variant === "no-accounting") {
        for (const file of ["conf/gateway-locations.conf", "conf/gateway-common.conf"])
          files[file] = files[file].replace(/^\s*(body_filter|log)_by_lua_block \{(.*\}$|[\s\S]*?^\}$)/gm, "");
      }
      writeBundle(dir, files);
      if (LUA_DIR) {
        for (const file of readdirSync(LUA_DIR).filter((f) => f.endsWith(".lua") && f !== "config.lua" && f !== "routes.lua")) {
          copyFileSync(path.join(LUA_DIR, file), path.join(dir, "lua", "gateway", file));
        }
      }
      if (CONF_DIR) {
        for (const file of readdirSync(CONF_DIR).filter((f) => f.endsWith(".conf"))) copyFileSync(path.join(CONF_DIR, file), path.join(dir, "conf", file));
      }
    },
  };
}

interface Callgrind {
  running: Running;
  child: ChildProcess;
  outBase: string;
  dumps: number;
}

async function waitForPort(port: number, child: ChildProcess, describe: () => string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`valgrind/nginx exited (${child.exitCode ?? child.signalCode}):\n${describe()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const req = http.get({ host: "127.0.0.1", port, path: "/__instructions_probe", agent: false }, (res) => {
        res.resume();
        res.on("end", () => resolve(true));
      });
      req.on("error", () => resolve(false));
      req.setTimeout(30_000, () => req.destroy());
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`nginx under callgrind did not answer on ${port} within ${timeoutMs} ms:\n${describe()}`);
}

async function startUnderCallgrind(instance: Instance, upstream: string): Promise<Callgrind> {
  const port = await freePort();
  const dir = makePrefix(`instr-${instance.id}`);
  instance.prepare(dir, port, upstream);
  for (const sub of ["logs", "tmp"]) mkdirSync(path.join(dir, sub), { recursive: true });
  const outBase = path.join(dir, "callgrind.out");
  const child = spawn(
    "valgrind",
    [
      "--tool=callgrind",
      `--callgrind-out-file=${outBase}`,
      "nginx",
      "-p",
      `${dir}/`,
      "-c",
      "conf/nginx.conf",
      "-e",
      "logs/error.log",
      "-g",
      "daemon off; master_process off;",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output = (output + d).slice(-20_000)));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const errorLog = () => {
    const file = path.join(dir, "logs", "error.log");
    return (existsSync(file) ? readFileSync(file, "utf8").slice(-4000) : "") + output.slice(-4000);
  };
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(child.pid!, "SIGQUIT");
      const timer = setTimeout(() => {
        if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, "SIGKILL");
      }, 60_000);
      await exited;
      clearTimeout(timer);
    }
    if (KEEP) {
      mkdirSync(KEEP, { recursive: true });
      for (const f of readdirSync(dir).filter((f) => f.startsWith("callgrind.out"))) copyFileSync(path.join(dir, f), path.join(KEEP, `${instance.id}.${f}`));
      for (const f of ["error.log"]) if (existsSync(path.join(dir, "logs", f))) copyFileSync(path.join(dir, "logs", f), path.join(KEEP, `${instance.id}.${f}`));
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForPort(port, child, errorLog, 900_000);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    running: { name: instance.id, url: `http://127.0.0.1:${port}`, port, pid: child.pid!, dir, busyPids: () => [child.pid!], stop },
    child,
    outBase,
    dumps: 0,
  };
}

function callgrindControl(cg: Callgrind, option: "--zero" | "--dump"): void {
  execFileSync("callgrind_control", [option, String(cg.running.pid)], { encoding: "utf8", timeout: 120_000, stdio: ["ignore", "pipe", "pipe"] });
}

/** Instructions (Ir) in the newest dump file. */
function dumpTotal(cg: Callgrind, label: string): { file: string; instructions: number } {
  cg.dumps += 1;
  const file = `${cg.outBase}.${cg.dumps}`;
  if (!existsSync(file)) throw new Error(`callgrind dump ${file} missing after ${label}`);
  const text = readFileSync(file, "utf8");
  const totals = /^totals:\s+(\d+)/m.exec(text) ?? /^summary:\s+(\d+)/m.exec(text);
  if (!totals) throw new Error(`no totals in ${file}`);
  return { file, instructions: Number(totals[1]) };
}

// ---------------------------------------------------------------------------------------------
// The client: sequential requests on one keep-alive connection

async function sendRequests(url: string, headers: Record<string, string>, count: number): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const target = new URL(REQUEST_PATH, url);
  try {
    for (let i = 0; i < count; i++) {
      const status = await new Promise<number>((resolve, reject) => {
        const req = http.get({ host: target.hostname, port: target.port, path: target.pathname, headers, agent }, (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        });
        req.on("error", reject);
        req.setTimeout(120_000, () => req.destroy(new Error("request timed out")));
      });
      if (status !== 200) throw new Error(`request ${i} to ${target} answered ${status}`);
    }
  } finally {
    agent.destroy();
  }
}

interface Measurement {
  id: string;
  label: string;
  instance: string;
  segments: number[];
  perRequest: number;
}

async function measure(cg: Callgrind, id: string, label: string, headers: Record<string, string>): Promise<Measurement> {
  log(`${id}: ${WARMUP} warm-up requests`);
  await sendRequests(cg.running.url, headers, WARMUP);
  callgrindControl(cg, "--dump");
  dumpTotal(cg, "warm-up");
  const segments: number[] = [];
  for (let s = 0; s < 2; s++) {
    await sendRequests(cg.running.url, headers, N);
    callgrindControl(cg, "--dump");
    const { instructions } = dumpTotal(cg, `segment ${s + 1}`);
    segments.push(instructions / N);
    log(`${id}: segment ${s + 1}: ${fmt(instructions)} instructions / ${N} requests = ${fmt(instructions / N)} per request`);
  }
  return { id, label, instance: cg.running.name, segments, perRequest: (segments[0] + segments[1]) / 2 };
}

// ---------------------------------------------------------------------------------------------

function machine() {
  const cpuModel = /model name\s*:\s*(.*)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "unknown";
  const version = (cmd: string, argv: string[]) => {
    const out = spawnSync(cmd, argv, { encoding: "utf8" });
    return `${out.stdout ?? ""}${out.stderr ?? ""}`.split("\n")[0].trim();
  };
  let luaModule = "unknown";
  try {
    luaModule = execFileSync("dpkg-query", ["-W", "-f=${Version}", "libnginx-mod-http-lua"], { encoding: "utf8" }).trim();
  } catch {
    /* not a Debian package */
  }
  let luajit = "unknown";
  try {
    luajit = execFileSync("dpkg-query", ["-W", "-f=${Package} ${Version}", "libluajit2-5.1-2"], { encoding: "utf8" }).trim();
  } catch {
    try {
      luajit = execFileSync("dpkg-query", ["-W", "-f=${Package} ${Version}", "libluajit-5.1-2"], { encoding: "utf8" }).trim();
    } catch {
      /* unknown */
    }
  }
  return {
    nproc: Number(execFileSync("nproc", { encoding: "utf8" }).trim()),
    cpuModel,
    kernel: os.release(),
    nginx: version("nginx", ["-v"]),
    luaModule: `libnginx-mod-http-lua ${luaModule}`,
    luajit,
    valgrind: version("valgrind", ["--version"]),
    node: process.version,
    date: new Date().toISOString(),
  };
}

/** The gateway as the `--baseline` checkout renders it (its own renderer, templates and Lua). */
async function baselineInstance(creds: BenchCredentials, dir: string): Promise<Instance> {
  const render = (await import(path.join(dir, "bundle", "render.ts"))) as typeof import("../bundle/render");
  const spec = (await import(path.join(dir, "bundle", "spec.ts"))) as typeof import("../bundle/spec");
  const write = (await import(path.join(dir, "bundle", "write.ts"))) as typeof import("../bundle/write");
  return {
    id: "baseline",
    prepare(prefix, port, upstream) {
      // The same spec as ours, through the baseline's own schema and renderer.
      const input = oursSpec(upstream, port, creds, 10);
      write.writeBundle(prefix, render.renderBundle(spec.validateSpec(input), { flavor: "debian" }).files);
    },
  };
}

/** One streamed /api/generate of STREAM_CHUNKS chunks (or, with `stream: false`, its one answer), read to its end; checks the final line. */
function streamOnce(url: string, headers: Record<string, string>, stream = true): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL("/api/generate", url), { method: "POST", headers: { ...headers, "Content-Type": "application/json" }, agent: false }, (res) => {
      let tail = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (tail = (tail + d).slice(-2000)));
      res.on("end", () => (res.statusCode === 200 && tail.includes('"done":true') ? resolve() : reject(new Error(`stream answered ${res.statusCode}: ${tail}`))));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.setTimeout(600_000, () => req.destroy(new Error("stream timed out")));
    req.end(JSON.stringify({ model: "gemma3:1b", prompt: "Why is the sky blue?", ...(stream ? {} : { stream: false }) }));
  });
}

/**
 * Instructions per stream, for several gateways at once: STREAM_WARMUP non-streamed requests and 1 warm-up stream each, then two
 * segments of `count` streams each, taken in turn (one stream per gateway per round), so that
 * machine load, which changes how many lines nginx reads at once and so its work per line, falls
 * on every gateway alike.
 */
async function measureStreams(running: { cg: Callgrind; id: string; label: string }[], headers: Record<string, string>, count: number): Promise<Measurement[]> {
  for (const { cg } of running) {
    for (let i = 0; i < STREAM_WARMUP; i++) await streamOnce(cg.running.url, headers, false);
    await streamOnce(cg.running.url, headers);
    callgrindControl(cg, "--dump");
    dumpTotal(cg, "warm-up");
  }
  const segments = running.map(() => [] as number[]);
  for (let s = 0; s < 2; s++) {
    for (let i = 0; i < count; i++) for (const { cg } of running) await streamOnce(cg.running.url, headers);
    for (const [k, { cg, id }] of running.entries()) {
      callgrindControl(cg, "--dump");
      const { instructions } = dumpTotal(cg, `segment ${s + 1}`);
      segments[k].push(instructions / count);
      log(`${id}: segment ${s + 1}: ${fmt(instructions / count)} instructions per ${fmt(STREAM_CHUNKS)}-chunk stream`);
    }
  }
  return running.map(({ cg, id, label }, k) => ({ id, label, instance: cg.running.name, segments: segments[k], perRequest: (segments[k][0] + segments[k][1]) / 2 }));
}

/** Time to the first NDJSON line through two gateways, alternating, natively (not under valgrind). */
async function firstChunkMs(urls: Record<string, string>, headers: Record<string, string>, samples: number): Promise<Record<string, number>> {
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(urls).map((k) => [k, []]));
  for (let i = 0; i < samples; i++) {
    for (const [name, url] of Object.entries(urls)) {
      times[name].push(
        await new Promise<number>((resolve, reject) => {
          const started = performance.now();
          const req = http.request(new URL("/api/generate", url), { method: "POST", headers: { ...headers, "Content-Type": "application/json" }, agent: false }, (res) => {
            let first = 0;
            res.on("data", () => (first ||= performance.now() - started));
            res.on("end", () => resolve(first));
            res.on("error", reject);
          });
          req.on("error", reject);
          req.end(JSON.stringify({ model: "gemma3:1b", prompt: "hi" }));
        }),
      );
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  return Object.fromEntries(Object.entries(times).map(([k, xs]) => [k, median(xs)]));
}

/** `--governance`: what issue 16's Performance section asks, written to bench/results/governance.md. */
async function governanceMain(): Promise<void> {
  const started = performance.now();
  const info = machine();
  const creds = makeCredentials(10);
  const headers = { Authorization: `Bearer ${validKey(creds, 10)}` };
  const metricsPort = await freePort();
  const results: Measurement[] = [];
  const fake = await startFakeOllamaProcess({ chunks: 10, chunkIntervalMs: 10 });
  try {
    const baseline = BASELINE ? [[await baselineInstance(creds, BASELINE), "baseline", "gateway before issue 16 (--baseline)"] as const] : [];
    for (const [instance, id, label] of [
      [plainInstance, "plain", "plain proxy, no auth"],
      ...baseline,
      [oursInstance(creds, 10, "no-accounting"), "no-accounting", "gateway, no body filter and no log phase"],
      [oursInstance(creds, 10), "default", "gateway as rendered, governance settings off"],
      [oursInstance(creds, 10, "on", metricsPort), "on", "gateway, metrics + limits + maxConcurrent + models on"],
    ] as const) {
      if (ONLY && !ONLY.has(id)) continue;
      const cg = await startUnderCallgrind(instance, fake.url);
      try {
        results.push(await measure(cg, id, `${label}: GET ${REQUEST_PATH}`, id === "plain" ? {} : headers));
      } finally {
        await cg.running.stop();
      }
    }
  } finally {
    await fake.stop();
  }
  const streams: Measurement[] = [];
  let ttft: Record<string, number> = {};
  // --stream-chunks 0: the per-request part only.
  if (STREAM_CHUNKS > 0) {
    const streamFake = await startFakeOllamaProcess({ chunks: STREAM_CHUNKS, chunkIntervalMs: 0 });
    try {
      const running: { cg: Callgrind; id: string; label: string }[] = [];
      try {
        for (const [variant, label] of [
          ["no-accounting", "without accounting"],
          ["default", "with accounting, governance settings off"],
          ["on", "with accounting, metrics, limits"],
        ] as const) {
          if (ONLY && !ONLY.has(`stream-${variant}`)) continue;
          const cg = await startUnderCallgrind(oursInstance(creds, 10, variant, metricsPort), streamFake.url);
          running.push({ cg, id: variant, label: `${fmt(STREAM_CHUNKS)}-chunk /api/generate stream, ${label}` });
        }
        streams.push(...(await measureStreams(running, headers, STREAMS_PER_SEGMENT)));
      } finally {
        for (const { cg } of running) await cg.running.stop();
      }
    } finally {
      await streamFake.stop();
    }
    // Time to the first streamed line, natively: both gateways in front of one stand-in.
    const ttftFake = await startFakeOllamaProcess({ chunks: 5, chunkIntervalMs: 1 });
    const running: Running[] = [];
    try {
      for (const variant of ["no-accounting", "on"] as const) {
        const port = await freePort();
        const dir = makePrefix(`ttft-${variant}`);
        oursInstance(creds, 10, variant, await freePort()).prepare(dir, port, ttftFake.url);
        running.push(await startNginx(variant, dir, port));
      }
      ttft = await firstChunkMs({ "no-accounting": running[0].url, on: running[1].url }, headers, 300);
    } finally {
      for (const r of running) await r.stop();
      await ttftFake.stop();
    }
  }

  // A configuration left out by --only is shown as "–" where another is measured against it.
  const against = (list: Measurement[], id: string, r: Measurement, show: (base: number, value: number) => string) => {
    const base = list.find((m) => m.id === id);
    return base ? show(base.perRequest, r.perRequest) : "–";
  };
  const row = (cells: (string | number)[]) => `| ${cells.join(" | ")} |`;
  const wall = (performance.now() - started) / 1000;
  const md = [
    "# Governance (issue 16): cost per request and per stream",
    "",
    `Command: \`npm run bench:instructions -- ${process.argv.slice(2).join(" ")}\`, run ${info.date}, took ${fmt(wall)} s.`,
    "",
    `Machine: ${info.nproc} CPUs, ${info.cpuModel}, Linux ${info.kernel}; ${info.nginx}, ${info.luaModule}, ${info.luajit}; ${info.valgrind}; Node ${info.node}.`,
    "",
    "Instructions counted by callgrind in the single nginx process, as in [instructions.md](instructions.md). \"no body",
    "filter and no log phase\" is this tree's bundle with those two directives removed: no token accounting, no metrics",
    "and no slot release (the nearest to the gateway before issue 16 that this tree can run).",
    "",
    "## Per request (Bearer, 10 keys)",
    "",
    row(["Configuration", "instructions / request", "Δ segments", "plain / this", `${BASELINE ? "baseline" : "no-accounting"} / this`]),
    row(["---", "---:", "---:", "---:", "---:"]),
    ...results.map((r) =>
      row([
        r.label, fmt(r.perRequest), `${fmt((100 * Math.abs(r.segments[0] - r.segments[1])) / r.perRequest, 2)} %`,
        against(results, "plain", r, (base, value) => fmt(base / value, 3)),
        against(results, BASELINE ? "baseline" : "no-accounting", r, (base, value) => fmt(base / value, 3)),
      ]),
    ),
    "",
    `## A ${fmt(STREAM_CHUNKS)}-chunk stream`,
    "",
    row(["Configuration", "instructions / stream", "Δ segments", "vs without accounting"]),
    row(["---", "---:", "---:", "---:"]),
    ...streams.map((r) =>
      row([
        r.label, fmt(r.perRequest), `${fmt((100 * Math.abs(r.segments[0] - r.segments[1])) / r.perRequest, 2)} %`,
        against(streams, "no-accounting", r, (base, value) => `${fmt((100 * (value - base)) / base, 2)} %`),
      ]),
    ),
    "",
    "## Time to the first streamed line (native, median of 300, alternating)",
    "",
    row(["Gateway", "median ms"]),
    row(["---", "---:"]),
    ...Object.entries(ttft).map(([k, v]) => row([k, fmt(v, 3)])),
    "",
  ].join("\n");
  console.log(md);
  if (WRITE) {
    const file = path.join(BENCH_DIR, "results", "governance.md");
    const existing = existsSync(file) ? readFileSync(file, "utf8") : "";
    const marker = "\n## Interpretation";
    writeFileSync(file, md + (existing.includes(marker) ? existing.slice(existing.indexOf(marker)) : ""));
    log(`wrote ${path.relative(ROOT, file)}`);
  }
}

async function main(): Promise<void> {
  if (GOVERNANCE) return governanceMain();
  for (const tool of ["nginx", "valgrind", "callgrind_control"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) throw new Error(`${tool} is missing (apt-get install nginx libnginx-mod-http-lua valgrind)`);
  }
  const started = performance.now();
  const info = machine();
  const creds = makeCredentials(100_000);
  const bearer = (count: number) => ({ Authorization: `Bearer ${validKey(creds, count)}` });

  const plan: { instance: Instance; configs: { id: string; label: string; headers: Record<string, string> }[] }[] = [
    { instance: plainInstance, configs: [{ id: "plain", label: "plain proxy, no auth", headers: {} }] },
    {
      instance: oursInstance(creds, 10),
      configs: [
        { id: "ours-bearer-10", label: "gateway, Bearer (10 keys)", headers: bearer(10) },
        { id: "ours-x-api-key", label: "gateway, X-API-Key (10 keys)", headers: { "X-API-Key": validKey(creds, 10) } },
        { id: "ours-basic", label: `gateway, Basic bcrypt-10, repeat caller (${BASIC_USERS} users)`, headers: { Authorization: basicHeader(creds.basicUser, creds.basicPassword) } },
      ],
    },
    { instance: oursInstance(creds, 100_000), configs: [{ id: "ours-bearer-100000", label: "gateway, Bearer (100,000 keys)", headers: bearer(100_000) }] },
    { instance: naiveInstance(creds, 1_000), configs: [{ id: "naive-1000", label: "naive key-file proxy, Bearer (1,000 keys)", headers: bearer(1_000) }] },
  ];

  const fake = await startFakeOllamaProcess({ chunks: 10, chunkIntervalMs: 10 });
  const results: Measurement[] = [];
  try {
    for (const { instance, configs } of plan) {
      const wanted = configs.filter((c) => !ONLY || ONLY.has(c.id));
      if (wanted.length === 0) continue;
      log(`starting ${instance.id} under callgrind`);
      const cg = await startUnderCallgrind(instance, fake.url);
      try {
        for (const c of wanted) results.push(await measure(cg, c.id, c.label, c.headers));
      } finally {
        await cg.running.stop();
      }
    }
  } finally {
    await fake.stop();
  }

  const plain = results.find((r) => r.id === "plain");
  const row = (cells: (string | number)[]) => `| ${cells.join(" | ")} |`;
  const table = [
    row(["Configuration", "instructions / request", "segment 1", "segment 2", "Δ segments", "extra vs plain", "plain / this"]),
    row(["---", "---:", "---:", "---:", "---:", "---:", "---:"]),
    ...results.map((r) =>
      row([
        r.label,
        fmt(r.perRequest),
        fmt(r.segments[0]),
        fmt(r.segments[1]),
        `${fmt((100 * Math.abs(r.segments[0] - r.segments[1])) / r.perRequest, 2)} %`,
        plain ? fmt(r.perRequest - plain.perRequest) : "n/a",
        plain ? fmt(plain.perRequest / r.perRequest, 3) : "n/a",
      ]),
    ),
  ];
  console.log(`\n${table.join("\n")}\n`);
  const wall = (performance.now() - started) / 1000;
  log(`done in ${fmt(wall)} s`);
  if (!WRITE) return;

  const command = `npm run bench:instructions${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`;
  const md = [
    "# Instructions per request (callgrind)",
    "",
    `Command: \`${command}\`, run ${info.date}, took ${fmt(wall)} s.`,
    "",
    `Machine: ${info.nproc} CPUs (\`nproc\`), ${info.cpuModel}, Linux ${info.kernel}; ${info.nginx}, ${info.luaModule}, ${info.luajit}; ${info.valgrind}; Node ${info.node}.`,
    "",
    `Each nginx runs as one process (\`-g "daemon off; master_process off;"\`) under \`valgrind --tool=callgrind\`; the stand-in`,
    `Ollama (\`harness/fake-ollama.ts\`) runs natively. A Node client sends \`GET ${REQUEST_PATH}\` sequentially on one`,
    `keep-alive connection: ${WARMUP} warm-up requests, then \`callgrind_control --dump\` (which also zeroes the counters), then two`,
    `segments of ${fmt(N)} requests, each ended by \`callgrind_control --dump\`. "instructions / request" is the mean of the two`,
    "segments' totals divided by the number of requests (user-space instructions of the nginx process only: startup, the",
    "warm-up and the shutdown are excluded; kernel work in system calls is not counted). Every response was checked to be 200.",
    "",
    ...table,
    "",
  ].join("\n");
  mkdirSync(path.dirname(RESULTS_FILE), { recursive: true });
  const existing = existsSync(RESULTS_FILE) ? readFileSync(RESULTS_FILE, "utf8") : "";
  const marker = "\n## Interpretation";
  const tail = existing.includes(marker) ? existing.slice(existing.indexOf(marker)) : "";
  writeFileSync(RESULTS_FILE, md + tail);
  log(`wrote ${path.relative(ROOT, RESULTS_FILE)}`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
