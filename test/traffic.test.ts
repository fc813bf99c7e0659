/**
 * Traffic behaviour through the real nginx: streaming, timeouts, bodies, CORS, rate limits,
 * access log, health, and the official `ollama` and `openai` clients.
 */
import { Ollama } from "ollama";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FAKE_MODEL, type FakeOllama, startFakeOllama } from "../harness/fake-ollama";
import { basic, bearer, rawRequest, request } from "../harness/http";
import { nginxTestsEnabled, type RunningGateway, startGateway, waitUntil } from "../harness/nginx";

const KEY = "traffic-key-00000000000000000000000";
const OTHER_KEY = "other-key-000000000000000000000000";
const LIMITED_KEY = "limited-key-00000000000000000000000";
const PASSWORD = "traffic-password-1";

/** Arrival times (ms since the request) of each line of a streamed response. */
async function lineArrivals(url: string, body: unknown, headers: Record<string, string>) {
  const start = performance.now();
  const response = await fetch(url, { method: "POST", headers: { ...headers, "Content-Type": "application/json", "Accept-Encoding": "gzip" }, body: JSON.stringify(body) });
  const arrivals: { at: number; line: string }[] = [];
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    pending += decoder.decode(chunk, { stream: true });
    let newline: number;
    while ((newline = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      if (line.trim()) arrivals.push({ at: performance.now() - start, line });
    }
  }
  return { response, arrivals };
}

describe.runIf(nginxTestsEnabled)("traffic through the real nginx", () => {
  let fake: FakeOllama;
  let gateway: RunningGateway;

  beforeAll(async () => {
    fake = await startFakeOllama({ firstByteDelayMs: 300, chunkIntervalMs: 100, chunks: 5 });
    gateway = await startGateway({
      upstreamUrl: fake.url,
      spec: {
        apiKeys: [
          { name: "traffic", key: KEY, scope: "admin" },
          { name: "other", key: OTHER_KEY, scope: "inference" },
          { name: "limited", key: LIMITED_KEY, scope: "read", rateLimit: { requestsPerSecond: 1, burst: 2 } },
        ],
        basicUsers: [{ name: "carol", password: PASSWORD, scope: "inference" }],
        rateLimit: { requestsPerSecond: 1000, burst: 1000 },
        maxBodySize: "2m",
        cors: { allowedOrigins: ["https://app.example.com"] },
      },
    });
  });
  afterAll(async () => {
    await gateway?.stop();
    await fake?.close();
  });

  describe("streaming", () => {
    it.each([
      ["/api/generate", { model: FAKE_MODEL, prompt: "hi" }],
      ["/api/chat", { model: FAKE_MODEL, messages: [{ role: "user", content: "hi" }] }],
      ["/api/pull", { model: FAKE_MODEL }],
      ["/v1/chat/completions", { model: FAKE_MODEL, messages: [{ role: "user", content: "hi" }], stream: true }],
    ])("passes %s through unbuffered, line by line, first line as fast as direct", async (route, body) => {
      // Direct and proxied side by side, up to three rounds: on a loaded machine one round can
      // be unlucky, while a buffering proxy would be ~800 ms late in every round.
      let direct!: Awaited<ReturnType<typeof lineArrivals>>;
      let proxied!: Awaited<ReturnType<typeof lineArrivals>>;
      const gaps: number[] = [];
      for (let round = 0; round < 3; round++) {
        direct = await lineArrivals(fake.url + route, body, {});
        proxied = await lineArrivals(gateway.url + route, body, bearer(KEY));
        expect(proxied.response.status).toBe(200);
        gaps.push(Math.abs(proxied.arrivals[0].at - direct.arrivals[0].at));
        if (gaps[round] < 60) break;
      }
      expect(proxied.response.headers.get("content-encoding")).toBeNull();
      // Same lines, apart from the times and ids the upstream stamps on each response.
      const comparable = (a: { line: string }) => a.line.replace(/"(created_at|created|id)":("[^"]*"|\d+)/g, "");
      expect(proxied.arrivals.map(comparable)).toEqual(direct.arrivals.map(comparable));
      expect(Math.min(...gaps)).toBeLessThan(60);
      // Lines arrive spread out as the upstream writes them, not in one burst at the end.
      const spread = proxied.arrivals[proxied.arrivals.length - 2].at - proxied.arrivals[0].at;
      expect(spread).toBeGreaterThan(250);
      console.info(`[measure] ${route}: first line direct ${direct.arrivals[0].at.toFixed(1)} ms, via proxy ${proxied.arrivals[0].at.toFixed(1)} ms`);
    });

    it("frees the upstream request when the client disconnects mid-stream", async () => {
      const abortedBefore = fake.abortedStreams;
      const controller = new AbortController();
      const response = await fetch(`${gateway.url}/api/generate`, {
        method: "POST",
        headers: bearer(KEY),
        body: JSON.stringify({ model: FAKE_MODEL, prompt: "hi" }),
        signal: controller.signal,
      });
      const reader = response.body!.getReader();
      await reader.read();
      controller.abort();
      await waitUntil(() => fake.abortedStreams > abortedBefore && fake.activeStreams === 0, 3000);
    });
  });

  describe("timeouts and failures", () => {
    it("waits through a slow first byte (a cold model load)", async () => {
      fake.setOptions({ firstByteDelayMs: 2500 });
      try {
        const response = await request(`${gateway.url}/api/generate`, {
          method: "POST",
          headers: bearer(KEY),
          body: JSON.stringify({ model: FAKE_MODEL, prompt: "hi", stream: false }),
        });
        expect(response.status).toBe(200);
      } finally {
        fake.setOptions({ firstByteDelayMs: 300 });
      }
    });

    it("closes a connection whose headers arrive too slowly", async () => {
      const slow = await startGateway({ upstreamUrl: fake.url, spec: { apiKeys: [{ name: "k", key: KEY, scope: "read" }], timeouts: { clientHeaderSeconds: 1 } } });
      try {
        const started = Date.now();
        const response = await rawRequest(Number(new URL(slow.url).port), "GET /api/version HTTP/1.1\r\nHost: x\r\n", 4000);
        expect([0, 408]).toContain(response.status);
        expect(Date.now() - started).toBeLessThan(3000);
      } finally {
        await slow.stop();
      }
    });

    it("answers 502 JSON at once when Ollama is down", async () => {
      // Port 1 on loopback: nothing listens there (a port from freePort() could be taken meanwhile).
      const down = await startGateway({ upstreamUrl: "http://127.0.0.1:1", spec: { apiKeys: [{ name: "k", key: KEY, scope: "read" }] } });
      try {
        const started = Date.now();
        const response = await request(`${down.url}/api/tags`, { headers: bearer(KEY) });
        expect(response.status).toBe(502);
        expect(response.json()).toEqual({ error: expect.stringMatching(/unreachable/) });
        expect(Date.now() - started).toBeLessThan(1000);
        const health = await request(`${down.url}/healthz`);
        expect(health.status).toBe(503);
      } finally {
        await down.stop();
      }
    });

    it("answers 504 JSON when Ollama stays silent longer than upstreamReadSeconds", async () => {
      const impatient = await startGateway({
        upstreamUrl: fake.url,
        spec: { apiKeys: [{ name: "k", key: KEY, scope: "inference" }], timeouts: { upstreamReadSeconds: 1 } },
      });
      fake.setOptions({ firstByteDelayMs: 2500 });
      try {
        const response = await request(`${impatient.url}/api/generate`, {
          method: "POST",
          headers: bearer(KEY),
          body: JSON.stringify({ model: FAKE_MODEL, prompt: "hi", stream: false }),
        });
        expect(response.status).toBe(504);
        expect(response.json()).toEqual({ error: expect.stringMatching(/timed out/) });
      } finally {
        fake.setOptions({ firstByteDelayMs: 300 });
        await impatient.stop();
      }
    });

    it("passes Ollama's queue-full 503 on with Retry-After", async () => {
      fake.mode = "queue-full";
      try {
        const response = await request(`${gateway.url}/api/chat`, {
          method: "POST",
          headers: bearer(KEY),
          body: JSON.stringify({ model: FAKE_MODEL, messages: [] }),
        });
        expect(response.status).toBe(503);
        expect(response.json().error).toMatch(/server busy/);
        expect(response.headers.get("retry-after")).toMatch(/^\d+$/);
      } finally {
        fake.mode = "normal";
      }
    });
  });

  describe("bodies", () => {
    it("forwards a large multimodal body and refuses one above maxBodySize with 413 JSON", async () => {
      const image = Buffer.alloc(1024 * 1024, 7).toString("base64"); // ~1.4 MB of base64
      const ok = await request(`${gateway.url}/api/generate`, {
        method: "POST",
        headers: bearer(KEY),
        body: JSON.stringify({ model: FAKE_MODEL, prompt: "describe", images: [image], stream: false }),
      });
      expect(ok.status).toBe(200);
      const tooBig = await request(`${gateway.url}/api/generate`, {
        method: "POST",
        headers: bearer(KEY),
        body: JSON.stringify({ model: FAKE_MODEL, images: [image, image], stream: false }),
      });
      expect(tooBig.status).toBe(413);
      expect(tooBig.json()).toEqual({ error: "request body too large" });
    });
  });

  describe("CORS", () => {
    const origin = "https://app.example.com";
    it("answers an allowed preflight itself, without credentials", async () => {
      const before = fake.requests.length;
      const response = await request(`${gateway.url}/api/chat`, {
        method: "OPTIONS",
        headers: { Origin: origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type" },
      });
      expect(response.status).toBe(204);
      expect(response.headers.get("access-control-allow-origin")).toBe(origin);
      expect(response.headers.get("access-control-allow-headers")).toMatch(/Authorization/);
      expect(fake.requests.length).toBe(before);
    });
    it("refuses other origins, preflight or not", async () => {
      const preflight = await request(`${gateway.url}/api/chat`, { method: "OPTIONS", headers: { Origin: "https://evil.example", "Access-Control-Request-Method": "POST" } });
      expect(preflight.status).toBe(403);
      const actual = await request(`${gateway.url}/api/tags`, { headers: { ...bearer(KEY), Origin: "https://evil.example" } });
      expect(actual.status).toBe(403);
    });
    it("adds CORS headers for allowed origins and keeps Ollama's own origin check out of the way", async () => {
      const before = fake.requests.length;
      const response = await request(`${gateway.url}/api/tags`, { headers: { ...bearer(KEY), Origin: origin } });
      expect(response.status).toBe(200);
      expect(response.headers.get("access-control-allow-origin")).toBe(origin);
      const forwarded = fake.requests[before];
      expect(forwarded.headers.origin).toBeUndefined();
      expect(forwarded.headers.host).toBe(new URL(fake.url).host);
    });
  });

  describe("rate limits", () => {
    it("limits each caller on its own, with 429 JSON and Retry-After", async () => {
      const statuses: number[] = [];
      let retryAfter: string | null = null;
      for (let i = 0; i < 6; i++) {
        const response = await request(`${gateway.url}/api/version`, { headers: bearer(LIMITED_KEY) });
        statuses.push(response.status);
        if (response.status === 429) {
          retryAfter = response.headers.get("retry-after");
          expect(response.json().error).toMatch(/rate limit/);
        }
      }
      expect(statuses.slice(0, 3)).toEqual([200, 200, 200]);
      expect(statuses).toContain(429);
      expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
      // Another caller is not affected.
      expect((await request(`${gateway.url}/api/version`, { headers: bearer(OTHER_KEY) })).status).toBe(200);
    });
  });

  describe("access log", () => {
    it("writes one JSON line per request with caller, scope, model and timings, and no secret", async () => {
      await request(`${gateway.url}/api/chat`, {
        method: "POST",
        headers: basic("carol", PASSWORD),
        body: JSON.stringify({ model: FAKE_MODEL, messages: [{ role: "user", content: "hi" }], stream: false }),
      });
      await new Promise((r) => setTimeout(r, 200));
      const entry = (await gateway.settledAccessLog()).reverse().find((e) => e.caller === "carol" && e.path === "/api/chat")!;
      expect(entry).toMatchObject({ caller: "carol", scope: "inference", auth: "basic", method: "POST", model: FAKE_MODEL, status: 200 });
      expect(entry.time).toMatch(/^\d{4}-\d\d-\d\dT/);
      expect(entry.request_time).toBeGreaterThan(0.2);
      expect(Number(entry.upstream_time)).toBeGreaterThan(0.2);
      expect(entry.bytes_sent).toBeGreaterThan(0);
      const log = gateway.accessLogText() + gateway.errorLog();
      for (const secret of [KEY, OTHER_KEY, LIMITED_KEY, PASSWORD, Buffer.from(`carol:${PASSWORD}`).toString("base64")]) expect(log).not.toContain(secret);
    });
  });

  describe("health", () => {
    it("answers /healthz without credentials, 200 while Ollama answers", async () => {
      const response = await request(`${gateway.url}/healthz`);
      expect(response.status).toBe(200);
      expect(response.json()).toMatchObject({ status: "ok", upstream: "ok" });
    });
  });

  describe("official clients", () => {
    it("works with the ollama npm client, streaming and not", async () => {
      const client = new Ollama({ host: gateway.url, headers: { Authorization: `Bearer ${KEY}` } });
      const whole = await client.chat({ model: FAKE_MODEL, messages: [{ role: "user", content: "hi" }] });
      expect(whole.message.content.length).toBeGreaterThan(0);
      let streamed = "";
      for await (const part of await client.generate({ model: FAKE_MODEL, prompt: "hi", stream: true })) streamed += part.response;
      expect(streamed).toBe(whole.message.content);
      expect((await client.list()).models[0].name).toBe(FAKE_MODEL);
      const refused = new Ollama({ host: gateway.url, headers: { "X-API-Key": OTHER_KEY } });
      await expect(refused.pull({ model: FAKE_MODEL })).rejects.toThrow(/scope/);
    });

    it("works with the openai SDK, streaming and not", async () => {
      const client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: OTHER_KEY, maxRetries: 0 });
      const whole = await client.chat.completions.create({ model: FAKE_MODEL, messages: [{ role: "user", content: "hi" }] });
      expect(whole.choices[0].message.content?.length).toBeGreaterThan(0);
      let streamed = "";
      const stream = await client.chat.completions.create({ model: FAKE_MODEL, messages: [{ role: "user", content: "hi" }], stream: true });
      for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? "";
      expect(streamed).toBe(whole.choices[0].message.content);
      const models = await client.models.list();
      expect(models.data[0].id).toBe(FAKE_MODEL);
      const wrong = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: "wrong-key-0000000000000000000000", maxRetries: 0 });
      await expect(wrong.models.list()).rejects.toMatchObject({ status: 401 });
    });
  });
});
