/**
 * Request bodies the gateway decides on (issue 13, items 3 and 10): cloud models and server-side
 * web tools refused unless the credential opts in, duplicate keys refused, the model read from
 * large (temporary-file) bodies, compressed bodies refused, and the model logged on refusals.
 * Everything through the real nginx in front of the stand-in Ollama.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FakeOllama, startFakeOllama } from "../harness/fake-ollama";
import { bearer, errorMessage, request } from "../harness/http";
import { nginxTestsEnabled, type RunningGateway, startGateway } from "../harness/nginx";

// Test-only credentials, made up for this file.
const KEYS = {
  read: "abuse-read-key-00000000000000000000",
  inference: "abuse-inference-key-000000000000000",
  admin: "abuse-admin-key-0000000000000000000",
  cloud: "abuse-cloud-key-0000000000000000000",
};

describe.runIf(nginxTestsEnabled)("request bodies through the real nginx", () => {
  let fake: FakeOllama;
  let gateway: RunningGateway;

  beforeAll(async () => {
    fake = await startFakeOllama({ chunks: 2, chunkIntervalMs: 1 });
    gateway = await startGateway({
      upstreamUrl: fake.url,
      spec: {
        apiKeys: [
          { name: "reader", key: KEYS.read, scope: "read" },
          { name: "runner", key: KEYS.inference, scope: "inference" },
          { name: "operator", key: KEYS.admin, scope: "admin" },
          { name: "cloudy", key: KEYS.cloud, scope: "admin", cloud: true },
        ],
        rateLimit: { requestsPerSecond: 10_000, burst: 10_000 },
      },
    });
  });
  afterAll(async () => {
    await gateway?.stop();
    await fake?.close();
  });

  /** Sends a request and returns its response and whether anything reached Ollama. */
  async function send(method: string, path: string, key: string, body?: string, headers: Record<string, string> = {}) {
    const before = fake.requests.length;
    const response = await request(gateway.url + path, {
      method,
      headers: { ...bearer(key), "Content-Type": "application/json", ...headers },
      body,
    });
    return { response, reached: fake.requests.length - before };
  }

  const CLOUD_CASES: [string, string, string | undefined, string][] = [
    ["POST", "/api/show", JSON.stringify({ model: "gpt-oss:120b:cloud" }), "gpt-oss:120b:cloud"],
    ["POST", "/api/show", JSON.stringify({ name: "gpt-oss:120b-cloud" }), "gpt-oss:120b-cloud"],
    ["GET", "/v1/models/gpt-oss:120b:cloud", undefined, "gpt-oss:120b:cloud"],
    ["GET", "/v1/models/gpt-oss:120b-CLOUD", undefined, "gpt-oss:120b-CLOUD"],
    ["POST", "/api/chat", JSON.stringify({ model: " GPT-OSS:120B:Cloud ", messages: [] }), "GPT-OSS:120B:Cloud"],
    ["POST", "/api/chat", '{"MODEL":"gpt-oss:120b:cloud","messages":[]}', "gpt-oss:120b:cloud"],
    ["POST", "/api/generate", '{"mod\\u0065l":"gpt-oss:120b:cl\\u006fud","prompt":"hi"}', "gpt-oss:120b:cloud"],
    ["POST", "/api/generate", JSON.stringify({ model: "gpt-oss:120b:\u00a0cloud", prompt: "hi" }), "gpt-oss:120b:??cloud"],
    ["POST", "/v1/chat/completions", JSON.stringify({ model: "deepseek-v3.1:671b-cloud", messages: [] }), "deepseek-v3.1:671b-cloud"],
    ["POST", "/v1/embeddings", JSON.stringify({ model: "x:cloud", input: "x" }), "x:cloud"],
    ["POST", "/v1/messages", JSON.stringify({ model: "gemma3:1b", max_tokens: 5, messages: [], tools: [{ type: "web_search_20250305", name: "web_search" }] }), "web_search_20250305"],
    ["POST", "/v1/messages", JSON.stringify({ model: "gemma3:1b", max_tokens: 5, messages: [], tools: [{ Type: "web_fetch_20250910", name: "f" }] }), "web_fetch_20250910"],
    ["POST", "/v1/responses", JSON.stringify({ model: "gemma3:1b", input: "hi", tools: [{ type: "web_search" }] }), "web_search"],
    ["POST", "/api/pull", JSON.stringify({ model: "gpt-oss:120b-cloud" }), "gpt-oss:120b-cloud"],
    ["POST", "/api/create", JSON.stringify({ model: "mine", from: "gpt-oss:120b:cloud" }), "gpt-oss:120b:cloud"],
    ["POST", "/api/create", JSON.stringify({ model: "mine", from: "gemma3:1b", remote_host: "https://ollama.com" }), "remote_host"],
    ["POST", "/api/copy", JSON.stringify({ source: "gpt-oss:120b:cloud", destination: "mine" }), "gpt-oss:120b:cloud"],
    ["DELETE", "/api/delete", JSON.stringify({ model: "gpt-oss:120b:cloud" }), "gpt-oss:120b:cloud"],
  ];

  it("refuses cloud models and server-side web tools on every route that names them, before Ollama", async () => {
    const failures: string[] = [];
    for (const [method, path, body, named] of CLOUD_CASES) {
      const { response, reached } = await send(method, path, KEYS.admin, body);
      const label = `${method} ${path} ${body ?? ""}`;
      if (response.status !== 403) failures.push(`${label}: expected 403, got ${response.status} ${response.body}`);
      else if (!String(errorMessage(response)).includes(named)) failures.push(`${label}: error does not name ${named}: ${response.body}`);
      if (reached !== 0) failures.push(`${label}: reached Ollama`);
    }
    expect(failures).toEqual([]);
  });

  it("refuses a read key's cloud model on its own routes too", async () => {
    const show = await send("POST", "/api/show", KEYS.read, JSON.stringify({ model: "gpt-oss:120b:cloud" }));
    expect([show.response.status, show.reached]).toEqual([403, 0]);
    const models = await send("GET", "/v1/models/gpt-oss:120b:cloud", KEYS.read);
    expect([models.response.status, models.reached]).toEqual([403, 0]);
  });

  it("forwards cloud requests for a credential with `cloud: true`, and local models for everyone", async () => {
    for (const [method, path, body] of CLOUD_CASES) {
      const { response, reached } = await send(method, path, KEYS.cloud, body);
      expect(response.status, `${method} ${path}`).not.toBe(403);
      expect(reached, `${method} ${path}`).toBe(1);
    }
    const local = await send("POST", "/api/chat", KEYS.inference, JSON.stringify({ model: "gemma3:1b", messages: [], stream: false, tools: [{ type: "function", function: { name: "web_search" } }] }));
    expect([local.response.status, local.reached]).toEqual([200, 1]);
  });

  it("refuses duplicate top-level keys (Ollama uses the last), in any case or escaping", async () => {
    const bodies = [
      '{"model":"innocent","model":"gpt-oss:120b:cloud"}',
      '{"model":"gemma3:1b","Model":"gemma3:1b"}',
      '{"model":"gemma3:1b","mod\\u0065l":"other"}',
      '{"messages":[],"model":"gemma3:1b","messages":[]}',
      '{"model":"gemma3:1b","stream":false,"\u017ftream":true}',
    ];
    for (const body of bodies) {
      const { response, reached } = await send("POST", "/api/chat", KEYS.inference, body);
      expect([response.status, reached], body).toEqual([400, 0]);
      expect(errorMessage(response)).toContain("twice");
    }
    // Duplicates below the top level are Ollama's business.
    const nested = await send("POST", "/api/chat", KEYS.inference, '{"model":"gemma3:1b","stream":false,"options":{"a":1,"a":2},"messages":[]}');
    expect([nested.response.status, nested.reached]).toEqual([200, 1]);
  });

  it("refuses bodies that are not one JSON object", async () => {
    for (const body of ['["model"]', '{"model":"gemma3:1b"} {"model":"x:cloud"}', '{"model":"gemma3:1b"']) {
      const { response, reached } = await send("POST", "/api/generate", KEYS.inference, body);
      expect([response.status, reached], body).toEqual([400, 0]);
    }
  });

  it("reads the model from a body larger than nginx's in-memory buffer", async () => {
    const image = "A".repeat(3 * 1024 * 1024);
    const big = (model: string) => JSON.stringify({ prompt: "describe", images: [image], stream: false, model });
    const refused = await send("POST", "/api/generate", KEYS.inference, big("gpt-oss:120b:cloud"));
    expect([refused.response.status, refused.reached]).toEqual([403, 0]);
    const ok = await send("POST", "/api/generate", KEYS.inference, big("gemma3:1b"));
    expect([ok.response.status, ok.reached]).toEqual([200, 1]);
    const line = (await gateway.settledAccessLog()).filter((e) => e.path === "/api/generate").at(-1)!;
    expect([line.status, line.model]).toEqual([200, "gemma3:1b"]);
  });

  it("refuses compressed bodies on model routes with 415", async () => {
    for (const encoding of ["gzip", "zstd", "ZSTD", "identity, gzip"]) {
      const { response, reached } = await send("POST", "/api/chat", KEYS.inference, JSON.stringify({ model: "gemma3:1b" }), { "Content-Encoding": encoding });
      expect([response.status, reached], encoding).toEqual([415, 0]);
      expect(errorMessage(response)).toContain("Content-Encoding");
    }
    const identity = await send("POST", "/api/chat", KEYS.inference, JSON.stringify({ model: "gemma3:1b", messages: [], stream: false }), { "Content-Encoding": "identity" });
    expect([identity.response.status, identity.reached]).toEqual([200, 1]);
  });

  it("logs the model of a request refused by scope", async () => {
    const { response, reached } = await send("POST", "/api/generate", KEYS.read, JSON.stringify({ model: "gemma3:1b", prompt: "hi" }));
    expect([response.status, reached]).toEqual([403, 0]);
    const line = (await gateway.settledAccessLog()).filter((e) => e.path === "/api/generate").at(-1)!;
    expect([line.status, line.caller, line.model]).toEqual([403, "reader", "gemma3:1b"]);
  });

  it("reads the model of a transcription's form, and of its query string", async () => {
    const form = (model: string) => {
      const data = new FormData();
      data.append("model", model);
      data.append("file", new Blob([Buffer.from("RIFF....WAVEfmt ")]), "a.wav");
      return data;
    };
    const post = async (path: string, data: FormData, key = KEYS.inference) => {
      const before = fake.requests.length;
      const response = await request(gateway.url + path, { method: "POST", headers: bearer(key), body: data });
      return { status: response.status, reached: fake.requests.length - before, body: response.body };
    };
    expect(await post("/v1/audio/transcriptions", form("whisper:cloud"))).toMatchObject({ status: 403, reached: 0 });
    // Go's FormValue prefers the query string's `model`.
    expect(await post("/v1/audio/transcriptions?model=x%3Acloud", form("gemma3:1b"))).toMatchObject({ status: 400, reached: 0 });
    expect(await post("/v1/audio/transcriptions", form("gemma3:1b"))).toMatchObject({ status: 200, reached: 1 });
    const line = (await gateway.settledAccessLog()).filter((e) => e.path === "/v1/audio/transcriptions").at(-1)!;
    expect(line.model).toBe("gemma3:1b");
  });
});
