/** Sections 1 and 2: throughput and latency of every configuration, interleaved with the plain proxy. */
import { BASIC_USERS, basicHeader, type BenchCredentials, validKey } from "../lib/credentials";
import { type Running, waitIdle } from "../lib/procs";
import { fmt, log, median, round } from "../lib/stats";
import { describeWrk, runWrk, type WrkOptions, type WrkResult } from "../lib/wrk";
import type { Instances } from "./instances";
import { KEY_COUNTS, LOAD, NAIVE_SLOW_FROM, P } from "./params";

export interface LoadConfig {
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

export interface Aggregate {
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

export interface SideBySideOptions {
  rounds: number;
  warmupSeconds: number;
  /** The stand-in Ollama: every measurement waits until it and the measured nginx are idle. */
  fake: Running;
  /** Configurations that get no warm-up run. */
  skipWarmup?: (config: LoadConfig) => boolean;
}

/**
 * Measures every configuration with wrk (`GET /api/version`, the same LOAD), each right next to a
 * run of the one whose id is "plain", and aggregates the rounds (medians, ratios to plain).
 */
export async function sideBySide(configs: LoadConfig[], options: SideBySideOptions): Promise<Aggregate[]> {
  const { rounds: roundCount, fake } = options;
  const settle = (config: LoadConfig) => waitIdle([...config.instance.busyPids(), ...fake.busyPids()]);
  log(`warm-up: ${configs.length} configurations, ${options.warmupSeconds} s each`);
  for (const config of configs) {
    if (options.skipWarmup?.(config)) continue;
    // One connection first: a Basic caller's first login is a bcrypt check, and the gateway lets
    // an address have only a few in progress (issue 13), so 32 at once would get 429s; after it
    // the repeat caller is answered from the verified cache, which is what is measured.
    await runWrk({ ...wrkFor(config, 1), threads: 1, connections: 1 });
    const result = await runWrk(wrkFor(config, options.warmupSeconds));
    // Every configuration answers 200 to its valid caller (counted again in every round).
    if (result.non2xx > 0 || result.requests === 0) throw new Error(`${config.id}: ${result.non2xx} non-2xx of ${result.requests} in warm-up:\n${result.raw}`);
    await settle(config);
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
    log(`round ${r + 1}/${roundCount} ${config.id.padEnd(18)} ${fmt(result.requestsPerSecond, 0).padStart(7)} req/s  p50 ${fmt(result.p50)} ms  p99 ${fmt(result.p99)} ms${result.non2xx ? `  non-2xx ${result.non2xx}` : ""}${result.socketErrors ? `  socket errors ${result.socketErrors}` : ""}`);
    await settle(config);
    return result;
  };
  for (let r = 0; r < roundCount; r++) {
    // Rotate the order every round so no configuration always runs first or after the slow one.
    const order = others.map((_, i) => others[(i + r * 3) % others.length]);
    for (const config of order) {
      // Plain before it in one round, after it in the next (by its own index: with an even
      // number of configurations, the position in the rotated order keeps the same parity).
      const plainFirst = (others.indexOf(config) + r) % 2 === 0;
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

export function throughput(inst: Instances, creds: BenchCredentials): Promise<Aggregate[]> {
  return sideBySide(loadConfigs(inst, creds), {
    rounds: P.rounds,
    warmupSeconds: P.warmupSeconds,
    fake: inst.fake,
    // The slowest naive runs get no warm-up: there is nothing to warm and it would take long.
    skipWarmup: (config) => (config.credentials ?? 0) >= NAIVE_SLOW_FROM && config.id.startsWith("naive-"),
  });
}
