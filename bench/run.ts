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
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { BASIC_USERS, makeCredentials } from "./lib/credentials";
import { plotLatency, plotScaling, type LatencyBar, type ScalingPoint } from "./lib/plot";
import { processGroup, ROOT, type Running, startFakeOllamaProcess } from "./lib/procs";
import { fmt, log, machine, round } from "./lib/stats";
import { markdown, targets } from "./report";
import { abuse } from "./suites/abuse";
import { type DeployResult, deployment } from "./suites/deployment";
import { type Instances, startNaive, startOurs, startPlain } from "./suites/instances";
import { FLOOD, KEY_COUNTS, LEGIT, LOAD, P, QUICK, RESULTS_DIR, STREAM } from "./suites/params";
import { streaming } from "./suites/streaming";
import { throughput } from "./suites/throughput";

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
  const { running: started_, stopAll } = processGroup();
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
