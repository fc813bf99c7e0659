// A stand-in for the Ollama HTTP server, faithful where a proxy in front of it can tell the
// difference: gin's exact routing (404/405/trailing-slash redirects), Go's response headers and
// JSON encoding, NDJSON and SSE streaming with realistic timing, Ollama's CORS origin check, and
// the native, OpenAI and Anthropic response and error shapes.
// Reference: ollama/ollama server/routes.go, middleware/openai.go, openai/openai.go.
//
// As a script (benchmarks): tsx harness/fake-ollama.ts --port 11434 [--first-byte-delay-ms N]
//   [--chunks N] [--chunk-interval-ms N] [--models a,b] [--loaded a]

import http from "node:http";
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import routesFixture from "./ollama-routes.json";

export interface FakeOllamaOptions {
  host?: string;
  port?: number;
  /** Delay before the first byte of an inference or streamed response (a cold model load). */
  firstByteDelayMs?: number;
  /** Gap between streamed chunks. */
  chunkIntervalMs?: number;
  /** Number of content chunks in a stream. */
  chunks?: number;
  /**
   * Models this server holds (`/api/tags`, `/v1/models`). Given, a request naming another model
   * gets Ollama's 404 `model '<name>' not found`; absent, the server lists gemma3:1b and answers
   * for any model name (as the single-server suites expect).
   */
  models?: string[];
  /** Models loaded in memory (`/api/ps`). Default none. */
  loaded?: string[];
  /**
   * Mark a model loaded (`/api/ps`) when an inference request uses it, as Ollama does. Default
   * false: the pool suites pin `loaded` to control routing.
   */
  loadOnUse?: boolean;
}

export interface RecordedRequest {
  method: string;
  /** Exactly req.url as received, including the query string. */
  rawPath: string;
  /** Percent-decoded path without the query string (what the router matches). */
  path: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  /** Filled in once the body has been read; the record is pushed on arrival to keep the order. */
  body: string;
}

export type FakeOllamaMode = "normal" | "queue-full" | "reset-mid-stream" | "slow";

export interface FakeOllama {
  url: string;
  port: number;
  requests: RecordedRequest[];
  mode: FakeOllamaMode;
  activeStreams: number;
  abortedStreams: number;
  setOptions(o: Partial<FakeOllamaOptions>): void;
  close(): Promise<void>;
}

export const OLLAMA_VERSION = "0.12.0";
export const FAKE_MODEL = "gemma3:1b";
/** ErrMaxQueue in server/sched.go, returned when OLLAMA_MAX_QUEUE is exceeded (note the two spaces). */
export const QUEUE_FULL_ERROR = "server busy, please try again.  maximum pending requests exceeded";
/** Words the fake model emits, one per content chunk (cycled). */
const FAKE_WORDS = ["The", " sky", " is", " blue", " because", " of", " Rayleigh", " scattering", "."];

/** The text a stream of `chunks` content chunks adds up to (also the non-streamed answer). */
export function fakeCompletion(chunks: number): string {
  return Array.from({ length: chunks }, (_, i) => FAKE_WORDS[i % FAKE_WORDS.length]).join("");
}

type Resolved<T> = { [K in keyof T]-?: Exclude<T[K], undefined> };

const DEFAULT_OPTIONS: Omit<Resolved<FakeOllamaOptions>, "models"> & { models?: string[] } = {
  host: "127.0.0.1",
  port: 0,
  firstByteDelayMs: 0,
  chunkIntervalMs: 10,
  chunks: 5,
  loaded: [],
  loadOnUse: false,
};

// ---------------------------------------------------------------------------------------------
// Routing, as gin v1.10 does it with RedirectTrailingSlash and HandleMethodNotAllowed on.

interface Route {
  method: string;
  path: string;
  segments: string[];
}

const ROUTES: Route[] = routesFixture.routes.map(({ method, path }) => ({ method, path, segments: path.split("/") }));

// gin keeps one tree per method in registration order; the Allow header of a 405 lists them so.
const METHOD_TREES = [...new Set(ROUTES.map((route) => route.method))];

type Resolution =
  | { kind: "found"; route: Route; params: Record<string, string> }
  | { kind: "redirect"; path: string }
  | { kind: "method-not-allowed"; allow: string[] }
  | { kind: "not-found" };

/** Params of `path` for `route`, or undefined when it does not match (a `:param` is one non-empty segment). */
function matchRoute(route: Route, path: string): Record<string, string> | undefined {
  const segments = path.split("/");
  if (segments.length !== route.segments.length) return undefined;
  const params: Record<string, string> = {};
  for (const [i, expected] of route.segments.entries()) {
    if (expected.startsWith(":")) {
      if (segments[i] === "") return undefined;
      params[expected.slice(1)] = segments[i];
    } else if (segments[i] !== expected) {
      return undefined;
    }
  }
  return params;
}

function routeFor(method: string, path: string): Resolution | undefined {
  for (const route of ROUTES) {
    if (route.method !== method) continue;
    const params = matchRoute(route, path);
    if (params) return { kind: "found", route, params };
  }
  return undefined;
}

function resolveRoute(method: string, path: string): Resolution {
  const found = routeFor(method, path);
  if (found) return found;
  if (method !== "CONNECT" && path !== "/" && path.endsWith("/") && routeFor(method, path.slice(0, -1))) {
    return { kind: "redirect", path: path.slice(0, -1) };
  }
  const allow = METHOD_TREES.filter((other) => other !== method && routeFor(other, path));
  return allow.length > 0 ? { kind: "method-not-allowed", allow } : { kind: "not-found" };
}

/** Percent-decodes like Go's url.ParseRequestURI; undefined for a malformed escape (Go answers 400). */
function decodePath(rawPath: string): string | undefined {
  const bytes: number[] = [];
  for (let i = 0; i < rawPath.length; i++) {
    if (rawPath[i] !== "%") {
      bytes.push(rawPath.charCodeAt(i) & 0xff);
      continue;
    }
    const hex = rawPath.slice(i + 1, i + 3);
    if (!/^[0-9a-fA-F]{2}$/.test(hex)) return undefined;
    bytes.push(parseInt(hex, 16));
    i += 2;
  }
  return Buffer.from(bytes).toString("utf8");
}

/** Go's url.PathEscape-style encoding used when gin builds a redirect Location. */
function escapePathLikeGo(path: string): string {
  return path.replace(/[^A-Za-z0-9\-_.~$&+,/:;=@]/gu, (char) =>
    [...Buffer.from(char, "utf8")].map((byte) => `%${byte.toString(16).toUpperCase().padStart(2, "0")}`).join(""),
  );
}

// ---------------------------------------------------------------------------------------------
// CORS: Ollama wraps every route (404/405 included) in gin-contrib/cors with these defaults
// (envconfig.AllowedOrigins without OLLAMA_ORIGINS). A foreign Origin gets an empty 403.

const LOCAL_ORIGIN_HOSTS = ["localhost", "127.0.0.1", "0.0.0.0"];
const ORIGIN_SCHEME_PREFIXES = ["app://", "file://", "tauri://", "vscode-webview://", "vscode-file://"];
const CORS_ALLOWED_HEADERS = [
  "Authorization", "Content-Type", "User-Agent", "Accept", "X-Requested-With", "Openai-Beta",
  "X-Stainless-Arch", "X-Stainless-Async", "X-Stainless-Custom-Poll-Interval", "X-Stainless-Helper-Method",
  "X-Stainless-Lang", "X-Stainless-Os", "X-Stainless-Package-Version", "X-Stainless-Poll-Helper",
  "X-Stainless-Retry-Count", "X-Stainless-Runtime", "X-Stainless-Runtime-Version", "X-Stainless-Timeout",
];

function isAllowedOrigin(origin: string): boolean {
  const local = LOCAL_ORIGIN_HOSTS.some((host) =>
    ["http://", "https://"].some((scheme) => origin === scheme + host || origin.startsWith(`${scheme}${host}:`)),
  );
  return local || ORIGIN_SCHEME_PREFIXES.some((prefix) => origin.startsWith(prefix));
}

// ---------------------------------------------------------------------------------------------
// Canned data, shaped like a real server with gemma3:1b pulled.

const MODEL_MODIFIED_AT = "2025-09-20T10:11:12.123456789Z";
const MODEL_CREATED_UNIX = Date.UTC(2025, 8, 20, 10, 11, 12) / 1000;
const MODEL_DIGEST = "8648f39daa8fbf5b18c7b4e6a8fb4990c692751d49917417b8842ca5758e7ffc";
const MODEL_DETAILS = {
  parent_model: "",
  format: "gguf",
  family: "gemma3",
  families: ["gemma3"],
  parameter_size: "999.89M",
  quantization_level: "Q4_K_M",
};
const MODEL_SIZE = 815319791;
/** An /api/tags entry (api.ListModelResponse); other names get their own digest. */
function tagEntry(name: string) {
  const digest = name === FAKE_MODEL ? MODEL_DIGEST : createHash("sha256").update(name).digest("hex");
  return { name, model: name, modified_at: MODEL_MODIFIED_AT, size: MODEL_SIZE, digest, details: MODEL_DETAILS };
}
/** An /api/ps entry (api.ProcessModelResponse): loaded for five minutes, all in VRAM. */
function psEntry(name: string) {
  const { modified_at: _, ...entry } = tagEntry(name);
  return { ...entry, expires_at: new Date(Date.now() + 300_000).toISOString(), size_vram: MODEL_SIZE, context_length: 4096 };
}
/** A pulled, created or copied model appears in /api/tags (when the server has a `models` list). */
function holdModel(fake: FakeOllamaServer, name: string): void {
  const held = fake.options.models;
  if (held && !held.some((m) => sameModel(m, name))) fake.options.models = [...held, /:[^/]*$/.test(name) ? name : `${name}:latest`];
}

/** What /api/tags lists. */
function heldModels(fake: FakeOllamaServer): string[] {
  return fake.options.models ?? [FAKE_MODEL];
}
/** Ollama's model names (model.ParseName): case-insensitive, default host and namespace, `:latest` when no tag is given. */
function sameModel(a: string, b: string): boolean {
  const norm = (n: string) => {
    const short = n.toLowerCase().replace(/^registry\.ollama\.ai\//, "").replace(/^library\//, "");
    return /:[^/]*$/.test(short) ? short : `${short}:latest`;
  };
  return norm(a) === norm(b);
}
const LAYER_DIGESTS = [
  "sha256:7cd4618c1faf8b7233c6c906dac1694b6a47684b37b8895d470ac688520b9c01",
  "sha256:e0a42594d802e5d31cdc786deb4823edb8adff66094d49de8fffe976d753e348",
  "sha256:dd084c7d92a3c1c14cc09ae77153b903fd2024b64a100a0cc8ec9316063d2dbc",
];
const LAYER_SIZE = 815310336;
const EMBEDDING_DIMENSIONS = 8;

/** Writes before the socket is destroyed in reset-mid-stream mode. */
const RESET_AFTER_WRITES = 2;

/** Go's encoding/json escapes these even inside strings; a byte-comparing proxy test can see it. */
function goJson(value: unknown): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

function estimateTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

/** Deterministic vector per input, with values exactly representable as float32 (for base64 output). */
function fakeEmbedding(input: string, dimensions: number): number[] {
  const digest = createHash("sha256").update(input).digest();
  return Array.from({ length: dimensions }, (_, i) => (digest[i % digest.length] - 128) / 128);
}

function float32Base64(vector: number[]): string {
  return Buffer.from(new Float32Array(vector).buffer).toString("base64");
}

function modelNamespace(model: string): string {
  const parts = model.split("/");
  return parts.length >= 2 ? parts[parts.length - 2] : "library";
}

function randomId(prefix: string): string {
  return `${prefix}-${Math.floor(Math.random() * 999)}`;
}

function nowUnix(): number {
  return Math.floor(Date.now() / 1000);
}

type JsonObject = Record<string, unknown>;

function stringField(body: JsonObject, key: string): string {
  const value = body[key];
  return typeof value === "string" ? value : "";
}

/** Inputs of an embed request: a string or an array of strings (OpenAI also allows token arrays). */
function embedInputs(input: unknown): string[] {
  if (typeof input === "string") return [input];
  if (Array.isArray(input) && input.length > 0 && typeof input[0] !== "number") {
    return input.map((item) => (typeof item === "string" ? item : JSON.stringify(item)));
  }
  return [JSON.stringify(input)];
}

function messagesText(messages: unknown): string {
  if (!Array.isArray(messages)) return "";
  return messages.map((message) => JSON.stringify((message as JsonObject)?.content ?? "")).join("\n");
}

// ---------------------------------------------------------------------------------------------
// One request/response pair.

/** Which API's error envelope a route uses. */
type ApiFamily = "ollama" | "openai" | "anthropic";

class Exchange {
  private waitedFirstByte = false;
  readonly family: ApiFamily;
  params: Record<string, string> = {};

  constructor(
    readonly fake: FakeOllamaServer,
    readonly req: http.IncomingMessage,
    readonly res: http.ServerResponse,
    readonly path: string,
    readonly body: string,
    /** Aborted when the client goes away before the response finished. */
    readonly signal: AbortSignal,
  ) {
    this.family = path === "/v1/messages" ? "anthropic" : path.startsWith("/v1/") ? "openai" : "ollama";
  }

  get method(): string {
    return this.req.method ?? "GET";
  }

  /** The cold-start delay, paid at most once per response. */
  async waitFirstByte(): Promise<void> {
    if (this.waitedFirstByte) return;
    this.waitedFirstByte = true;
    await sleep(this.fake.options.firstByteDelayMs, undefined, { signal: this.signal });
  }

  send(status: number, body: string, headers: http.OutgoingHttpHeaders = {}): void {
    this.res.writeHead(status, { ...headers, "Content-Length": Buffer.byteLength(body) });
    this.res.end(this.method === "HEAD" ? undefined : body);
  }

  /** gin's c.JSON. */
  json(status: number, value: unknown): void {
    this.send(status, goJson(value), { "Content-Type": "application/json; charset=utf-8" });
  }

  /** The OpenAI/Anthropic middlewares rewrite the body with json.Encoder: plain type, trailing newline. */
  compatJson(status: number, value: unknown): void {
    this.send(status, `${goJson(value)}\n`, { "Content-Type": "application/json" });
  }

  text(status: number, text: string): void {
    this.send(status, text, { "Content-Type": "text/plain; charset=utf-8" });
  }

  empty(status: number): void {
    this.send(status, "");
  }

  error(status: number, message: string): void {
    if (this.family === "ollama") return this.json(status, { error: message });
    if (this.family === "openai") {
      const type = status === 400 ? "invalid_request_error" : status === 404 ? "not_found_error" : "api_error";
      return this.compatJson(status, { error: { message, type, param: null, code: null } });
    }
    const anthropicTypes: Record<number, string> = {
      400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
      404: "not_found_error", 429: "rate_limit_error", 503: "overloaded_error",
    };
    this.compatJson(status, {
      type: "error",
      error: { type: anthropicTypes[status] ?? "api_error", message },
      request_id: randomId("req"),
    });
  }

  /** The JSON request body, or undefined after answering 400 like gin's ShouldBindJSON does. */
  readJson(): JsonObject | undefined {
    if (this.body.trim() === "") {
      // Ollama's handlers special-case io.EOF; the compat middlewares pass err.Error() through.
      this.error(400, this.family === "ollama" ? "missing request body" : "EOF");
      return undefined;
    }
    let value: unknown;
    try {
      value = JSON.parse(this.body);
    } catch (error) {
      this.error(400, `invalid character in JSON body: ${(error as Error).message}`);
      return undefined;
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      this.error(400, `json: cannot unmarshal ${Array.isArray(value) ? "array" : typeof value} into Go value of type object`);
      return undefined;
    }
    return value as JsonObject;
  }

  /**
   * Scheduler admission: false after answering 503 in queue-full mode; otherwise pays the model
   * load. A stream pays it inside stream() instead, so a client leaving during the load is counted.
   */
  async admitInference(streaming = false): Promise<boolean> {
    if (this.fake.mode === "queue-full") {
      this.error(503, QUEUE_FULL_ERROR);
      return false;
    }
    if (!streaming) await this.waitFirstByte();
    return true;
  }

  /** Resolves once `chunk` is handed to the kernel, or the client is gone (then the callback never comes). */
  private writeFlushed(chunk: string): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.signal.removeEventListener("abort", done);
        resolve();
      };
      this.signal.addEventListener("abort", done);
      this.res.write(chunk, done);
    });
  }

  /**
   * Streams `writes` (one flushed write each, chunkIntervalMs apart) after the first-byte delay.
   * Like Go, headers go out with the first write, so a slow model load shows as a slow header.
   * `writes` is iterated lazily so each line gets the timestamp of the moment it is sent.
   */
  async stream(contentType: string, writes: Iterable<string>): Promise<void> {
    const fake = this.fake;
    fake.activeStreams++;
    try {
      await this.waitFirstByte();
      const resetMidStream = fake.mode === "reset-mid-stream";
      this.res.writeHead(200, { "Content-Type": contentType });
      let written = 0;
      for (const write of writes) {
        if (resetMidStream && written === RESET_AFTER_WRITES) break;
        if (written > 0) await sleep(fake.options.chunkIntervalMs, undefined, { signal: this.signal });
        // Waiting for each write gives Go's backpressure, and lets a reset happen after real bytes.
        await this.writeFlushed(write);
        written++;
      }
      this.signal.throwIfAborted();
      if (resetMidStream) this.res.destroy();
      else this.res.end();
    } catch (error) {
      if (!this.signal.aborted) throw error;
      fake.abortedStreams++;
    } finally {
      fake.activeStreams--;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Handlers, keyed by the fixture's "METHOD path".

type Handler = (ex: Exchange) => void | Promise<void>;

/** Duration fields of a done response, in nanoseconds like Go's time.Duration. */
function doneStats(fake: FakeOllamaServer, promptTokens: number, evalCount: number) {
  const loadDuration = fake.options.firstByteDelayMs * 1e6 + 1_234_567;
  const evalDuration = Math.max(1, fake.options.chunks) * fake.options.chunkIntervalMs * 1e6 + 2_345_678;
  const promptEvalDuration = 3_456_789;
  return {
    total_duration: loadDuration + promptEvalDuration + evalDuration,
    load_duration: loadDuration,
    prompt_eval_count: promptTokens,
    prompt_eval_duration: promptEvalDuration,
    eval_count: evalCount,
    eval_duration: evalDuration,
  };
}

function* ndjson(values: Iterable<unknown>): Iterable<string> {
  for (const value of values) yield `${goJson(value)}\n`;
}

function sse(values: unknown[]): string {
  return values.map((value) => `data: ${goJson(value)}\n\n`).join("");
}

/** Native streamable handlers default to stream:true (api.*Request.Stream is a *bool). */
function wantsStream(body: JsonObject): boolean {
  return body.stream !== false;
}

function contentWords(fake: FakeOllamaServer): string[] {
  return Array.from({ length: fake.options.chunks }, (_, i) => FAKE_WORDS[i % FAKE_WORDS.length]);
}

/** Model, prompt size and answer words of a generate-like or chat-like request (native or compat). */
function inferenceRequest(ex: Exchange, body: JsonObject, kind: "generate" | "chat") {
  const model = stringField(body, "model");
  const promptText = kind === "generate" ? stringField(body, "prompt") : messagesText(body.messages);
  // Ollama lists a loaded model under its own name, however the request spelled it.
  const held = ex.fake.options.loadOnUse ? heldModels(ex.fake).find((name) => sameModel(name, model)) : undefined;
  if (held !== undefined) ex.fake.loaded.add(held);
  return { model, promptTokens: estimateTokens(promptText), words: contentWords(ex.fake) };
}

/** Answers the missing-model error each real handler gives (they differ); true when answered. */
function rejectMissingModel(ex: Exchange, model: string, status: 400 | 404): boolean {
  if (model.trim() === "") {
    ex.error(status, status === 404 ? `model '${model}' not found` : "model is required");
    return true;
  }
  // GenerateHandler, ChatHandler, EmbedHandler...: a model not on disk is a 404 with this text.
  const held = ex.fake.options.models;
  if (held === undefined || held.some((name) => sameModel(name, model))) return false;
  ex.error(404, `model '${model}' not found`);
  return true;
}

async function generate(ex: Exchange): Promise<void> {
  const body = ex.readJson();
  if (!body) return;
  const { model, promptTokens, words } = inferenceRequest(ex, body, "generate");
  if (rejectMissingModel(ex, model, 404) || !(await ex.admitInference(wantsStream(body)))) return;
  const base = () => ({ model, created_at: new Date().toISOString() });
  const done = (response: string) => ({
    ...base(), response, done: true, done_reason: "stop", context: [105, 2364, 107], ...doneStats(ex.fake, promptTokens, words.length),
  });
  if (!wantsStream(body)) return ex.json(200, done(words.join("")));
  await ex.stream("application/x-ndjson", ndjson(function* () {
    for (const response of words) yield { ...base(), response, done: false };
    yield done("");
  }()));
}

async function chat(ex: Exchange): Promise<void> {
  const body = ex.readJson();
  if (!body) return;
  const { model, promptTokens, words } = inferenceRequest(ex, body, "chat");
  if (rejectMissingModel(ex, model, 400) || !(await ex.admitInference(wantsStream(body)))) return;
  const line = (content: string, done: boolean) => ({
    model, created_at: new Date().toISOString(), message: { role: "assistant", content }, done,
  });
  const final = (content: string) => ({ ...line(content, true), done_reason: "stop", ...doneStats(ex.fake, promptTokens, words.length) });
  if (!wantsStream(body)) return ex.json(200, final(words.join("")));
  await ex.stream("application/x-ndjson", ndjson(function* () {
    for (const word of words) yield line(word, false);
    yield final("");
  }()));
}

async function embed(ex: Exchange): Promise<void> {
  const body = ex.readJson();
  if (!body) return;
  const model = stringField(body, "model");
  if (rejectMissingModel(ex, model, 404) || !(await ex.admitInference())) return;
  const inputs = embedInputs(body.input);
  const dimensions = typeof body.dimensions === "number" && body.dimensions > 0 ? body.dimensions : EMBEDDING_DIMENSIONS;
  const { total_duration, load_duration } = doneStats(ex.fake, 0, 0);
  ex.json(200, {
    model,
    embeddings: inputs.map((input) => fakeEmbedding(input, dimensions)),
    total_duration,
    load_duration,
    prompt_eval_count: inputs.reduce((sum, input) => sum + estimateTokens(input), 0),
  });
}

async function legacyEmbeddings(ex: Exchange): Promise<void> {
  const body = ex.readJson();
  if (!body) return;
  if (rejectMissingModel(ex, stringField(body, "model"), 400) || !(await ex.admitInference())) return;
  ex.json(200, { embedding: fakeEmbedding(stringField(body, "prompt"), EMBEDDING_DIMENSIONS) });
}

/** pull/push/create: NDJSON progress ending in {"status":"success"}, or just that with stream:false. */
function progressHandler(statuses: (fake: FakeOllamaServer) => JsonObject[], addsModel = false): Handler {
  return async (ex) => {
    const body = ex.readJson();
    if (!body) return;
    if (stringField(body, "model") === "" && stringField(body, "name") === "") return ex.error(400, "invalid model name");
    if (addsModel) holdModel(ex.fake, stringField(body, "model") || stringField(body, "name"));
    if (!wantsStream(body)) {
      await ex.waitFirstByte();
      return ex.json(200, { status: "success" });
    }
    await ex.stream("application/x-ndjson", ndjson([...statuses(ex.fake), { status: "success" }]));
  };
}

function layerProgress(verb: "pulling" | "pushing", fake: FakeOllamaServer): JsonObject[] {
  const steps = Math.max(1, fake.options.chunks);
  return Array.from({ length: steps }, (_, i) => {
    const digest = LAYER_DIGESTS[Math.floor((i * LAYER_DIGESTS.length) / steps)];
    const shortDigest = digest.slice("sha256:".length, "sha256:".length + 12);
    return { status: `${verb} ${shortDigest}`, digest, total: LAYER_SIZE, completed: Math.round((LAYER_SIZE * (i + 1)) / steps) };
  });
}

async function openAiChatCompletions(ex: Exchange): Promise<void> {
  const body = ex.readJson();
  if (!body) return;
  if (!Array.isArray(body.messages) || body.messages.length === 0) return ex.error(400, "[] is too short - 'messages'");
  const { model, promptTokens, words } = inferenceRequest(ex, body, "chat");
  if (rejectMissingModel(ex, model, 400) || !(await ex.admitInference(body.stream === true))) return;
  const id = randomId("chatcmpl");
  const created = nowUnix();
  const usage = { prompt_tokens: promptTokens, completion_tokens: words.length, total_tokens: promptTokens + words.length };
  const envelope = { id, object: "chat.completion.chunk", created, model, system_fingerprint: "fp_ollama" };
  if (body.stream !== true) {
    return ex.compatJson(200, {
      ...envelope,
      object: "chat.completion",
      choices: [{ index: 0, message: { role: "assistant", content: words.join("") }, finish_reason: "stop" }],
      usage,
    });
  }
  const chunk = (delta: JsonObject, finishReason: string | null) => ({ ...envelope, choices: [{ index: 0, delta, finish_reason: finishReason }] });
  const contentEvents = words.map((content, i) => sse([chunk(i === 0 ? { role: "assistant", content } : { content }, null)]));
  // The real server writes the finish chunk, the optional usage chunk and [DONE] in one go.
  const trailer = [chunk({}, "stop"), ...(includeUsage(body) ? [{ ...envelope, choices: [], usage }] : [])];
  await ex.stream("text/event-stream", [...contentEvents, `${sse(trailer)}data: [DONE]\n\n`]);
}

function includeUsage(body: JsonObject): boolean {
  return (body.stream_options as JsonObject | undefined)?.include_usage === true;
}

async function openAiCompletions(ex: Exchange): Promise<void> {
  const body = ex.readJson();
  if (!body) return;
  const { model, promptTokens, words } = inferenceRequest(ex, body, "generate");
  if (rejectMissingModel(ex, model, 404) || !(await ex.admitInference(body.stream === true))) return;
  const id = randomId("cmpl");
  const usage = { prompt_tokens: promptTokens, completion_tokens: words.length, total_tokens: promptTokens + words.length };
  const completion = (text: string, finishReason: string | null) => ({
    id,
    object: "text_completion",
    created: nowUnix(),
    choices: [{ text, index: 0, finish_reason: finishReason }],
    model,
    system_fingerprint: "fp_ollama",
  });
  if (body.stream !== true) return ex.compatJson(200, { ...completion(words.join(""), "stop"), usage });
  // Quirk of the real CompleteWriter: with include_usage every chunk carries an all-zero usage.
  const zeroUsage = includeUsage(body) ? { usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 } } : {};
  const contentEvents = words.map((text) => sse([{ ...completion(text, null), ...zeroUsage }]));
  const trailer = [{ ...completion("", "stop"), ...zeroUsage }, ...(includeUsage(body) ? [{ ...completion("", "stop"), choices: [], usage }] : [])];
  await ex.stream("text/event-stream", [...contentEvents, `${sse(trailer)}data: [DONE]\n\n`]);
}

async function openAiEmbeddings(ex: Exchange): Promise<void> {
  const body = ex.readJson();
  if (!body) return;
  const encodingFormat = stringField(body, "encoding_format").toLowerCase();
  if (encodingFormat !== "" && encodingFormat !== "float" && encodingFormat !== "base64") {
    return ex.error(400, `Invalid value for 'encoding_format' = ${body.encoding_format}. Supported values: ['float', 'base64'].`);
  }
  if (body.input === undefined || body.input === null || (Array.isArray(body.input) && body.input.length === 0)) {
    return ex.error(400, "invalid input");
  }
  const model = stringField(body, "model");
  if (rejectMissingModel(ex, model, 404) || !(await ex.admitInference())) return;
  const dimensions = typeof body.dimensions === "number" && body.dimensions > 0 ? body.dimensions : EMBEDDING_DIMENSIONS;
  const inputs = embedInputs(body.input);
  const tokens = inputs.reduce((sum, input) => sum + estimateTokens(input), 0);
  ex.compatJson(200, {
    object: "list",
    data: inputs.map((input, index) => {
      const vector = fakeEmbedding(input, dimensions);
      return { object: "embedding", embedding: encodingFormat === "base64" ? float32Base64(vector) : vector, index };
    }),
    model,
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  });
}

async function openAiResponses(ex: Exchange): Promise<void> {
  const body = ex.readJson();
  if (!body) return;
  const model = stringField(body, "model");
  if (rejectMissingModel(ex, model, 400) || !(await ex.admitInference())) return;
  const text = contentWords(ex.fake).join("");
  const inputTokens = estimateTokens(JSON.stringify(body.input ?? ""));
  const outputTokens = ex.fake.options.chunks;
  ex.compatJson(200, {
    id: randomId("resp"),
    object: "response",
    created_at: nowUnix(),
    status: "completed",
    model,
    output: [
      { type: "message", id: randomId("msg"), status: "completed", role: "assistant", content: [{ type: "output_text", text, annotations: [] }] },
    ],
    usage: { input_tokens: inputTokens, output_tokens: outputTokens, total_tokens: inputTokens + outputTokens },
  });
}

async function anthropicMessages(ex: Exchange): Promise<void> {
  const body = ex.readJson();
  if (!body) return;
  const { model, promptTokens, words } = inferenceRequest(ex, body, "chat");
  if (rejectMissingModel(ex, model, 400) || !(await ex.admitInference())) return;
  ex.compatJson(200, {
    id: randomId("msg"),
    type: "message",
    role: "assistant",
    model,
    content: [{ type: "text", text: words.join("") }],
    stop_reason: "end_turn",
    stop_sequence: null,
    usage: { input_tokens: promptTokens, output_tokens: words.length },
  });
}

/** Handlers that only need a JSON body before answering. */
function withJsonBody(answer: (ex: Exchange, body: JsonObject) => void): Handler {
  return (ex) => {
    const body = ex.readJson();
    if (body) answer(ex, body);
  };
}

const HANDLERS: Record<string, Handler> = {
  "HEAD /": (ex) => ex.text(200, "Ollama is running"),
  "GET /": (ex) => ex.text(200, "Ollama is running"),
  "HEAD /api/version": (ex) => ex.json(200, { version: OLLAMA_VERSION }),
  "GET /api/version": (ex) => ex.json(200, { version: OLLAMA_VERSION }),
  "GET /api/status": (ex) => ex.json(200, { cloud: { disabled: false, source: "default" } }),
  "POST /api/pull": progressHandler((fake) => [
    { status: "pulling manifest" },
    ...layerProgress("pulling", fake),
    { status: "verifying sha256 digest" },
    { status: "writing manifest" },
  ], true),
  "POST /api/push": progressHandler((fake) => [
    { status: "retrieving manifest" },
    ...layerProgress("pushing", fake),
    { status: "pushing manifest" },
  ]),
  "HEAD /api/tags": (ex) => ex.json(200, { models: heldModels(ex.fake).map(tagEntry) }),
  "GET /api/tags": (ex) => ex.json(200, { models: heldModels(ex.fake).map(tagEntry) }),
  "POST /api/show": withJsonBody((ex, body) => {
    if (stringField(body, "model") === "" && stringField(body, "name") === "") return ex.error(400, "model is required");
    if (rejectMissingModel(ex, stringField(body, "model") || stringField(body, "name"), 404)) return;
    ex.json(200, {
      license: "Gemma Terms of Use",
      modelfile: `# Modelfile generated by "ollama show"\nFROM ${FAKE_MODEL}\n`,
      parameters: 'stop "<end_of_turn>"\ntemperature 1',
      template: "{{- range .Messages }}<start_of_turn>{{ .Role }}\n{{ .Content }}<end_of_turn>\n{{ end }}<start_of_turn>model\n",
      details: MODEL_DETAILS,
      model_info: {
        "general.architecture": "gemma3",
        "general.parameter_count": 999885952,
        "gemma3.context_length": 32768,
        "gemma3.embedding_length": 1152,
      },
      capabilities: ["completion"],
      modified_at: MODEL_MODIFIED_AT,
    });
  }),
  "DELETE /api/delete": withJsonBody((ex, body) => {
    const name = stringField(body, "model") || stringField(body, "name");
    if (name === "") return ex.error(400, "invalid model name");
    const held = ex.fake.options.models;
    if (held) {
      if (!held.some((m) => sameModel(m, name))) return ex.error(404, `model '${name}' not found`);
      ex.fake.options.models = held.filter((m) => !sameModel(m, name));
    }
    ex.empty(200);
  }),
  "POST /api/me": (ex) => ex.json(200, { id: "6a1b0f4e-8a3c-4c55-9f6d-2f1e5c7b9d10", email: "user@example.com", name: "user", plan: "free" }),
  "POST /api/signout": (ex) => ex.json(200, null),
  "DELETE /api/user/keys/:encodedKey": (ex) => ex.json(200, null),
  "POST /api/create": progressHandler(() => [
    { status: "gathering model components" },
    ...LAYER_DIGESTS.map((digest) => ({ status: `using existing layer ${digest}` })),
    { status: "writing manifest" },
  ], true),
  "POST /api/blobs/:digest": (ex) => ex.empty(201),
  "HEAD /api/blobs/:digest": (ex) => ex.empty(200),
  "POST /api/copy": withJsonBody((ex, body) => {
    if (stringField(body, "source") === "") return ex.error(400, `source "" is invalid`);
    if (stringField(body, "destination") === "") return ex.error(400, `destination "" is invalid`);
    holdModel(ex.fake, stringField(body, "destination"));
    ex.empty(200);
  }),
  "POST /api/experimental/web_search": withJsonBody((ex) =>
    ex.json(200, { results: [{ title: "Ollama", url: "https://ollama.com", content: "Get up and running with large language models." }] }),
  ),
  "POST /api/experimental/web_fetch": withJsonBody((ex) =>
    ex.json(200, { title: "Ollama", content: "Get up and running with large language models.", links: ["https://ollama.com/download"] }),
  ),
  "GET /api/experimental/model-recommendations": (ex) =>
    ex.json(200, { recommendations: [{ model: FAKE_MODEL, description: "Gemma 3 1B", size: "815MB" }] }),
  "GET /api/ps": (ex) => ex.json(200, { models: [...new Set([...ex.fake.options.loaded, ...ex.fake.loaded])].map(psEntry) }),
  "POST /api/generate": generate,
  "POST /api/chat": chat,
  "POST /api/embed": embed,
  "POST /api/embeddings": legacyEmbeddings,
  "POST /v1/chat/completions": openAiChatCompletions,
  "POST /v1/completions": openAiCompletions,
  "POST /v1/embeddings": openAiEmbeddings,
  "GET /v1/models": (ex) =>
    ex.compatJson(200, {
      object: "list",
      data: heldModels(ex.fake).map((m) => ({ id: m, object: "model", created: MODEL_CREATED_UNIX, owned_by: modelNamespace(m) })),
    }),
  "GET /v1/models/:model": (ex) =>
    void (rejectMissingModel(ex, ex.params.model, 404) ||
    ex.compatJson(200, { id: ex.params.model, object: "model", created: MODEL_CREATED_UNIX, owned_by: modelNamespace(ex.params.model) })),
  "POST /v1/responses": openAiResponses,
  "POST /v1/audio/transcriptions": async (ex) => {
    if (await ex.admitInference()) ex.compatJson(200, { text: contentWords(ex.fake).join("") });
  },
  "POST /v1/messages": anthropicMessages,
};

// The fixture is the single list of routes: fail loudly if it and the handlers drift apart.
{
  const fixtureKeys = new Set(ROUTES.map((route) => `${route.method} ${route.path}`));
  const missing = [...fixtureKeys].filter((key) => !HANDLERS[key]);
  const extra = Object.keys(HANDLERS).filter((key) => !fixtureKeys.has(key));
  if (missing.length > 0 || extra.length > 0) {
    const list = (keys: string[]) => keys.join(", ") || "none";
    throw new Error(`fake-ollama handlers out of sync with ollama-routes.json: missing ${list(missing)}; extra ${list(extra)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// The server.

class FakeOllamaServer implements FakeOllama {
  url = "";
  port = 0;
  requests: RecordedRequest[] = [];
  mode: FakeOllamaMode = "normal";
  activeStreams = 0;
  abortedStreams = 0;
  options: typeof DEFAULT_OPTIONS;
  /** Models inference requests have used, as Ollama keeps them loaded (`loadOnUse`; /api/ps). */
  loaded = new Set<string>();
  private readonly server: http.Server;

  constructor(options: FakeOllamaOptions) {
    this.options = { ...DEFAULT_OPTIONS, ...definedOnly(options) };
    this.server = http.createServer((req, res) => void this.handle(req, res));
    // The proxy keeps upstream connections alive; never be the side that closes them first.
    this.server.keepAliveTimeout = 65_000;
    this.server.headersTimeout = 66_000;
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.options.port, this.options.host, () => resolve());
    });
    const address = this.server.address();
    if (address === null || typeof address === "string") throw new Error("fake-ollama: unexpected server address");
    this.port = address.port;
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
    this.url = `http://${host}:${this.port}`;
  }

  setOptions(options: Partial<FakeOllamaOptions>): void {
    this.options = { ...this.options, ...definedOnly(options) };
  }

  close(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.close((error) => (error ? reject(error) : resolve()));
      this.server.closeAllConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const client = new AbortController();
    res.on("close", () => {
      if (!res.writableFinished) client.abort();
    });
    const rawPath = req.url ?? "/";
    const queryStart = rawPath.indexOf("?");
    const rawPathOnly = queryStart === -1 ? rawPath : rawPath.slice(0, queryStart);
    const path = decodePath(rawPathOnly);
    const record: RecordedRequest = {
      method: req.method ?? "GET",
      rawPath,
      path: path ?? rawPathOnly,
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      body: "",
    };
    this.requests.push(record);
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      record.body = Buffer.concat(chunks).toString("utf8");
      const ex = new Exchange(this, req, res, record.path, record.body, client.signal);
      if (path === undefined) return ex.text(400, "400 Bad Request");
      await this.dispatch(ex, queryStart === -1 ? "" : rawPath.slice(queryStart));
    } catch (error) {
      if (client.signal.aborted) return; // the client went away: nobody to answer
      if (res.headersSent) res.destroy();
      else res.writeHead(500, { "Content-Type": "application/json; charset=utf-8" }).end(goJson({ error: String(error) }));
    }
  }

  private async dispatch(ex: Exchange, query: string): Promise<void> {
    if (this.mode === "slow") await ex.waitFirstByte();
    if (!this.applyCors(ex)) return;
    const resolution = resolveRoute(ex.method, ex.path);
    switch (resolution.kind) {
      case "found":
        ex.params = resolution.params;
        await HANDLERS[`${resolution.route.method} ${resolution.route.path}`](ex);
        return;
      case "redirect": {
        // gin: 301 for GET, 307 otherwise; net/http adds a tiny HTML body for GET only.
        const location = escapePathLikeGo(resolution.path) + query;
        if (ex.method === "GET") {
          return ex.send(301, `<a href="${location.replace(/&/g, "&amp;")}">Moved Permanently</a>.\n\n`, {
            Location: location,
            "Content-Type": "text/html; charset=utf-8",
          });
        }
        return ex.send(307, "", ex.method === "HEAD" ? { Location: location, "Content-Type": "text/html; charset=utf-8" } : { Location: location });
      }
      case "method-not-allowed":
        return ex.send(405, "405 method not allowed", { Allow: resolution.allow.join(", "), "Content-Type": "text/plain" });
      case "not-found":
        return ex.send(404, "404 page not found", { "Content-Type": "text/plain" });
    }
  }

  /** gin-contrib/cors as Ollama configures it; false when the request was answered here. */
  private applyCors(ex: Exchange): boolean {
    const origin = ex.req.headers.origin;
    const host = ex.req.headers.host ?? "";
    if (!origin || origin === `http://${host}` || origin === `https://${host}`) return true;
    if (!isAllowedOrigin(origin)) {
      ex.empty(403);
      return false;
    }
    ex.res.setHeader("Access-Control-Allow-Origin", origin);
    if (ex.method !== "OPTIONS") {
      ex.res.setHeader("Vary", "Origin");
      return true;
    }
    ex.res.setHeader("Access-Control-Allow-Methods", "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS");
    ex.res.setHeader("Access-Control-Allow-Headers", CORS_ALLOWED_HEADERS.join(","));
    ex.res.setHeader("Access-Control-Max-Age", "43200");
    ex.res.setHeader("Vary", ["Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"]);
    ex.empty(204);
    return false;
  }
}

function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<T>;
}

export async function startFakeOllama(opts: FakeOllamaOptions = {}): Promise<FakeOllama> {
  const fake = new FakeOllamaServer(opts);
  await fake.listen();
  return fake;
}

// ---------------------------------------------------------------------------------------------
// Script mode (benchmarks). tsx runs this package's .ts files as CommonJS; under vitest's module
// runner `require`/`module` may be absent, hence the typeof guards.

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      host: { type: "string" },
      port: { type: "string" },
      "first-byte-delay-ms": { type: "string" },
      chunks: { type: "string" },
      "chunk-interval-ms": { type: "string" },
      models: { type: "string" },
      loaded: { type: "string" },
    },
  });
  const list = (value: string | undefined) => (value === undefined ? undefined : value.split(",").filter(Boolean));
  const number = (value: string | undefined) => {
    if (value === undefined) return undefined;
    if (!/^\d+$/.test(value)) throw new Error(`fake-ollama: expected a non-negative integer, got ${JSON.stringify(value)}`);
    return Number(value);
  };
  const fake = await startFakeOllama({
    host: values.host,
    port: number(values.port) ?? 11434,
    firstByteDelayMs: number(values["first-byte-delay-ms"]),
    chunks: number(values.chunks),
    chunkIntervalMs: number(values["chunk-interval-ms"]),
    models: list(values.models),
    loaded: list(values.loaded),
  });
  console.log(`listening ${fake.url}`);
  const stop = () => void fake.close().then(() => process.exit(0));
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

if (typeof require !== "undefined" && typeof module !== "undefined" && require.main === module) {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
