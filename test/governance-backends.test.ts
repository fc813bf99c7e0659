/**
 * Per-credential model lists (issue 16) where Ollama is not one fixed backend, on the real nginx:
 * a pool of backends (spec `upstreams`: the lists are the union of the backends' answers, cut
 * down to the caller's models) and a backend named by DNS and resolved while nginx runs (spec
 * `upstreamResolver`, as on Kubernetes). With a pool, the metrics listener also reports each
 * backend's health and requests in progress.
 */
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DnsStandIn, startDnsStandIn } from "../harness/dns-server";
import { type FakeOllama, startFakeOllama } from "../harness/fake-ollama";
import { bearer, request } from "../harness/http";
import { freePort, nginxTestsEnabled, type RunningGateway, startGateway, waitUntil } from "../harness/nginx";

const PICKY_KEY = "picky-models-key-8f3a61c0d2b94e7a5c";
const ALL_KEY = "all-models-key-4b7e90d1a3c25f68e1";
const API_KEYS = [
  { name: "picky", key: PICKY_KEY, scope: "inference" as const, models: ["gemma3:*", "qwen3:8b"] },
  { name: "all", key: ALL_KEY, scope: "inference" as const },
];
const RATE = { requestsPerSecond: 10_000, burst: 10_000 };

const names = (body: string, list = "models", field = "name") =>
  (JSON.parse(body)[list] as Record<string, string>[]).map((entry) => entry[field]).sort();

function generate(url: string, key: string, model: string) {
  return request(`${url}/api/generate`, {
    method: "POST",
    headers: { ...bearer(key), "Content-Type": "application/json" },
    body: JSON.stringify({ model, prompt: "hi", stream: false }),
  });
}

describe.runIf(nginxTestsEnabled)("model lists and metrics with a pool of backends", () => {
  let a: FakeOllama;
  let b: FakeOllama;
  let gateway: RunningGateway;
  let metricsUrl: string;

  beforeAll(async () => {
    // Backend a streams slowly, so a request can be seen in progress on it.
    a = await startFakeOllama({ models: ["gemma3:1b", "llama3.2:latest"], loaded: ["gemma3:1b", "llama3.2:latest"], chunks: 6, chunkIntervalMs: 150 });
    b = await startFakeOllama({ models: ["gemma3:1b", "qwen3:8b"], loaded: ["qwen3:8b"] });
    gateway = await startGateway({
      spec: {
        upstreams: [
          { name: "a", url: a.url },
          { name: "b", url: b.url },
        ],
        probeIntervalSeconds: 1,
        apiKeys: API_KEYS,
        rateLimit: RATE,
        metrics: { listen: { address: "127.0.0.1", port: await freePort() } },
      },
    });
    metricsUrl = `http://127.0.0.1:${gateway.spec.metrics?.listen.port}/metrics`;
    await waitUntil(async () => (await request(`${gateway.url}/healthz`)).status === 200, 5000);
  });
  afterAll(async () => {
    await gateway?.stop();
    await a?.close();
    await b?.close().catch(() => undefined); // the metrics test stops it
  });

  it("answers /api/tags, /api/ps and /v1/models with the union of the backends, cut down to the caller's models", async () => {
    const tags = await request(`${gateway.url}/api/tags`, { headers: bearer(PICKY_KEY) });
    expect(tags.status).toBe(200);
    expect(names(tags.body)).toEqual(["gemma3:1b", "qwen3:8b"]);
    const ps = await request(`${gateway.url}/api/ps`, { headers: bearer(PICKY_KEY) });
    expect(names(ps.body)).toEqual(["gemma3:1b", "qwen3:8b"]);
    const openai = await request(`${gateway.url}/v1/models`, { headers: bearer(PICKY_KEY) });
    expect(names(openai.body, "data", "id")).toEqual(["gemma3:1b", "qwen3:8b"]);
    // A credential without a list sees every backend's models.
    const everything = await request(`${gateway.url}/api/tags`, { headers: bearer(ALL_KEY) });
    expect(names(everything.body)).toEqual(["gemma3:1b", "llama3.2:latest", "qwen3:8b"]);
  });

  it("routes a listed model to the backend that holds it, and refuses an unlisted one before any backend", async () => {
    const listed = await generate(gateway.url, PICKY_KEY, "qwen3:8b");
    expect(listed.status).toBe(200);
    expect(b.requests.some((r) => r.path === "/api/generate")).toBe(true);
    const before = a.requests.length + b.requests.length;
    const unlisted = await generate(gateway.url, PICKY_KEY, "llama3.2");
    expect(unlisted.status).toBe(403);
    expect(unlisted.json()).toEqual({ error: "model 'llama3.2' is not one this credential may use" });
    // Probes go on meanwhile; no inference request reached either backend.
    expect([...a.requests, ...b.requests].slice(before).filter((r) => r.path === "/api/generate")).toEqual([]);
  });


  it("reports each backend's health and requests in progress on the metrics listener", async () => {
    const gauges = async () => (await request(metricsUrl)).body.split("\n").filter((line) => line.startsWith("ollama_gateway_backend_"));
    await waitUntil(async () => (await gauges()).includes('ollama_gateway_backend_up{backend="b"} 1'), 5000);
    // llama3.2 is only on a: a slow stream there is in progress while the metrics are read.
    const streaming = request(`${gateway.url}/api/generate`, {
      method: "POST",
      headers: { ...bearer(ALL_KEY), "Content-Type": "application/json" },
      body: JSON.stringify({ model: "llama3.2", prompt: "hi" }),
    });
    await waitUntil(async () => (await gauges()).includes('ollama_gateway_backend_in_flight_requests{backend="a"} 1'), 3000);
    expect(await gauges()).toContain('ollama_gateway_backend_in_flight_requests{backend="b"} 0');
    expect((await streaming).status).toBe(200);
    await waitUntil(async () => (await gauges()).includes('ollama_gateway_backend_in_flight_requests{backend="a"} 0'), 3000);
    await b.close();
    await waitUntil(async () => (await gauges()).includes('ollama_gateway_backend_up{backend="b"} 0'), 5000);
    expect(await gauges()).toContain('ollama_gateway_backend_up{backend="a"} 1');
    const check = execFileSync("sh", ["-c", "promtool check metrics 2>&1; echo exit=$?"], { input: (await request(metricsUrl)).body, encoding: "utf8" });
    expect(check.trim()).toBe("exit=0");
  });
});

describe.runIf(nginxTestsEnabled)("model lists with a backend resolved by DNS (Kubernetes)", () => {
  let dns: DnsStandIn;
  let ollama: FakeOllama;
  let gateway: RunningGateway;
  const NAME = "ollama.gateway.svc.cluster.local";

  beforeAll(async () => {
    dns = await startDnsStandIn(1);
    ollama = await startFakeOllama({ host: "127.0.0.2", models: ["gemma3:1b", "llama3.2:latest", "qwen3:8b"] });
    dns.setRecords(NAME, ["127.0.0.2"]);
    gateway = await startGateway({
      upstreamUrl: `http://${NAME}:${ollama.port}`,
      spec: { upstreamResolver: { address: dns.address, validSeconds: 1 }, apiKeys: API_KEYS, rateLimit: RATE },
    });
  });
  afterAll(async () => {
    await gateway?.stop();
    await ollama?.close();
    await dns?.close();
  });

  it("filters the listing fetched from the resolved backend, and refuses an unlisted model", async () => {
    const tags = await request(`${gateway.url}/api/tags`, { headers: bearer(PICKY_KEY) });
    expect(tags.status).toBe(200);
    expect(names(tags.body)).toEqual(["gemma3:1b", "qwen3:8b"]);
    const openai = await request(`${gateway.url}/v1/models`, { headers: bearer(PICKY_KEY) });
    expect(names(openai.body, "data", "id")).toEqual(["gemma3:1b", "qwen3:8b"]);
    expect((await generate(gateway.url, PICKY_KEY, "gemma3:1b")).status).toBe(200);
    expect((await generate(gateway.url, PICKY_KEY, "llama3.2")).status).toBe(403);
    expect(dns.queries.get(NAME)).toBeGreaterThan(0);
  });
});
