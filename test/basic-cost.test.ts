/**
 * What Basic authentication costs the proxy, shown through the real nginx with one worker and
 * an expensive bcrypt (cost 12, ~200 ms): a repeat caller is not re-hashed, and wrong passwords
 * are hashed in the thread pool, so they do not stall other requests on the worker.
 * The bounds are loose (10x apart) so a noisy machine cannot flip them; bench/ measures properly.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FakeOllama, startFakeOllama } from "../harness/fake-ollama";
import { basic, bearer, request } from "../harness/http";
import { nginxTestsEnabled, type RunningGateway, startGateway } from "../harness/nginx";

const KEY = "cost-key-000000000000000000000000000";
const PASSWORD = "expensive-password-1";

async function timed(url: string, headers: Record<string, string>) {
  const start = performance.now();
  const response = await request(url, { headers });
  return { status: response.status, ms: performance.now() - start };
}

describe.runIf(nginxTestsEnabled)("Basic authentication cost on one worker", () => {
  let fake: FakeOllama;
  let gateway: RunningGateway;

  beforeAll(async () => {
    fake = await startFakeOllama();
    gateway = await startGateway({
      upstreamUrl: fake.url,
      bcryptCost: 12,
      spec: {
        workerProcesses: 1,
        // One hashing thread leaves the second core to the worker and the test client.
        bcryptThreads: 1,
        apiKeys: [{ name: "fast", key: KEY, scope: "read" }],
        basicUsers: [{ name: "dave", password: PASSWORD, scope: "read" }],
        rateLimit: { requestsPerSecond: 10_000, burst: 10_000 },
      },
    });
  });
  afterAll(async () => {
    await gateway?.stop();
    await fake?.close();
  });

  it("verifies a password with bcrypt once, then from the cache", async () => {
    const url = `${gateway.url}/api/version`;
    const first = await timed(url, basic("dave", PASSWORD));
    expect(first.status).toBe(200);
    const repeats = [];
    for (let i = 0; i < 10; i++) repeats.push(await timed(url, basic("dave", PASSWORD)));
    expect(repeats.every((r) => r.status === 200)).toBe(true);
    const slowestRepeat = Math.max(...repeats.map((r) => r.ms));
    console.info(`[measure] Basic bcrypt-12: first ${first.ms.toFixed(1)} ms, slowest of 10 repeats ${slowestRepeat.toFixed(1)} ms`);
    expect(first.ms).toBeGreaterThan(60);
    expect(slowestRepeat).toBeLessThan(first.ms / 3);
  });

  it("spends a bcrypt on unknown user names too, so timing does not reveal which names exist", async () => {
    const url = `${gateway.url}/api/version`;
    const unknown = await timed(url, basic("nobody-here", "some-password-1"));
    const wrong = await timed(url, basic("dave", "some-password-1"));
    console.info(`[measure] bcrypt-12: unknown user ${unknown.ms.toFixed(1)} ms, wrong password ${wrong.ms.toFixed(1)} ms`);
    expect(unknown.status).toBe(401);
    expect(wrong.status).toBe(401);
    // Without the decoy an unknown name would be answered in about a millisecond.
    expect(unknown.ms).toBeGreaterThan(wrong.ms / 3);
  });

  it("keeps serving other clients while wrong passwords are being hashed", async () => {
    const url = `${gateway.url}/api/version`;
    // 12 distinct wrong passwords at once: ~12 bcrypt-12 hashes, over 1 s of CPU in the pool.
    const flood = Array.from({ length: 12 }, (_, i) => request(url, { headers: basic("dave", `wrong-password-${i}-xyz`) }));
    await new Promise((r) => setTimeout(r, 20));
    const during = [];
    for (let i = 0; i < 10; i++) during.push(await timed(url, bearer(KEY)));
    const floodStatuses = (await Promise.all(flood)).map((r) => r.status);
    expect(floodStatuses.every((s) => s === 401 || s === 429)).toBe(true);
    const times = during.map((r) => r.ms).sort((a, b) => a - b);
    const median = times[Math.floor(times.length / 2)];
    console.info(`[measure] Bearer latency during a bcrypt-12 flood on the same worker: median ${median.toFixed(1)} ms, slowest ${times[times.length - 1].toFixed(1)} ms`);
    expect(during.every((r) => r.status === 200)).toBe(true);
    // In the event loop, each request here would wait behind ~200 ms hashes.
    expect(median).toBeLessThan(60);
  });
});
