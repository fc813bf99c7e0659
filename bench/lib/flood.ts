/**
 * A wrong-password flood from many client addresses: the gateway counts failed Basic attempts
 * per client address (429 after 20 a minute, without bcrypt), so wrk, which connects from
 * 127.0.0.1 only, mostly meets that limit. This flood connects from 127.1.x.y (all of
 * 127.0.0.0/8 is this host) to 127.0.0.1, so each address gets its 20 bcrypt verifications a
 * minute, which keeps the gateway's bcrypt thread pool saturated: the worst case for a
 * legitimate caller on the same worker.
 */
import http from "node:http";

export interface FloodHandle {
  stop(): Promise<{ requests: number; seconds: number; statuses: Record<string, number> }>;
}

export function startDistributedFlood(url: string, user: string, options: { addresses: number; concurrency: number }): FloodHandle {
  const agents = Array.from(
    { length: options.addresses },
    (_, i) => new http.Agent({ keepAlive: true, maxSockets: 4, localAddress: `127.1.${Math.floor(i / 250)}.${(i % 250) + 1}` }),
  );
  const statuses: Record<string, number> = {};
  let stopped = false;
  let counter = 0;
  let requests = 0;
  const target = new URL("/api/version", url);
  const started = performance.now();
  const once = () =>
    new Promise<void>((resolve) => {
      const n = counter++;
      const auth = `Basic ${Buffer.from(`${user}:wrong-password-${n}-${Math.random().toString(36).slice(2)}`).toString("base64")}`;
      const req = http.get(target, { agent: agents[n % agents.length], headers: { Authorization: auth } }, (res) => {
        res.resume();
        res.on("end", () => {
          requests++;
          statuses[String(res.statusCode)] = (statuses[String(res.statusCode)] ?? 0) + 1;
          resolve();
        });
      });
      req.setTimeout(30_000, () => req.destroy(new Error("timeout")));
      req.on("error", (error) => {
        statuses[error.message] = (statuses[error.message] ?? 0) + 1;
        resolve();
      });
    });
  const loops = Array.from({ length: options.concurrency }, async () => {
    while (!stopped) await once();
  });
  return {
    async stop() {
      stopped = true;
      await Promise.all(loops);
      for (const agent of agents) agent.destroy();
      return { requests, seconds: (performance.now() - started) / 1000, statuses };
    },
  };
}
