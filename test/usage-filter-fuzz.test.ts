/**
 * Token accounting under generated upstream answers (harness/usage-answers.ts): valid final
 * objects with random extra members, corrupted ones, cut into random pieces, through a gateway
 * with the C body filter (image/proxy/usage-module/) and one with the Lua filter
 * (gateway/usage.lua) in front of the same scripted upstream. For every answer:
 * (a) both log the same counts, or the C filter's are the documented ones (the reference in
 *     harness/usage-answers.ts) where the Lua filter's are not;
 * (b) the client gets the upstream's bytes unchanged;
 * (c) no worker died and no filter failed (the error logs).
 * The seed is fixed (printed on failure); USAGE_FUZZ_SEED and USAGE_FUZZ_RUNS override it.
 */
import path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bearer } from "../harness/http";
import { nginxTestsEnabled, type RunningGateway, startGateway } from "../harness/nginx";
import {
  type Counts,
  canonicalCount,
  describeAnswer,
  fetchBytes,
  referenceCounts,
  requestBody,
  type ScriptedUpstream,
  startScriptedUpstream,
  troubleIn,
  type UsageAnswer,
  usageAnswer,
  type UsageRoute,
  waitForLogLine,
} from "../harness/usage-answers";

// Test-only credential, made up for this file.
const KEY = "usage-fuzz-key-0000000000000000000000";
const SEED = Number(process.env.USAGE_FUZZ_SEED ?? 20261202);
const RUNS = Number(process.env.USAGE_FUZZ_RUNS ?? 200);

const fixed = (route: UsageRoute, body: string, cuts: number[] = []): UsageAnswer => ({
  route, contentType: route === "/v1/chat/completions" ? "text/event-stream" : "application/x-ndjson", body: Buffer.from(body, "latin1"), cuts, contentLength: false, corruption: "none",
});
const FINAL_LINE = '{"done":true,"prompt_eval_count":11,"eval_count":7}';
const JSON_NUMBER = /^(null|-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?)$/;
/** Answers found by this test that once broke a property, kept as fixed cases. */
const FIXED: UsageAnswer[] = [
  // A raw NUL in a key: the C filter decoded it (any byte went in a string), lua-cjson ends the
  // text at NUL; JSON has no raw control character in a string: not the final object.
  fixed("/api/generate", '{"done":true,"\u0000rompt_eval_count":11,"eval_count":7}\n'),
  fixed("/api/generate", '{"done":true,"response":"a\tb","eval_count":7}\n'),
  // A blank line after the final object, in a read of its own: both filters took it for the last line.
  fixed("/api/generate", `${FINAL_LINE}\r\n\r\n`, [FINAL_LINE.length + 2]),
  fixed("/api/chat", `${FINAL_LINE}\n\n`, [FINAL_LINE.length + 1]),
  fixed("/api/chat", `${FINAL_LINE}\n\r\n`, [FINAL_LINE.length + 1, FINAL_LINE.length + 2]),
  fixed("/api/chat", `${FINAL_LINE}\n\r`, [FINAL_LINE.length + 1]),
  // Counts that are not integers: the Lua filter logged `inf` (not JSON) and 1.5.
  fixed("/api/generate", '{"done":true,"prompt_eval_count":1e999,"eval_count":1.5}\n'),
  fixed("/v1/chat/completions", `data: {"usage":{"prompt_tokens":${"9".repeat(400)},"completion_tokens":${"1".repeat(25)}}}\n\n`),
];

describe("the usage reference (documented semantics)", () => {
  const final = (text: string) => referenceCounts({ route: "/api/generate", contentType: "", body: Buffer.from(text, "latin1"), cuts: [], contentLength: false, corruption: "none" });
  const scan = (text: string) => referenceCounts({ route: "/v1/chat/completions", contentType: "", body: Buffer.from(text, "latin1"), cuts: [], contentLength: false, corruption: "none" });
  it("reads the last line's top-level counts when done is true", () => {
    expect(final('{"done":false}\n{"done":true,"prompt_eval_count":11,"eval_count":7}\n')).toEqual(["11", "7"]);
    expect(final('{"done":true,"x":{"eval_count":1},"eval_count":7,"eval_count":8}\r\n')).toEqual(["0", "8"]);
    expect(final('{"done":true,"eval_count":1.5,"prompt_eval_count":"3"}')).toEqual(["0", "0"]);
    expect(final('{"done":true,"eval\\u005fcount":5}')).toEqual(["0", "0"]);
    expect(final('{"done":true,"eval_count":5} x')).toEqual([null, null]);
    expect(final('{"done":true,"eval_count":5,"s":"\t"}')).toEqual([null, null]);
    expect(final('{"done":"true","eval_count":5}')).toEqual([null, null]);
  });
  it("scans other routes for the last count fields", () => {
    expect(scan('data: {"usage":{"prompt_tokens":5,"completion_tokens": 3}}\n\ndata: [DONE]\n\n')).toEqual(["5", "3"]);
    expect(scan('{"prompt_tokens":1234567890123456789012,"x":1}')).toEqual(["123456789012345678", "0"]);
    expect(scan('{"prompt_tokens":12')).toEqual([null, null]);
  });
});

describe.runIf(nginxTestsEnabled)("token accounting under generated answers: the C filter and the Lua one", () => {
  let upstream: ScriptedUpstream;
  const gateways: Record<"module" | "lua", RunningGateway | undefined> = { module: undefined, lua: undefined };
  /** Lines each gateway's access log had before the next request. */
  const logged = { module: 0, lua: 0 };
  /** How often the two agreed with each other but not with the reference (lenient alike: reported, not failed). */
  const bothDiffer: string[] = [];

  beforeAll(async () => {
    upstream = await startScriptedUpstream(2);
    // One worker each: the access log's lines come in request order.
    const spec = { workerProcesses: 1, apiKeys: [{ name: "app", key: KEY, scope: "admin" as const }], rateLimit: { requestsPerSecond: 100_000, burst: 100_000 } };
    gateways.module = await startGateway({ upstreamUrl: upstream.url, spec });
    gateways.lua = await startGateway({ upstreamUrl: upstream.url, spec, usageModule: false });
  });
  afterAll(async () => {
    await gateways.module?.stop();
    await gateways.lua?.stop();
    await upstream?.close();
  });

  const accessLog = (g: RunningGateway) => path.join(g.dir, "logs", "access.log");

  /** Sends one answer through both gateways; the properties' failures as messages (none: all hold). */
  async function check(answer: UsageAnswer, strict = false): Promise<string[]> {
    const id = upstream.add(answer);
    const problems: string[] = [];
    const counts: Partial<Record<"module" | "lua", Counts>> = {};
    try {
      await Promise.all(
        (["module", "lua"] as const).map(async (name) => {
          const g = gateways[name]!;
          const response = await fetchBytes(g.url + answer.route, { ...bearer(KEY), "X-Fuzz-Answer": id }, requestBody(answer.route));
          if (response.status !== 200) problems.push(`${name}: status ${response.status}`);
          if (!response.body.equals(answer.body)) problems.push(`${name}: the client got ${JSON.stringify(response.body.toString("latin1"))}`);
          const line = await waitForLogLine(accessLog(g), logged[name]);
          logged[name]++;
          if (line.path !== answer.route) problems.push(`${name}: the access log's line is for ${line.path}`);
          counts[name] = line.counts;
          // docs/governance.md: "numbers, or null" (a Lua float such as inf would break the JSON line).
          for (const raw of line.counts) if (raw === null || !JSON_NUMBER.test(raw)) problems.push(`${name}: the access log has ${raw} for a count`);
          const trouble = troubleIn(g.errorLog());
          if (trouble.length) problems.push(`${name}: error log: ${trouble.join(" | ")}`);
        }),
      );
    } finally {
      upstream.remove(id);
    }
    if (problems.length) return problems;
    const c = counts.module!.map(canonicalCount);
    const lua = counts.lua!.map(canonicalCount);
    const reference = referenceCounts(answer);
    const same = (a: (string | null)[], b: (string | null)[]) => a[0] === b[0] && a[1] === b[1];
    if (strict && !same(c, reference)) return [`counts: C ${JSON.stringify(counts.module)}, reference ${JSON.stringify(reference)}`];
    if (same(c, lua)) {
      if (!same(c, reference)) bothDiffer.push(`${JSON.stringify(c)} (reference ${JSON.stringify(reference)}): ${describeAnswer(answer)}`);
      return [];
    }
    if (same(c, reference)) return [];
    return [`counts: C ${JSON.stringify(counts.module)}, Lua ${JSON.stringify(counts.lua)}, reference ${JSON.stringify(reference)}`];
  }

  it.each(FIXED.map((answer) => ({ body: JSON.stringify(answer.body.toString("latin1").slice(0, 60)), answer })))("fixed case $body: the C filter logs the documented counts", async ({ answer }) => {
    expect(await check(answer, true)).toEqual([]);
  });

  it(`${RUNS} generated answers (seed ${SEED})`, { timeout: 120_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(usageAnswer, async (answer) => {
        const problems = await check(answer);
        if (problems.length) throw new Error(`${problems.join("\n")}\nanswer: ${describeAnswer(answer)}`);
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: false, interruptAfterTimeLimit: 100_000 },
    );
    if (bothDiffer.length) console.log(`${bothDiffer.length} answers where both filters agree but not with the reference:\n${bothDiffer.slice(0, 5).join("\n")}`);
    for (const g of Object.values(gateways)) expect(troubleIn(g!.errorLog())).toEqual([]);
  });
});
