/**
 * Governance at the edge (issue 16) through the real nginx in front of the stand-in Ollama:
 * token accounting in the access log (items 4), per-credential concurrency (3) and request
 * limits (2). Prometheus itself is in test/metrics-prometheus.test.ts.
 */
import http from "node:http";
import { SignJWT } from "jose";
import OpenAI from "openai";
import { Ollama } from "ollama";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSpec } from "../bundle/spec";
import { FAKE_MODEL, type FakeOllama, startFakeOllama } from "../harness/fake-ollama";
import { bearer, errorMessage, request } from "../harness/http";
import { freePort, nginxTestsEnabled, type RunningGateway, startGateway, waitUntil } from "../harness/nginx";

// Test-only credentials, made up for this file.
const KEYS = {
  app: "gov-app-key-000000000000000000000000",
  pair: "gov-pair-key-00000000000000000000000",
  tight: "gov-tight-key-0000000000000000000000",
  picky: "gov-picky-key-0000000000000000000000",
  budget: "gov-budget-key-000000000000000000000",
};
const OTHER_MODEL = "llama3.2:3b";
const EMBED_MODEL = "qwen3-embed:0.6b";

/** Token counts the stand-in reported, read from the response the client got. */
function ndjsonFinal(body: string) {
  const lines = body.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]);
}

describe("governance spec fields", () => {
  it("reports every bad value at once, naming field, value and fix", () => {
    const result = parseSpec({
      apiKeys: [{ name: "a", key: "x".repeat(30), scope: "read", tokenBudget: {}, models: ["bad model!"], maxConcurrent: 0, limits: { maxNumCtx: 0, bogus: 1 } }],
    });
    expect(result).toEqual({
      ok: false,
      errors: [
        '`apiKeys[0].models[0]` is "bad model!"; use a model name such as `gemma3:1b`, or a glob with `*` such as `gemma3:*` (at most 100 characters)',
        "`apiKeys[0].tokenBudget` is {}; use `perMinute`, `perDay` or both (an empty budget limits nothing)",
        "`apiKeys[0].maxConcurrent` is 0; use a whole number from 1 to 100000",
        "`apiKeys[0].limits.maxNumCtx` is 0; use a whole number from 1 to 16777216",
        "`apiKeys[0].limits` has unknown field(s) `bogus`; remove them or check the spelling",
      ],
    });
    expect(parseSpec({ listen: { http: 9145 }, metrics: { listen: { port: 9145 } } })).toEqual({
      ok: false,
      errors: ["`metrics.listen.port` (9145) is an API port (`listen.http` or `listen.https`); give metrics a port of their own"],
    });
  });
});

describe.runIf(nginxTestsEnabled)("governance through the real nginx", () => {
  let fake: FakeOllama;
  let gateway: RunningGateway;

  beforeAll(async () => {
    fake = await startFakeOllama({ chunks: 4, chunkIntervalMs: 1, models: [FAKE_MODEL, OTHER_MODEL, EMBED_MODEL], loadOnUse: true });
    gateway = await startGateway({
      upstreamUrl: fake.url,
      spec: {
        apiKeys: [
          { name: "app", key: KEYS.app, scope: "inference" },
          { name: "pair", key: KEYS.pair, scope: "inference", maxConcurrent: 2 },
          { name: "tight", key: KEYS.tight, scope: "inference", limits: { maxNumCtx: 2048, maxKeepAliveSeconds: 300 } },
          { name: "picky", key: KEYS.picky, scope: "admin", models: ["gemma3:*", EMBED_MODEL] },
          { name: "budget", key: KEYS.budget, scope: "inference", tokenBudget: { perMinute: 12 } },
        ],
        limits: { maxNumCtx: 8192, maxNumPredict: 512 },
        rateLimit: { requestsPerSecond: 10_000, burst: 10_000 },
      },
    });
  });
  afterAll(async () => {
    await gateway?.stop();
    await fake?.close();
  });

  async function lastLogFor(path: string) {
    let entry: Record<string, unknown> | undefined;
    await waitUntil(async () => {
      entry = (await gateway.settledAccessLog()).filter((e) => e.path === path).pop();
      return entry !== undefined;
    });
    return entry!;
  }

  describe("token accounting (item 4)", () => {
    it("logs Ollama's counts from the final NDJSON line of a stream, and the time to the first byte", async () => {
      fake.setOptions({ firstByteDelayMs: 120 });
      try {
        const response = await request(`${gateway.url}/api/chat`, {
          method: "POST",
          headers: { ...bearer(KEYS.app), "Content-Type": "application/json" },
          body: JSON.stringify({ model: FAKE_MODEL, messages: [{ role: "user", content: "Why is the sky blue? Tell me." }] }),
        });
        expect(response.status).toBe(200);
        const final = ndjsonFinal(response.body);
        const entry = await lastLogFor("/api/chat");
        expect(entry).toMatchObject({ prompt_tokens: final.prompt_eval_count, completion_tokens: final.eval_count, model: FAKE_MODEL });
        expect(final.eval_count).toBe(4);
        expect(entry.ttft_ms).toBeGreaterThanOrEqual(100);
        expect(entry.ttft_ms as number).toBeLessThanOrEqual((entry.request_time as number) * 1000 + 1);
      } finally {
        fake.setOptions({ firstByteDelayMs: 0 });
      }
    });

    it("logs the counts of a non-streamed /api/generate and /api/embed", async () => {
      const ollama = new Ollama({ host: gateway.url, headers: bearer(KEYS.app) });
      const generated = await ollama.generate({ model: FAKE_MODEL, prompt: "Hello there, model", stream: false });
      expect(await lastLogFor("/api/generate")).toMatchObject({ prompt_tokens: generated.prompt_eval_count, completion_tokens: generated.eval_count });
      const embedded = await ollama.embed({ model: FAKE_MODEL, input: ["one input", "and another one"] });
      expect(await lastLogFor("/api/embed")).toMatchObject({ prompt_tokens: embedded.prompt_eval_count, completion_tokens: 0 });
    });

    it("logs OpenAI `usage`: non-streamed, and streamed with include_usage; null without it", async () => {
      const openai = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: KEYS.app });
      const messages = [{ role: "user" as const, content: "Count the tokens of this prompt" }];
      const plain = await openai.chat.completions.create({ model: FAKE_MODEL, messages });
      expect(await lastLogFor("/v1/chat/completions")).toMatchObject({ prompt_tokens: plain.usage!.prompt_tokens, completion_tokens: plain.usage!.completion_tokens });

      let usage: OpenAI.CompletionUsage | undefined;
      for await (const chunk of await openai.chat.completions.create({ model: FAKE_MODEL, messages, stream: true, stream_options: { include_usage: true } })) {
        if (chunk.usage) usage = chunk.usage;
      }
      expect(usage).toBeDefined();
      expect(await lastLogFor("/v1/chat/completions")).toMatchObject({ prompt_tokens: usage!.prompt_tokens, completion_tokens: usage!.completion_tokens });

      // The legacy completions stream carries an all-zero usage in every chunk: the last one counts.
      let completionUsage: OpenAI.CompletionUsage | undefined;
      for await (const chunk of await openai.completions.create({ model: FAKE_MODEL, prompt: "Say something", stream: true, stream_options: { include_usage: true } })) {
        if (chunk.usage && chunk.choices.length === 0) completionUsage = chunk.usage;
      }
      expect(completionUsage!.completion_tokens).toBe(4);
      expect(await lastLogFor("/v1/completions")).toMatchObject({ prompt_tokens: completionUsage!.prompt_tokens, completion_tokens: 4 });

      const stream = await openai.chat.completions.create({ model: FAKE_MODEL, messages, stream: true });
      for await (const _ of stream) void _;
      const entry = await lastLogFor("/v1/chat/completions");
      expect(entry.prompt_tokens).toBeNull();
      expect(entry.completion_tokens).toBeNull();
      expect(typeof entry.ttft_ms).toBe("number");
    });

    it("does not take counts a model could write: tool-call arguments before or after the real ones", async () => {
      // A direct check of the parser the body filter uses, through nginx: a stand-in final line
      // whose tool call (after the metrics, as in a GenerateResponse) names the same keys.
      const port = await freePort();
      const server = http.createServer((_req, res) => {
        res.writeHead(200, { "Content-Type": "application/json; charset=utf-8" });
        res.end(JSON.stringify({
          model: FAKE_MODEL, created_at: new Date().toISOString(), response: "", done: true, done_reason: "stop",
          prompt_eval_count: 11, eval_count: 7, tool_calls: [{ function: { name: "f", arguments: { prompt_eval_count: 1, eval_count: 1 } } }],
        }));
      });
      await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
      const other = await startGateway({ upstreamUrl: `http://127.0.0.1:${port}`, spec: { apiKeys: [{ name: "app", key: KEYS.app, scope: "inference" }] } });
      try {
        const response = await request(`${other.url}/api/generate`, {
          method: "POST", headers: bearer(KEYS.app), body: JSON.stringify({ model: FAKE_MODEL, prompt: "hi", stream: false }),
        });
        expect(response.status).toBe(200);
        const entry = (await other.settledAccessLog()).pop()!;
        expect(entry).toMatchObject({ prompt_tokens: 11, completion_tokens: 7 });
      } finally {
        await other.stop();
        await new Promise((resolve) => server.close(resolve));
      }
    });

    it("logs null counts for refusals and errors, with the request's model", async () => {
      const response = await request(`${gateway.url}/api/chat`, {
        method: "POST", headers: { Authorization: "Bearer wrong-key-0000000000000000000000" }, body: JSON.stringify({ model: FAKE_MODEL, messages: [] }),
      });
      expect(response.status).toBe(401);
      const entry = await lastLogFor("/api/chat");
      expect(entry).toMatchObject({ status: 401, prompt_tokens: null, completion_tokens: null });
    });
  });

  describe("model allow-lists (item 1)", () => {
    async function send(method: string, path: string, body?: unknown) {
      const before = fake.requests.length;
      const response = await request(gateway.url + path, {
        method, headers: { ...bearer(KEYS.picky), "Content-Type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: response.status, body: response.body, reached: fake.requests.length - before };
    }
    const chat = (model: string) => ({ model, messages: [{ role: "user", content: "hi" }], stream: false });

    it("passes a listed model, in any spelling Ollama accepts", async () => {
      for (const model of [FAKE_MODEL, "GEMMA3:1B", `registry.ollama.ai/library/${FAKE_MODEL}`]) {
        const result = await send("POST", "/api/chat", chat(model));
        expect(result.status, `${model}: ${result.body}`).toBe(200);
        expect(result.reached).toBe(1);
      }
      expect((await send("POST", "/api/embed", { model: EMBED_MODEL, input: "x" })).status).toBe(200);
    });

    it("refuses an unlisted model with 403 naming it, on every route that names one, before Ollama", async () => {
      const cases: [string, string, unknown, string][] = [
        ["POST", "/api/chat", chat(OTHER_MODEL), OTHER_MODEL],
        ["POST", "/api/generate", { model: "gemma3n:e4b", prompt: "x" }, "gemma3n:e4b"],
        ["POST", "/v1/chat/completions", { model: OTHER_MODEL, messages: [{ role: "user", content: "x" }] }, OTHER_MODEL],
        ["POST", "/v1/embeddings", { model: "qwen3-embed:8b", input: "x" }, "qwen3-embed:8b"],
        ["POST", "/api/show", { name: OTHER_MODEL }, OTHER_MODEL],
        ["POST", "/api/copy", { source: FAKE_MODEL, destination: OTHER_MODEL }, OTHER_MODEL],
        ["DELETE", "/api/delete", { model: OTHER_MODEL }, OTHER_MODEL],
        ["GET", `/v1/models/${OTHER_MODEL}`, undefined, OTHER_MODEL],
      ];
      const failures: string[] = [];
      for (const [method, path, body, model] of cases) {
        const result = await send(method, path, body);
        if (result.status !== 403 || result.reached !== 0 || errorMessage(result) !== `model '${model}' is not one this credential may use`)
          failures.push(`${method} ${path}: ${result.status}, reached ${result.reached}: ${result.body}`);
      }
      expect(failures).toEqual([]);
    });

    it("refuses a body whose model it cannot check", async () => {
      const none = await send("POST", "/api/chat", { messages: [{ role: "user", content: "x" }] });
      expect(none.status).toBe(403);
      expect(errorMessage(none)).toContain("names no model");
      expect(none.reached).toBe(0);
      const notJson = await request(`${gateway.url}/api/chat`, { method: "POST", headers: bearer(KEYS.picky), body: "model=gemma3:1b" });
      expect(notJson.status).toBe(400);
    });

    it("lists only the caller's models in /api/tags, /api/ps and /v1/models, other callers see all", async () => {
      // Load two models, as Ollama keeps them after use.
      expect((await request(`${gateway.url}/api/generate`, { method: "POST", headers: bearer(KEYS.app), body: JSON.stringify({ model: OTHER_MODEL, prompt: "x", stream: false }) })).status).toBe(200);
      expect((await send("POST", "/api/generate", { model: FAKE_MODEL, prompt: "x", stream: false })).status).toBe(200);

      const direct = await request(`${fake.url}/api/tags`);
      const tags = await send("GET", "/api/tags");
      expect(tags.status).toBe(200);
      const names = (body: string, field: string, key: string) => JSON.parse(body)[field].map((m: Record<string, string>) => m[key]);
      expect(names(tags.body, "models", "name")).toEqual([FAKE_MODEL, EMBED_MODEL]);
      // What is kept is Ollama's bytes, unchanged.
      const kept = JSON.parse(direct.body).models.filter((m: { name: string }) => m.name !== OTHER_MODEL);
      expect(tags.body).toBe(JSON.stringify({ models: kept }));
      expect(names((await send("GET", "/v1/models")).body, "data", "id")).toEqual([FAKE_MODEL, EMBED_MODEL]);
      expect(names((await send("GET", "/api/ps")).body, "models", "name")).toEqual([FAKE_MODEL]);

      const all = await request(`${gateway.url}/api/tags`, { headers: bearer(KEYS.app) });
      expect(names(all.body, "models", "name")).toEqual([FAKE_MODEL, OTHER_MODEL, EMBED_MODEL]);
      expect(names((await request(`${gateway.url}/api/ps`, { headers: bearer(KEYS.app) })).body, "models", "name").sort()).toEqual([FAKE_MODEL, OTHER_MODEL].sort());
    });
  });

  describe("token budgets (item 5)", () => {
    const pause = () => new Promise((r) => setTimeout(r, 60));
    const chat = () =>
      request(`${gateway.url}/api/chat`, {
        method: "POST", headers: bearer(KEYS.budget), body: JSON.stringify({ model: FAKE_MODEL, messages: [{ role: "user", content: "hi" }], stream: false }),
      });

    it("refuses OpenAI streams that would carry no usage (a key asking for it in two spellings included)", async () => {
      const openai = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: KEYS.budget, maxRetries: 0 });
      const messages = [{ role: "user" as const, content: "hi" }];
      const error = await openai.chat.completions.create({ model: FAKE_MODEL, messages, stream: true }).then(() => undefined, (e: unknown) => e as { status: number; message: string });
      expect(error?.status).toBe(400);
      expect(error?.message).toContain("`stream_options.include_usage` must be true");
      const sneaky = await request(`${gateway.url}/v1/chat/completions`, {
        method: "POST", headers: bearer(KEYS.budget),
        body: '{"model":"gemma3:1b","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true,"INCLUDE_USAGE":false}}',
      });
      expect(sneaky.status).toBe(400);
    });

    it("answers 429 with Retry-After once the minute's tokens are spent, and serves again after the window", async () => {
      // Start early in a minute, so the budget is spent within one window.
      const second = new Date().getUTCSeconds();
      if (second > 50) await new Promise((r) => setTimeout(r, (61 - second) * 1000));
      let spent = 0;
      let refused: Awaited<ReturnType<typeof chat>> | undefined;
      for (let i = 0; i < 6 && !refused; i++) {
        const response = await chat();
        if (response.status === 429) refused = response;
        else {
          expect(response.status).toBe(200);
          const final = response.json();
          spent += final.prompt_eval_count + final.eval_count;
        }
        await pause();
      }
      expect(refused, "the budget was never enforced").toBeDefined();
      // 12 tokens per minute, 5 per request: the third request overshoots, the fourth is refused.
      expect(spent).toBe(15);
      const retryAfter = Number(refused!.headers.get("retry-after"));
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(60);
      expect(refused!.json().error).toBe(`token budget per minute of budget is spent; retry in ${retryAfter} seconds`);
      const before = fake.requests.length;
      expect((await chat()).status).toBe(429);
      expect(fake.requests.length).toBe(before);
      await new Promise((r) => setTimeout(r, retryAfter * 1000 + 200));
      expect((await chat()).status).toBe(200);
    }, 150_000);
  });

  describe("request limits (item 2)", () => {
    async function send(key: string, path: string, body: unknown) {
      const before = fake.requests.length;
      const response = await request(gateway.url + path, {
        method: "POST", headers: { ...bearer(key), "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      return { status: response.status, body: response.body, reached: fake.requests.length - before };
    }
    const chat = (extra: object) => ({ model: FAKE_MODEL, messages: [{ role: "user", content: "hi" }], stream: false, ...extra });

    it("answers 400 naming the field, the value and the limit, before Ollama", async () => {
      const cases: [string, string, unknown, string][] = [
        [KEYS.app, "/api/chat", chat({ options: { num_ctx: 131072 } }), "`options.num_ctx` is 131072, above the gateway's limit of 8192 tokens of context; ask for 8192 or less"],
        [KEYS.app, "/api/generate", { model: FAKE_MODEL, prompt: "x", options: { num_predict: 4096 } }, "`options.num_predict` is 4096, above the gateway's limit of 512"],
        [KEYS.app, "/api/generate", { model: FAKE_MODEL, prompt: "x", options: { num_predict: -1 } }, "`options.num_predict` is -1 (no limit)"],
        [KEYS.app, "/v1/chat/completions", { model: FAKE_MODEL, messages: [{ role: "user", content: "x" }], max_tokens: 100000 }, "`max_tokens` is 100000, above the gateway's limit of 512"],
        [KEYS.app, "/v1/messages", { model: FAKE_MODEL, messages: [{ role: "user", content: "x" }], MAX_TOKENS: 9999 }, "`max_tokens` is 9999"],
        [KEYS.app, "/v1/responses", { model: FAKE_MODEL, input: "x", max_output_tokens: 9999 }, "`max_output_tokens` is 9999"],
        [KEYS.tight, "/api/chat", chat({ options: { num_ctx: 4096 } }), "`options.num_ctx` is 4096, above the gateway's limit of 2048"],
        [KEYS.tight, "/api/chat", chat({ keep_alive: -1 }), "`keep_alive` is -1 (keep the model loaded forever), which the gateway does not allow; use at most 300 seconds"],
        [KEYS.tight, "/api/chat", chat({ keep_alive: "-5m" }), "`keep_alive` is \"-5m\" (keep the model loaded forever)"],
        [KEYS.tight, "/api/generate", { model: FAKE_MODEL, keep_alive: "1h30m" }, "`keep_alive` is \"1h30m\" (5400 seconds), above the gateway's limit of 300 seconds"],
        [KEYS.tight, "/api/embed", { model: FAKE_MODEL, input: "x", keep_alive: 301 }, "`keep_alive` is 301 (301 seconds)"],
        [KEYS.tight, "/api/chat", chat({ keep_alive: "forever" }), "`keep_alive` is \"forever\"; use a number of seconds or a duration"],
        [KEYS.tight, "/api/chat", chat({ options: { num_ctx: "4096" } }), "`options.num_ctx` is \"4096\"; use a whole number"],
      ];
      const failures: string[] = [];
      for (const [key, path, body, message] of cases) {
        const result = await send(key, path, body);
        if (result.status !== 400 || result.reached !== 0 || !errorMessage(result)?.includes(message))
          failures.push(`${path} ${JSON.stringify(body)}: ${result.status}, reached ${result.reached}: ${result.body}`);
      }
      expect(failures).toEqual([]);
    });

    it("lists every problem of a request at once", async () => {
      const result = await send(KEYS.tight, "/api/chat", chat({ options: { num_ctx: 4096, num_predict: 1000 }, keep_alive: "10m" }));
      expect(result.status).toBe(400);
      const message = errorMessage(result) as string;
      expect(message).toContain("`options.num_ctx` is 4096");
      expect(message).toContain("`options.num_predict` is 1000");
      expect(message).toContain("`keep_alive` is \"10m\" (600 seconds)");
    });

    it("forwards requests within the limits unchanged", async () => {
      const cases: [string, string, unknown][] = [
        [KEYS.app, "/api/chat", chat({ options: { num_ctx: 8192, num_predict: 512 }, keep_alive: -1 })],
        [KEYS.tight, "/api/chat", chat({ options: { num_ctx: 2048 }, keep_alive: "5m" })],
        [KEYS.tight, "/api/generate", { model: FAKE_MODEL, prompt: "x", stream: false, keep_alive: 0 }],
        [KEYS.app, "/v1/chat/completions", { model: FAKE_MODEL, messages: [{ role: "user", content: "x" }], max_tokens: 512 }],
      ];
      for (const [key, path, body] of cases) {
        const result = await send(key, path, body);
        expect(result.status, result.body).toBe(200);
        expect(fake.requests[fake.requests.length - 1].body).toBe(JSON.stringify(body));
      }
    });
  });

  describe("concurrency per credential (item 3)", () => {
    /** Starts a streamed chat and resolves once its first line arrived; `abort` drops the connection. */
    function openStream(key: string) {
      let req!: http.ClientRequest;
      const firstLine = new Promise<http.IncomingMessage>((resolve, reject) => {
        req = http.request(`${gateway.url}/api/chat`, { method: "POST", headers: { ...bearer(key), "Content-Type": "application/json" }, agent: false }, (res) => {
          res.once("data", () => resolve(res));
          res.on("error", () => undefined);
        });
        req.on("error", (e) => (e.message === "socket hang up" ? undefined : reject(e)));
        req.end(JSON.stringify({ model: FAKE_MODEL, messages: [{ role: "user", content: "long story" }] }));
      });
      return { firstLine, abort: () => req.destroy() };
    }

    it("refuses the third of three concurrent streams on maxConcurrent 2, and frees a slot when a client disconnects", async () => {
      fake.setOptions({ chunks: 400, chunkIntervalMs: 20 });
      const streams = [openStream(KEYS.pair), openStream(KEYS.pair)];
      try {
        const responses = await Promise.all(streams.map((s) => s.firstLine));
        expect(responses.map((r) => r.statusCode)).toEqual([200, 200]);
        const third = await request(`${gateway.url}/api/tags`, { headers: bearer(KEYS.pair) });
        expect(third.status).toBe(429);
        expect(third.headers.get("retry-after")).toBe("1");
        expect(third.json().error).toBe("too many requests in progress for pair (at most 2 at once); retry when one has finished");
        // Another credential is not affected.
        expect((await request(`${gateway.url}/api/tags`, { headers: bearer(KEYS.app) })).status).toBe(200);

        streams[0].abort();
        await waitUntil(async () => (await request(`${gateway.url}/api/tags`, { headers: bearer(KEYS.pair) })).status === 200, 5000, 100);
      } finally {
        streams.forEach((s) => s.abort());
        fake.setOptions({ chunks: 4, chunkIntervalMs: 1 });
      }
      // Every slot comes back once the streams are gone.
      await waitUntil(async () => {
        const results = await Promise.all([0, 1].map(() => openStream(KEYS.pair)));
        const statuses = (await Promise.all(results.map((s) => s.firstLine))).map((r) => r.statusCode);
        return statuses.every((s) => s === 200);
      }, 5000, 200);
    });

    it("a crash-looping upstream leaks no slot: resets mid-stream and refused connections", async () => {
      fake.mode = "reset-mid-stream";
      try {
        for (let i = 0; i < 6; i++) {
          const response = await fetch(`${gateway.url}/api/chat`, {
            method: "POST", headers: bearer(KEYS.pair), body: JSON.stringify({ model: FAKE_MODEL, messages: [{ role: "user", content: "x" }] }),
          }).then((r) => r.text()).catch(() => "reset");
          expect(response).toBeDefined();
        }
      } finally {
        fake.mode = "normal";
      }
      // An upstream that is not there at all: nginx's own 502 (an error page after an internal redirect).
      const dead = await startGateway({
        upstreamUrl: `http://127.0.0.1:${await freePort()}`,
        spec: { apiKeys: [{ name: "pair", key: KEYS.pair, scope: "inference", maxConcurrent: 1 }] },
      });
      try {
        // The slot is given back in the log phase, just after the response: a little pause between
        // requests lets it happen (a request on another worker could otherwise arrive first).
        for (let i = 0; i < 5; i++) {
          expect((await request(`${dead.url}/api/tags`, { headers: bearer(KEYS.pair) })).status).toBe(502);
          await new Promise((r) => setTimeout(r, 50));
        }
      } finally {
        await dead.stop();
      }
      const [a, b] = [openStream(KEYS.pair), openStream(KEYS.pair)];
      fake.setOptions({ chunks: 50, chunkIntervalMs: 10 });
      try {
        const statuses = (await Promise.all([a.firstLine, b.firstLine])).map((r) => r.statusCode);
        expect(statuses).toEqual([200, 200]);
      } finally {
        a.abort();
        b.abort();
        fake.setOptions({ chunks: 4, chunkIntervalMs: 1 });
      }
    });
  });
});

describe.runIf(nginxTestsEnabled)("models granted to JWT callers per claim value", () => {
  const SECRET = "governance-test-hs256-secret-0123456789";
  let fake: FakeOllama;
  let gateway: RunningGateway;
  const token = (scope: string) =>
    new SignJWT({ scope, sub: "someone" })
      .setProtectedHeader({ alg: "HS256" })
      .setIssuer("https://idp.example.test/")
      .setAudience("ollama-gateway")
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode(SECRET));

  beforeAll(async () => {
    fake = await startFakeOllama({ chunks: 2, chunkIntervalMs: 1, models: [FAKE_MODEL, OTHER_MODEL, EMBED_MODEL], loadOnUse: true });
    gateway = await startGateway({
      upstreamUrl: fake.url,
      spec: {
        jwt: {
          issuer: "https://idp.example.test/",
          audience: "ollama-gateway",
          algorithms: ["HS256"],
          hs256Secrets: [{ secret: SECRET }],
          scopeValues: { read: [], inference: ["llm", "llm-embed"], admin: [] },
          modelGrants: { llm: ["gemma3:*"], "llm-embed": [EMBED_MODEL] },
        },
      },
    });
  });
  afterAll(async () => {
    await gateway?.stop();
    await fake?.close();
  });

  const chat = async (scope: string, model: string) =>
    (await request(`${gateway.url}/api/chat`, { method: "POST", headers: bearer(await token(scope)), body: JSON.stringify({ model, messages: [], stream: false }) })).status;

  it("allows the union of the granted values' models, and lists only those", async () => {
    expect(await chat("llm", FAKE_MODEL)).toBe(200);
    expect(await chat("llm", EMBED_MODEL)).toBe(403);
    expect(await chat("llm llm-embed", EMBED_MODEL)).toBe(200);
    expect(await chat("llm llm-embed", OTHER_MODEL)).toBe(403);
    const tags = await request(`${gateway.url}/api/tags`, { headers: bearer(await token("llm llm-embed")) });
    expect(tags.json().models.map((m: { name: string }) => m.name)).toEqual([FAKE_MODEL, EMBED_MODEL]);
  });
});
