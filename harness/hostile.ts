/**
 * Helpers for the hostile-input battery (test/hostile-*.test.ts): raw request building, an
 * independent oracle for "may this request reach Ollama", nginx worker memory, keep-alive load
 * and latency percentiles.
 */
import { readdirSync, readFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { classifyRoute, scopeAllows } from "../bundle/routes";
import type { Scope } from "../bundle/spec";
import type { RecordedRequest } from "./fake-ollama";

export type HeaderList = [name: string, value: string][];

export interface RawSpec {
  method: string;
  /** The request target exactly as it goes on the request line. */
  target: string;
  headers: HeaderList;
  body?: string;
  version?: string;
}

/** One HTTP/1.x request as bytes; `Host` and `Connection: close` are added unless present. */
export function buildRequest(spec: RawSpec, { close = true } = {}): Buffer {
  const names = new Set(spec.headers.map(([name]) => name.toLowerCase()));
  const headers: HeaderList = [...spec.headers];
  if (!names.has("host")) headers.unshift(["Host", "gateway.test"]);
  if (spec.body !== undefined && !names.has("content-length") && !names.has("transfer-encoding")) {
    headers.push(["Content-Length", String(Buffer.byteLength(spec.body))]);
  }
  if (close && !names.has("connection")) headers.push(["Connection", "close"]);
  const head = `${spec.method} ${spec.target} ${spec.version ?? "HTTP/1.1"}\r\n${headers.map(([n, v]) => `${n}: ${v}\r\n`).join("")}\r\n`;
  return Buffer.concat([Buffer.from(head, "utf8"), Buffer.from(spec.body ?? "", "utf8")]);
}

/** CR and LF would change the framing of a generated request; everything else stays. */
export const noNewlines = (s: string) => s.replace(/[\r\n]/g, "");

export interface Credentials {
  keys: Record<Scope, string>;
  /** user name -> { password, scope } */
  users: Record<string, { password: string; scope: Scope }>;
}

/**
 * The broadest scope any credential in `headers` could legitimately grant, read leniently (values
 * trimmed, Base64 decoded by Node's forgiving decoder). The property is one-directional: a request
 * that reached the upstream must have a credential this oracle accepts, so leniency here can only
 * hide a bug, never invent one. Two credential headers grant nothing (the README's 400 rule).
 */
export function grantedScope(headers: HeaderList, creds: Credentials): Scope | undefined {
  const credentialHeaders = headers.filter(([name]) => ["authorization", "x-api-key"].includes(name.toLowerCase()));
  if (credentialHeaders.length !== 1) return undefined;
  const [name, rawValue] = credentialHeaders[0];
  const value = rawValue.replace(/^[ \t]+|[ \t]+$/g, "");
  const keyScope = (token: string) => (Object.entries(creds.keys).find(([, key]) => key === token)?.[0] as Scope | undefined);
  if (name.toLowerCase() === "x-api-key") return keyScope(value);
  const bearer = /^bearer +(\S+)$/i.exec(value);
  if (bearer) return keyScope(bearer[1]);
  const basicMatch = /^basic +(\S+)$/i.exec(value);
  if (basicMatch) {
    const decoded = Buffer.from(basicMatch[1], "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    const user = creds.users[decoded.slice(0, colon)];
    if (colon > 0 && user && user.password === decoded.slice(colon + 1)) return user.scope;
  }
  return undefined;
}

/** Why a request that reached the upstream should not have, or undefined when it was fine. */
export function forwardingViolation(sent: RawSpec, forwarded: RecordedRequest, creds: Credentials): string | undefined {
  const scope = grantedScope(sent.headers, creds);
  if (!scope) return "reached the upstream without a valid credential";
  if (forwarded.method !== sent.method) return `method changed: sent ${sent.method}, upstream got ${forwarded.method}`;
  // nginx tolerates extra spaces around the target on the request line and sends a clean line on.
  if (forwarded.rawPath !== sent.target.replace(/^ +| +$/g, "")) return `path changed: sent ${sent.target}, upstream got ${forwarded.rawPath}`;
  const routeClass = classifyRoute(forwarded.method, forwarded.rawPath.split("?")[0]);
  if (!routeClass) return `unknown route ${forwarded.method} ${forwarded.rawPath} reached the upstream`;
  if (!scopeAllows(scope, routeClass)) return `scope ${scope} does not allow ${routeClass} route ${forwarded.rawPath}`;
  const names = forwarded.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
  for (const secret of ["authorization", "x-api-key", "cookie", "proxy-authorization", "origin", "transfer-encoding"]) {
    if (names.includes(secret)) return `header ${secret} reached the upstream`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// nginx processes and memory.

/** Pids of the processes whose parent is `parentPid` (nginx workers of a master). */
export function childPids(parentPid: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // The command name is in parentheses and may contain spaces: fields start after ")".
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) === parentPid) pids.push(Number(entry));
    } catch {
      // the process went away while we looked
    }
  }
  return pids.sort((a, b) => a - b);
}

/** VmRSS of a process in KiB. */
export function vmRssKb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (!match) throw new Error(`no VmRSS for ${pid}`);
  return Number(match[1]);
}

// ---------------------------------------------------------------------------------------------
// Keep-alive load and latency.

export interface LoadResponse {
  status: number;
  body: string;
  ms: number;
}

/** One request over `agent` (keep-alive), body read in full. */
export function agentRequest(
  agent: http.Agent,
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs?: number } = {},
): Promise<LoadResponse> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(url, { agent, method: options.method ?? "GET", headers: options.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8"), ms: performance.now() - started }));
      res.on("error", reject);
    });
    req.setTimeout(options.timeoutMs ?? 10_000, () => req.destroy(new Error(`timeout: ${url}`)));
    req.on("error", reject);
    req.end(options.body);
  });
}

/** Runs `total` jobs with at most `concurrency` at a time; returns the results in order. */
export async function pool<T>(total: number, concurrency: number, job: (i: number) => Promise<T>): Promise<T[]> {
  const results: T[] = new Array(total);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, total) }, async () => {
      while (next < total) {
        const i = next++;
        results[i] = await job(i);
      }
    }),
  );
  return results;
}

export function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

export const fmt = (ms: number) => `${ms.toFixed(1)} ms`;

// ---------------------------------------------------------------------------------------------
// Raw sockets.

/** Opens `count` TCP connections and resolves when all are connected (optionally sending `first`). */
export async function openIdleSockets(port: number, count: number, first?: (i: number) => string): Promise<net.Socket[]> {
  return Promise.all(
    Array.from(
      { length: count },
      (_, i) =>
        new Promise<net.Socket>((resolve, reject) => {
          const socket = net.connect(port, "127.0.0.1");
          socket.on("error", () => undefined);
          socket.once("connect", () => {
            const payload = first?.(i);
            if (payload) socket.write(payload);
            resolve(socket);
          });
          socket.once("error", reject);
        }),
    ),
  );
}

/** Connects, writes `chunks` with `gapMs` between them, resolves with what came back when the server closes (or `maxMs`). */
export function trickle(port: number, chunks: string[], gapMs: number, maxMs: number): Promise<{ text: string; ms: number; sent: number; closedByServer: boolean }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = net.connect(port, "127.0.0.1");
    let text = "";
    let sent = 0;
    let closedByServer = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = () => {
      clearTimeout(timer);
      clearTimeout(deadline);
      socket.destroy();
      resolve({ text, ms: Date.now() - started, sent, closedByServer });
    };
    const deadline = setTimeout(finish, maxMs);
    const writeNext = () => {
      if (socket.destroyed || sent >= chunks.length) return;
      socket.write(chunks[sent++]);
      timer = setTimeout(writeNext, gapMs);
    };
    socket.on("data", (d) => (text += d.toString("latin1")));
    socket.on("error", () => undefined);
    socket.on("close", () => {
      closedByServer = true;
      finish();
    });
    socket.once("connect", writeNext);
  });
}

export const statusOf = (text: string) => Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0);

/** Every response status on a connection, in order (bodies need not end with a newline). */
export const statusesOf = (text: string) => [...text.matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]));

/** The final (non-1xx) status of the first response, or 0 when the connection closed without one. */
export const finalStatusOf = (text: string) => statusesOf(text).find((s) => s >= 200) ?? 0;
