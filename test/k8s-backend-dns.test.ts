/**
 * A backend whose address changes while the proxy runs (a restarted Kubernetes pod), on the real
 * nginx: the bundle names Ollama by a DNS name (the StatefulSet's headless Service) and asks a DNS
 * stand-in for it (spec `upstreamResolver`); the answer moves from one stand-in Ollama to another
 * under streaming load, and every request succeeds.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DnsStandIn, startDnsStandIn } from "../harness/dns-server";
import { type FakeOllama, startFakeOllama } from "../harness/fake-ollama";
import { runLoad } from "../harness/load";
import { bearer, request, streamChat } from "../harness/http";
import { freePort, nginxTestsEnabled, type RunningGateway, startGateway, waitUntil } from "../harness/nginx";

const KEY = "k8s-dns-key-000000000000000000000000";
const NAME = "ollama.gateway.svc.cluster.local";
/** Two pods' addresses: the one that restarts, and where it comes back. */
const POD_BEFORE = "127.0.0.2";
const POD_AFTER = "127.0.0.3";
const VALID_SECONDS = 1;
/**
 * Until every worker has asked again: nginx keeps an answer while its whole-second clock has not
 * passed `valid` (resolved at x.9 s with valid=1s, it is used until (x+2).0 s).
 */
const answerExpired = () => new Promise((r) => setTimeout(r, (VALID_SECONDS + 1.2) * 1000));

/** A port free on both loopback addresses, so both stand-ins answer on the Service's one port. */
async function portFreeOnBoth(): Promise<number> {
  for (;;) {
    const port = await freePort(POD_BEFORE);
    if ((await freePort(POD_AFTER).catch(() => 0)) !== 0) {
      try {
        const probe = await startFakeOllama({ host: POD_AFTER, port });
        await probe.close();
        return port;
      } catch {
        // taken on the other address: pick another
      }
    }
  }
}

/** Streaming chats from `concurrency` loops (plus /api/tags) until stopped; every failure is kept. */
function streamingLoad(url: string, concurrency = 6) {
  return runLoad(concurrency, async (loop) => {
    if (loop > 0) {
      await streamChat(url, undefined, bearer(KEY));
      return;
    }
    const response = await request(`${url}/api/tags`, { headers: bearer(KEY) });
    if (response.status !== 200) throw new Error(`/api/tags answered ${response.status}: ${response.body}`);
  });
}

describe.runIf(nginxTestsEnabled)("a backend whose address changes (Kubernetes pod restart)", () => {
  let dns: DnsStandIn;
  let before: FakeOllama;
  let after: FakeOllama;
  let gateway: RunningGateway;

  beforeAll(async () => {
    dns = await startDnsStandIn(VALID_SECONDS);
    const port = await portFreeOnBoth();
    // Short streams (5 chunks, 40 ms apart), so many start and end around the switch.
    before = await startFakeOllama({ host: POD_BEFORE, port, chunks: 5, chunkIntervalMs: 40 });
    after = await startFakeOllama({ host: POD_AFTER, port, chunks: 5, chunkIntervalMs: 40 });
    dns.setRecords(NAME, [POD_BEFORE]);
    gateway = await startGateway({
      upstreamUrl: `http://${NAME}:${port}`,
      spec: {
        upstreamResolver: { address: dns.address, validSeconds: VALID_SECONDS },
        apiKeys: [{ name: "app", key: KEY, scope: "inference" }],
        rateLimit: { requestsPerSecond: 100_000, burst: 100_000 },
      },
    });
  });
  afterAll(async () => {
    await gateway?.stop();
    await before?.close().catch(() => undefined); // the first test stops it
    await after?.close();
    await dns?.close();
  });

  it("follows the name to the new address under streaming load, with zero failed requests", async () => {
    const load = streamingLoad(gateway.url);
    await waitUntil(() => load.stats.ok >= 20, 10_000);
    expect(before.requests.length).toBeGreaterThan(0);
    expect(after.requests.length).toBe(0);

    // The pod is gone from the Service: DNS answers the new address only. The old pod keeps
    // serving what it has (the StatefulSet's preStop drain) until nothing reaches it any more.
    dns.setRecords(NAME, [POD_AFTER]);
    await waitUntil(() => after.requests.length >= 20, 10_000);
    let seen = before.requests.length;
    await waitUntil(
      async () => {
        const quiet = before.requests.length === seen && before.activeStreams === 0;
        seen = before.requests.length;
        return quiet;
      },
      10_000,
      (VALID_SECONDS + 1.2) * 1000,
    );
    const servedBefore = before.requests.length;
    await before.close();

    // Now the old address refuses connections; the proxy must not send anything there.
    const atClose = after.requests.length;
    await waitUntil(() => after.requests.length >= atClose + 40, 10_000);
    const stats = await load.stop();

    expect(stats.failed).toEqual([]);
    expect(before.requests.length).toBe(servedBefore);
    expect(stats.ok).toBeGreaterThan(80);
    // nginx asked the DNS server again, not once at start.
    expect(dns.queries.get(NAME)).toBeGreaterThan(2);
    console.log(`address change: ${stats.ok} requests, 0 failed; ${servedBefore} served by the old address, ${after.requests.length} by the new; ${dns.queries.get(NAME)} DNS queries`);
  });

  it("spreads requests over every address the name has, and /healthz answers through it", async () => {
    const port = Number(new URL(after.url).port);
    const second = await startFakeOllama({ host: POD_BEFORE, port });
    try {
      dns.setRecords(NAME, [POD_BEFORE, POD_AFTER]);
      await answerExpired();
      const afterStart = after.requests.length;
      for (let i = 0; i < 40; i++) expect((await request(`${gateway.url}/api/version`, { headers: bearer(KEY) })).status).toBe(200);
      expect(second.requests.length).toBeGreaterThan(5);
      expect(after.requests.length - afterStart).toBeGreaterThan(5);
      const health = await request(`${gateway.url}/healthz`);
      expect(health.status).toBe(200);
    } finally {
      dns.setRecords(NAME, [POD_AFTER]);
      await second.close();
    }
  });

  it("answers 502 JSON, not a hang, while the name has no address, and recovers", async () => {
    dns.setRecords(NAME, []);
    await answerExpired();
    const response = await request(`${gateway.url}/api/version`, { headers: bearer(KEY) });
    expect(response.status).toBe(502);
    expect(response.json()).toHaveProperty("error");
    expect((await request(`${gateway.url}/healthz`)).status).toBe(503);
    dns.setRecords(NAME, [POD_AFTER]);
    await waitUntil(async () => (await request(`${gateway.url}/api/version`, { headers: bearer(KEY) })).status === 200, 5000);
  });
});
