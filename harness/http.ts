/** Small HTTP helpers for tests: fetch with a short timeout, and raw-socket requests. */
import http from "node:http";
import https from "node:https";
import net from "node:net";

export interface SimpleResponse {
  status: number;
  headers: Headers;
  body: string;
  json(): any;
}

export async function request(url: string, init: RequestInit = {}): Promise<SimpleResponse> {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000), redirect: "manual", ...init });
  const body = await response.text();
  return { status: response.status, headers: response.headers, body, json: () => JSON.parse(body) };
}

/**
 * The message of a gateway error in any route family's envelope: Ollama's {"error": "..."},
 * OpenAI's {"error": {"message": ...}} or Anthropic's {"type": "error", "error": {"message": ...}};
 * undefined when the body is none of them.
 */
export function errorMessage(response: { body: string }): string | undefined {
  let parsed: any;
  try {
    parsed = JSON.parse(response.body);
  } catch {
    return undefined;
  }
  const error = parsed?.error;
  if (typeof error === "string") return error;
  return typeof error?.message === "string" ? error.message : undefined;
}

export const bearer = (key: string) => ({ Authorization: `Bearer ${key}` });
export const basic = (user: string, password: string) => ({
  Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`,
});

export interface RawResponse {
  /** Status of the first response, or 0 when the connection closed without one. */
  status: number;
  text: string;
  /** Every status line seen (pipelined requests give several). */
  statuses: number[];
}

/** Sends bytes as they are and collects what comes back until the server closes or `waitMs` passes. */
export function rawRequest(port: number, payload: string | Buffer, waitMs = 1500, host = "127.0.0.1"): Promise<RawResponse> {
  return new Promise((resolve) => {
    const socket = net.connect(port, host);
    let text = "";
    const finish = () => {
      socket.destroy();
      const statuses = [...text.matchAll(/^HTTP\/1\.[01] (\d{3})/gm)].map((m) => Number(m[1]));
      resolve({ status: statuses[0] ?? 0, text, statuses });
    };
    const timer = setTimeout(finish, waitMs);
    socket.on("data", (d) => (text += d.toString("latin1")));
    socket.on("close", () => {
      clearTimeout(timer);
      finish();
    });
    socket.on("error", () => undefined);
    socket.write(payload);
  });
}

/** One HTTP(S) request that trusts `ca` (Node's fetch takes no CA of its own); a fresh connection each time. */
export function httpsRequest(
  url: string,
  ca: string | undefined,
  init: { method?: string; headers?: Record<string, string>; body?: string; servername?: string } = {},
): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    const options = { method: init.method ?? "GET", ca, headers: init.headers, agent: false, timeout: 10_000, servername: init.servername };
    const req = (url.startsWith("https:") ? https : http).request(url, options, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`${url}: no answer in 10 s`)));
    req.on("error", reject);
    req.end(init.body);
  });
}

/**
 * Streams one `/api/chat` (NDJSON) and resolves with each line's arrival time, relative to the
 * request; rejects unless it is a 200 whose last line says `done`.
 */
export function streamChat(baseUrl: string, ca: string | undefined, headers: Record<string, string>): Promise<{ lines: string[]; times: number[] }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const lines: string[] = [];
    const times: number[] = [];
    const body = JSON.stringify({ model: "gemma3:1b", messages: [{ role: "user", content: "Why is the sky blue?" }], stream: true });
    const req = (baseUrl.startsWith("https:") ? https : http).request(`${baseUrl}/api/chat`, { method: "POST", ca, headers: { "Content-Type": "application/json", ...headers }, agent: false, timeout: 15_000 }, (res) => {
      let pending = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        pending += chunk;
        for (let i = pending.indexOf("\n"); i >= 0; i = pending.indexOf("\n")) {
          lines.push(pending.slice(0, i));
          times.push(performance.now() - started);
          pending = pending.slice(i + 1);
        }
      });
      res.on("end", () => {
        if (res.statusCode !== 200) return reject(new Error(`/api/chat answered ${res.statusCode}: ${lines.join("\n")}${pending}`));
        if (!lines.length || JSON.parse(lines[lines.length - 1]).done !== true) return reject(new Error(`/api/chat ended without done: ${lines.slice(-2).join("\n")}`));
        resolve({ lines, times });
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("/api/chat: stalled for 15 s")));
    req.on("error", reject);
    req.end(body);
  });
}

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  ms: number;
}

/** One request on a fresh connection, from `localAddress`; status 0 when no answer within `timeoutMs` (5 s). */
export function send(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string; localAddress?: string; timeoutMs?: number } = {},
): Promise<Answer> {
  const started = performance.now();
  return new Promise((resolve) => {
    const finish = (status: number, headers: http.IncomingHttpHeaders = {}, body = "") =>
      resolve({ status, headers, body, ms: Math.round(performance.now() - started) });
    const req = http.request(url, { method: init.method ?? "GET", headers: init.headers, localAddress: init.localAddress, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (body += d));
      res.on("end", () => finish(res.statusCode!, res.headers, body));
      res.on("error", () => finish(res.statusCode!, res.headers, body));
    });
    req.setTimeout(init.timeoutMs ?? 5000, () => {
      req.destroy();
      finish(0);
    });
    req.on("error", () => finish(0));
    req.end(init.body);
  });
}
