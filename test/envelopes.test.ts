/**
 * Gateway errors in the envelope of the route family they answer (issue 17), through the real
 * nginx: Ollama's `{"error": "..."}` on /api/* and the rest, OpenAI's
 * `{"error": {message, type, param, code}}` on /v1/*, Anthropic's
 * `{"type": "error", "error": {type, message}}` on /v1/messages, with the same statuses in each;
 * errors nginx makes itself (413, 400, 502) too.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FakeOllama, startFakeOllama } from "../harness/fake-ollama";
import { bearer, rawRequest, request } from "../harness/http";
import { freePort, nginxTestsEnabled, type RunningGateway, startGateway } from "../harness/nginx";

const KEYS = {
  read: "envelope-read-key-000000000000000000",
  inference: "envelope-infer-key-00000000000000000",
  limited: "envelope-limit-key-00000000000000000",
};
const json = { "Content-Type": "application/json" };
const chat = JSON.stringify({ model: "gemma3:1b", messages: [{ role: "user", content: "hi" }] });
const cloudChat = JSON.stringify({ model: "gpt-oss:120b-cloud", messages: [{ role: "user", content: "hi" }] });
const anthropicBody = JSON.stringify({ model: "gemma3:1b", max_tokens: 8, messages: [{ role: "user", content: "hi" }] });

/** The body's fields, after checking its envelope has exactly the family's keys. */
function envelope(family: "ollama" | "openai" | "anthropic", body: string): { message: string; type?: string; code?: string | null } {
  const parsed = JSON.parse(body);
  if (family === "ollama") {
    expect(Object.keys(parsed)).toEqual(["error"]);
    expect(typeof parsed.error).toBe("string");
    return { message: parsed.error as string };
  }
  if (family === "openai") {
    expect(Object.keys(parsed)).toEqual(["error"]);
    expect(Object.keys(parsed.error)).toEqual(["message", "type", "param", "code"]);
    expect(parsed.error.param).toBeNull();
    return parsed.error;
  }
  expect(Object.keys(parsed)).toEqual(["type", "error"]);
  expect(parsed.type).toBe("error");
  expect(Object.keys(parsed.error)).toEqual(["type", "message"]);
  return parsed.error;
}

describe.runIf(nginxTestsEnabled)("error envelopes by route family, through the real nginx", () => {
  let fake: FakeOllama;
  let gateway: RunningGateway;
  let down: RunningGateway;

  beforeAll(async () => {
    fake = await startFakeOllama();
    const spec = {
      apiKeys: [
        { name: "reader", key: KEYS.read, scope: "read" as const },
        { name: "worker", key: KEYS.inference, scope: "inference" as const },
        { name: "limited", key: KEYS.limited, scope: "inference" as const, rateLimit: { requestsPerSecond: 0.001, burst: 0 } },
      ],
      rateLimit: { requestsPerSecond: 10_000, burst: 10_000 },
      maxBodySize: "1k",
    };
    gateway = await startGateway({ upstreamUrl: fake.url, spec });
    // An upstream nothing listens on: nginx's own 502.
    down = await startGateway({ upstreamUrl: `http://127.0.0.1:${await freePort()}`, spec });
    // The limited key's only token is spent here: every later request with it is refused.
    await request(`${gateway.url}/api/version`, { headers: bearer(KEYS.limited) });
  });
  afterAll(async () => {
    await gateway?.stop();
    await down?.stop();
    await fake?.close();
  });

  it("answers /api/* in Ollama's envelope: 401 wrong key, 403 scope, 403 cloud model", async () => {
    const wrong = await request(`${gateway.url}/api/tags`, { headers: bearer("wrong-key-0000000000000000000000") });
    expect(wrong.status).toBe(401);
    expect(envelope("ollama", wrong.body).message).toBe("invalid API key");
    const scope = await request(`${gateway.url}/api/chat`, { method: "POST", headers: { ...bearer(KEYS.read), ...json }, body: chat });
    expect(scope.status).toBe(403);
    expect(envelope("ollama", scope.body).message).toMatch(/scope 'read' does not allow this route \(needs 'inference'\)/);
    const cloud = await request(`${gateway.url}/api/chat`, { method: "POST", headers: { ...bearer(KEYS.inference), ...json }, body: cloudChat });
    expect(cloud.status).toBe(403);
    expect(envelope("ollama", cloud.body).message).toMatch(/cloud model 'gpt-oss:120b-cloud' is refused/);
  });

  it("answers /v1/* in OpenAI's envelope with a code to branch on", async () => {
    const cases: [string, RequestInit, number, string, string, RegExp][] = [
      ["/v1/models", { headers: bearer("wrong-key-0000000000000000000000") }, 401, "invalid_request_error", "invalid_api_key", /^invalid API key$/],
      ["/v1/models", {}, 401, "invalid_request_error", "invalid_api_key", /^missing credentials/],
      ["/v1/chat/completions", { method: "POST", headers: { ...bearer(KEYS.read), ...json }, body: chat }, 403, "invalid_request_error", "insufficient_scope", /needs 'inference'/],
      ["/v1/chat/completions", { method: "POST", headers: { ...bearer(KEYS.inference), ...json }, body: cloudChat }, 403, "invalid_request_error", "model_not_allowed", /cloud model/],
      ["/v1/chat/completions", { method: "POST", headers: { ...bearer(KEYS.limited), ...json }, body: chat }, 429, "requests", "rate_limit_exceeded", /^rate limit exceeded for limited$/],
      ["/v1/no-such-route", { headers: bearer(KEYS.read) }, 404, "invalid_request_error", "not_found", /unknown route/],
      ["/v1/models?x=1", { headers: bearer("wrong-key-0000000000000000000000") }, 401, "invalid_request_error", "invalid_api_key", /^invalid API key$/],
    ];
    for (const [path, init, status, type, code, message] of cases) {
      const response = await request(`${gateway.url}${path}`, init);
      expect(response.status, path).toBe(status);
      expect(response.headers.get("content-type")).toMatch(/^application\/json/);
      const error = envelope("openai", response.body);
      expect({ type: error.type, code: error.code }, `${path} ${status}`).toEqual({ type, code });
      expect(error.message).toMatch(message);
    }
  });

  it("answers /v1/messages in Anthropic's envelope", async () => {
    const cases: [string, Record<string, string>, string, number, string][] = [
      ["/v1/messages", { ...bearer("wrong-key-0000000000000000000000"), ...json }, anthropicBody, 401, "authentication_error"],
      ["/v1/messages", { "x-api-key": KEYS.read, ...json }, anthropicBody, 403, "permission_error"],
      ["/v1/messages?beta=true", { "x-api-key": KEYS.inference, ...json }, cloudChat, 403, "permission_error"],
      ["/v1/messages", { "x-api-key": KEYS.limited, ...json }, anthropicBody, 429, "rate_limit_error"],
      ["/v1/messages", { ...json }, "{", 401, "authentication_error"],
    ];
    for (const [path, headers, body, status, type] of cases) {
      const response = await request(`${gateway.url}${path}`, { method: "POST", headers, body });
      expect(response.status, path).toBe(status);
      expect(envelope("anthropic", response.body).type, `${path} ${status}`).toBe(type);
    }
  });

  it("puts nginx's own errors in the family's envelope: 413, 400 and 502", async () => {
    const big = JSON.stringify({ model: "gemma3:1b", prompt: "x".repeat(4096) });
    const tooLarge = async (path: string) =>
      request(`${gateway.url}${path}`, { method: "POST", headers: { ...bearer(KEYS.inference), ...json }, body: big });
    let response = await tooLarge("/api/generate");
    expect(response.status).toBe(413);
    expect(envelope("ollama", response.body).message).toBe("request body too large");
    response = await tooLarge("/v1/completions");
    expect(response.status).toBe(413);
    expect(envelope("openai", response.body)).toMatchObject({ type: "invalid_request_error", code: "request_too_large" });
    response = await tooLarge("/v1/messages");
    expect(response.status).toBe(413);
    expect(envelope("anthropic", response.body).type).toBe("request_too_large");

    // Two Host headers: nginx refuses the request before any Lua runs.
    const port = Number(new URL(gateway.url).port);
    const raw = await rawRequest(port, "GET /v1/models HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n");
    expect(raw.status).toBe(400);
    // The body may be chunked: the JSON is what lies between the first { and the last }.
    const rawBody = raw.text.slice(raw.text.indexOf("{"), raw.text.lastIndexOf("}") + 1);
    expect(envelope("openai", rawBody)).toMatchObject({ type: "invalid_request_error", code: "invalid_request_error" });

    const unreachable: [string, "ollama" | "openai" | "anthropic", string][] = [
      ["/api/tags", "ollama", ""],
      ["/v1/models", "openai", "server_error"],
    ];
    for (const [path, family, type] of unreachable) {
      const gone = await request(`${down.url}${path}`, { headers: bearer(KEYS.read) });
      expect(gone.status, path).toBe(502);
      const error = envelope(family, gone.body);
      expect(error.message).toBe("upstream Ollama server is unreachable");
      if (family === "openai") expect(error).toMatchObject({ type, code: "upstream_unreachable" });
    }
    const gone = await request(`${down.url}/v1/messages`, { method: "POST", headers: { "x-api-key": KEYS.inference, ...json }, body: anthropicBody });
    expect(gone.status).toBe(502);
    expect(envelope("anthropic", gone.body).type).toBe("api_error");
  });

  it("passes Ollama's own errors through unchanged (it answers each family in its envelope)", async () => {
    const missing = JSON.stringify({ model: "", messages: [{ role: "user", content: "hi" }] });
    const native = await request(`${gateway.url}/api/chat`, { method: "POST", headers: { ...bearer(KEYS.inference), ...json }, body: missing });
    expect(native.status).toBe(400);
    expect(envelope("ollama", native.body).message).toBe("model is required");
    const openai = await request(`${gateway.url}/v1/chat/completions`, { method: "POST", headers: { ...bearer(KEYS.inference), ...json }, body: missing });
    expect(openai.status).toBe(400);
    expect(envelope("openai", openai.body)).toMatchObject({ type: "invalid_request_error", code: null });
  });
});
