/**
 * Hostile battery 1: property-based fuzzing (fast-check) of credentials, methods and paths over
 * raw sockets, against the real nginx running the rendered bundle in front of the stand-in
 * Ollama, with the route policy as the oracle on what reached the upstream. Numbers are printed as
 * "[fuzz] ..." lines; docs/security.md sums up.
 * Rerun: npx vitest run test/hostile-fuzz.test.ts   (FC_SEED=<n> replays a fuzz run)
 */
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import routesFixture from "../harness/ollama-routes.json";
import { classifyRoute, scopeAllows } from "../bundle/routes";
import { SCOPES, type Scope } from "../bundle/spec";
import { FAKE_MODEL } from "../harness/fake-ollama";
import { rawRequest } from "../harness/http";
import { buildRequest, forwardingViolation, type HeaderList, noNewlines, finalStatusOf, type RawSpec, statusesOf } from "../harness/hostile";
import { nginxTestsEnabled } from "../harness/nginx";
import { b64, basicValue, CREDS, JSON_BODY, KEYS, PASSWORDS, useHostileGateway } from "../harness/hostile-gateway";

const ROUTES: { method: string; path: string }[] = routesFixture.routes;
const SEED = process.env.FC_SEED ? Number(process.env.FC_SEED) : process.env.CI ? 424242 : Date.now();
const FUZZ_RUNS = Number(process.env.FC_RUNS ?? 1500);


/** A concrete path for a route pattern. */
function samplePath(pattern: string, param = ""): string {
  return pattern
    .replace(":digest", param || "sha256:0123456789abcdef")
    .replace(":model", param || FAKE_MODEL)
    .replace(":encodedKey", param || "c3NoLWVkMjU1MTk");
}

const routeArb = fc.constantFrom(...ROUTES);
const scopeArb = fc.constantFrom(...SCOPES);

// ---------------------------------------------------------------------------------------------
// Generators: credentials.

type CredentialCase = { headers: HeaderList; clean: boolean; label: string };

const schemeArb = (scheme: string) => fc.mixedCase(fc.constant(scheme));
const spacesArb = fc.constantFrom(" ", " ", "  ", "   ");

/** A single valid credential, in any of the accepted forms (clean: must be accepted). */
const validCredentialArb: fc.Arbitrary<CredentialCase & { scope: Scope }> = fc
  .tuple(fc.constantFrom("bearer", "x-api-key", "basic"), scopeArb, schemeArb("bearer"), schemeArb("basic"), spacesArb, fc.constantFrom("X-API-Key", "x-api-key", "X-Api-Key", "X-API-KEY"))
  .map(([kind, scope, bearerScheme, basicScheme, sp, apiKeyName]) => {
    const headers: HeaderList =
      kind === "bearer" ? [["Authorization", `${bearerScheme}${sp}${KEYS[scope]}`]]
      : kind === "x-api-key" ? [[apiKeyName, KEYS[scope]]]
      : [["Authorization", `${basicScheme}${sp}${b64(`user-${scope}:${PASSWORDS[scope]}`)}`]];
    return { headers, clean: true, label: `${kind}/${scope}`, scope };
  });

/** Mutates one string: flip, drop, insert or repeat characters, change case. */
const mutateStringArb = (base: string) =>
  fc
    .tuple(fc.constantFrom("flip", "truncate", "append", "prepend", "upper", "lower", "double", "insert"), fc.nat(base.length), fc.string({ unit: "binary-ascii", minLength: 1, maxLength: 3 }))
    .map(([op, at, junk]) => {
      const i = Math.min(at, base.length - 1);
      switch (op) {
        case "flip": return base.slice(0, i) + String.fromCharCode(base.charCodeAt(i) ^ 1) + base.slice(i + 1);
        case "truncate": return base.slice(0, i);
        case "append": return base + junk;
        case "prepend": return junk + base;
        case "upper": return base.toUpperCase();
        case "lower": return base.toLowerCase();
        case "double": return base + base;
        default: return base.slice(0, i) + junk + base.slice(i);
      }
    });

/** Hostile Authorization / X-API-Key values built around the real secrets. */
const hostileCredentialArb: fc.Arbitrary<CredentialCase> = fc.oneof(
  // Junk before the scheme, after the token, between scheme and token.
  fc.tuple(scopeArb, fc.constantFrom("X", "x ", "Token ", "Bearer Bearer ", ",", "Basic ", "Bearer: ", "\t", "Bearer=", "Digest "), schemeArb("bearer"))
    .map(([scope, junk, scheme]) => ({ headers: [["Authorization", `${junk}${scheme} ${KEYS[scope]}`]] as HeaderList, clean: false, label: "junk-before" })),
  fc.tuple(scopeArb, fc.constantFrom(" extra", ",", `,${KEYS.admin}`, ` ${KEYS.admin}`, ";", "\t", "\tx", "=", "==", "%00", "\x01", "\x7f", "é"))
    .map(([scope, junk]) => ({ headers: [["Authorization", `Bearer ${KEYS[scope]}${junk}`]] as HeaderList, clean: false, label: "junk-after" })),
  fc.tuple(scopeArb, fc.constantFrom("\t", ":", "=", ",", "", "\x0b"))
    .map(([scope, sep]) => ({ headers: [["Authorization", `Bearer${sep}${KEYS[scope]}`]] as HeaderList, clean: false, label: "bad-separator" })),
  // Multiple tokens and lists.
  fc.tuple(scopeArb, scopeArb, fc.constantFrom(",", ", ", " ", ","))
    .map(([a, b, sep]) => ({ headers: [["Authorization", `Bearer ${KEYS[a]}${sep}Bearer ${KEYS[b]}`]] as HeaderList, clean: false, label: "two-tokens" })),
  fc.tuple(scopeArb, fc.constantFrom(",", ", ", " "))
    .map(([scope, sep]) => ({ headers: [["X-API-Key", `${KEYS[scope]}${sep}${KEYS.admin}`]] as HeaderList, clean: false, label: "api-key-list" })),
  // Mutated valid secrets.
  scopeArb.chain((scope) => mutateStringArb(KEYS[scope]).map((key) => ({ headers: [["Authorization", `Bearer ${noNewlines(key)}`]] as HeaderList, clean: false, label: "mutated-key" }))),
  scopeArb.chain((scope) => mutateStringArb(KEYS[scope]).map((key) => ({ headers: [["X-API-Key", noNewlines(key)]] as HeaderList, clean: false, label: "mutated-api-key" }))),
  scopeArb.chain((scope) => mutateStringArb(PASSWORDS[scope]).map((pw) => ({ headers: [["Authorization", `Basic ${b64(`user-${scope}:${pw}`)}`]] as HeaderList, clean: false, label: "mutated-password" }))),
  scopeArb.chain((scope) => mutateStringArb(`user-${scope}`).map((user) => ({ headers: [["Authorization", `Basic ${b64(`${user}:${PASSWORDS[scope]}`)}`]] as HeaderList, clean: false, label: "mutated-user" }))),
  // Password with a NUL or beyond bcrypt's 72 bytes: must not match the real one.
  fc.tuple(scopeArb, fc.constantFrom("\0", "\0x", "\0\0", "x".repeat(80)))
    .map(([scope, tail]) => ({ headers: [["Authorization", `Basic ${b64(`user-${scope}:${PASSWORDS[scope]}${tail}`)}`]] as HeaderList, clean: false, label: "password-tail" })),
  // Scheme confusion: a key as Basic, Basic credentials as Bearer.
  scopeArb.map((scope) => ({ headers: [["Authorization", `Basic ${KEYS[scope]}`]] as HeaderList, clean: false, label: "key-as-basic" })),
  scopeArb.map((scope) => ({ headers: [["Authorization", `Bearer ${b64(`user-${scope}:${PASSWORDS[scope]}`)}`]] as HeaderList, clean: false, label: "basic-as-bearer" })),
  scopeArb.map((scope) => ({ headers: [["X-API-Key", `Bearer ${KEYS[scope]}`]] as HeaderList, clean: false, label: "scheme-in-api-key" })),
  // Base64 junk and random bytes.
  fc.tuple(schemeArb("basic"), fc.base64String({ maxLength: 200 }))
    .map(([scheme, junk]) => ({ headers: [["Authorization", `${scheme} ${junk}`]] as HeaderList, clean: false, label: "base64-junk" })),
  fc.string({ unit: "binary-ascii", maxLength: 120 })
    .map((junk) => ({ headers: [["Authorization", noNewlines(junk)]] as HeaderList, clean: false, label: "random-authorization" })),
  fc.string({ unit: "binary-ascii", maxLength: 120 })
    .map((junk) => ({ headers: [["X-API-Key", noNewlines(junk)]] as HeaderList, clean: false, label: "random-api-key" })),
  // Very long values (the header buffers are 16 KiB; beyond that nginx answers 400 itself).
  fc.tuple(fc.constantFrom("Bearer ", "Basic ", ""), fc.integer({ min: 513, max: 20_000 }), scopeArb)
    .map(([prefix, length, scope]) => ({ headers: [["Authorization", `${prefix}${KEYS[scope]}${"A".repeat(length)}`]] as HeaderList, clean: false, label: "very-long" })),
  // Two credentials: each valid alone, refused together.
  fc.tuple(validCredentialArb, validCredentialArb)
    .map(([a, b]) => ({ headers: [...a.headers, ...b.headers] as HeaderList, clean: false, label: "two-credentials" })),
  // Valid secrets in headers that are not credentials (must never authenticate).
  scopeArb.chain((scope) =>
    fc.constantFrom<HeaderList>(
      [["Cookie", `session=${KEYS[scope]}; key=${KEYS[scope]}`]],
      [["Proxy-Authorization", `Bearer ${KEYS[scope]}`]],
      [["X_API_KEY", KEYS[scope]]],
      [["X-API-Key2", KEYS[scope]]],
      [["X-Authorization", `Bearer ${KEYS[scope]}`]],
      [["Authorization2", `Bearer ${KEYS[scope]}`]],
      [["X-Forwarded-Authorization", basicValue(scope)]],
    ).map((headers) => ({ headers, clean: false, label: "secret-elsewhere" })),
  ),
  fc.constant({ headers: [] as HeaderList, clean: false, label: "none" }),
  fc.constant({ headers: [["Authorization", ""]] as HeaderList, clean: false, label: "empty" }),
);

/** Headers that must not change the decision (benign) or may make the request fail (not benign). */
const extraHeadersArb: fc.Arbitrary<{ headers: HeaderList; benign: boolean }> = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ headers: [] as HeaderList, benign: true }) },
  fc.constantFrom<HeaderList>(
    [["Cookie", "session=abc"]],
    [["Proxy-Authorization", "Basic eDp5"]],
    [["X-Forwarded-For", "10.0.0.1"]],
    [["X-Real-IP", "10.0.0.1"], ["Forwarded", "for=10.0.0.1"]],
    [["Accept", "*/*"], ["User-Agent", "fuzz"]],
  ).map((headers) => ({ headers, benign: true })),
  fc.constantFrom<HeaderList>(
    [["Origin", "https://evil.example"]],
    [["Host", "evil.example"]],
    [["Host", ""]],
    [["Host", "a b"]],
    [["Host", "127.0.0.1:1"], ["Host", "x"]],
    [["Content-Length", "abc"]],
    [["Expect", "100-continue"]],
    [["Upgrade", "websocket"], ["Connection", "Upgrade, close"]],
  ).map((headers) => ({ headers, benign: false })),
  fc.string({ unit: "binary-ascii", maxLength: 40 }).map((v) => ({ headers: [["X-Fuzz", noNewlines(v)]] as HeaderList, benign: false })),
);

// ---------------------------------------------------------------------------------------------
// Generators: methods and paths.

const methodArb = fc.constantFrom("GET", "HEAD", "POST", "DELETE", "OPTIONS", "PUT", "PATCH", "TRACE", "get", "post", "Post", "FOO", "PROPFIND", "CONNECT", "G-ET");
const paramArb = fc.constantFrom("", "gemma3:1b", "sha256:abc", "x", "..", ".", "%2e%2e", "a/b", "llama3.2:3b-instruct", "%2Fapi%2Fpull", "@", "~user", "a;b");

type PathOp = [op: string, at: number, pick: number];
const PCT_INSERTS = ["%2F", "%2f", "%5C", "%00", "%20", "%2e", "%2E%2E", "%25", "%", "%zz", "%u002f", "%C0%AF"];
const JUNK = [" ", "\t", "\x01", "\x7f", "\0", "é", "\uff41", "#", "?", "\\", ";", "*", "'", "(", "$", "|", "<", "`", "{"];
const QUERIES = ["?a=b", "?", "?../../api/pull", "?%00", "#frag", "?x=/api/pull", "?model=a&model=b", "?a=%2F"];

function applyPathOp(p: string, [op, at, pick]: PathOp): string {
  const i = at % (p.length + 1);
  const slashes = [...p].map((c, j) => (c === "/" ? j : -1)).filter((j) => j >= 0);
  const s = slashes.length > 0 ? slashes[at % slashes.length] : 0;
  switch (op) {
    case "pct": {
      if (i >= p.length) return p;
      const hex = p.charCodeAt(i).toString(16).padStart(2, "0");
      return `${p.slice(0, i)}%${pick % 2 ? hex.toUpperCase() : hex}${p.slice(i + 1)}`;
    }
    case "pct-insert": return p.slice(0, i) + PCT_INSERTS[pick % PCT_INSERTS.length] + p.slice(i);
    case "dot": return `${p.slice(0, s)}${["/.", "/..", "/./", "/../api"][pick % 4]}${p.slice(s)}`;
    case "double-slash": return `${p.slice(0, s)}/${p.slice(s)}`;
    case "case": return p.slice(0, i) + (p[i] === p[i]?.toUpperCase() ? (p[i] ?? "").toLowerCase() : (p[i] ?? "").toUpperCase()) + p.slice(i + 1);
    case "upper": return p.toUpperCase();
    case "trailing": return `${p}/`;
    case "param": return p + [";x=1", ";", ";/api/pull", "..;/"][pick % 4];
    case "query": return p + QUERIES[pick % QUERIES.length];
    case "backslash": return `${p.slice(0, s)}\\${p.slice(s + 1)}`;
    case "junk": return p.slice(0, i) + JUNK[pick % JUNK.length] + p.slice(i);
    case "prefix": return ["http://127.0.0.1", "//", "*", "HTTP://gateway.test", "http://user@evil", "/.", ""][pick % 7] + p;
    case "swap": return ROUTES[pick % ROUTES.length].path.replace(/:\w+/, "x") + p.slice(i);
    default: return p;
  }
}

const pathOpArb: fc.Arbitrary<PathOp> = fc.tuple(
  fc.constantFrom("pct", "pct-insert", "dot", "double-slash", "case", "upper", "trailing", "param", "query", "backslash", "junk", "prefix", "swap"),
  fc.nat(200),
  fc.nat(100),
);

interface PathCase { method: string; target: string; clean: boolean }

const pathCaseArb: fc.Arbitrary<PathCase> = fc
  .tuple(routeArb, fc.option(methodArb, { freq: 2 }), paramArb, fc.array(pathOpArb, { maxLength: 3 }))
  .map(([route, method, param, ops]) => {
    const base = samplePath(route.path, route.path.includes(":") ? param : "");
    const target = noNewlines(ops.reduce(applyPathOp, base));
    const chosen = method ?? route.method;
    return { method: chosen, target, clean: ops.length === 0 && chosen === route.method && (param === "" || !route.path.includes(":")) };
  })
  .filter((c) => c.target.length > 0 && !c.target.includes(" HTTP/"));

// ---------------------------------------------------------------------------------------------

describe.runIf(nginxTestsEnabled)("hostile: 1. property-based fuzzing, through the real nginx", () => {
  const battery = useHostileGateway();
  beforeAll(() => console.info(`[fuzz] fast-check seed ${SEED}, ${FUZZ_RUNS} runs per property (replay with FC_SEED=${SEED})`));

  /** Sends one generated request and checks the two properties; returns what happened. */
  async function probe(sent: RawSpec): Promise<{ status: number; forwarded: boolean; problem?: string }> {
    const before = battery.fake.requests.length;
    const started = Date.now();
    const response = await rawRequest(battery.port, buildRequest(sent), 3000);
    const status = finalStatusOf(response.text);
    const forwarded = battery.fake.requests.slice(before);
    const show = `${sent.method} ${JSON.stringify(sent.target)} ${JSON.stringify(sent.headers)}`;
    if (Date.now() - started > 1000) console.info(`[fuzz] slow case (${Date.now() - started} ms, status ${status}): ${show}`);
    if (statusesOf(response.text).some((s) => s >= 500)) return { status, forwarded: forwarded.length > 0, problem: `5xx ${status} for ${show}` };
    if (forwarded.length > 1) return { status, forwarded: true, problem: `forwarded ${forwarded.length} times: ${show}` };
    if (forwarded.length === 1) {
      const violation = forwardingViolation(sent, forwarded[0], CREDS);
      if (violation) return { status, forwarded: true, problem: `${violation}: ${show}` };
    }
    return { status, forwarded: forwarded.length === 1 };
  }

  /** Requests that reached the upstream according to nginx's own access log (upstream_status set). */
  const upstreamContacts = () =>
    battery.gateway.accessLog().filter((e) => e.upstream_status !== "" && e.path !== "/healthz").map((e) => `${e.method} ${e.path} -> ${e.upstream_status}`);

  /**
   * nginx writes a request's access-log line in its log phase, after the client already has the
   * response, so a test that reads the log right after a request can miss the line. Waits until
   * the log has caught up with what the fake received (or 2 s pass), then returns the count.
   */
  async function settledUpstreamContacts(): Promise<number> {
    const received = () => battery.fake.requests.filter((r) => r.rawPath.split("?")[0] !== "/healthz").length;
    const deadline = Date.now() + 2000;
    while (upstreamContacts().length < received() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return upstreamContacts().length;
  }

  /**
   * nginx's record must agree with the fake's: every upstream contact in the access log was seen
   * (and judged) by the battery.fake. A contact the fake did not record would be bytes its HTTP parser
   * refused, i.e. something the property could not check.
   */
  function expectLogAgrees(contactsBefore: number, upstreamBefore: number) {
    const contacts = upstreamContacts().slice(contactsBefore);
    const seen = battery.fake.requests.slice(upstreamBefore).map((r) => `${r.method} ${r.rawPath.split("?")[0]}`);
    const unseen = contacts.filter((c) => {
      const i = seen.indexOf(c.split(" -> ")[0]);
      if (i === -1) return true;
      seen.splice(i, 1);
      return false;
    });
    expect(unseen).toEqual([]);
    expect(seen).toEqual([]);
  }

  function statsLine(name: string, statuses: Map<number, number>, forwarded: number, runs: number) {
    const histogram = [...statuses.entries()].sort(([a], [b]) => a - b).map(([s, n]) => `${s}:${n}`).join(" ");
    console.info(`[fuzz] ${name}: ${runs} cases, ${forwarded} forwarded, statuses ${histogram}`);
  }

  it(`credentials: nothing reaches Ollama without a valid credential whose scope allows the route, never a 5xx (${FUZZ_RUNS} cases)`, async () => {
    const statuses = new Map<number, number>();
    let forwardedCount = 0;
    let runs = 0;
    const upstreamBefore = battery.fake.requests.length;
    const contactsBefore = await settledUpstreamContacts();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof({ weight: 1, arbitrary: validCredentialArb as fc.Arbitrary<CredentialCase> }, { weight: 4, arbitrary: hostileCredentialArb }),
        extraHeadersArb,
        routeArb,
        fc.boolean(),
        async (credential, extra, route, credentialFirst) => {
          const target = samplePath(route.path);
          const headers = credentialFirst ? [...credential.headers, ...extra.headers] : [...extra.headers, ...credential.headers];
          const sent: RawSpec = { method: route.method, target, headers, body: route.method === "POST" || route.method === "DELETE" ? JSON_BODY : undefined };
          if (extra.headers.some(([n]) => n.toLowerCase() === "content-length")) sent.body = undefined;
          const result = await probe(sent);
          runs++;
          statuses.set(result.status, (statuses.get(result.status) ?? 0) + 1);
          if (result.forwarded) forwardedCount++;
          if (result.problem) throw new Error(result.problem);
          // Completeness: a clean valid credential on a route its scope allows is forwarded.
          const scope = (credential as { scope?: Scope }).scope;
          if (credential.clean && extra.benign && scope && scopeAllows(scope, classifyRoute(route.method, route.path)!) && !result.forwarded) {
            throw new Error(`a valid ${credential.label} request to ${route.method} ${target} was not forwarded (status ${result.status})`);
          }
        },
      ),
      { seed: SEED, numRuns: FUZZ_RUNS, verbose: 1 },
    );
    statsLine("credentials", statuses, forwardedCount, runs);
    await settledUpstreamContacts();
    expectLogAgrees(contactsBefore, upstreamBefore);
    expect(forwardedCount).toBeGreaterThan(FUZZ_RUNS / 20);
  }, 120_000);

  it(`methods and paths: only the exact authorised raw path reaches Ollama, never a 5xx (${FUZZ_RUNS} cases)`, async () => {
    const statuses = new Map<number, number>();
    let forwardedCount = 0;
    let runs = 0;
    const upstreamBefore = battery.fake.requests.length;
    const contactsBefore = await settledUpstreamContacts();
    await fc.assert(
      fc.asyncProperty(validCredentialArb, pathCaseArb, async (credential, pathCase) => {
        const hasBody = !["GET", "HEAD"].includes(pathCase.method.toUpperCase());
        const sent: RawSpec = { method: pathCase.method, target: pathCase.target, headers: credential.headers, body: hasBody ? JSON_BODY : undefined };
        const result = await probe(sent);
        runs++;
        statuses.set(result.status, (statuses.get(result.status) ?? 0) + 1);
        if (result.forwarded) forwardedCount++;
        if (result.problem) throw new Error(result.problem);
        const routeClass = classifyRoute(pathCase.method, pathCase.target);
        if (pathCase.clean && routeClass && scopeAllows(credential.scope, routeClass) && !result.forwarded) {
          throw new Error(`clean ${pathCase.method} ${pathCase.target} with ${credential.label} was not forwarded (status ${result.status})`);
        }
      }),
      { seed: SEED + 1, numRuns: FUZZ_RUNS, verbose: 1 },
    );
    statsLine("methods and paths", statuses, forwardedCount, runs);
    await settledUpstreamContacts();
    expectLogAgrees(contactsBefore, upstreamBefore);
    expect(forwardedCount).toBeGreaterThan(FUZZ_RUNS / 20);
  }, 120_000);
});
