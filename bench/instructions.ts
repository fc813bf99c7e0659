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
 *                    ours-x-api-key, ours-basic, naive-1000)
 *   --lua-dir DIR    copy DIR/*.lua over the bundle's lua/gateway/ (bisecting a scratch copy)
 *   --conf-dir DIR   copy DIR/*.conf over the bundle's conf/ (the same, for the nginx config)
 *   --keep DIR       keep the callgrind files (for callgrind_annotate) in DIR
 *   --no-write       print only; do not write bench/results/instructions.md
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
import { BENCH_DIR, freePort, makePrefix, ROOT, type Running, startFakeOllamaProcess } from "./lib/procs";
import { oursSpec, writeNaiveConf, writePlainConf } from "./suites/instances";

const { values: args } = parseArgs({
  options: {
    requests: { type: "string", default: "2000" },
    warmup: { type: "string", default: "200" },
    only: { type: "string" },
    "lua-dir": { type: "string" },
    "conf-dir": { type: "string" },
    keep: { type: "string" },
    "no-write": { type: "boolean", default: false },
  },
});
const N = Number(args.requests);
const WARMUP = Number(args.warmup);
const ONLY = args.only ? new Set(args.only.split(",")) : undefined;
const LUA_DIR = args["lua-dir"] ? path.resolve(args["lua-dir"]) : undefined;
const CONF_DIR = args["conf-dir"] ? path.resolve(args["conf-dir"]) : undefined;
const KEEP = args.keep ? path.resolve(args.keep) : undefined;
const WRITE = !args["no-write"] && !ONLY && !LUA_DIR && !CONF_DIR;

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

function oursInstance(creds: BenchCredentials, count: number): Instance {
  return {
    id: `ours-${count}`,
    prepare(dir, port, upstream) {
      const spec = oursSpec(upstream, port, creds, count);
      writeBundle(dir, renderBundle(validateSpec(spec), { flavor: "debian" }).files);
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

async function main(): Promise<void> {
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
    `Ollama (\`test/support/fake-ollama.ts\`) runs natively. A Node client sends \`GET ${REQUEST_PATH}\` sequentially on one`,
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
