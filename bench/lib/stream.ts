/**
 * Streaming latency, measured by a Node client: time from sending the request to the first
 * NDJSON line (`/api/generate`) or the first SSE event (`/v1/chat/completions`, stream:true),
 * and the gaps between later lines/events as they reach the client.
 */
import http from "node:http";

export interface StreamSample {
  /** ms from request sent to the first complete line/event. */
  firstMs: number;
  /** ms between consecutive lines/events after the first. */
  gapsMs: number[];
  events: number;
}

export type StreamKind = "ndjson" | "sse";

const agents = new Map<string, http.Agent>();
function agentFor(base: string): http.Agent {
  let agent = agents.get(base);
  if (!agent) {
    agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    agents.set(base, agent);
  }
  return agent;
}

export function destroyAgents(): void {
  for (const agent of agents.values()) agent.destroy();
  agents.clear();
}

const BODIES: Record<StreamKind, { path: string; body: string }> = {
  ndjson: { path: "/api/generate", body: JSON.stringify({ model: "gemma3:1b", prompt: "Why is the sky blue?" }) },
  sse: {
    path: "/v1/chat/completions",
    body: JSON.stringify({ model: "gemma3:1b", stream: true, messages: [{ role: "user", content: "Why is the sky blue?" }] }),
  },
};

export function streamOnce(base: string, kind: StreamKind, headers: Record<string, string>): Promise<StreamSample> {
  const { path, body } = BODIES[kind];
  const separator = kind === "ndjson" ? "\n" : "\n\n";
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    const arrivals: number[] = [];
    let buffer = "";
    const req = http.request(
      url,
      {
        method: "POST",
        agent: agentFor(base),
        headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body), ...headers },
      },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          return reject(new Error(`${kind} stream from ${base}: status ${res.statusCode}`));
        }
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          const now = performance.now();
          buffer += chunk;
          let index: number;
          while ((index = buffer.indexOf(separator)) >= 0) {
            const item = buffer.slice(0, index).trim();
            buffer = buffer.slice(index + separator.length);
            if (item !== "") arrivals.push(now);
          }
        });
        res.on("end", () => {
          if (arrivals.length === 0) return reject(new Error(`${kind} stream from ${base}: no events`));
          resolve({
            firstMs: arrivals[0] - start,
            gapsMs: arrivals.slice(1).map((t, i) => t - arrivals[i]),
            events: arrivals.length,
          });
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    const start = performance.now();
    req.end(body);
  });
}
