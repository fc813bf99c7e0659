/** Runs wrk (Debian's wrk 4.1) and parses its `--latency` output. */
import { spawn } from "node:child_process";
import path from "node:path";
import { ROOT } from "./procs";

export interface WrkResult {
  requestsPerSecond: number;
  requests: number;
  /** Latency percentiles in milliseconds. */
  p50: number;
  p75: number;
  p90: number;
  p99: number;
  non2xx: number;
  socketErrors: number;
  durationSeconds: number;
  raw: string;
}

export interface WrkOptions {
  url: string;
  threads: number;
  connections: number;
  durationSeconds: number;
  headers?: Record<string, string>;
  script?: string;
  env?: Record<string, string>;
  timeoutSeconds?: number;
}

/** "1.23ms", "456.00us", "2.01s", "1.5m" -> milliseconds. */
export function parseDuration(text: string): number {
  const match = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (!match) throw new Error(`wrk: cannot parse duration ${JSON.stringify(text)}`);
  const value = Number(match[1]);
  const unit = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] as "us" | "ms" | "s" | "m" | "h"];
  return value * unit;
}

export function parseWrk(raw: string): Omit<WrkResult, "durationSeconds" | "raw"> {
  const percentile = (p: string) => {
    const match = new RegExp(`^\\s*${p}%\\s+(\\S+)`, "m").exec(raw);
    return match ? parseDuration(match[1]) : Number.NaN;
  };
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(raw);
  const total = /(\d+) requests in/.exec(raw);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(raw);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(raw);
  if (!rps || !total) throw new Error(`wrk output not understood:\n${raw}`);
  return {
    requestsPerSecond: Number(rps[1]),
    requests: Number(total[1]),
    p50: percentile("50"),
    p75: percentile("75"),
    p90: percentile("90"),
    p99: percentile("99"),
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    socketErrors: socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0,
  };
}

export function wrkArgs(options: WrkOptions): string[] {
  const args = [
    `-t${options.threads}`,
    `-c${options.connections}`,
    `-d${options.durationSeconds}s`,
    `--timeout`,
    `${options.timeoutSeconds ?? 10}s`,
    "--latency",
  ];
  for (const [name, value] of Object.entries(options.headers ?? {})) args.push("-H", `${name}: ${value}`);
  if (options.script) args.push("-s", options.script);
  args.push(options.url);
  return args;
}

/** The wrk command line as a shell would show it, with header values elided (they hold keys). */
export function describeWrk(options: WrkOptions): string {
  // Scripts are named relative to the repository, so a report carries no path of this machine.
  const script = options.script !== undefined ? path.relative(ROOT, options.script) : undefined;
  return ["wrk", ...wrkArgs({ ...options, ...(script !== undefined ? { script } : {}), headers: Object.fromEntries(Object.keys(options.headers ?? {}).map((k) => [k, "…"])) })]
    .map((a) => (/[\s"]/.test(a) ? JSON.stringify(a) : a))
    .join(" ");
}

export function runWrk(options: WrkOptions): Promise<WrkResult> {
  return new Promise((resolve, reject) => {
    const child = spawn("wrk", wrkArgs(options), { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...options.env } });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.once("error", reject);
    child.once("exit", (code) => {
      if (code !== 0) return reject(new Error(`wrk exited with ${code}:\n${out}`));
      try {
        resolve({ ...parseWrk(out), durationSeconds: options.durationSeconds, raw: out });
      } catch (error) {
        reject(error);
      }
    });
  });
}
