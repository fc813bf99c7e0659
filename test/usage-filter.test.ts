/**
 * Token accounting by the C body filter (image/proxy/usage-module/, issue 16) against the Lua one it replaces
 * (gateway/usage.lua): the same upstream answers, written in the same pieces, through both
 * gateways must log the same counts. And the filter only looks: a chunk reaches the client before
 * the upstream sends the next one.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NGINX_SOURCE_DIR, renderBundle } from "../bundle/render";
import { FINAL_OBJECT_PATHS } from "../bundle/routes";
import { validateSpec } from "../bundle/spec";
import { FAKE_MODEL } from "../harness/fake-ollama";
import { bearer, request } from "../harness/http";
import { freePort, nginxTestsEnabled, type RunningGateway, startGateway } from "../harness/nginx";

// Test-only credential, made up for this file.
const KEY = "usage-filter-key-00000000000000000000";

/** What the scripted upstream answers next: written piece by piece, `gapMs` apart. */
interface Answer {
  status?: number;
  contentType?: string;
  pieces: string[];
  gapMs?: number;
}

const line = (value: unknown) => `${JSON.stringify(value)}\n`;
const partial = (i: number) => line({ model: FAKE_MODEL, created_at: "2026-01-01T00:00:00Z", response: `w${i} `, done: false });
const final = (extra: Record<string, unknown> = {}) => ({
  model: FAKE_MODEL, created_at: "2026-01-01T00:00:00Z", response: "", done: true, done_reason: "stop",
  total_duration: 1000, prompt_eval_count: 11, eval_count: 7, ...extra,
});
const toolCall = (args: Record<string, unknown>) => ({ tool_calls: [{ function: { name: "f", arguments: args } }] });
/** Splits `text` into `n` pieces of about equal size. */
const split = (text: string, n: number) => Array.from({ length: n }, (_, i) => text.slice(Math.floor((i * text.length) / n), Math.floor(((i + 1) * text.length) / n)));
const sse = (value: unknown) => `data: ${JSON.stringify(value)}\n\n`;
const chatChunk = (content: string, usage?: unknown) => ({ id: "c", object: "chat.completion.chunk", choices: usage ? [] : [{ index: 0, delta: { content } }], ...(usage ? { usage } : {}) });

interface Case {
  name: string;
  path: string;
  answer: Answer;
  /** [prompt_tokens, completion_tokens] the access log must show (null: unknown). */
  expected: [number | null, number | null];
}

const streamOf = (last: string | string[]) => [partial(0), partial(1), partial(2), ...(Array.isArray(last) ? last : [last])];
const CASES: Case[] = [
  { name: "native stream", path: "/api/generate", answer: { pieces: streamOf(line(final())) }, expected: [11, 7] },
  { name: "several lines per piece", path: "/api/chat", answer: { pieces: [partial(0) + partial(1), partial(2) + line(final())] }, expected: [11, 7] },
  { name: "final line split in three", path: "/api/generate", answer: { pieces: streamOf(split(line(final()), 3)) }, expected: [11, 7] },
  { name: "final line split before its newline", path: "/api/generate", answer: { pieces: streamOf([JSON.stringify(final()), "\n"]) }, expected: [11, 7] },
  {
    name: "nested look-alike counts after the real ones",
    path: "/api/chat",
    answer: { pieces: streamOf(line(final(toolCall({ prompt_eval_count: 0, eval_count: 0, done: false })))) },
    expected: [11, 7],
  },
  {
    name: "nested look-alike counts before the real ones",
    path: "/api/generate",
    answer: { pieces: streamOf(line({ ...toolCall({ eval_count: 0, x: [{ prompt_eval_count: 0 }] }), ...final() })) },
    expected: [11, 7],
  },
  {
    name: "look-alikes in strings",
    path: "/api/generate",
    answer: { pieces: streamOf(line(final({ response: '"eval_count":0,"done":false}\n', context: ["\\\"", "é\u0001"] }))) },
    expected: [11, 7],
  },
  { name: "a repeated key: the last one counts", path: "/api/generate", answer: { pieces: streamOf(`${JSON.stringify(final()).slice(0, -1)},"eval_count":9}\n`) }, expected: [11, 9] },
  // Lines ending `,"done":false}` are skipped unparsed by the C filter: both must read them as not final.
  { name: "done repeated, false last", path: "/api/generate", answer: { pieces: streamOf(`${JSON.stringify(final()).slice(0, -1)},"done":false}\n`) }, expected: [null, null] },
  { name: "a line after the final one", path: "/api/chat", answer: { pieces: streamOf([line(final()), partial(3)]) }, expected: [null, null] },
  { name: "done without counts", path: "/api/generate", answer: { pieces: streamOf(line({ model: FAKE_MODEL, done: true })) }, expected: [0, 0] },
  { name: "done is not true", path: "/api/generate", answer: { pieces: streamOf(line(final({ done: "true" }))) }, expected: [null, null] },
  { name: "stream ends without the final line", path: "/api/generate", answer: { pieces: streamOf([]) }, expected: [null, null] },
  { name: "a negative count counts 0 (no tokens given back against a budget)", path: "/api/generate", answer: { pieces: streamOf(line(final({ prompt_eval_count: -5 }))) }, expected: [0, 7] },
  { name: "final line cut short", path: "/api/generate", answer: { pieces: streamOf(JSON.stringify(final()).slice(0, -5)) }, expected: [null, null] },
  { name: "trailing garbage", path: "/api/generate", answer: { pieces: streamOf(`${JSON.stringify(final())} x\n`) }, expected: [null, null] },
  { name: "CRLF line ends", path: "/api/chat", answer: { pieces: streamOf(`${JSON.stringify(final())}\r\n`) }, expected: [11, 7] },
  { name: "non-streamed, no newline", path: "/api/generate", answer: { pieces: [JSON.stringify(final())] }, expected: [11, 7] },
  { name: "a 1 MB context in many pieces", path: "/api/generate", answer: { pieces: streamOf(split(line(final({ context: Array.from({ length: 150_000 }, (_, i) => i) })), 40)), gapMs: 2 }, expected: [11, 7] },
  { name: "deep nesting", path: "/api/chat", answer: { pieces: streamOf(line(final(toolCall({ a: JSON.parse("[".repeat(200) + "]".repeat(200)) })))) }, expected: [11, 7] },
  { name: "an error status", path: "/api/generate", answer: { status: 500, pieces: [line(final())] }, expected: [null, null] },
  {
    name: "OpenAI stream with usage",
    path: "/v1/chat/completions",
    answer: { contentType: "text/event-stream", pieces: [sse(chatChunk("a")), sse(chatChunk("b")), sse(chatChunk("", { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 })), "data: [DONE]\n\n"] },
    expected: [5, 3],
  },
  {
    name: "usage split across pieces",
    path: "/v1/chat/completions",
    answer: { contentType: "text/event-stream", pieces: [sse(chatChunk("a")), ...split(sse(chatChunk("", { prompt_tokens: 12345, completion_tokens: 678 })), 5), "data: [DONE]\n\n"] },
    expected: [12345, 678],
  },
  { name: "OpenAI stream without usage", path: "/v1/chat/completions", answer: { contentType: "text/event-stream", pieces: [sse(chatChunk("a")), "data: [DONE]\n\n"] }, expected: [null, null] },
  { name: "embed", path: "/api/embed", answer: { pieces: [JSON.stringify({ model: FAKE_MODEL, embeddings: [[0.1, 0.2]], prompt_eval_count: 6 })] }, expected: [6, 0] },
  { name: "Anthropic messages", path: "/v1/messages", answer: { pieces: [JSON.stringify({ type: "message", content: [], usage: { input_tokens: 9, output_tokens: 4 } })] }, expected: [9, 4] },
  { name: "not an inference route", path: "/api/show", answer: { pieces: [JSON.stringify({ prompt_eval_count: 3, eval_count: 2, done: true })] }, expected: [null, null] },
];

describe("rendering the C filter", () => {
  const spec = validateSpec({ upstream: "http://127.0.0.1:11434" });
  it("loads the module, enables it in the API location and tells the Lua log phase", () => {
    const files = renderBundle(spec, { flavor: "debian", usageModule: "/opt/gw/usage.so" }).files;
    expect(files["conf/nginx.conf"]).toContain("load_module /opt/gw/usage.so;");
    expect(files["conf/nginx.conf"]).toContain('"POST /api/generate" final;');
    expect(files["conf/nginx.conf"]).toContain('"POST /v1/chat/completions" scan;');
    expect(files["conf/gateway-locations.conf"]).toContain("gateway_usage $gw_usage_mode;");
    expect(files["conf/gateway-locations.conf"]).not.toContain("body_filter_by_lua");
    expect(files["lua/gateway/config.lua"]).toContain("usage_module = true,");
    const lua = renderBundle(spec, { flavor: "openresty" }).files;
    expect(lua["conf/nginx.conf"]).not.toContain("gateway_usage");
    expect(lua["conf/gateway-locations.conf"]).toContain("body_filter_by_lua_block");
    expect(lua["lua/gateway/config.lua"]).toContain("usage_module = false,");
  });
  it("refuses a path nginx would read as more than one", () => {
    expect(() => renderBundle(spec, { flavor: "debian", usageModule: "/tmp/a b.so" })).toThrow(/not a file path nginx can load/);
  });
});

describe("token accounting's routes", () => {
  it("come from bundle/routes.ts alone, for the C filter and the Lua one (governance.lua reads the rendered routes.lua)", () => {
    const files = renderBundle(validateSpec({ upstream: "http://127.0.0.1:11434" }), { flavor: "debian" }).files;
    const table = /_M\.final_object = \{([^}]*)\}/.exec(files["lua/gateway/routes.lua"])![1];
    expect([...table.matchAll(/\["([^"]+)"\] = true/g)].map((m) => m[1]).sort()).toEqual([...FINAL_OBJECT_PATHS].sort());
    const lua = readFileSync(path.join(NGINX_SOURCE_DIR, "lua", "gateway", "governance.lua"), "utf8");
    expect(lua).toContain('require("gateway.routes").final_object');
  });
});

describe.runIf(nginxTestsEnabled)("token accounting: the C body filter and the Lua one", () => {
  let server: http.Server;
  let next: Answer = { pieces: [] };
  /** Called with each piece once written, before the next (the lock-step test waits on it). */
  let wrote: ((piece: number) => Promise<void>) | undefined;
  const gateways: Record<"module" | "lua", RunningGateway | undefined> = { module: undefined, lua: undefined };

  beforeAll(async () => {
    const port = await freePort();
    server = http.createServer((req, res) => {
      req.resume();
      req.on("end", async () => {
        const answer = next;
        res.writeHead(answer.status ?? 200, { "Content-Type": answer.contentType ?? "application/x-ndjson" });
        for (const [i, piece] of answer.pieces.entries()) {
          res.write(piece);
          if (wrote) await wrote(i);
          else await new Promise((resolve) => setTimeout(resolve, answer.gapMs ?? 15));
        }
        res.end();
      });
    });
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    const spec = { apiKeys: [{ name: "app", key: KEY, scope: "admin" as const }], rateLimit: { requestsPerSecond: 10_000, burst: 10_000 } };
    gateways.module = await startGateway({ upstreamUrl: `http://127.0.0.1:${port}`, spec });
    gateways.lua = await startGateway({ upstreamUrl: `http://127.0.0.1:${port}`, spec, usageModule: false });
  });
  afterAll(async () => {
    await gateways.module?.stop();
    await gateways.lua?.stop();
    await new Promise((resolve) => server?.close(resolve));
  });

  it("renders the module for one gateway and the Lua filter for the other", () => {
    expect(gateways.module!.errorLog()).not.toContain("[emerg]");
    const conf = (g: RunningGateway) => `${g.dir}/conf/gateway-locations.conf`;
    expect(readFileSync(conf(gateways.module!), "utf8")).toContain("gateway_usage $gw_usage_mode;");
    expect(readFileSync(conf(gateways.lua!), "utf8")).toContain("body_filter_by_lua_block");
  });

  it.each(CASES)("$name: both log the same counts", async ({ path, answer, expected }) => {
    const logged: Record<string, [unknown, unknown]> = {};
    for (const [name, gateway] of Object.entries(gateways)) {
      next = answer;
      const response = await request(gateway!.url + path, {
        method: "POST", headers: { ...bearer(KEY), "Content-Type": "application/json" }, body: JSON.stringify({ model: FAKE_MODEL, prompt: "hi" }),
      });
      expect(response.status).toBe(answer.status ?? 200);
      expect(response.body).toBe(answer.pieces.join(""));
      const entry = (await gateway!.settledAccessLog()).filter((e) => e.path === path).pop()!;
      logged[name] = [entry.prompt_tokens, entry.completion_tokens];
      expect(typeof entry.ttft_ms).toBe("number");
    }
    expect(logged).toEqual({ module: expected, lua: expected });
  });

  it("holds no chunk back: each reaches the client before the upstream writes the next", async () => {
    const pieces = [...Array.from({ length: 20 }, (_, i) => partial(i)), line(final())];
    const seen: string[] = [];
    let waiting: { length: number; resolve: () => void } | undefined;
    let stalled: number | undefined;
    // The upstream writes piece i+1 only once the client has received pieces 0..i: a filter
    // that held a chunk back would stall the stream here.
    wrote = (i) =>
      new Promise<void>((resolve) => {
        const length = pieces.slice(0, i + 1).join("").length;
        if (seen.join("").length >= length) return resolve();
        waiting = { length, resolve };
        setTimeout(() => {
          stalled ??= i;
          resolve();
        }, 2000).unref();
      });
    try {
      next = { pieces };
      const body = await new Promise<string>((resolve, reject) => {
        const req = http.request(`${gateways.module!.url}/api/generate`, { method: "POST", headers: bearer(KEY) }, (res) => {
          res.setEncoding("utf8");
          res.on("data", (d: string) => {
            seen.push(d);
            if (waiting && seen.join("").length >= waiting.length) {
              waiting.resolve();
              waiting = undefined;
            }
          });
          res.on("end", () => resolve(seen.join("")));
          res.on("error", reject);
        });
        req.on("error", reject);
        req.end(JSON.stringify({ model: FAKE_MODEL, prompt: "hi" }));
      });
      expect(stalled, "the first piece that did not reach the client before the next was written").toBeUndefined();
      expect(body).toBe(pieces.join(""));
      const entry = (await gateways.module!.settledAccessLog()).pop()!;
      expect(entry).toMatchObject({ path: "/api/generate", prompt_tokens: 11, completion_tokens: 7 });
    } finally {
      wrote = undefined;
    }
  });
});
