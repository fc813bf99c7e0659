/** Section 3: a legitimate caller during wrong-credential floods. */
import { readFileSync } from "node:fs";
import path from "node:path";
import { type BenchCredentials, validKey } from "../lib/credentials";
import { startDistributedFlood } from "../lib/flood";
import { BENCH_DIR, threadTicks, waitIdle } from "../lib/procs";
import { fmt, log, median } from "../lib/stats";
import { describeWrk, runWrk, type WrkOptions, type WrkResult } from "../lib/wrk";
import type { Instances } from "./instances";
import { FLOOD, KEY_COUNTS, LEGIT, P } from "./params";

type Condition = "alone" | "wrkFlood" | "distributedFlood";
const CONDITIONS: Condition[] = ["alone", "wrkFlood", "distributedFlood"];
const DISTRIBUTED = { addresses: 256, concurrency: 32 };

export interface AbuseResult {
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

export async function abuse(inst: Instances, creds: BenchCredentials): Promise<AbuseResult> {
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
