/**
 * Hostile battery 3: upstream failures behind the real nginx: Ollama down, resetting, slow,
 * queue-full, and recovery. Numbers are printed as "[measure] ..." lines; docs/security.md sums up.
 */
import net from "node:net";
import { describe, expect, it } from "vitest";
import { FAKE_MODEL, type FakeOllama, startFakeOllama } from "../harness/fake-ollama";
import { rawRequest, request } from "../harness/http";
import { freePort, nginxTestsEnabled, startGateway, waitUntil } from "../harness/nginx";
import { KEYS, useHostileGateway } from "../harness/hostile-gateway";

describe.runIf(nginxTestsEnabled)("hostile: 3. upstream failures, through the real nginx", () => {
  const battery = useHostileGateway();

  const key = KEYS.read;

  it("Ollama down: 502 JSON at once, /healthz 503; it recovers by itself when Ollama comes up on that port", async () => {
    const upstreamPort = await freePort();
    const down = await startGateway({ upstreamUrl: `http://127.0.0.1:${upstreamPort}`, spec: { apiKeys: [{ name: "k", key, scope: "inference" }] } });
    let late: FakeOllama | undefined;
    try {
      for (const [method, target, body] of [["GET", "/api/tags", undefined], ["POST", "/api/generate", JSON.stringify({ model: FAKE_MODEL, prompt: "hi" })]] as const) {
        const started = Date.now();
        const response = await request(down.url + target, { method, headers: { Authorization: `Bearer ${key}` }, body });
        expect(response.status).toBe(502);
        expect(response.json()).toEqual({ error: expect.stringMatching(/unreachable/) });
        expect(Date.now() - started).toBeLessThan(1000);
      }
      expect((await request(`${down.url}/healthz`)).status).toBe(503);
      late = await startFakeOllama({ port: upstreamPort, chunks: 2, chunkIntervalMs: 1 });
      const recoveredIn = await waitUntil(async () => (await request(`${down.url}/api/tags`, { headers: { Authorization: `Bearer ${key}` } })).status === 200, 2000, 100);
      console.info(`[measure] recovery after Ollama came back: first 200 within ${recoveredIn} ms`);
      // Both workers serve again (no upstream marked down, no stuck worker).
      const statuses = await Promise.all(Array.from({ length: 20 }, () => request(`${down.url}/api/version`, { headers: { Authorization: `Bearer ${key}` } }).then((r) => r.status)));
      expect(statuses.every((s) => s === 200)).toBe(true);
      expect((await request(`${down.url}/healthz`)).status).toBe(200);
    } finally {
      await down.stop();
      await late?.close();
    }
  });

  it("Ollama refusing or resetting connections: 502 JSON, and the next request after it is back succeeds", async () => {
    const upstreamPort = await freePort();
    // Accepts and resets every connection (RST), like a crashing or overloaded server.
    const resetter = net.createServer((socket) => socket.resetAndDestroy());
    await new Promise<void>((resolve) => resetter.listen(upstreamPort, "127.0.0.1", resolve));
    const gw = await startGateway({ upstreamUrl: `http://127.0.0.1:${upstreamPort}`, spec: { apiKeys: [{ name: "k", key, scope: "inference" }] } });
    let back: FakeOllama | undefined;
    try {
      for (let i = 0; i < 4; i++) {
        const response = await request(`${gw.url}/api/tags`, { headers: { Authorization: `Bearer ${key}` } });
        expect(response.status).toBe(502);
        expect(response.json().error).toMatch(/unreachable/);
      }
      await new Promise<void>((resolve) => resetter.close(() => resolve()));
      // Now nothing listens: connection refused.
      expect((await request(`${gw.url}/api/tags`, { headers: { Authorization: `Bearer ${key}` } })).status).toBe(502);
      back = await startFakeOllama({ port: upstreamPort });
      await waitUntil(async () => (await request(`${gw.url}/api/tags`, { headers: { Authorization: `Bearer ${key}` } })).status === 200, 2000, 100);
    } finally {
      await gw.stop();
      await back?.close();
      resetter.close();
    }
  });

  it("Ollama resetting mid-stream: the client sees the stream cut (no final chunk), and the next request succeeds", async () => {
    battery.fake.mode = "reset-mid-stream";
    try {
      const body = JSON.stringify({ model: FAKE_MODEL, prompt: "hi" });
      const response = await rawRequest(battery.port, `POST /api/generate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEYS.inference}\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 3000);
      expect(response.status).toBe(200);
      expect(response.text).toMatch(/transfer-encoding: chunked/i);
      // The terminating zero-size chunk never comes: the client can tell the stream broke.
      expect(response.text).not.toMatch(/\r\n0\r\n\r\n$/);
      expect(response.text).not.toMatch(/"done":true/);
    } finally {
      battery.fake.mode = "normal";
    }
    const next = await request(`${battery.gateway.url}/api/generate`, { method: "POST", headers: { Authorization: `Bearer ${KEYS.inference}` }, body: JSON.stringify({ model: FAKE_MODEL, prompt: "hi", stream: false }) });
    expect(next.status).toBe(200);
    expect(next.json().done).toBe(true);
  });

  it("Ollama slow: waits within upstreamReadSeconds, 504 JSON beyond it, and serves normally right after", async () => {
    const slowFake = await startFakeOllama({ chunks: 2, chunkIntervalMs: 1 });
    const gw = await startGateway({ upstreamUrl: slowFake.url, spec: { apiKeys: [{ name: "k", key, scope: "inference" }], timeouts: { upstreamReadSeconds: 1 } } });
    try {
      slowFake.mode = "slow";
      slowFake.setOptions({ firstByteDelayMs: 400 });
      expect((await request(`${gw.url}/api/tags`, { headers: { Authorization: `Bearer ${key}` } })).status).toBe(200);
      slowFake.setOptions({ firstByteDelayMs: 3000 });
      const started = Date.now();
      const timedOut = await request(`${gw.url}/api/tags`, { headers: { Authorization: `Bearer ${key}` } });
      expect(timedOut.status).toBe(504);
      expect(timedOut.json().error).toMatch(/timed out/);
      expect(Date.now() - started).toBeLessThan(2500);
      slowFake.mode = "normal";
      slowFake.setOptions({ firstByteDelayMs: 0 });
      const after = await Promise.all(Array.from({ length: 10 }, () => request(`${gw.url}/api/version`, { headers: { Authorization: `Bearer ${key}` } }).then((r) => r.status)));
      expect(after.every((s) => s === 200)).toBe(true);
    } finally {
      await gw.stop();
      await slowFake.close();
    }
  });

  it("Ollama queue full: its 503 reaches the client with Retry-After, native and OpenAI routes, streaming or not", async () => {
    battery.fake.mode = "queue-full";
    try {
      for (const [target, body] of [
        ["/api/generate", { model: FAKE_MODEL, prompt: "hi" }],
        ["/api/chat", { model: FAKE_MODEL, messages: [], stream: false }],
        ["/v1/chat/completions", { model: FAKE_MODEL, messages: [{ role: "user", content: "hi" }], stream: true }],
      ] as const) {
        const response = await request(battery.gateway.url + target, { method: "POST", headers: { "X-API-Key": KEYS.inference }, body: JSON.stringify(body) });
        expect(response.status, target).toBe(503);
        expect(response.headers.get("retry-after"), target).toMatch(/^\d+$/);
        expect(response.body, target).toMatch(/server busy/);
      }
    } finally {
      battery.fake.mode = "normal";
    }
    const next = await request(`${battery.gateway.url}/api/chat`, { method: "POST", headers: { "X-API-Key": KEYS.inference }, body: JSON.stringify({ model: FAKE_MODEL, messages: [], stream: false }) });
    expect(next.status).toBe(200);
  });
});
