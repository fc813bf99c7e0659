/** The nginx instances the suites measure: the gateway, a plain proxy and a naive key-file proxy. */
import { readFileSync } from "node:fs";
import { sha256Hex } from "../../bundle/credentials";
import { renderBundle } from "../../bundle/render";
import { type GatewaySpecInput, validateSpec } from "../../bundle/spec";
import { writeBundle } from "../../bundle/write";
import type { BenchCredentials } from "../lib/credentials";
import { freePort, makePrefix, type Running, startNginx, writeFile } from "../lib/procs";
import { DEBIAN_MODULES, NAIVE_LUA, PLAIN_TEMPLATE } from "./params";

export interface Instances {
  fake: Running;
  plain: Running;
  ours: Map<number, Running>;
  naive: Map<number, Running>;
  all: Running[];
}

export function oursSpec(upstream: string, port: number, creds: BenchCredentials, keyCount: number): GatewaySpecInput {
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

/**
 * Issue 16's "governance on" (bench:instructions --governance, bench:governance-throughput): every
 * key with `maxConcurrent` 64 and a model list, request limits, and metrics on their own listener.
 * Nothing here refuses the benches' load: 32 connections stay under 64 per key, and
 * `/api/version` names no model.
 */
export function governanceOn(spec: GatewaySpecInput, metricsPort: number): GatewaySpecInput {
  return {
    ...spec,
    apiKeys: (spec.apiKeys ?? []).map((key) => ({ ...key, maxConcurrent: 64, models: ["gemma3:*", "qwen3:*"] })),
    limits: { maxNumCtx: 8192, maxNumPredict: 4096, maxKeepAliveSeconds: 3600 },
    metrics: { listen: { address: "127.0.0.1", port: metricsPort } },
  };
}

export interface OursOptions {
  /** The C token-accounting module (scripts/build-usage-module.sh prints its path); default the Lua filter. */
  usageModule?: string;
  /** Governance on (`governanceOn`), metrics listening on this port. */
  metricsPort?: number;
}

export async function startOurs(upstream: string, creds: BenchCredentials, keyCount: number, options: OursOptions = {}): Promise<Running> {
  const port = await freePort();
  const base = oursSpec(upstream, port, creds, keyCount);
  const spec = validateSpec(options.metricsPort === undefined ? base : governanceOn(base, options.metricsPort));
  const name = `ours-${keyCount}${options.metricsPort === undefined ? "" : "-on"}`;
  const dir = makePrefix(name);
  writeBundle(dir, renderBundle(spec, { flavor: "debian", usageModule: options.usageModule }).files);
  return startNginx(name, dir, port);
}

function plainConf(port: number, upstream: string, access: string, modules: string): string {
  const hostPort = new URL(upstream).host;
  return readFileSync(PLAIN_TEMPLATE, "utf8")
    .replaceAll("{{modules}}", modules)
    .replaceAll("{{upstream}}", hostPort)
    .replaceAll("{{port}}", String(port))
    .replaceAll("{{access}}", access);
}

/** The plain proxy's config in `dir`: nginx forwarding without authentication. */
export function writePlainConf(dir: string, port: number, upstream: string): void {
  writeFile(dir, "conf/nginx.conf", plainConf(port, upstream, "            # no authentication", ""));
}

/** The naive proxy in `dir`: the plain proxy plus Lua that scans a plain key file per request. */
export function writeNaiveConf(dir: string, port: number, upstream: string, creds: BenchCredentials, keyCount: number): void {
  const lua = readFileSync(NAIVE_LUA, "utf8")
    .split("\n")
    .map((line) => `                ${line}`)
    .join("\n");
  writeFile(dir, "conf/nginx.conf", plainConf(port, upstream, `            access_by_lua_block {\n${lua}\n            }`, DEBIAN_MODULES));
  writeFile(dir, "keys.txt", `${creds.keys.slice(0, keyCount).join("\n")}\n`);
}

export async function startPlain(upstream: string): Promise<Running> {
  const port = await freePort();
  const dir = makePrefix("plain");
  writePlainConf(dir, port, upstream);
  return startNginx("plain", dir, port);
}

export async function startNaive(upstream: string, creds: BenchCredentials, keyCount: number): Promise<Running> {
  const port = await freePort();
  const dir = makePrefix(`naive-${keyCount}`);
  writeNaiveConf(dir, port, upstream, creds, keyCount);
  return startNginx(`naive-${keyCount}`, dir, port);
}
