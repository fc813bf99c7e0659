import http from "node:http";
import path from "node:path";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Ollama } from "ollama";
import OpenAI from "openai";
import routesFixture from "../harness/ollama-routes.json";
import { FAKE_MODEL, type FakeOllama, QUEUE_FULL_ERROR, fakeCompletion, startFakeOllama } from "../harness/fake-ollama";

const CHUNKS = 5;
const MESSAGES = [{ role: "user" as const, content: "Why is the sky blue?" }];
// One body every POST/DELETE route accepts, so the route sweep needs no per-route knowledge.
const GENERIC_BODY = {
  model: FAKE_MODEL,
  prompt: "hi",
  messages: MESSAGES,
  input: "hi",
  source: FAKE_MODEL,
  destination: "copy-of-gemma",
  stream: false,
};

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** Milliseconds from sending the request to the response headers. */
  headersAt: number;
  /** Every data event with its arrival time, to see how the stream was paced. */
  chunks: { at: number; text: string }[];
  /** The response ended before it was complete (the server reset the connection). */
  truncated: boolean;
}

interface RawRequestOptions {
  body?: string | object;
  headers?: Record<string, string>;
  /** Called on each data event; may destroy the request to simulate a client going away. */
  onData?: (request: http.ClientRequest) => void;
}

let fake: FakeOllama;

/** A plain HTTP/1.1 request on a fresh connection: no redirects followed, no body parsing. */
function rawRequest(method: string, rawPath: string, options: RawRequestOptions = {}): Promise<RawResponse> {
  const payload = options.body === undefined ? undefined : typeof options.body === "string" ? options.body : JSON.stringify(options.body);
  const start = performance.now();
  return new Promise((resolve, reject) => {
    // A path option, not a URL: URL parsing would normalise the dot segments under test.
    const headers = { ...options.headers, ...(payload === undefined ? {} : { "Content-Length": String(Buffer.byteLength(payload)) }) };
    const request = http.request({ host: "127.0.0.1", port: fake.port, path: rawPath, method, agent: false, headers }, (response) => {
      const headersAt = performance.now() - start;
      const result: RawResponse = { status: response.statusCode ?? 0, headers: response.headers, body: "", headersAt, chunks: [], truncated: false };
      response.setEncoding("utf8");
      response.on("data", (text: string) => {
        result.chunks.push({ at: performance.now() - start, text });
        result.body += text;
        options.onData?.(request);
      });
      response.on("error", () => undefined); // a reset surfaces as an incomplete response below
      response.on("close", () => resolve({ ...result, truncated: !response.complete }));
    });
    request.on("error", reject);
    request.end(payload);
  });
}

async function waitFor(condition: () => boolean, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function parseNdjson(body: string): Record<string, unknown>[] {
  return body.split("\n").filter((line) => line !== "").map((line) => JSON.parse(line));
}

function sseData(body: string): string[] {
  return body.split("\n\n").filter((event) => event !== "").map((event) => {
    expect(event.startsWith("data: ")).toBe(true);
    return event.slice("data: ".length);
  });
}

beforeAll(async () => {
  fake = await startFakeOllama({ chunks: CHUNKS, chunkIntervalMs: 5 });
});

afterAll(async () => {
  await fake.close();
});

beforeEach(() => {
  fake.mode = "normal";
  fake.setOptions({ firstByteDelayMs: 0, chunkIntervalMs: 5, chunks: CHUNKS });
  fake.requests.length = 0;
  fake.abortedStreams = 0;
});

describe("routing like Ollama's gin router", () => {
  it.each(routesFixture.routes)("$method $path answers", async ({ method, path: routePath }) => {
    const concrete = routePath
      .replace(":digest", `sha256:${"0".repeat(64)}`)
      .replace(":model", FAKE_MODEL)
      .replace(":encodedKey", "c3NoLWVkMjU1MTk");
    const withBody = method === "POST" || method === "DELETE";
    const response = await rawRequest(method, concrete, { body: withBody ? GENERIC_BODY : undefined });
    expect([200, 201]).toContain(response.status);
    if (method === "HEAD") expect(response.body).toBe("");
  });

  it("answers gin's plain-text 404 for unknown, miscased or over-long paths", async () => {
    for (const unknown of ["/nope", "/API/tags", "/api/blobs/a/b", "//api/tags", "/api/../api/tags"]) {
      const response = await rawRequest("GET", unknown);
      expect(response.status, unknown).toBe(404);
      expect(response.body).toBe("404 page not found");
      expect(response.headers["content-type"]).toBe("text/plain");
    }
    // A param needs a non-empty segment, so this is not a HEAD/POST route and nothing to redirect to.
    expect((await rawRequest("POST", "/api/blobs/")).status).toBe(404);
    expect((await rawRequest("PUT", "/api/nope")).status).toBe(404);
  });

  it("answers 405 with an Allow header in gin's method-tree order", async () => {
    const cases: [string, string, string][] = [
      ["GET", "/api/chat", "POST"],
      ["POST", "/api/tags", "HEAD, GET"],
      ["HEAD", "/api/status", "GET"],
      ["OPTIONS", "/api/chat", "POST"],
      ["GET", "/api/user/keys/abc", "DELETE"],
    ];
    for (const [method, routePath, allow] of cases) {
      const response = await rawRequest(method, routePath);
      expect(response.status, `${method} ${routePath}`).toBe(405);
      expect(response.headers.allow).toBe(allow);
      if (method !== "HEAD") expect(response.body).toBe("405 method not allowed");
    }
  });

  it("redirects a trailing slash: 301 for GET, 307 otherwise, keeping the query", async () => {
    const get = await rawRequest("GET", "/api/tags/?verbose=1");
    expect(get.status).toBe(301);
    expect(get.headers.location).toBe("/api/tags?verbose=1");
    const post = await rawRequest("POST", "/api/chat/", { body: GENERIC_BODY });
    expect(post.status).toBe(307);
    expect(post.headers.location).toBe("/api/chat");
    expect((await rawRequest("HEAD", "/api/blobs/sha256:abc/")).status).toBe(307);
  });

  it("matches the decoded path, ignores the query and records both forms", async () => {
    const response = await rawRequest("GET", "/api/%74ags?x=1");
    expect(response.status).toBe(200);
    expect(fake.requests.at(-1)).toMatchObject({ method: "GET", rawPath: "/api/%74ags?x=1", path: "/api/tags" });
    expect((await rawRequest("GET", "/api/%zzags")).status).toBe(400);
  });

  it("answers HEAD with headers only, including the GET body's length", async () => {
    const head = await rawRequest("HEAD", "/api/tags");
    const get = await rawRequest("GET", "/api/tags");
    expect(head.body).toBe("");
    expect(head.headers["content-length"]).toBe(String(Buffer.byteLength(get.body)));
    expect(head.headers["content-type"]).toBe("application/json; charset=utf-8");
  });

  it("rejects foreign CORS origins like Ollama's default OLLAMA_ORIGINS", async () => {
    const foreign = await rawRequest("GET", "/api/tags", { headers: { Origin: "https://chat.example.com" } });
    expect(foreign.status).toBe(403);
    expect(foreign.body).toBe("");
    const local = await rawRequest("GET", "/api/tags", { headers: { Origin: "http://localhost:5173" } });
    expect(local.status).toBe(200);
    expect(local.headers["access-control-allow-origin"]).toBe("http://localhost:5173");
    const preflight = await rawRequest("OPTIONS", "/api/chat", {
      headers: { Origin: "http://localhost:5173", "Access-Control-Request-Method": "POST" },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers["access-control-allow-methods"]).toContain("POST");
  });
});

describe("native API", () => {
  it("serves the fixed endpoints with Ollama's shapes", async () => {
    const root = await rawRequest("GET", "/");
    expect(root.body).toBe("Ollama is running");
    expect(root.headers["content-type"]).toBe("text/plain; charset=utf-8");
    const version = await rawRequest("GET", "/api/version");
    expect(version.body).toBe('{"version":"0.12.0"}');
    expect(version.headers["content-type"]).toBe("application/json; charset=utf-8");
    // /api/ps lists the models earlier requests loaded, in api.ProcessModelResponse's shape.
    const ps = JSON.parse((await rawRequest("GET", "/api/ps")).body);
    for (const entry of ps.models) expect(Object.keys(entry).sort()).toEqual(["context_length", "details", "digest", "expires_at", "model", "name", "size", "size_vram"]);
    const tags = JSON.parse((await rawRequest("GET", "/api/tags")).body);
    expect(tags.models[0]).toMatchObject({ name: FAKE_MODEL, model: FAKE_MODEL, details: { family: "gemma3" } });
  });

  it("streams NDJSON paced by firstByteDelayMs and chunkIntervalMs", async () => {
    fake.setOptions({ firstByteDelayMs: 150, chunkIntervalMs: 40, chunks: 4 });
    const response = await rawRequest("POST", "/api/generate", { body: { model: FAKE_MODEL, prompt: "hi" } });
    expect(response.headers["content-type"]).toBe("application/x-ndjson");
    expect(response.headers["transfer-encoding"]).toBe("chunked");
    // Like Go, the headers only leave with the first line, after the simulated model load.
    expect(response.headersAt).toBeGreaterThanOrEqual(145);
    expect(response.chunks[0].at).toBeGreaterThanOrEqual(145);
    expect(response.chunks).toHaveLength(5);
    for (const chunk of response.chunks) expect(chunk.text.match(/\n/g)).toHaveLength(1);
    expect(response.chunks[4].at - response.chunks[0].at).toBeGreaterThanOrEqual(4 * 40 * 0.75);

    const lines = parseNdjson(response.body);
    expect(lines.slice(0, 4).map((line) => line.response).join("")).toBe(fakeCompletion(4));
    expect(lines.slice(0, 4).every((line) => line.done === false)).toBe(true);
    expect(lines[4]).toMatchObject({ model: FAKE_MODEL, done: true, done_reason: "stop", eval_count: 4 });
    expect(lines[4].total_duration).toBeGreaterThan(0);
  });

  it("streams chat lines with assistant messages, or answers once with stream:false", async () => {
    const streamed = parseNdjson((await rawRequest("POST", "/api/chat", { body: { model: FAKE_MODEL, messages: MESSAGES } })).body);
    expect(streamed).toHaveLength(CHUNKS + 1);
    expect(streamed[0].message).toEqual({ role: "assistant", content: "The" });
    const single = await rawRequest("POST", "/api/chat", { body: { model: FAKE_MODEL, messages: MESSAGES, stream: false } });
    expect(single.headers["content-type"]).toBe("application/json; charset=utf-8");
    expect(JSON.parse(single.body)).toMatchObject({ message: { role: "assistant", content: fakeCompletion(CHUNKS) }, done: true });
  });

  it("answers bad requests like the real handlers", async () => {
    const cases: [string, string | object | undefined, number, string][] = [
      ["/api/chat", undefined, 400, "missing request body"],
      ["/api/chat", { messages: MESSAGES }, 400, "model is required"],
      ["/api/generate", { prompt: "hi" }, 404, "model '' not found"],
      ["/api/embeddings", { prompt: "hi" }, 400, "model is required"],
      ["/api/show", {}, 400, "model is required"],
    ];
    for (const [route, body, status, error] of cases) {
      const response = await rawRequest("POST", route, { body });
      expect(response.status, route).toBe(status);
      expect(JSON.parse(response.body)).toEqual({ error });
    }
    const invalid = await rawRequest("POST", "/api/generate", { body: "{not json" });
    expect(invalid.status).toBe(400);
    expect(JSON.parse(invalid.body).error).toEqual(expect.any(String));
  });

  it("streams pull progress ending in success", async () => {
    const lines = parseNdjson((await rawRequest("POST", "/api/pull", { body: { model: FAKE_MODEL } })).body);
    expect(lines[0]).toEqual({ status: "pulling manifest" });
    expect(lines[1]).toMatchObject({ digest: expect.stringMatching(/^sha256:/), total: expect.any(Number), completed: expect.any(Number) });
    expect(lines.at(-1)).toEqual({ status: "success" });
  });
});

describe("OpenAI-compatible API", () => {
  it("streams chat.completion.chunk events then [DONE]", async () => {
    const body = { model: FAKE_MODEL, messages: MESSAGES, stream: true, stream_options: { include_usage: true } };
    const response = await rawRequest("POST", "/v1/chat/completions", { body });
    expect(response.headers["content-type"]).toBe("text/event-stream");
    const data = sseData(response.body);
    expect(data.at(-1)).toBe("[DONE]");
    const chunks = data.slice(0, -1).map((event) => JSON.parse(event));
    expect(chunks.every((chunk) => chunk.object === "chat.completion.chunk")).toBe(true);
    expect(chunks[0].choices[0].delta.role).toBe("assistant");
    expect(chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join("")).toBe(fakeCompletion(CHUNKS));
    expect(chunks.at(-2).choices[0].finish_reason).toBe("stop");
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { completion_tokens: CHUNKS } });
  });

  it("streams text_completion events for /v1/completions", async () => {
    const response = await rawRequest("POST", "/v1/completions", { body: { model: FAKE_MODEL, prompt: "hi", stream: true } });
    const data = sseData(response.body);
    expect(data.at(-1)).toBe("[DONE]");
    const chunks = data.slice(0, -1).map((event) => JSON.parse(event));
    expect(chunks.every((chunk) => chunk.object === "text_completion")).toBe(true);
    expect(chunks.map((chunk) => chunk.choices[0].text).join("")).toBe(fakeCompletion(CHUNKS));
  });

  it("wraps errors in OpenAI's envelope", async () => {
    const response = await rawRequest("POST", "/v1/chat/completions", { body: { model: FAKE_MODEL, messages: [] } });
    expect(response.status).toBe(400);
    expect(JSON.parse(response.body)).toEqual({
      error: { message: "[] is too short - 'messages'", type: "invalid_request_error", param: null, code: null },
    });
  });
});

describe("official clients against the stand-in", () => {
  it("ollama-js: chat and generate, streaming and not; list, show, embed, pull", async () => {
    const ollama = new Ollama({ host: fake.url });
    let streamed = "";
    let last: { done: boolean; eval_count: number } | undefined;
    for await (const part of await ollama.chat({ model: FAKE_MODEL, messages: MESSAGES, stream: true })) {
      streamed += part.message.content;
      last = part;
    }
    expect(streamed).toBe(fakeCompletion(CHUNKS));
    expect(last).toMatchObject({ done: true, eval_count: CHUNKS });

    const chat = await ollama.chat({ model: FAKE_MODEL, messages: MESSAGES });
    expect(chat.message.content).toBe(fakeCompletion(CHUNKS));
    let generated = "";
    for await (const part of await ollama.generate({ model: FAKE_MODEL, prompt: "hi", stream: true })) generated += part.response;
    expect(generated).toBe(fakeCompletion(CHUNKS));
    expect((await ollama.generate({ model: FAKE_MODEL, prompt: "hi" })).response).toBe(fakeCompletion(CHUNKS));

    expect((await ollama.list()).models.map((model) => model.name)).toEqual([FAKE_MODEL]);
    expect((await ollama.show({ model: FAKE_MODEL })).details.family).toBe("gemma3");
    const embedded = await ollama.embed({ model: FAKE_MODEL, input: ["a", "b"] });
    expect(embedded.embeddings).toHaveLength(2);
    const statuses: string[] = [];
    for await (const progress of await ollama.pull({ model: FAKE_MODEL, stream: true })) statuses.push(progress.status);
    expect(statuses.at(-1)).toBe("success");
  });

  it("openai: chat and completions, streaming and not; embeddings, models, responses", async () => {
    const openai = new OpenAI({ baseURL: `${fake.url}/v1`, apiKey: "sk-test", maxRetries: 0 });
    let streamed = "";
    for await (const chunk of await openai.chat.completions.create({ model: FAKE_MODEL, messages: MESSAGES, stream: true })) {
      streamed += chunk.choices[0]?.delta.content ?? "";
    }
    expect(streamed).toBe(fakeCompletion(CHUNKS));
    // The client's key went to the server as a bearer token (what the proxy must strip).
    expect(fake.requests.at(-1)?.headers.authorization).toBe("Bearer sk-test");

    const chat = await openai.chat.completions.create({ model: FAKE_MODEL, messages: MESSAGES });
    expect(chat.choices[0].message.content).toBe(fakeCompletion(CHUNKS));
    expect(chat.usage?.completion_tokens).toBe(CHUNKS);

    let completed = "";
    for await (const chunk of await openai.completions.create({ model: FAKE_MODEL, prompt: "hi", stream: true })) {
      completed += chunk.choices[0]?.text ?? "";
    }
    expect(completed).toBe(fakeCompletion(CHUNKS));
    expect((await openai.completions.create({ model: FAKE_MODEL, prompt: "hi" })).choices[0].text).toBe(fakeCompletion(CHUNKS));

    // The client asks for base64 unless told otherwise and decodes it itself.
    const base64 = await openai.embeddings.create({ model: FAKE_MODEL, input: "hello" });
    const floats = await openai.embeddings.create({ model: FAKE_MODEL, input: "hello", encoding_format: "float" });
    expect(JSON.parse(fake.requests.at(-2)?.body ?? "{}").encoding_format).toBe("base64");
    expect(base64.data[0].embedding).toEqual(floats.data[0].embedding);

    expect((await openai.models.list()).data.map((model) => model.id)).toEqual([FAKE_MODEL]);
    expect(await openai.models.retrieve(FAKE_MODEL)).toMatchObject({ id: FAKE_MODEL, owned_by: "library" });
    expect((await openai.responses.create({ model: FAKE_MODEL, input: "hi" })).output_text).toBe(fakeCompletion(CHUNKS));
  });
});

describe("modes", () => {
  it("queue-full: inference gets Ollama's 503, other routes still work", async () => {
    fake.mode = "queue-full";
    const native = await rawRequest("POST", "/api/chat", { body: { model: FAKE_MODEL, messages: MESSAGES } });
    expect(native.status).toBe(503);
    expect(native.body).toBe(JSON.stringify({ error: QUEUE_FULL_ERROR }));
    const openai = new OpenAI({ baseURL: `${fake.url}/v1`, apiKey: "x", maxRetries: 0 });
    await expect(openai.chat.completions.create({ model: FAKE_MODEL, messages: MESSAGES })).rejects.toMatchObject({
      status: 503,
      error: { message: QUEUE_FULL_ERROR, type: "api_error" },
    });
    expect((await rawRequest("GET", "/api/tags")).status).toBe(200);
  });

  it("reset-mid-stream: two lines, then the connection dies", async () => {
    fake.mode = "reset-mid-stream";
    const response = await rawRequest("POST", "/api/chat", { body: { model: FAKE_MODEL, messages: MESSAGES } });
    expect(response.truncated).toBe(true);
    expect(parseNdjson(response.body)).toHaveLength(2);
    const ollama = new Ollama({ host: fake.url });
    await expect(async () => {
      for await (const part of await ollama.chat({ model: FAKE_MODEL, messages: MESSAGES, stream: true })) void part;
    }).rejects.toThrow();
    expect(fake.abortedStreams).toBe(0);
    expect(fake.activeStreams).toBe(0);
  });

  it("slow: even non-inference answers and 404s wait firstByteDelayMs", async () => {
    fake.mode = "slow";
    fake.setOptions({ firstByteDelayMs: 100 });
    for (const route of ["/api/version", "/nope"]) {
      const response = await rawRequest("GET", route);
      expect(response.headersAt, route).toBeGreaterThanOrEqual(95);
    }
    // The delay is paid once, not again before the stream's first line.
    const streamed = await rawRequest("POST", "/api/generate", { body: { model: FAKE_MODEL, prompt: "hi" } });
    expect(streamed.headersAt).toBeLessThan(190);
  });
});

describe("client disconnects", () => {
  it("stop the stream and are counted, mid-stream or during the model load", async () => {
    fake.setOptions({ chunks: 200, chunkIntervalMs: 10 });
    const midStream = await rawRequest("POST", "/api/generate", {
      body: { model: FAKE_MODEL, prompt: "hi" },
      onData: (request) => request.destroy(),
    });
    expect(midStream.truncated).toBe(true);
    await waitFor(() => fake.activeStreams === 0);
    expect(fake.abortedStreams).toBe(1);

    fake.setOptions({ firstByteDelayMs: 5_000 });
    const request = http.request(`${fake.url}/api/chat`, { method: "POST", agent: false });
    request.on("error", () => undefined);
    request.end(JSON.stringify({ model: FAKE_MODEL, messages: MESSAGES }));
    await waitFor(() => fake.activeStreams === 1);
    request.destroy();
    await waitFor(() => fake.activeStreams === 0, 500);
    expect(fake.abortedStreams).toBe(2);
  });

  it("records every request with its raw headers, in order", async () => {
    await rawRequest("POST", "/api/chat?x=1", {
      body: { model: FAKE_MODEL, messages: MESSAGES, stream: false },
      headers: { Authorization: "Bearer secret", "X-API-Key": "key" },
    });
    await rawRequest("GET", "/api/tags");
    expect(fake.requests.map((request) => request.rawPath)).toEqual(["/api/chat?x=1", "/api/tags"]);
    const [chat] = fake.requests;
    expect(chat.rawHeaders).toEqual(expect.arrayContaining(["Authorization", "Bearer secret", "X-API-Key", "key"]));
    expect(JSON.parse(chat.body).model).toBe(FAKE_MODEL);
  });
});

describe("script mode", () => {
  it("prints its URL, serves, and exits on SIGTERM", async () => {
    const tsx = path.join(__dirname, "..", "node_modules", ".bin", "tsx");
    const script = path.join(__dirname, "..", "harness", "fake-ollama.ts");
    const child = spawn(tsx, [script, "--port", "0", "--chunks", "2"], { stdio: ["ignore", "pipe", "inherit"] });
    try {
      const [line] = (await once(child.stdout, "data")) as [Buffer];
      const match = /^listening (http:\/\/\S+)\n$/.exec(line.toString());
      expect(match).not.toBeNull();
      const response = await fetch(`${match?.[1]}/api/version`);
      expect(await response.json()).toEqual({ version: "0.12.0" });
    } finally {
      child.kill("SIGTERM");
    }
    const [code] = await once(child, "exit");
    expect(code).toBe(0);
  });
});
