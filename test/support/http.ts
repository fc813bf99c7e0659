/** Small HTTP helpers for tests: fetch with a short timeout, and raw-socket requests. */
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
