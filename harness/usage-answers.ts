/**
 * Generated upstream answers for token accounting (the C body filter, image/proxy/usage-module/,
 * against the Lua one, gateway/usage.lua): valid final objects with random extra members, and
 * corrupted variants, split into random pieces. Shared by test/usage-filter-fuzz.test.ts and
 * scripts/memcheck-usage-module.ts. Also: a reference of the documented counts
 * (docs/governance.md "Which numbers are exact", with the deviations the C module's header
 * lists), a scripted upstream that writes an answer piece by piece, a byte-exact client, and a
 * reader of the counts the access log shows.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import fc from "fast-check";
import { FAKE_MODEL } from "./fake-ollama";

export type UsageRoute = "/api/generate" | "/api/chat" | "/v1/chat/completions";

export interface UsageAnswer {
  route: UsageRoute;
  contentType: string;
  /** The whole body, as the upstream sends it. */
  body: Buffer;
  /** Cut points in body (sorted, unique, inside it): the pieces the upstream writes one by one. */
  cuts: number[];
  /** Content-Length instead of chunked transfer encoding. */
  contentLength: boolean;
  /** What was done to the body (for a failure's report). */
  corruption: string;
}

export const piecesOf = (answer: UsageAnswer): Buffer[] => {
  const bounds = [0, ...answer.cuts, answer.body.length];
  return bounds.slice(1).map((end, i) => answer.body.subarray(bounds[i], end));
};

/** A readable form of an answer, for a failure message (JSON with the body as latin1 text). */
export const describeAnswer = (answer: UsageAnswer): string =>
  JSON.stringify({ ...answer, body: answer.body.toString("latin1") });

// ---- JSON text, written by hand so that keys repeat, whitespace varies and numbers take every form

const space = fc.constantFrom("", "", "", "", " ", "\t", "  ", "\r", " \r\t");
const keyPool = [
  "model", "created_at", "response", "message", "context", "done_reason", "total_duration", "x", "",
  // look-alikes: counted only at the top level of the final object (native), anywhere (scan)
  "done", "prompt_eval_count", "eval_count", "prompt_tokens", "completion_tokens", "input_tokens", "output_tokens", "usage",
  // written with escapes: not Ollama's keys (the module's header)
  "eval\\u005fcount", "d\\u006fne", "prompt_eval_coun\\u0074", "eval_count\\u0000", "eval_count ",
];
const stringPart = fc.oneof(
  fc.string({ maxLength: 8 }).map((s) => JSON.stringify(s).slice(1, -1)),
  fc.constantFrom(
    '\\"', "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t", "\\u00e9", "\\u0000", "\\u001f", "\\ud83d\\ude00", "\\udc00", "\\uD800", "\\uFFFF",
    "é", "😀", "\u2028", '\\"eval_count\\":0,\\"done\\":true}', '\\"prompt_tokens\\":1', ',\\"done\\":false}', "\\\\\\\"",
  ),
);
const jsonString = fc.array(stringPart, { maxLength: 5 }).map((parts) => `"${parts.join("")}"`);
const digits = (min: number, max: number) =>
  fc.tuple(fc.integer({ min: 1, max: 9 }), fc.array(fc.integer({ min: 0, max: 9 }), { minLength: min - 1, maxLength: max - 1 })).map(([d, rest]) => `${d}${rest.join("")}`);
/** Any JSON number: ints, negatives, floats, exponents, huge. */
export const jsonNumber = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 1_000_000 }).map(String) },
  { weight: 1, arbitrary: fc.integer({ min: -1000, max: -1 }).map(String) },
  { weight: 1, arbitrary: fc.constantFrom("0", "-0", "0.0", "1.5", "12.0", "1e2", "1E+2", "5e-1", "-0.0e0", "1e999", "-1e999", "123456789012345678", "999999999999999999", "9007199254740993") },
  { weight: 1, arbitrary: digits(15, 30) },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: -99, max: 99 }), fc.nat(999), fc.integer({ min: -30, max: 30 })).map(([i, f, e]) => `${i}.${f}e${e}`) },
);
const scalar = fc.oneof(jsonString, jsonNumber, fc.constantFrom("true", "false", "null"));
const keyText = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...keyPool).map((k) => `"${k}"`) }, { weight: 1, arbitrary: jsonString });
const member = (value: fc.Arbitrary<string>) => fc.tuple(keyText, space, space, value).map(([k, a, b, v]) => `${k}${a}:${b}${v}`);
const joinMembers = (members: string[], open: string, close: string, ws: string[]) =>
  `${open}${ws[0] ?? ""}${members.map((m, i) => `${m}${ws[i + 1] ?? ""}`).join(",")}${close}`;
/** Any JSON value up to a small depth, nested look-alike keys included. */
export const jsonValue: fc.Arbitrary<string> = fc.letrec<{ value: string }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    scalar,
    fc.tuple(fc.array(member(tie("value")), { maxLength: 4 }), fc.array(space, { maxLength: 5 })).map(([m, ws]) => joinMembers(m, "{", "}", ws)),
    fc.tuple(fc.array(tie("value"), { maxLength: 4 }), fc.array(space, { maxLength: 5 })).map(([v, ws]) => joinMembers(v, "[", "]", ws)),
  ),
})).value;

// ---- whole bodies

const countValue = fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max: 100_000 }).map(String) }, { weight: 3, arbitrary: jsonNumber }, { weight: 1, arbitrary: scalar });
const doneValue = fc.oneof({ weight: 8, arbitrary: fc.constant("true") }, { weight: 1, arbitrary: fc.constantFrom("false", '"true"', "1", "null", "tru", "true ") });
/** Ollama's non-final lines, as it writes them (ending `,"done":false}`), or any other object. */
const partialLine = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 12 }).map((text) => JSON.stringify({ model: FAKE_MODEL, created_at: "2026-01-01T00:00:00Z", response: text, done: false })) },
  { weight: 1, arbitrary: fc.array(member(jsonValue), { maxLength: 3 }).map((m) => `{${[...m, '"done":false'].join(",")}}`) },
);
const lineEnd = fc.constantFrom("\n", "\n", "\n", "\r\n", "", "\n\n", "\r\n\r\n", " \n");

/** An Ollama native answer: partial lines, then the final object with extra members in any order. */
const nativeBody = fc
  .record({
    partials: fc.array(partialLine, { maxLength: 4 }),
    extras: fc.array(member(jsonValue), { maxLength: 6 }),
    done: fc.array(doneValue, { minLength: 0, maxLength: 2 }),
    prompt: fc.array(countValue, { maxLength: 2 }),
    completion: fc.array(countValue, { maxLength: 2 }),
    order: fc.array(fc.nat(), { maxLength: 14 }),
    ws: fc.array(space, { maxLength: 16 }),
    lead: space,
    end: lineEnd,
    presence: fc.constantFrom("all", "all", "all", "all", "no-done", "no-prompt", "no-completion"),
    // A GenerateResponse's `context` (token ids): a long final line, kept across many pieces.
    context: fc.option(fc.integer({ min: 2000, max: 40_000 }), { freq: 12 }),
  })
  .map((r) => {
    if (r.context) r.extras.push(`"context":[${Array.from({ length: r.context }, (_, i) => (i * 7919) % 100_000).join(",")}]`);
    const own = [
      ...(r.presence === "no-done" ? [] : (r.done.length ? r.done : ["true"]).map((v) => `"done":${v}`)),
      ...(r.presence === "no-prompt" ? [] : (r.prompt.length ? r.prompt : ["11"]).map((v) => `"prompt_eval_count":${v}`)),
      ...(r.presence === "no-completion" ? [] : (r.completion.length ? r.completion : ["7"]).map((v) => `"eval_count":${v}`)),
    ];
    const members = [...r.extras];
    // Ollama's own members keep their order among themselves (a repeated key: the last wins).
    for (const [i, m] of own.entries()) members.splice((r.order[i] ?? members.length) % (members.length + 1), 0, m);
    const final = joinMembers(members, "{", "}", r.ws);
    return r.partials.map((p) => `${p}\n`).join("") + r.lead + final + r.end;
  });

const usageObject = fc
  .record({ prompt: countValue, completion: countValue, gap: fc.constantFrom("", "", "", " ", "  "), extras: fc.array(member(jsonValue), { maxLength: 2 }), style: fc.constantFrom("openai", "openai", "anthropic", "ollama") })
  .map(({ prompt, completion, gap, extras, style }) => {
    const [p, c] = style === "openai" ? ["prompt_tokens", "completion_tokens"] : style === "anthropic" ? ["input_tokens", "output_tokens"] : ["prompt_eval_count", "eval_count"];
    return `{${[`"${p}":${gap}${prompt}`, `"${c}":${gap}${completion}`, '"total_tokens":0', ...extras].join(",")}}`;
  });
const chatChunk = fc.tuple(jsonString, fc.array(member(jsonValue), { maxLength: 2 })).map(
  ([content, extras]) => `{${['"id":"c"', '"object":"chat.completion.chunk"', `"choices":[{"index":0,"delta":{"content":${content}}}]`, ...extras].join(",")}}`,
);
/** An OpenAI-compatible stream: chunks, maybe a usage chunk, [DONE]. */
const sseBody = fc
  .record({ chunks: fc.array(chatChunk, { maxLength: 4 }), usage: fc.option(usageObject, { freq: 4 }), done: fc.boolean(), crlf: fc.boolean() })
  .map(({ chunks, usage, done, crlf }) => {
    const events = [...chunks, ...(usage ? [`{"id":"c","object":"chat.completion.chunk","choices":[],"usage":${usage}}`] : []), ...(done ? ["[DONE]"] : [])];
    const nl = crlf ? "\r\n" : "\n";
    return events.map((e) => `data: ${e}${nl}${nl}`).join("");
  });
/** A non-streamed OpenAI-compatible answer. */
const openaiJsonBody = fc
  .record({ content: jsonString, usage: fc.option(usageObject, { freq: 5 }), extras: fc.array(member(jsonValue), { maxLength: 3 }), end: fc.constantFrom("", "\n") })
  .map(({ content, usage, extras, end }) =>
    `{${['"id":"c"', '"object":"chat.completion"', `"choices":[{"index":0,"message":{"role":"assistant","content":${content}}}]`, ...extras, ...(usage ? [`"usage":${usage}`] : [])].join(",")}}${end}`,
  );

// ---- corruption and pieces

type Corruption = { kind: "none" } | { kind: "truncate"; at: number } | { kind: "flip"; at: number[]; bytes: number[] } | { kind: "append"; text: Buffer } | { kind: "insert"; at: number; text: Buffer } | { kind: "drop-newline" };
const nastyByte = fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0x00, 0x0a, 0x0d, 0x22, 0x5c, 0x7b, 0x7d, 0x2c, 0x3a, 0x30, 0x39, 0xff, 0x80));
const garbage = fc.oneof(
  fc.constantFrom(" x", "x\n", "\n", "\n\n", "{", "}", '{"done":true,"eval_count":1}', '{"done":true}\n', "\u0000", "data: [DONE]\n\n").map((s) => Buffer.from(s, "utf8")),
  fc.uint8Array({ minLength: 1, maxLength: 12 }).map((a) => Buffer.from(a)),
);
const corruption: fc.Arbitrary<Corruption> = fc.oneof(
  { weight: 10, arbitrary: fc.constant({ kind: "none" as const }) },
  { weight: 2, arbitrary: fc.nat().map((at) => ({ kind: "truncate" as const, at })) },
  { weight: 3, arbitrary: fc.array(fc.tuple(fc.nat(), nastyByte), { minLength: 1, maxLength: 3 }).map((f) => ({ kind: "flip" as const, at: f.map(([a]) => a), bytes: f.map(([, b]) => b) })) },
  { weight: 2, arbitrary: garbage.map((text) => ({ kind: "append" as const, text })) },
  { weight: 1, arbitrary: fc.tuple(fc.nat(), garbage).map(([at, text]) => ({ kind: "insert" as const, at, text })) },
  { weight: 1, arbitrary: fc.constant({ kind: "drop-newline" as const }) },
);

function corrupt(body: Buffer, c: Corruption): Buffer {
  switch (c.kind) {
    case "none":
      return body;
    case "truncate":
      return body.subarray(0, body.length ? c.at % body.length : 0);
    case "flip": {
      const out = Buffer.from(body);
      if (out.length) c.at.forEach((at, i) => (out[at % out.length] = c.bytes[i]));
      return out;
    }
    case "append":
      return Buffer.concat([body, c.text]);
    case "insert": {
      const at = c.at % (body.length + 1);
      return Buffer.concat([body.subarray(0, at), c.text, body.subarray(at)]);
    }
    case "drop-newline": {
      let end = body.length;
      while (end > 0 && (body[end - 1] === 0x0a || body[end - 1] === 0x0d)) end--;
      return body.subarray(0, end);
    }
  }
}

/** Cut points: random ones (a width of 1 or 2 after a cut makes 1- and 2-byte pieces), every line end, or both. */
const cutPlan = fc.record({
  strategy: fc.constantFrom("random", "random", "lines", "lines+random", "whole"),
  cuts: fc.array(fc.tuple(fc.nat(), fc.constantFrom(0, 0, 1, 2)), { maxLength: 8 }),
});

function cutsFor(body: Buffer, plan: { strategy: string; cuts: [number, number][] }): number[] {
  const points = new Set<number>();
  if (plan.strategy.startsWith("lines")) body.forEach((b, i) => b === 0x0a && points.add(i + 1));
  if (plan.strategy.includes("random") && body.length)
    for (const [at, width] of plan.cuts) {
      points.add(at % body.length);
      points.add((at % body.length) + width);
    }
  return [...points].filter((p) => p > 0 && p < body.length).sort((a, b) => a - b).slice(0, 24);
}

const routeBody = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom<UsageRoute>("/api/generate", "/api/chat"), nativeBody).map(([route, text]) => ({ route, contentType: "application/x-ndjson", text })) },
  { weight: 1, arbitrary: sseBody.map((text) => ({ route: "/v1/chat/completions" as const, contentType: "text/event-stream", text })) },
  { weight: 1, arbitrary: openaiJsonBody.map((text) => ({ route: "/v1/chat/completions" as const, contentType: "application/json", text })) },
);

/** One upstream answer: a route's body, maybe corrupted, cut into pieces. */
export const usageAnswer: fc.Arbitrary<UsageAnswer> = fc
  .record({ base: routeBody, corruption, plan: cutPlan, contentLength: fc.boolean() })
  .map(({ base, corruption: c, plan, contentLength }) => {
    const body = corrupt(Buffer.from(base.text, "utf8"), c);
    return { route: base.route, contentType: base.contentType, body, cuts: cutsFor(body, plan), contentLength, corruption: c.kind === "none" ? "none" : JSON.stringify(c) };
  });

// ---- the reference: what the access log must show (docs/governance.md, "Which numbers are exact")

export type Counts = [string | null, string | null];

/** A count as the C module's header documents it: a JSON integer of at most 18 digits, not negative, else 0. */
const countOf = (raw: string | undefined): string => (raw !== undefined && /^(0|[1-9][0-9]{0,17})$/.test(raw) ? BigInt(raw).toString() : "0");

/** A strict JSON reader (RFC 8259) over bytes, keeping the top-level members the native routes count. */
class StrictJson {
  i: number;
  done = false;
  prompt?: string;
  completion?: string;
  constructor(
    readonly b: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.i = start;
  }
  ws() {
    while (this.i < this.end && [0x20, 0x09, 0x0a, 0x0d].includes(this.b[this.i])) this.i++;
  }
  fail(): never {
    throw new SyntaxError(`invalid JSON at ${this.i}`);
  }
  /** The raw text of a string (escapes as written); throws on a control character or a bad escape. */
  string(): { raw: string; escaped: boolean } {
    if (this.b[this.i] !== 0x22) this.fail();
    const start = ++this.i;
    let escaped = false;
    while (this.i < this.end) {
      const c = this.b[this.i++];
      if (c === 0x22) return { raw: this.b.toString("latin1", start, this.i - 1), escaped };
      if (c < 0x20) this.fail();
      if (c !== 0x5c) continue;
      escaped = true;
      const e = this.b[this.i++];
      if (e === 0x75) {
        for (let k = 0; k < 4; k++) if (!/[0-9a-fA-F]/.test(String.fromCharCode(this.b[this.i++] ?? 0)) || this.i > this.end) this.fail();
      } else if (!'"\\/bfnrt'.includes(String.fromCharCode(e)) || this.i > this.end) this.fail();
    }
    this.fail();
  }
  value(depth: number, key?: string): void {
    if (this.i >= this.end) this.fail();
    const c = this.b[this.i];
    let raw: string | undefined;
    let isTrue = false;
    if (c === 0x7b || c === 0x5b) {
      if (depth + 1 > 1000) this.fail();
      this.container(depth + 1);
    } else if (c === 0x22) this.string();
    else {
      const rest = this.b.toString("latin1", this.i, Math.min(this.end, this.i + 4096));
      const m = /^(true|false|null|-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?)/.exec(rest);
      if (!m) this.fail();
      raw = m[0];
      isTrue = raw === "true";
      this.i += raw.length;
    }
    if (key === "done") this.done = isTrue;
    else if (key === "prompt_eval_count") this.prompt = raw ?? "";
    else if (key === "eval_count") this.completion = raw ?? "";
  }
  container(depth: number): void {
    const close = this.b[this.i] === 0x7b ? 0x7d : 0x5d;
    this.i++;
    this.ws();
    if (this.b[this.i] === close && this.i < this.end) return void this.i++;
    for (;;) {
      let key: string | undefined;
      if (close === 0x7d) {
        const k = this.string();
        // Keys written with escapes are never Ollama's (the module's header).
        if (depth === 1 && !k.escaped) key = k.raw;
        this.ws();
        if (this.i >= this.end || this.b[this.i] !== 0x3a) this.fail();
        this.i++;
        this.ws();
      }
      this.value(depth, key);
      this.ws();
      if (this.i >= this.end) this.fail();
      if (this.b[this.i] === close) return void this.i++;
      if (this.b[this.i] !== 0x2c) this.fail();
      this.i++;
      this.ws();
    }
  }
}

/** /api/generate, /api/chat: the body's last line (trailing CR/LF aside), when it is the done object. */
export function referenceFinal(body: Buffer): Counts {
  let last = body.length;
  while (last > 0 && (body[last - 1] === 0x0a || body[last - 1] === 0x0d)) last--;
  const start = body.lastIndexOf(0x0a, last - 1) + 1;
  const j = new StrictJson(body, start, last);
  try {
    j.ws();
    if (j.i >= last || body[j.i] !== 0x7b) return [null, null];
    j.value(0);
    j.ws();
    if (j.i !== last || !j.done) return [null, null];
  } catch {
    return [null, null];
  }
  return [countOf(j.prompt), countOf(j.completion)];
}

const SCAN_FIELDS = /"(prompt_tokens|input_tokens|prompt_eval_count|completion_tokens|output_tokens|eval_count)":[ ]*([0-9]+)(?=[^0-9])/g;
const PROMPT_FIELDS = new Set(["prompt_tokens", "input_tokens", "prompt_eval_count"]);

/** Other inference routes: the last prompt and completion field in the whole body (a count of over 18 digits is cut to 18). */
export function referenceScan(body: Buffer): Counts {
  let prompt: string | null = null;
  let completion: string | null = null;
  for (const m of body.toString("latin1").matchAll(SCAN_FIELDS)) {
    const value = BigInt(m[2].slice(0, 18)).toString();
    if (PROMPT_FIELDS.has(m[1])) prompt = value;
    else completion = value;
  }
  return prompt === null && completion === null ? [null, null] : [prompt ?? "0", completion ?? "0"];
}

export const referenceCounts = (answer: UsageAnswer): Counts =>
  answer.route === "/v1/chat/completions" ? referenceScan(answer.body) : referenceFinal(answer.body);

/**
 * A logged count as a canonical string: null, an integer's decimal digits, or the raw text when
 * it is not an integer (the Lua filter logs Lua numbers: 1.5, 1e+20, inf).
 */
export function canonicalCount(raw: string | null): string | null {
  if (raw === null || raw === "null") return null;
  if (/^-?[0-9]+$/.test(raw)) return BigInt(raw).toString();
  const n = Number(raw);
  return Number.isSafeInteger(n) ? String(n) : raw;
}

// ---- the scripted upstream, the client and the access log

export interface ScriptedUpstream {
  url: string;
  /** Registers an answer; the request carrying `X-Fuzz-Answer: <id>` gets it. */
  add(answer: UsageAnswer): string;
  remove(id: string): void;
  close(): Promise<void>;
}

/** An upstream that writes each answer's pieces `gapMs` apart (each its own read in nginx, mostly). */
export async function startScriptedUpstream(gapMs = 2): Promise<ScriptedUpstream> {
  const answers = new Map<string, UsageAnswer>();
  let next = 0;
  const server = http.createServer({ noDelay: true }, (req, res) => {
    req.resume();
    req.on("end", async () => {
      const answer = answers.get(String(req.headers["x-fuzz-answer"]));
      if (!answer) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { "Content-Type": answer.contentType, ...(answer.contentLength ? { "Content-Length": answer.body.length } : {}) });
      for (const piece of piecesOf(answer)) {
        res.write(piece);
        await new Promise((resolve) => setTimeout(resolve, gapMs));
      }
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    add(answer) {
      const id = String(next++);
      answers.set(id, answer);
      return id;
    },
    remove: (id) => void answers.delete(id),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** POSTs to the gateway and returns the status and the body's exact bytes. */
export function fetchBytes(url: string, headers: Record<string, string>, body: string, timeoutMs = 15_000): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: "POST", headers: { "Content-Type": "application/json", ...headers }, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on("data", (d: Buffer) => parts.push(d));
      res.on("end", () => resolve({ status: res.statusCode!, body: Buffer.concat(parts) }));
      res.on("error", reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer from ${url} within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(body);
  });
}

/** The request body sent for a route (the gateway forwards it; the scripted upstream ignores it). */
export const requestBody = (route: UsageRoute): string =>
  JSON.stringify(route === "/api/generate" ? { model: FAKE_MODEL, prompt: "hi" } : { model: FAKE_MODEL, messages: [{ role: "user", content: "hi" }] });

export interface LoggedCounts {
  path: string;
  status: string;
  counts: Counts;
}

/** The access log's lines, the counts as written (not parsed as JSON: a Lua number may not be JSON). */
export function readLoggedCounts(file: string): LoggedCounts[] {
  let text: string;
  try {
    text = readFileSync(file, "latin1");
  } catch {
    return [];
  }
  // Complete lines only: a line nginx is writing may be half there.
  return text
    .slice(0, text.lastIndexOf("\n") + 1)
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const path = /"path":"([^"]*)"/.exec(line)?.[1] ?? "";
      const status = /"status":([0-9]+)/.exec(line)?.[1] ?? "";
      const m = /"prompt_tokens":([^,]*),"completion_tokens":([^,]*),"ttft_ms"/.exec(line);
      return { path, status, counts: [m ? m[1] : null, m ? m[2] : null] as Counts };
    });
}

/** Waits until the access log has more than `count` lines (nginx logs just after the response ends). */
export async function waitForLogLine(file: string, count: number, timeoutMs = 5000): Promise<LoggedCounts> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const lines = readLoggedCounts(file);
    if (lines.length > count) return lines[count];
    if (Date.now() > deadline) throw new Error(`the access log ${file} has no line ${count + 1} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** Lines of an nginx error log that tell of a crash or a failure in a filter. */
export const troubleIn = (errorLog: string): string[] =>
  errorLog.split("\n").filter((l) => /exited on signal|worker process \d+ exited|\[(alert|crit|emerg)\]|runtime error|body_filter_by_lua/.test(l));
