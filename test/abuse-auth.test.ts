/**
 * Abuse of authentication (issue 13, items 1, 8 and 11), through the real nginx with the rendered
 * bundle and the stand-in Ollama: a concurrent burst of wrong Basic passwords, the cost of a
 * wrong password for a user mid-rotation, failed API keys and JWTs per address, weak keys at
 * render time, ES256 signature forms, numeric and look-alike caller names, and user-name
 * enumeration in external-auth `fallback` mode. Other clients come from other loopback addresses
 * (127.0.0.x) through `localAddress`.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GatewaySpecInput, parseSpec } from "../bundle/spec";
import { basicBurst, basicHeader } from "../harness/burst";
import { send } from "../harness/http";
import { type FakeOllama, startFakeOllama } from "../harness/fake-ollama";
import { everyWorkerCaughtUp, nginxTestsEnabled, type RunningGateway, startGateway, waitUntil } from "../harness/nginx";

// Test-only values, made up for this file.
const KEY = "auth-abuse-key-4c9e1a7b3f5d8e2a";
const PASSWORD = "legitimate-password-42";
const OLD_PASSWORD = "previous-password-42";
const HS_SECRET = "test-hs256-secret-abuse-0123456789abcdef";
const ISSUER = "https://idp.example.test/";
const AUDIENCE = "ollama-gateway";
const BASIC_LIMIT = 20;
const TOKEN_LIMIT = 60;
const LOGIN_USERS = 25;
/** P-256's group order: an ECDSA signature (r, s) verifies as (r, n - s) too. */
const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

const now = () => Math.floor(Date.now() / 1000);
const claims = (extra: Record<string, unknown> = {}) => ({ iss: ISSUER, aud: AUDIENCE, sub: "alice", scope: "read", exp: now() + 300, ...extra });
const hs = (body: Record<string, unknown>) => new SignJWT(body).setProtectedHeader({ alg: "HS256" }).sign(new TextEncoder().encode(HS_SECRET));
const get = (url: string, headers: Record<string, string>, localAddress = "127.0.0.1") => send(`${url}/api/tags`, { headers, localAddress });

/** An ES256 signature (r || s, 32 bytes each) with s replaced by `f(s)`. */
function withS(token: string, f: (s: bigint) => bigint): string {
  const [h, p, sig] = token.split(".");
  const raw = Buffer.from(sig, "base64url");
  const s = f(BigInt(`0x${raw.subarray(32).toString("hex")}`));
  const sBytes = Buffer.from(s.toString(16).padStart(64, "0").slice(-64), "hex");
  return `${h}.${p}.${Buffer.concat([raw.subarray(0, 32), sBytes]).toString("base64url")}`;
}

describe("weak API keys are refused when the spec is read", () => {
  it("names the key's entry and never shows the key", () => {
    const weak = "a".repeat(24);
    const almost = "abcdefg-abcdefg-abcdefg-abcdefg"; // 8 distinct characters: accepted
    const result = parseSpec({
      apiKeys: [
        { name: "single-letter", key: weak, scope: "read" },
        { name: "fine", key: almost, scope: "read", previous: { key: "ab".repeat(15), notAfter: "2030-01-01T00:00:00Z" } },
      ],
    });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors).toEqual([
      "`apiKeys[0].key` is a secret of 24 characters (not shown); use a random key instead (`openssl rand -hex 24`): the key of `single-letter` has only 1 distinct character (at least 8), so it can be guessed",
      "`apiKeys[1].previous.key` is a secret of 30 characters (not shown); use a random key instead (`openssl rand -hex 24`): the key of `fine` has only 2 distinct characters (at least 8), so it can be guessed",
    ]);
    expect(result.errors.join("\n")).not.toContain(weak);
  });

  it("validates failedAuth, naming the field", () => {
    const result = parseSpec({ failedAuth: { basic: 0, token: 1.5, windowSeconds: 0, tokens: 3 } });
    expect(result).toEqual({
      ok: false,
      errors: [
        "`failedAuth.basic` is 0; use a whole number of attempts from 1 to 10000",
        "`failedAuth.token` is 1.5; expected int",
        "`failedAuth.windowSeconds` is 0; use a whole number of seconds from 1 to 86400",
        "`failedAuth` has unknown field(s) `tokens`; remove them or check the spelling",
      ],
    });
    const defaults = parseSpec({});
    expect(defaults.ok && defaults.spec.failedAuth).toEqual({ basic: 20, token: 60, windowSeconds: 60 });
  });
});

describe.runIf(nginxTestsEnabled)("abuse of authentication, through the real nginx", () => {
  let fake: FakeOllama;
  let gateway: RunningGateway;
  let ecPrivate: CryptoKey;

  const es = (body: Record<string, unknown>) => new SignJWT(body).setProtectedHeader({ alg: "ES256", kid: "es-1" }).sign(ecPrivate);

  beforeAll(async () => {
    fake = await startFakeOllama();
    const ec = await generateKeyPair("ES256", { extractable: true });
    ecPrivate = ec.privateKey as CryptoKey;
    gateway = await startGateway({
      upstreamUrl: fake.url,
      // bcrypt costs a few milliseconds here: the burst still overlaps, the suite stays quick.
      bcryptCost: 8,
      spec: {
        workerProcesses: 2,
        // The burst must reach the password check, not nginx's per-address connection limit.
        connectionsPerAddress: 1000,
        rateLimit: { requestsPerSecond: 10_000, burst: 10_000 },
        failedAuth: { basic: BASIC_LIMIT, token: TOKEN_LIMIT },
        apiKeys: [{ name: "app", key: KEY, scope: "read" }],
        basicUsers: [
          { name: "victim", password: PASSWORD, scope: "read" },
          { name: "steady", password: PASSWORD, scope: "read" },
          ...Array.from({ length: LOGIN_USERS }, (_, i) => ({ name: `login-${i}`, password: PASSWORD, scope: "read" as const })),
        ],
        jwt: {
          issuer: ISSUER,
          audience: AUDIENCE,
          algorithms: ["HS256", "ES256"],
          hs256Secrets: [{ secret: HS_SECRET }],
          jwks: { keys: [{ ...(await exportJWK(ec.publicKey)), kty: "EC", kid: "es-1", alg: "ES256" }] },
        },
      },
    });
  });
  afterAll(async () => {
    await gateway?.stop();
    await fake?.close();
  });

  describe("a concurrent burst of wrong Basic passwords (item 1)", () => {
    it("gets at most the limit of 401s, the rest 429 with Retry-After, never a 5xx; others keep logging in", async () => {
      const result = await basicBurst({
        url: gateway.url,
        attacker: "127.0.0.1",
        victim: "victim",
        requests: 300,
        other: "127.0.0.2",
        login: { user: "steady", password: PASSWORD },
        apiKey: KEY,
      });
      console.info(`[measure] 300 wrong passwords at once: ${JSON.stringify(result.counts)}; other address: first login ${result.login.ms} ms, API key max ${Math.max(...result.apiKeyMs)} ms`);
      expect(result.counts["5xx"]).toBe(0);
      expect(result.counts.other).toBe(0);
      expect(result.counts["401"]).toBeLessThanOrEqual(BASIC_LIMIT);
      expect(result.counts["401"] + result.counts["429"]).toBe(300);
      expect(result.withoutRetryAfter).toBe(0);
      expect(result.login.status).toBe(200);
      expect(result.apiKeyStatuses.every((s) => s === 200)).toBe(true);
      // Generous: the other address waits a few bcrypts at most, not behind the whole burst.
      expect(result.login.ms).toBeLessThan(3000);
    });

    it("caps bcrypt work per worker too: wrong passwords from 60 addresses at once get 401 or 429, never a 5xx", async () => {
      const answers = await Promise.all(
        Array.from({ length: 60 }, (_, i) => send(`${gateway.url}/api/version`, { headers: basicHeader("victim", `wrong-${i}-at-once`), localAddress: `127.0.2.${i + 1}`, timeoutMs: 30_000 })),
      );
      const statuses = answers.map((a) => a.status);
      console.info(`[measure] 60 addresses at once: ${statuses.filter((s) => s === 401).length} × 401, ${statuses.filter((s) => s === 429).length} × 429`);
      expect(statuses.filter((s) => s !== 401 && s !== 429)).toEqual([]);
      // 2 workers × 4 × 2 bcrypt threads: at most 16 are verified at once, the rest are told to retry.
      expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0);
      expect(answers.filter((a) => a.status === 429).every((a) => a.headers["retry-after"] === "1")).toBe(true);
    });

    it("answers 429 JSON past the limit, to a right password too, and only for that address", async () => {
      const url = gateway.url;
      const from = "127.0.0.3";
      for (let i = 0; i < BASIC_LIMIT; i++) expect((await get(url, basicHeader("victim", `wrong-${i}-password`), from)).status).toBe(401);
      const blocked = await get(url, basicHeader("victim", PASSWORD), from);
      expect(blocked.status).toBe(429);
      expect(JSON.parse(blocked.body).error).toMatch(/too many failed authentication attempts/);
      expect(Number(blocked.headers["retry-after"])).toBeGreaterThan(0);
      expect(Number(blocked.headers["retry-after"])).toBeLessThanOrEqual(60);
      expect((await get(url, basicHeader("victim", PASSWORD), "127.0.0.4")).status).toBe(200);
    });

    it("does not count successful logins as failures", async () => {
      for (let i = 0; i < LOGIN_USERS; i++) {
        const answer = await get(gateway.url, basicHeader(`login-${i}`, PASSWORD), "127.0.0.5");
        expect.soft(answer.status, `login-${i}`).toBe(200);
      }
    });
  });

  describe("failed API keys and JWTs per address (item 8)", () => {
    it("answers 429 with Retry-After past failedAuth.token wrong keys, keeps serving a valid key, and other addresses", async () => {
      const from = "127.0.0.6";
      const statuses: number[] = [];
      for (let i = 0; i < TOKEN_LIMIT + 5; i++) {
        const headers: Record<string, string> = i % 2 ? { Authorization: `Bearer wrong-key-${i}-0000000000000000` } : { "X-API-Key": `wrong-key-${i}-0000000000000000` };
        statuses.push((await get(gateway.url, headers, from)).status);
      }
      expect(statuses.slice(0, TOKEN_LIMIT).every((s) => s === 401)).toBe(true);
      expect(statuses.slice(TOKEN_LIMIT).every((s) => s === 429)).toBe(true);
      const blocked = await get(gateway.url, { Authorization: "Bearer yet-another-wrong-key-000000" }, from);
      expect(blocked.status).toBe(429);
      expect(JSON.parse(blocked.body).error).toMatch(/too many failed authentication attempts/);
      expect(Number(blocked.headers["retry-after"])).toBeGreaterThan(0);
      // A valid key costs one digest lookup: served, so nobody can lock out a shared address.
      expect((await get(gateway.url, { Authorization: `Bearer ${KEY}` }, from)).status).toBe(200);
      expect((await get(gateway.url, { Authorization: "Bearer wrong-key-elsewhere-00000000" }, "127.0.0.7")).status).toBe(401);
    });

    it("counts wrong JWTs the same way", async () => {
      const from = "127.0.0.8";
      const forged = `${(await hs(claims())).slice(0, -4)}AAAA`;
      const statuses: number[] = [];
      for (let i = 0; i <= TOKEN_LIMIT; i++) statuses.push((await get(gateway.url, { Authorization: `Bearer ${forged}` }, from)).status);
      expect(statuses.slice(0, TOKEN_LIMIT).every((s) => s === 401)).toBe(true);
      expect(statuses[TOKEN_LIMIT]).toBe(429);
      expect((await get(gateway.url, { Authorization: `Bearer ${await hs(claims())}` }, from)).status).toBe(200);
    });
  });

  describe("JWT details (item 11)", () => {
    it("accepts an ES256 signature in either s form (malleable by design, see docs/security.md), never s = 0 or s >= n", async () => {
      const token = await es(claims({ sub: "ec-user" }));
      const low = withS(token, (s) => (s > P256_N / 2n ? P256_N - s : s));
      const high = withS(token, (s) => (s > P256_N / 2n ? s : P256_N - s));
      for (const [form, t] of [["low-S", low], ["high-S", high]]) {
        const answer = await get(gateway.url, { Authorization: `Bearer ${t}` }, "127.0.0.9");
        expect(answer.status, form).toBe(200);
      }
      for (const f of [() => 0n, (s: bigint) => s + P256_N, () => P256_N]) {
        const forged = withS(token, f);
        if (forged === token) continue;
        expect((await get(gateway.url, { Authorization: `Bearer ${forged}` }, "127.0.0.9")).status).toBe(401);
      }
    });

    it("accepts a numeric caller name only as an integer a double holds exactly, and logs it as sent", async () => {
      const from = "127.0.0.9";
      for (const sub of [1e300, 1.5, 2 ** 53, -(2 ** 60)]) {
        const answer = await get(gateway.url, { Authorization: `Bearer ${await hs(claims({ sub }))}` }, from);
        expect.soft(answer.status, String(sub)).toBe(401);
        expect.soft(JSON.parse(answer.body).error, String(sub)).toMatch(/no usable 'sub' claim/);
      }
      for (const sub of [2 ** 53 - 1, -42]) expect((await get(gateway.url, { Authorization: `Bearer ${await hs(claims({ sub }))}` }, from)).status).toBe(200);
      const callers = (await gateway.settledAccessLog()).map((e) => e.caller);
      expect(callers).toContain("9007199254740991");
      expect(callers).toContain("-42");
      expect(callers).not.toContain("-9223372036854775808");
    });
  });
});

describe.runIf(nginxTestsEnabled)("a wrong password costs the same whether or not the user is mid-rotation (item 1)", () => {
  let fake: FakeOllama;
  let gateway: RunningGateway;

  beforeAll(async () => {
    fake = await startFakeOllama();
    gateway = await startGateway({
      upstreamUrl: fake.url,
      // bcrypt at the real cost (~60 ms) on one thread: two bcrypts or one is a clear difference.
      bcryptCost: 10,
      spec: {
        workerProcesses: 1,
        bcryptThreads: 1,
        rateLimit: { requestsPerSecond: 10_000, burst: 10_000 },
        basicUsers: [
          { name: "steady", password: PASSWORD, scope: "read" },
          { name: "rotating", password: PASSWORD, scope: "read", previous: { password: OLD_PASSWORD, notAfter: "2099-01-01T00:00:00Z" } },
        ],
      },
    });
  });
  afterAll(async () => {
    await gateway?.stop();
    await fake?.close();
  });

  it("spends two bcrypts on every wrong password: a user with one password, one mid-rotation, an unknown name", async () => {
    // Each sample from its own address, so no failure limit is reached; interleaved against drift,
    // and the fastest of each kind compared: load on the machine only ever adds time.
    const times: Record<"steady" | "rotating" | "unknown", number[]> = { steady: [], rotating: [], unknown: [] };
    let address = 10;
    for (let round = 0; round < 7; round++) {
      for (const user of ["steady", "rotating", "unknown"] as const) {
        const answer = await get(gateway.url, basicHeader(user, `wrong-${round}-${user}-pw`), `127.0.1.${address++}`);
        expect(answer.status).toBe(401);
        times[user].push(answer.ms);
      }
    }
    const [steady, rotating, unknown] = [Math.min(...times.steady), Math.min(...times.rotating), Math.min(...times.unknown)];
    console.info(`[measure] wrong password at bcrypt cost 10, fastest of 7: steady ${steady} ms, mid-rotation ${rotating} ms, unknown user ${unknown} ms`);
    // Before: the rotating user cost two bcrypts, the others one (a ratio of about 2).
    for (const [a, b] of [[rotating, steady], [steady, rotating], [unknown, steady], [steady, unknown]]) expect(a / b).toBeLessThan(1.5);
    // The old password still works during the overlap.
    expect((await get(gateway.url, basicHeader("rotating", OLD_PASSWORD), "127.0.1.99")).status).toBe(200);
  });
});

describe.runIf(nginxTestsEnabled)("caller names that look alike keep their own rate buckets (item 11)", () => {
  let fake: FakeOllama;
  let gateway: RunningGateway;

  beforeAll(async () => {
    fake = await startFakeOllama();
    gateway = await startGateway({
      upstreamUrl: fake.url,
      spec: {
        // Two requests per caller, then 429.
        rateLimit: { requestsPerSecond: 0.1, burst: 1 },
        jwt: { issuer: ISSUER, audience: AUDIENCE, algorithms: ["HS256"], hs256Secrets: [{ secret: HS_SECRET }] },
      },
    });
  });
  afterAll(async () => {
    await gateway?.stop();
    await fake?.close();
  });

  it("rate-limits by the exact name and marks a cleaned name with a digest in the log", async () => {
    const spaced = await hs(claims({ sub: "team a" }));
    const underscored = await hs(claims({ sub: "team_a" }));
    const long = await hs(claims({ sub: `${"x".repeat(64)}1` }));
    const longToo = await hs(claims({ sub: `${"x".repeat(64)}2` }));
    const statuses = [];
    for (const token of [spaced, spaced, spaced, underscored, long, long, long, longToo]) statuses.push((await get(gateway.url, { Authorization: `Bearer ${token}` })).status);
    expect(statuses).toEqual([200, 200, 429, 200, 200, 200, 429, 200]);
    const callers = [...new Set((await gateway.settledAccessLog()).map((e) => e.caller))];
    expect(callers).toHaveLength(4);
    expect(callers).toContain("team_a");
    expect(callers.find((c) => c.startsWith("team_a~"))).toMatch(/^team_a~[0-9a-f]{8}$/);
    expect(callers.filter((c) => /^x{55}~[0-9a-f]{8}$/.test(c))).toHaveLength(2);
  });
});

describe.runIf(nginxTestsEnabled)("external-auth fallback mode does not reveal local user names (item 11)", () => {
  let fake: FakeOllama;
  let gateway: RunningGateway;
  let service: http.Server;
  let spec: GatewaySpecInput;
  let asked = 0;

  beforeAll(async () => {
    fake = await startFakeOllama();
    // A service that lets everyone in: whatever reaches it would get 200.
    service = http.createServer((_req, res) => {
      asked++;
      res.writeHead(200, { "X-Auth-Request-User": "someone", "X-Auth-Request-Groups": "read" });
      res.end();
    });
    await new Promise<void>((resolve) => service.listen(0, "127.0.0.1", resolve));
    spec = {
      rateLimit: { requestsPerSecond: 10_000, burst: 10_000 },
      basicUsers: [{ name: "local-user", password: PASSWORD, scope: "read" }],
      externalAuth: { url: `http://127.0.0.1:${(service.address() as AddressInfo).port}/auth` },
    };
    gateway = await startGateway({ upstreamUrl: fake.url, spec });
  });
  afterAll(async () => {
    await gateway?.stop();
    service?.closeAllConnections();
    await new Promise((resolve) => service?.close(resolve));
    await fake?.close();
  });

  it("answers a known user's wrong password and an unknown user alike, locally", async () => {
    const known = await get(gateway.url, basicHeader("local-user", "wrong-password-1"));
    const unknown = await get(gateway.url, basicHeader("no-such-user", "wrong-password-1"));
    expect(known.status).toBe(401);
    expect(unknown.status).toBe(known.status);
    expect(unknown.body).toBe(known.body);
    expect(unknown.headers["www-authenticate"]).toBe(known.headers["www-authenticate"]);
    expect(asked).toBe(0);
    expect((await get(gateway.url, basicHeader("local-user", PASSWORD))).status).toBe(200);
    // Credentials that are not Basic still go to the service.
    expect((await get(gateway.url, { Authorization: "Bearer opaque-token-from-the-idp-1234" })).status).toBe(200);
    expect(asked).toBe(1);
  });

  it("sends Basic to the service once there are no local Basic users (no names to reveal)", async () => {
    gateway.updateCredentials({ ...spec, basicUsers: [] });
    await waitUntil(async () => (await get(gateway.url, basicHeader("ldap-user", "whatever-pass"))).status === 200, 5000);
    await everyWorkerCaughtUp();
    const before = asked;
    expect((await get(gateway.url, basicHeader("local-user", PASSWORD))).status).toBe(200);
    expect(asked).toBe(before + 1);
  });
});
