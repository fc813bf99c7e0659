/**
 * A pool of Ollama backends (spec `upstreams`) through the real nginx, in front of several
 * stand-in Ollama servers on loopback, each holding different models: model-aware routing,
 * health and failover, aggregated read routes, model administration pinned to one backend,
 * caller affinity, and the access log's `backend` field.
 */
import { Ollama } from "ollama";
import OpenAI from "openai";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { renderConfigFiles } from "../bundle/render";
import { parseSpec, validateSettings } from "../bundle/spec";
import { type FakeOllama, type FakeOllamaOptions, QUEUE_FULL_ERROR, startFakeOllama } from "../harness/fake-ollama";
import { bearer, rawRequest, request } from "../harness/http";
import { nginxTestsEnabled, type RunningGateway, startGateway, waitUntil } from "../harness/nginx";

const KEY = "pool-admin-key-000000000000000000000";
const INFERENCE_KEY = "pool-inference-key-0000000000000000";
const AUTH = bearer(KEY);
const JSON_HEADERS = { ...AUTH, "Content-Type": "application/json" };

/** Which backends hold which models (and which have them loaded). */
const LAYOUT: Record<string, FakeOllamaOptions> = {
  a: { models: ["gemma3:1b", "llama3.2:latest"], loaded: ["gemma3:1b"] },
  b: { models: ["gemma3:1b", "qwen3:8b"] },
  c: { models: ["mistral:7b"] },
};

interface Pool {
  fakes: Record<string, FakeOllama>;
  gateway: RunningGateway;
}

async function startPool(spec: Record<string, unknown> = {}, layout = LAYOUT): Promise<Pool> {
  const fakes: Record<string, FakeOllama> = {};
  for (const [name, options] of Object.entries(layout)) fakes[name] = await startFakeOllama({ chunks: 3, chunkIntervalMs: 5, ...options });
  const gateway = await startGateway({
    spec: {
      // Backend c by host name: resolved by the proxy, not at render time.
      upstreams: Object.entries(fakes).map(([name, fake]) => ({ name, url: name === "c" ? `http://localhost:${fake.port}` : fake.url })),
      probeIntervalSeconds: 1,
      apiKeys: [
        { name: "admin", key: KEY, scope: "admin" },
        { name: "app", key: INFERENCE_KEY, scope: "inference" },
      ],
      rateLimit: { requestsPerSecond: 10_000, burst: 10_000 },
      ...spec,
    },
  });
  await waitForHealth(gateway, Object.keys(fakes).length);
  return { fakes, gateway };
}

async function stopPool(pool: Pool | undefined) {
  await pool?.gateway.stop();
  for (const fake of Object.values(pool?.fakes ?? {})) await fake.close().catch(() => {});
}

interface Health {
  status: string;
  upstream: string;
  backends: { name: string; state: string; models: number; loaded: number; in_flight: number; error?: string }[];
}

async function health(gateway: RunningGateway): Promise<{ status: number; body: Health }> {
  const response = await request(`${gateway.url}/healthz`);
  return { status: response.status, body: response.json() as Health };
}

/** Waits until `/healthz` shows `healthy` backends up (all of them by default). */
async function waitForHealth(gateway: RunningGateway, healthy: number, timeoutMs = 5000) {
  return waitUntil(async () => (await health(gateway)).body.backends?.filter((b) => b.state === "healthy").length === healthy, timeoutMs);
}

const generate = (gateway: RunningGateway, model: string, headers: Record<string, string> = {}) =>
  request(`${gateway.url}/api/generate`, {
    method: "POST",
    headers: { ...JSON_HEADERS, ...headers },
    body: JSON.stringify({ model, prompt: "hi", stream: false }),
  });

/** The backends (by name) that received requests on `path`. */
function served(pool: Pool, path: string): string[] {
  return Object.entries(pool.fakes)
    .filter(([, fake]) => fake.requests.some((r) => r.path === path))
    .map(([name]) => name);
}

function clearRequests(pool: Pool) {
  for (const fake of Object.values(pool.fakes)) fake.requests.length = 0;
}

describe("spec: upstreams", () => {
  const base = { name: "a", url: "http://127.0.0.1:11434" };
  it("accepts a pool, unreachable addresses included, and `upstream` alone", () => {
    expect(parseSpec({ upstreams: [base, { name: "b", url: "http://10.255.255.1:1", weight: 3, maxConcurrent: 4 }] }).ok).toBe(true);
    expect(parseSpec({ upstream: "http://127.0.0.1:11434" }).ok).toBe(true);
  });
  it("refuses duplicate names, malformed URLs, maxConcurrent < 1, mixed schemes and both fields, all at once", () => {
    const result = parseSpec({
      upstream: "http://127.0.0.1:11434",
      upstreams: [
        base,
        { name: "a", url: "http://127.0.0.1:11435" },
        { name: "c", url: "not a url" },
        { name: "d", url: "http://127.0.0.1:11436/ollama" },
        { name: "e", url: "http://127.0.0.1:11437", maxConcurrent: 0 },
        { name: "f", url: "https://127.0.0.1:11438" },
      ],
    });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const fix = "use an http(s) URL with host and optional port and no path, such as http://10.0.0.5:11434";
    expect(result.errors).toEqual(expect.arrayContaining([
      "`upstreams[1].name` (\"a\") is already used by `upstreams[0]`; give every backend its own name",
      `\`upstreams[2].url\` is "not a url"; ${fix}`,
      `\`upstreams[3].url\` is "http://127.0.0.1:11436/ollama"; ${fix}`,
      "`upstreams[4].maxConcurrent` is 0; use a whole number of requests, 1 or more",
      "`upstreams[5].url` (\"https://127.0.0.1:11438\") uses https but `upstreams[0].url` uses http; use one scheme for every backend",
      "`upstream` (\"http://127.0.0.1:11434\") is set together with `upstreams`; list that server in `upstreams` and remove `upstream`",
    ]));
    expect(result.errors).toHaveLength(6);
  });
});

describe("a pool of one", () => {
  it("renders as `upstream` does: no balancer, no probes; only the name in the log differs", () => {
    const single = renderConfigFiles(validateSettings({ upstream: "http://127.0.0.1:11434" }));
    const listed = renderConfigFiles(validateSettings({ upstreams: [{ name: "gpu0", url: "http://127.0.0.1:11434" }] }));
    for (const file of Object.keys(single)) {
      expect(listed[file].replace('default "gpu0";', 'default "ollama";'), file).toBe(single[file]);
    }
    expect(single["conf/nginx.conf"]).not.toContain("balancer_by_lua");
    expect(single["lua/gateway/config.lua"]).not.toContain("pool");
  });
});

describe.runIf(nginxTestsEnabled)("one backend: the access log names it", () => {
  it("logs `ollama` for a request that reached it and nothing for one refused before", async () => {
    const fake = await startFakeOllama();
    const gateway = await startGateway({ upstreamUrl: fake.url, spec: { apiKeys: [{ name: "admin", key: KEY, scope: "admin" }] } });
    try {
      await request(`${gateway.url}/api/tags`, { headers: AUTH });
      await request(`${gateway.url}/api/tags`);
      const log = await gateway.settledAccessLog();
      expect(log.map((entry) => [entry.status, entry.backend])).toEqual([[200, "ollama"], [401, ""]]);
    } finally {
      await gateway.stop();
      await fake.close();
    }
  });
});

describe.runIf(nginxTestsEnabled)("a pool of Ollama backends through the real nginx", () => {
  let pool: Pool;
  beforeAll(async () => {
    pool = await startPool();
  });
  afterAll(() => stopPool(pool));
  afterEach(() => clearRequests(pool));

  it("/healthz shows each backend", async () => {
    const { status, body } = await health(pool.gateway);
    expect(status).toBe(200);
    expect(body.status).toBe("ok");
    expect(body.backends).toEqual([
      { name: "a", state: "healthy", models: 2, loaded: 1, in_flight: 0 },
      { name: "b", state: "healthy", models: 2, loaded: 0, in_flight: 0 },
      { name: "c", state: "healthy", models: 1, loaded: 0, in_flight: 0 },
    ]);
  });

  it("sends each request only to backends that have its model", async () => {
    for (const [model, backends] of [
      ["mistral:7b", ["c"]], ["library/Mistral:7B", ["c"]], ["qwen3:8b", ["b"]], ["registry.ollama.ai/library/qwen3:8b", ["b"]],
      ["llama3.2", ["a"]], ["gemma3:1b", ["a", "b"]],
    ] as const) {
      clearRequests(pool);
      for (let i = 0; i < 20; i++) expect((await generate(pool.gateway, model)).status).toBe(200);
      expect(backends).toEqual(expect.arrayContaining(served(pool, "/api/generate")));
    }
  });

  it("routes every route that names a model: /api/show, /v1/models/:model, OpenAI chat", async () => {
    const show = await request(`${pool.gateway.url}/api/show`, { method: "POST", headers: JSON_HEADERS, body: JSON.stringify({ model: "qwen3:8b" }) });
    expect(show.status).toBe(200);
    const model = await request(`${pool.gateway.url}/v1/models/mistral:7b`, { headers: AUTH });
    expect(model.json()).toMatchObject({ id: "mistral:7b" });
    const openai = new OpenAI({ baseURL: `${pool.gateway.url}/v1`, apiKey: KEY });
    const completion = await openai.chat.completions.create({ model: "llama3.2", messages: [{ role: "user", content: "hi" }] });
    expect(completion.choices[0].message.content).toBe("The sky is");
    expect([served(pool, "/api/show"), served(pool, "/v1/models/mistral:7b"), served(pool, "/v1/chat/completions")]).toEqual([["b"], ["c"], ["a"]]);
  });

  it("learns models from /api/tags and /api/ps only, never by generating", async () => {
    await new Promise((r) => setTimeout(r, 1500));
    const probed = Object.values(pool.fakes).flatMap((fake) => fake.requests.map((r) => `${r.method} ${r.path}`));
    expect(new Set(probed)).toEqual(new Set(["GET /api/version", "GET /api/tags", "GET /api/ps"]));
  });

  it("prefers the backend where the model is loaded while it has no more requests in progress", async () => {
    for (let i = 0; i < 10; i++) await generate(pool.gateway, "gemma3:1b");
    expect(served(pool, "/api/generate")).toEqual(["a"]);
  });

  it("answers a model no backend has with Ollama's 404, on native and OpenAI routes", async () => {
    const response = await generate(pool.gateway, "nonexistent:1b");
    expect(response.status).toBe(404);
    expect(response.json()).toEqual({ error: "model 'nonexistent:1b' not found" });
    const openai = new OpenAI({ baseURL: `${pool.gateway.url}/v1`, apiKey: KEY, maxRetries: 0 });
    await expect(openai.chat.completions.create({ model: "nonexistent:1b", messages: [{ role: "user", content: "hi" }] }))
      .rejects.toMatchObject({ status: 404, code: "model_not_found", message: expect.stringContaining("model 'nonexistent:1b' not found") });
    expect(Object.values(pool.fakes).every((fake) => !fake.requests.some((r) => r.method === "POST"))).toBe(true);
  });

  it("answers /api/tags, /api/ps and /v1/models with the union (each model once), /api/version from one", async () => {
    const ollama = new Ollama({ host: pool.gateway.url, headers: AUTH });
    const tags = await ollama.list();
    expect(tags.models.map((m) => m.name).sort()).toEqual(["gemma3:1b", "llama3.2:latest", "mistral:7b", "qwen3:8b"]);
    const ps = await ollama.ps();
    expect(ps.models.map((m) => m.name)).toEqual(["gemma3:1b"]);
    const openai = new OpenAI({ baseURL: `${pool.gateway.url}/v1`, apiKey: KEY });
    const models = [];
    for await (const model of openai.models.list()) models.push(model.id);
    expect(models.sort()).toEqual(["gemma3:1b", "llama3.2:latest", "mistral:7b", "qwen3:8b"]);
    const version = await request(`${pool.gateway.url}/api/version`, { headers: AUTH });
    expect(version.json()).toEqual({ version: expect.stringMatching(/^\d+\.\d+\.\d+$/) });
    const raw = await request(`${pool.gateway.url}/api/tags`, { headers: AUTH });
    expect(raw.headers.get("content-type")).toBe("application/json; charset=utf-8");
    // Each entry exactly as a backend wrote it (nested arrays and objects included).
    const direct = await Promise.all(["a", "b", "c"].map(async (name) => (await request(`${pool.fakes[name].url}/api/tags`)).json() as { models: { name: string }[] }));
    const firstSeen = new Map<string, unknown>();
    for (const list of direct) for (const entry of list.models) if (!firstSeen.has(entry.name)) firstSeen.set(entry.name, entry);
    expect(raw.json()).toEqual({ models: [...firstSeen.values()] });
  });

  it("answers an empty union as an empty list", async () => {
    const empty = await startPool({}, { x: { models: [] }, y: { models: [] } });
    try {
      const tags = await request(`${empty.gateway.url}/api/tags`, { headers: AUTH });
      expect(tags.body).toBe('{"models":[]}');
      const ps = await request(`${empty.gateway.url}/api/ps`, { headers: AUTH });
      expect(ps.body).toBe('{"models":[]}');
      const models = await request(`${empty.gateway.url}/v1/models`, { headers: AUTH });
      expect(models.json()).toEqual({ object: "list", data: [] });
    } finally {
      await stopPool(empty);
    }
  });

  it("streams through the pool unbuffered, with the official client", async () => {
    const ollama = new Ollama({ host: pool.gateway.url, headers: AUTH });
    const parts: string[] = [];
    for await (const part of await ollama.chat({ model: "qwen3:8b", messages: [{ role: "user", content: "hi" }], stream: true })) parts.push(part.message.content);
    expect(parts.join("")).toBe("The sky is");
    expect(served(pool, "/api/chat")).toEqual(["b"]);
  });

  it("admin routes without X-Ollama-Backend get 400 naming the header and the backends", async () => {
    for (const [method, path, body] of [
      ["POST", "/api/pull", { model: "gemma3:1b" }],
      ["DELETE", "/api/delete", { model: "gemma3:1b" }],
      ["POST", "/api/copy", { source: "gemma3:1b", destination: "g2" }],
      ["POST", "/api/create", { model: "g3", from: "gemma3:1b" }],
      ["POST", "/api/push", { model: "gemma3:1b" }],
      ["HEAD", "/api/blobs/sha256:abc", undefined],
    ] as const) {
      const response = await request(`${pool.gateway.url}${path}`, { method, headers: JSON_HEADERS, body: body && JSON.stringify(body) });
      expect(response.status, `${method} ${path}`).toBe(400);
      if (method !== "HEAD")
        expect(response.json()).toEqual({ error: "this route changes one server's models: name it in an X-Ollama-Backend header (one of: a, b, c)" });
    }
    expect(Object.values(pool.fakes).every((fake) => fake.requests.every((r) => r.method === "GET"))).toBe(true);
  });

  it("admin routes with X-Ollama-Backend reach only that backend, and the header is not forwarded", async () => {
    const response = await request(`${pool.gateway.url}/api/pull`, {
      method: "POST",
      headers: { ...JSON_HEADERS, "X-Ollama-Backend": "c" },
      body: JSON.stringify({ model: "gemma3:1b", stream: false }),
    });
    expect(response.status).toBe(200);
    expect(served(pool, "/api/pull")).toEqual(["c"]);
    const pull = pool.fakes.c.requests.find((r) => r.path === "/api/pull")!;
    expect(pull.headers["x-ollama-backend"]).toBeUndefined();
    const unknown = await request(`${pool.gateway.url}/api/pull`, {
      method: "POST",
      headers: { ...JSON_HEADERS, "X-Ollama-Backend": "zz" },
      body: JSON.stringify({ model: "gemma3:1b" }),
    });
    expect(unknown.status).toBe(400);
    expect(unknown.json()).toEqual({ error: "X-Ollama-Backend names no backend of this gateway; use one of: a, b, c" });
  });

  it("X-Ollama-Backend on any route pins it to that backend; two of them are refused", async () => {
    const tags = await request(`${pool.gateway.url}/api/tags`, { headers: { ...AUTH, "X-Ollama-Backend": "b" } });
    expect((tags.json() as { models: { name: string }[] }).models.map((m) => m.name)).toEqual(["gemma3:1b", "qwen3:8b"]);
    const twice = await rawRequest(
      Number(new URL(pool.gateway.url).port),
      `GET /api/tags HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nX-Ollama-Backend: a\r\nX-Ollama-Backend: b\r\nConnection: close\r\n\r\n`,
    );
    expect(twice.status).toBe(400);
    expect(twice.text).toContain('{"error":"send one X-Ollama-Backend header"}');
  });

  it("keeps the route policy: an inference key cannot pull, even naming a backend", async () => {
    const response = await request(`${pool.gateway.url}/api/pull`, {
      method: "POST",
      headers: { ...bearer(INFERENCE_KEY), "Content-Type": "application/json", "X-Ollama-Backend": "a" },
      body: JSON.stringify({ model: "gemma3:1b" }),
    });
    expect(response.status).toBe(403);
    expect(served(pool, "/api/pull")).toEqual([]);
  });

  it("names the backend that served each request in the access log", async () => {
    await generate(pool.gateway, "mistral:7b");
    await request(`${pool.gateway.url}/api/tags`, { headers: AUTH });
    await request(`${pool.gateway.url}/api/tags`);
    const log = await pool.gateway.settledAccessLog();
    const last = log.slice(-3);
    expect(last.map((entry) => [entry.path, entry.status, entry.backend])).toEqual([
      ["/api/generate", 200, "c"],
      ["/api/tags", 200, "a,b,c"],
      ["/api/tags", 401, ""],
    ]);
  });
});

describe.runIf(nginxTestsEnabled)("pool failover", () => {
  let pool: Pool | undefined;
  afterEach(async () => {
    await stopPool(pool);
    pool = undefined;
  });

  it("a stopped backend causes no failed request for a model another backend has; it is taken back once healthy", async () => {
    pool = await startPool({}, { a: { models: ["gemma3:1b"] }, b: { models: ["gemma3:1b"] } });
    const { gateway, fakes } = pool;
    const port = fakes.a.port;
    let failed = 0;
    let total = 0;
    let stop = false;
    const load = (async () => {
      while (!stop) {
        const response = await generate(gateway, "gemma3:1b");
        total++;
        if (response.status !== 200) failed++;
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    await fakes.a.close();
    await waitUntil(async () => (await health(gateway)).body.backends.find((b) => b.name === "a")?.state === "unhealthy", 3000);
    const down = await health(gateway);
    expect(down.status).toBe(200);
    expect(down.body.backends.find((b) => b.name === "a")?.error).toBeTruthy();
    fakes.a = await startFakeOllama({ port, models: ["gemma3:1b"] });
    await waitForHealth(gateway, 2, 3000);
    fakes.b.requests.length = 0;
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await load;
    expect(failed).toBe(0);
    expect(total).toBeGreaterThan(20);
    expect(fakes.a.requests.some((r) => r.path === "/api/generate")).toBe(true);
  });

  it("a backend unreachable from the start is reported unhealthy; the others serve, and the union leaves it out", async () => {
    const gone = await startFakeOllama({ models: ["mistral:7b"] });
    const closedUrl = gone.url;
    await gone.close();
    const fake = await startFakeOllama({ models: ["gemma3:1b"] });
    const gateway = await startGateway({
      spec: {
        upstreams: [{ name: "up", url: fake.url }, { name: "gone", url: closedUrl }],
        apiKeys: [{ name: "admin", key: KEY, scope: "admin" }],
      },
    });
    pool = { gateway, fakes: { up: fake } };
    await waitUntil(async () => (await health(gateway)).body.backends?.every((b) => b.state !== "unknown"), 5000);
    const { status, body } = await health(gateway);
    expect(status).toBe(200);
    expect(body.backends).toEqual([
      { name: "up", state: "healthy", models: 1, loaded: 0, in_flight: 0 },
      { name: "gone", state: "unhealthy", error: "connect: connection refused", models: 0, loaded: 0, in_flight: 0 },
    ]);
    expect((await generate(gateway, "gemma3:1b")).status).toBe(200);
    const tags = await request(`${gateway.url}/api/tags`, { headers: AUTH });
    expect((tags.json() as { models: { name: string }[] }).models.map((m) => m.name)).toEqual(["gemma3:1b"]);
  });

  it("retries a queue-full 503 on another backend with the model; the last backend's answer passes through", async () => {
    pool = await startPool({}, { a: { models: ["gemma3:1b"] }, b: { models: ["gemma3:1b"] } });
    pool.fakes.a.mode = "queue-full";
    for (let i = 0; i < 10; i++) expect((await generate(pool.gateway, "gemma3:1b")).status).toBe(200);
    pool.fakes.b.mode = "queue-full";
    const response = await generate(pool.gateway, "gemma3:1b");
    expect(response.status).toBe(503);
    expect(response.json()).toEqual({ error: QUEUE_FULL_ERROR });
    // A full queue is not a failure: both stay healthy.
    expect((await health(pool.gateway)).body.backends.map((b) => b.state)).toEqual(["healthy", "healthy"]);
  });

  it("retries a backend that does not answer in time on another one", async () => {
    // a has the model loaded, so it is tried first.
    pool = await startPool({ timeouts: { upstreamReadSeconds: 1 }, probeIntervalSeconds: 30 }, { a: { models: ["gemma3:1b"], loaded: ["gemma3:1b"] }, b: { models: ["gemma3:1b"] } });
    pool.fakes.a.mode = "slow";
    pool.fakes.a.setOptions({ firstByteDelayMs: 3000 });
    for (let i = 0; i < 3; i++) expect((await generate(pool.gateway, "gemma3:1b")).status).toBe(200);
    // The first time-out took a out until its next good probe: the other requests went straight to b.
    expect(pool.fakes.a.requests.filter((r) => r.path === "/api/generate")).toHaveLength(1);
    expect((await health(pool.gateway)).body.backends.map((b) => b.state)).toEqual(["unhealthy", "healthy"]);
  });

  it("never retries once the response has started", async () => {
    pool = await startPool({}, { a: { models: ["gemma3:1b"] }, b: { models: ["gemma3:1b"] } });
    pool.fakes.a.mode = "reset-mid-stream";
    pool.fakes.b.mode = "reset-mid-stream";
    const response = await fetch(`${pool.gateway.url}/api/generate`, {
      method: "POST",
      headers: JSON_HEADERS,
      body: JSON.stringify({ model: "gemma3:1b", prompt: "hi" }),
    });
    expect(response.status).toBe(200);
    await expect(response.text()).rejects.toThrow();
    const generates = Object.values(pool.fakes).flatMap((fake) => fake.requests.filter((r) => r.path === "/api/generate"));
    expect(generates).toHaveLength(1);
  });

  it("backends that refuse before a probe noticed: a JSON 502 after trying each, and nothing left counted in progress", async () => {
    pool = await startPool({ probeIntervalSeconds: 30 }, { a: { models: ["gemma3:1b"] }, b: { models: ["gemma3:1b"] } });
    const { gateway, fakes } = pool;
    await fakes.a.close();
    await fakes.b.close();
    const response = await generate(gateway, "gemma3:1b");
    expect(response.status).toBe(502);
    expect(response.json()).toEqual({ error: "upstream Ollama server is unreachable" });
    // The last attempt is counted in the log phase, which runs after the client has its answer.
    await waitUntil(async () => (await health(gateway)).status === 503, 1000);
    const { status, body } = await health(gateway);
    expect(status).toBe(503);
    expect(body.backends.map((b) => [b.state, b.in_flight])).toEqual([["unhealthy", 0], ["unhealthy", 0]]);
  });

  it("a model whose only backend is down gets 503 with Retry-After, not 404; other models still work", async () => {
    pool = await startPool({}, { a: { models: ["gemma3:1b"] }, b: { models: ["qwen3:8b"] } });
    await pool.fakes.a.close();
    await waitForHealth(pool.gateway, 1, 3000);
    const response = await generate(pool.gateway, "gemma3:1b");
    expect(response.status).toBe(503);
    expect(response.headers.get("retry-after")).toBe("5");
    expect(response.json()).toEqual({ error: "model 'gemma3:1b' is only on backends that are down (a); retry later" });
    expect((await generate(pool.gateway, "qwen3:8b")).status).toBe(200);
    expect((await generate(pool.gateway, "nonexistent")).status).toBe(404);
  });

  it("streams unbuffered: the first line arrives long before the stream ends", async () => {
    pool = await startPool({}, { a: { models: ["gemma3:1b"], chunks: 5, chunkIntervalMs: 200 }, b: { models: ["qwen3:8b"] } });
    const start = performance.now();
    const response = await fetch(`${pool.gateway.url}/api/generate`, { method: "POST", headers: JSON_HEADERS, body: JSON.stringify({ model: "gemma3:1b", prompt: "hi" }) });
    const reader = response.body!.getReader();
    await reader.read();
    const first = performance.now() - start;
    while (!(await reader.read()).done);
    const total = performance.now() - start;
    expect(total).toBeGreaterThan(700);
    expect(first).toBeLessThan(total / 2);
  });

  it("/healthz is 503 when no backend is healthy, and a request then gets 503, not a hang", async () => {
    pool = await startPool({}, { a: { models: ["gemma3:1b"] }, b: { models: ["qwen3:8b"] } });
    await pool.fakes.a.close();
    await pool.fakes.b.close();
    await waitForHealth(pool.gateway, 0, 3000);
    const { status, body } = await health(pool.gateway);
    expect(status).toBe(503);
    expect(body.backends.map((b) => b.state)).toEqual(["unhealthy", "unhealthy"]);
    const response = await generate(pool.gateway, "gemma3:1b");
    expect(response.status).toBe(503);
    expect(response.json()).toEqual({ error: "no Ollama backend is healthy" });
  });

  it("respects maxConcurrent: a full backend gets no more requests while another has the model", async () => {
    // Answers slow enough that all six requests are in progress at once, even on a loaded machine.
    pool = await startPool({}, { a: { models: ["gemma3:1b", "qwen3:8b"], loaded: ["gemma3:1b"], firstByteDelayMs: 1500 }, b: { models: ["gemma3:1b"], firstByteDelayMs: 1500 } });
    await pool.gateway.stop();
    // Same backends, a limit of 1 on the loaded one.
    const gateway = await startGateway({
      spec: {
        upstreams: [{ name: "a", url: pool.fakes.a.url, maxConcurrent: 1 }, { name: "b", url: pool.fakes.b.url }],
        probeIntervalSeconds: 1,
        apiKeys: [{ name: "admin", key: KEY, scope: "admin" }],
        rateLimit: { requestsPerSecond: 10_000, burst: 10_000 },
      },
    });
    pool.gateway = gateway;
    await waitForHealth(gateway, 2);
    clearRequests(pool);
    const results = await Promise.all(Array.from({ length: 6 }, () => generate(gateway, "gemma3:1b")));
    expect(results.map((r) => r.status)).toEqual(Array(6).fill(200));
    expect(pool.fakes.a.requests.filter((r) => r.path === "/api/generate")).toHaveLength(1);
    expect(pool.fakes.b.requests.filter((r) => r.path === "/api/generate")).toHaveLength(5);
    // qwen3:8b is only on a: while a is full, a second request for it gets 503 with Retry-After.
    const [first, second] = await Promise.all([generate(gateway, "qwen3:8b"), new Promise((r) => setTimeout(r, 100)).then(() => generate(gateway, "qwen3:8b"))]);
    expect(first.status).toBe(200);
    expect(second.status).toBe(503);
    expect(second.headers.get("retry-after")).toBe("5");
    expect(second.json()).toEqual({ error: "server busy, please try again: every backend with model 'qwen3:8b' is at its maxConcurrent" });
  });

  it("a model pulled, copied or deleted through the pool is known at once, not at the next probe", async () => {
    pool = await startPool({ probeIntervalSeconds: 30 }, { a: { models: ["gemma3:1b"] }, b: { models: ["qwen3:8b"] } });
    const admin = (method: string, path: string, backend: string, body: unknown) =>
      request(`${pool!.gateway.url}${path}`, { method, headers: { ...JSON_HEADERS, "X-Ollama-Backend": backend }, body: JSON.stringify(body) });
    expect((await generate(pool.gateway, "phi3:mini")).status).toBe(404);
    expect((await admin("POST", "/api/pull", "b", { model: "phi3:mini", stream: false })).status).toBe(200);
    await waitUntil(async () => (await generate(pool!.gateway, "phi3:mini")).status === 200, 2000);
    expect((await admin("POST", "/api/copy", "a", { source: "gemma3:1b", destination: "mine" })).status).toBe(200);
    await waitUntil(async () => (await generate(pool!.gateway, "mine")).status === 200, 2000);
    expect((await admin("DELETE", "/api/delete", "b", { model: "qwen3:8b" })).status).toBe(200);
    await waitUntil(async () => (await generate(pool!.gateway, "qwen3:8b")).status === 404, 2000);
    expect(served(pool, "/api/generate").sort()).toEqual(["a", "b"]);
  });

  it("affinity caller keeps a caller on one backend while it stays suitable", async () => {
    pool = await startPool({ affinity: "caller" }, { a: { models: ["gemma3:1b"] }, b: { models: ["gemma3:1b"] } });
    for (let i = 0; i < 20; i++) expect((await generate(pool.gateway, "gemma3:1b")).status).toBe(200);
    const [kept] = served(pool, "/api/generate");
    expect(served(pool, "/api/generate")).toHaveLength(1);
    // When that backend goes away the caller moves, without a failed request.
    await pool.fakes[kept].close();
    clearRequests(pool);
    for (let i = 0; i < 5; i++) expect((await generate(pool.gateway, "gemma3:1b")).status).toBe(200);
    expect(served(pool, "/api/generate")).toEqual([kept === "a" ? "b" : "a"]);
  });

  it("without affinity, sequential requests for one model spread over the backends that have it", async () => {
    pool = await startPool({}, { a: { models: ["gemma3:1b"] }, b: { models: ["gemma3:1b"] } });
    for (let i = 0; i < 40; i++) expect((await generate(pool.gateway, "gemma3:1b")).status).toBe(200);
    const counts = Object.values(pool.fakes).map((fake) => fake.requests.filter((r) => r.path === "/api/generate").length);
    expect(Math.min(...counts)).toBeGreaterThan(5);
  });
});
