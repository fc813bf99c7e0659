/**
 * `npm run bench:governance-throughput`: issue 16's throughput target, "with model lists, limits,
 * concurrency, token accounting and metrics all on: Bearer throughput on `/api/version` ≥ 0.9 ×
 * the plain proxy", measured with wrk in one run: the plain proxy, the gateway with governance
 * settings off and the gateway with everything on (`governanceOn`), each nginx with 1 worker, in
 * front of one stand-in Ollama. Each gateway configuration is measured right next to a run of
 * the plain proxy (before it in one round, after it in the next; bench/suites/throughput.ts), and
 * its ratio is the median of the per-round ratios. Writes bench/results/governance-throughput.md.
 *
 * Options (all optional):
 *   --usage-module SO  the C token-accounting module (`scripts/build-usage-module.sh` prints SO);
 *                      without it both gateways account tokens in Lua
 *   --rounds N         rounds (default 5; BENCH_QUICK=1: 1)
 *   --seconds S        seconds per wrk run (default 4; BENCH_QUICK=1: 2)
 *   --no-write         print only; do not write the results file
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { makeCredentials, validKey } from "./lib/credentials";
import { freePort, processGroup, type Running, startFakeOllamaProcess } from "./lib/procs";
import { fmt, log, machine, median } from "./lib/stats";
import { startOurs, startPlain } from "./suites/instances";
import { LOAD, P, QUICK, RESULTS_DIR, STREAM } from "./suites/params";
import { type Aggregate, type LoadConfig, sideBySide } from "./suites/throughput";

const { values: args } = parseArgs({
  options: {
    "usage-module": { type: "string" },
    rounds: { type: "string" },
    seconds: { type: "string" },
    "no-write": { type: "boolean", default: false },
  },
});
const USAGE_MODULE = args["usage-module"] ? path.resolve(args["usage-module"]) : undefined;
const ROUNDS = Number(args.rounds ?? (QUICK ? 1 : 5));
const SECONDS = Number(args.seconds ?? (QUICK ? 2 : 4));
const KEYS = 10;
const TARGET = 0.9;
const RESULTS_FILE = path.join(RESULTS_DIR, "governance-throughput.md");

const command = [
  QUICK ? "BENCH_QUICK=1 " : "",
  "npm run bench:governance-throughput",
  USAGE_MODULE || args.rounds || args.seconds ? " --" : "",
  USAGE_MODULE ? ' --usage-module "$(scripts/build-usage-module.sh)"' : "",
  args.rounds ? ` --rounds ${ROUNDS}` : "",
  args.seconds ? ` --seconds ${SECONDS}` : "",
].join("");

/** Before measuring: the load is answered 200, and the "on" gateway really has governance on. */
async function checkInstances(off: Running, on: Running, metricsPort: number, key: string): Promise<string[]> {
  const notes: string[] = [];
  const bearer = { Authorization: `Bearer ${key}` };
  for (const gateway of [off, on]) {
    const response = await fetch(`${gateway.url}/api/version`, { headers: bearer });
    await response.text();
    if (response.status !== 200) throw new Error(`${gateway.name}: GET /api/version with a valid key answered ${response.status}`);
    const conf = readFileSync(path.join(gateway.dir!, "conf", "nginx.conf"), "utf8");
    if (USAGE_MODULE && !conf.includes(USAGE_MODULE)) throw new Error(`${gateway.name}: the usage module is not loaded in conf/nginx.conf`);
  }
  notes.push("`GET /api/version` with the bench key: 200 from both gateways.");
  const generate = (gateway: Running) =>
    fetch(`${gateway.url}/api/generate`, { method: "POST", headers: { ...bearer, "Content-Type": "application/json" }, body: JSON.stringify({ model: "llama3:8b", prompt: "hi", stream: false }) }).then(async (r) => (await r.text(), r.status));
  const offStatus = await generate(off);
  const onStatus = await generate(on);
  if (onStatus !== 403) throw new Error(`gateway (on): a model outside the key's list answered ${onStatus}, not 403: is the model list on?`);
  notes.push(`\`POST /api/generate\` naming \`llama3:8b\` (not in the key's list): ${onStatus} from the gateway with governance on, ${offStatus} with it off.`);
  const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  await metrics.text();
  if (metrics.status !== 200) throw new Error(`gateway (on): GET /metrics answered ${metrics.status}`);
  return notes;
}

/** Requests the "on" gateway's metrics counted as answered 200 (all callers and route classes). */
async function counted200(metricsPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  return text
    .split("\n")
    .filter((line) => line.startsWith("ollama_gateway_requests_total{") && line.includes('status="200"'))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(" ") + 1)), 0);
}

function markdown(info: ReturnType<typeof machine>, aggregates: Aggregate[], notes: string[], wallSeconds: number): string {
  const byId = new Map(aggregates.map((a) => [a.id, a]));
  const on = byId.get("ours-on")!;
  const off = byId.get("ours-off")!;
  const r2 = (value: number) => value.toFixed(2);
  const ratio = (a: Aggregate) => (a.id === "plain" ? "1" : `**${r2(a.ratioToPlain)}**`);
  const met = on.ratioToPlain >= TARGET;
  // The two gateways run next to each other in every round too (plain, one, the other, plain).
  const onOff = on.rounds.map((w, r) => w.requestsPerSecond / off.rounds[r].requestsPerSecond);
  const errors = aggregates.reduce((sum, a) => sum + a.non2xx + a.socketErrors, 0);
  return [
    "# Governance on: Bearer throughput vs the plain proxy",
    "",
    `Measured ${info.date.slice(0, 16).replace("T", " ")} UTC with \`${command}\` (bench/governance-throughput.ts), ${wallSeconds.toFixed(0)} s.`,
    "",
    "Issue 16's target: with model lists, limits, concurrency, token accounting and metrics all on, Bearer throughput on",
    `\`/api/version\` ≥ ${TARGET} × the plain proxy. Three nginx instances (1 worker each) in front of one stand-in Ollama`,
    "(harness/fake-ollama.ts, its own process): the plain proxy (no authentication), the gateway with governance settings",
    `off and the gateway with them on (bench/suites/instances.ts \`governanceOn\`: every one of the ${KEYS} keys with`,
    "`maxConcurrent: 64` and `models: [\"gemma3:*\", \"qwen3:*\"]`, `limits` on num_ctx, num_predict and keep_alive,",
    "metrics on their own loopback listener). Both gateways: rate limit far above the load, 1,000 Basic users,",
    USAGE_MODULE ? "token accounting by the C module (`--usage-module`)." : "token accounting in Lua (no `--usage-module`).",
    "",
    `Each round measures every gateway configuration right next to a run of the plain proxy (plain before it in one round,`,
    `after it in the next), ${ROUNDS} round${ROUNDS === 1 ? "" : "s"} of ${SECONDS} s per run after a ${P.warmupSeconds} s warm-up of each; a ratio is the median over`,
    "rounds of (req/s of the configuration / req/s of the adjacent plain run), so drift in the shared machine's speed",
    `hits both sides of a ratio alike. Load: \`${on.command.replace(/http:\/\/127\.0\.0\.1:\d+/, "http://127.0.0.1:<port>")}\`.`,
    "",
    "| configuration | median req/s | × plain (median of rounds) | per-round ratios | p50 ms | p50 × plain | p99 ms | p99 × plain | non-2xx | socket errors |",
    "|---|---|---|---|---|---|---|---|---|---|",
    ...aggregates.map((a) =>
      [
        a.label,
        fmt(a.median.requestsPerSecond, 0),
        ratio(a),
        a.id === "plain" ? "–" : a.perRoundRatios.map(r2).join(", "),
        fmt(a.median.p50),
        a.id === "plain" ? "1" : r2(a.p50RatioToPlain),
        fmt(a.median.p99),
        a.id === "plain" ? "1" : r2(a.p99RatioToPlain),
        String(a.non2xx),
        String(a.socketErrors),
      ].join(" | ").replace(/^/, "| ").concat(" |"),
    ),
    "",
    `The plain proxy's row pools its ${on.rounds.length + off.rounds.length} runs (one next to each gateway run).`,
    "",
    "## Verdict",
    "",
    `Governance on: **${r2(on.ratioToPlain)} × the plain proxy** (target ≥ ${TARGET}: **${met ? "met" : "not met"}** in this run); governance off: ${r2(off.ratioToPlain)} ×.`,
    `Governance on ÷ off, the two measured back to back in every round: **${r2(median(onOff))}** (per round ${onOff.map(r2).join(", ")}).`,
    `Every response in the measured and warm-up runs was 2xx${errors === 0 ? " (non-2xx and socket errors: 0)" : `, except ${errors} non-2xx or socket errors`}: the bench measures answered requests, not refusals.`,
    "On this shared 2-CPU machine neighbouring runs of one configuration differ by tens of percent (see bench/README.md, \"Noise\"),",
    "so a single run's ratio near the target decides little; the per-round ratios show the spread.",
    "",
    "## Checks",
    "",
    ...notes.map((n) => `- ${n}`),
    "",
    "## Machine",
    "",
    `${info.nproc} CPUs (${info.cpuModel}), ${info.memoryGiB} GiB, Linux ${info.kernel}; ${info.nginx}; ${info.luaModule}; ${info.wrk}; Node ${info.node}.`,
    `Load average at start: ${info.loadAverageAtStart.join(", ")} (other work may share the machine).`,
    "",
  ].join("\n");
}

async function main(): Promise<void> {
  const started = performance.now();
  if (USAGE_MODULE && !existsSync(USAGE_MODULE)) throw new Error(`--usage-module ${USAGE_MODULE}: no such file (scripts/build-usage-module.sh builds it)`);
  const info = machine();
  log(`${QUICK ? "QUICK " : ""}${command}: ${ROUNDS} rounds of ${SECONDS} s on ${info.nproc} CPUs`);
  const creds = makeCredentials(KEYS);
  const key = validKey(creds, KEYS);
  const { start, stopAll } = processGroup();
  try {
    const fake = await start(startFakeOllamaProcess(STREAM));
    const plain = await start(startPlain(fake.url));
    const off = await start(startOurs(fake.url, creds, KEYS, { usageModule: USAGE_MODULE }));
    const metricsPort = await freePort();
    const on = await start(startOurs(fake.url, creds, KEYS, { usageModule: USAGE_MODULE, metricsPort }));
    const notes = await checkInstances(off, on, metricsPort, key);
    const before = await counted200(metricsPort);

    const headers = { Authorization: `Bearer ${key}` };
    const config = (id: string, label: string, instance: Running, h: Record<string, string>): LoadConfig => ({ id, label, section: "overhead", instance, headers: h, seconds: SECONDS });
    const aggregates = await sideBySide(
      [
        config("plain", "plain nginx proxy (no auth)", plain, {}),
        config("ours-off", `gateway, Bearer (${KEYS} keys), governance settings off`, off, headers),
        config("ours-on", `gateway, Bearer (${KEYS} keys), models + limits + maxConcurrent + metrics on`, on, headers),
      ],
      { rounds: ROUNDS, warmupSeconds: P.warmupSeconds, fake },
    );
    const onRequests = aggregates.find((a) => a.id === "ours-on")!.rounds.reduce((sum, w) => sum + w.requests, 0);
    const counted = (await counted200(metricsPort)) - before;
    notes.push(
      `The metrics listener counted ${counted.toLocaleString("en-US")} requests answered 200 by the gateway with governance on during warm-up and rounds; wrk completed ${onRequests.toLocaleString("en-US")} in the measured rounds (plus the warm-up, and requests wrk still had open when a run ended).`,
    );
    await stopAll();
    const wallSeconds = (performance.now() - started) / 1000;
    for (const a of aggregates) log(`${a.id.padEnd(9)} ${fmt(a.median.requestsPerSecond, 0).padStart(7)} req/s  × plain ${fmt(a.ratioToPlain)}  rounds ${a.perRoundRatios.join(", ")}  p50 ${fmt(a.median.p50)} ms  p99 ${fmt(a.median.p99)} ms  non-2xx ${a.non2xx}`);
    const md = markdown(info, aggregates, notes, wallSeconds);
    if (args["no-write"]) console.log(md);
    else {
      writeFileSync(RESULTS_FILE, md);
      log(`wrote ${path.relative(process.cwd(), RESULTS_FILE)}`);
    }
  } finally {
    await stopAll();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
