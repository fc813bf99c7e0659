/**
 * External authentication service (spec `externalAuth`) through the real nginx, with a small
 * node:http stand-in that allows, denies, hangs, fails and redirects, and a closed port.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSpec } from "../bundle/spec";
import { type FakeOllama, startFakeOllama } from "../harness/fake-ollama";
import { bearer, request } from "../harness/http";
import { freePort, nginxTestsEnabled, type RunningGateway, startGateway } from "../harness/nginx";

const LOCAL_KEY = "test-local-key-0000000000000000000000";
const OPAQUE_TOKEN = "opaque-idp-token-0000000000000000000";

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

/** The stand-in: what it does is chosen by the client's X-Test-Auth header (forwarded to it). */
async function startAuthService() {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method!, url: req.url!, headers: req.headers });
    const behaviour = String(req.headers["x-test-auth"] ?? "allow:inference");
    const [kind, arg] = behaviour.split(":");
    if (kind === "allow") {
      res.writeHead(200, { "X-Auth-Request-User": req.headers["x-test-user"] ?? "carol@example.test", "X-Auth-Request-Groups": `staff,ollama-${arg}` });
      return res.end("ok");
    }
    if (kind === "noname") {
      res.writeHead(202, { "X-Auth-Request-Groups": "ollama-admin" });
      return res.end();
    }
    if (kind === "noscope") {
      res.writeHead(200, { "X-Auth-Request-User": "dave", "X-Auth-Request-Groups": "staff" });
      return res.end();
    }
    if (kind === "deny") {
      res.writeHead(Number(arg), Number(arg) === 401 ? { "WWW-Authenticate": 'Bearer realm="idp"' } : {});
      return res.end("no");
    }
    if (kind === "status") {
      res.writeHead(Number(arg), Number(arg) === 302 ? { Location: "https://idp.example.test/login" } : {});
      return res.end("x");
    }
    if (kind === "hang") return; // never answers
    res.writeHead(500);
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/oauth2/auth`,
    seen,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

const SCOPE_VALUES = { read: ["ollama-read"], inference: ["ollama-inference"], admin: ["ollama-admin"] };

describe("externalAuth spec", () => {
  it("validates the section", () => {
    const result = parseSpec({
      externalAuth: { url: "ftp://x", mode: "sometimes", timeoutSeconds: 0, nameHeader: "X User", scopeValues: { read: ["a"], admin: ["a"] } },
    });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors).toEqual([
      "`externalAuth.url` is \"ftp://x\"; use an http(s) URL such as http://127.0.0.1:4180/oauth2/auth",
      "`externalAuth.mode` is \"sometimes\"; use `fallback` or `exclusive`",
      "`externalAuth.timeoutSeconds` is 0; use a whole number of seconds from 1 to 60",
      "`externalAuth.nameHeader` is \"X User\"; use an HTTP header name such as X-Auth-Request-User",
    ]);
    const injection = parseSpec({ externalAuth: { url: "http://127.0.0.1:1/a;deny all" } });
    expect(injection.ok).toBe(false);
  });
});

describe.runIf(nginxTestsEnabled)("external authentication through the real nginx", () => {
  let fake: FakeOllama;
  let auth: Awaited<ReturnType<typeof startAuthService>>;
  let gateway: RunningGateway;
  let exclusive: RunningGateway;
  let unreachable: RunningGateway;

  const call = (g: RunningGateway, behaviour: string | undefined, headers: Record<string, string> = {}, route = "/api/tags", method = "GET") =>
    request(`${g.url}${route}`, {
      method,
      headers: { ...(behaviour ? { "X-Test-Auth": behaviour } : {}), "Content-Type": "application/json", ...headers },
      body: method === "POST" ? JSON.stringify({ model: "gemma3:1b", prompt: "hi", stream: false }) : undefined,
    });

  beforeAll(async () => {
    fake = await startFakeOllama({ chunks: 1, chunkIntervalMs: 1 });
    auth = await startAuthService();
    const base = {
      apiKeys: [{ name: "local-key", key: LOCAL_KEY, scope: "read" as const }],
      basicUsers: [{ name: "local-user", password: "local-password-1", scope: "read" as const }],
      rateLimit: { requestsPerSecond: 10_000, burst: 10_000 },
    };
    gateway = await startGateway({
      upstreamUrl: fake.url,
      spec: { ...base, externalAuth: { url: auth.url, timeoutSeconds: 1, scopeValues: SCOPE_VALUES } },
    });
    exclusive = await startGateway({
      upstreamUrl: fake.url,
      spec: { ...base, externalAuth: { url: auth.url, mode: "exclusive", timeoutSeconds: 1, scopeValues: SCOPE_VALUES } },
    });
    unreachable = await startGateway({
      upstreamUrl: fake.url,
      spec: { ...base, externalAuth: { url: `http://127.0.0.1:${await freePort()}/auth`, scopeValues: SCOPE_VALUES } },
    });
  });
  afterAll(async () => {
    await Promise.all([gateway, exclusive, unreachable].map((g) => g?.stop()));
    await auth?.close();
    await fake?.close();
  });

  it("allows on 2xx, with caller and scope from the service's headers checked against the route", async () => {
    const before = auth.seen.length;
    const response = await call(gateway, "allow:inference", { Cookie: "_oauth2_proxy=session-cookie-value" }, "/api/generate?x=1", "POST");
    expect(response.status).toBe(200);
    const [asked] = auth.seen.slice(before);
    expect(asked.method).toBe("GET");
    expect(asked.url).toBe("/oauth2/auth");
    expect(asked.headers["x-original-method"]).toBe("POST");
    expect(asked.headers["x-original-uri"]).toBe("/api/generate?x=1");
    expect(asked.headers.cookie).toBe("_oauth2_proxy=session-cookie-value");
    expect(asked.headers["content-length"]).toBeUndefined();
    // Scope from the groups header: inference may not pull; admin may.
    expect((await call(gateway, "allow:inference", {}, "/api/pull", "POST")).status).toBe(403);
    expect((await call(gateway, "allow:admin", {}, "/api/pull", "POST")).status).toBe(200);
    expect((await call(gateway, "allow:read", {}, "/api/tags")).status).toBe(200);
    await new Promise((r) => setTimeout(r, 200));
    expect((await gateway.settledAccessLog()).some((e) => e.caller === "carol_example.test" || e.caller === "carol@example.test")).toBe(true);
    const entry = (await gateway.settledAccessLog()).find((e) => e.auth === "external" && e.path === "/api/generate")!;
    expect(entry).toMatchObject({ caller: "carol@example.test", scope: "inference", status: 200 });
    // The cookie and credentials never reach Ollama.
    const forwarded = fake.requests.find((r) => r.rawPath === "/api/generate?x=1")!;
    expect(forwarded.headers.cookie).toBeUndefined();
  });

  it("passes the client's Authorization and X-API-Key to the service", async () => {
    const before = auth.seen.length;
    expect((await call(gateway, "allow:read", bearer(OPAQUE_TOKEN))).status).toBe(200);
    expect(auth.seen[before].headers.authorization).toBe(`Bearer ${OPAQUE_TOKEN}`);
    expect((await call(gateway, "allow:read", { "X-API-Key": OPAQUE_TOKEN })).status).toBe(200);
    expect(auth.seen[before + 1].headers["x-api-key"]).toBe(OPAQUE_TOKEN);
  });

  it("refuses with the service's 401 or 403, as JSON", async () => {
    const unauthorized = await call(gateway, "deny:401");
    expect(unauthorized.status).toBe(401);
    expect(unauthorized.json()).toEqual({ error: "the external authentication service refused the credentials" });
    expect(unauthorized.headers.get("www-authenticate")).toBe('Bearer realm="idp"');
    const forbidden = await call(gateway, "deny:403");
    expect(forbidden.status).toBe(403);
    expect(forbidden.json().error).toMatch(/denied access/);
  });

  it("refuses 2xx answers without a caller name or a gateway scope with 403", async () => {
    expect((await call(gateway, "noname")).json()).toEqual({ error: "the external authentication service named no caller" });
    const noScope = await call(gateway, "noscope");
    expect(noScope.status).toBe(403);
    expect(noScope.json().error).toMatch(/granted no gateway scope/);
  });

  it("fails closed with 503 on 5xx, redirects, other statuses, timeouts and an unreachable service", async () => {
    const before = fake.requests.length;
    for (const behaviour of ["fail", "status:502", "status:302", "status:404", "status:400"]) {
      const response = await call(gateway, behaviour);
      expect.soft(response.status, behaviour).toBe(503);
    }
    const started = Date.now();
    const slow = await call(gateway, "hang");
    const took = Date.now() - started;
    expect(slow.status).toBe(503);
    expect(slow.json()).toEqual({ error: "the external authentication service is unavailable" });
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(3000);
    const refused = await call(unreachable, "allow:admin");
    expect(refused.status).toBe(503);
    expect(fake.requests.length - before).toBe(0);
    expect(gateway.errorLog()).toMatch(/external authentication service answered 5\d\d/);
  });

  it("fallback mode: credentials the gateway knows (and Basic, while local users exist) are decided locally, everything else by the service", async () => {
    const before = auth.seen.length;
    // A known key and a known Basic user: never sent to the service.
    expect((await call(gateway, "deny:403", bearer(LOCAL_KEY))).status).toBe(200);
    expect((await call(gateway, "deny:403", { "X-API-Key": LOCAL_KEY })).status).toBe(200);
    const basicAuth = { Authorization: `Basic ${Buffer.from("local-user:local-password-1").toString("base64")}` };
    expect((await call(gateway, "deny:403", basicAuth)).status).toBe(200);
    // A known Basic user with a wrong password: refused locally, not retried with the service.
    const wrong = { Authorization: `Basic ${Buffer.from("local-user:wrong-password-1").toString("base64")}` };
    expect((await call(gateway, "allow:admin", wrong)).status).toBe(401);
    expect(auth.seen.length).toBe(before);
    // While there are local Basic users, an unknown user is refused locally too (no enumeration).
    const unknownUser = { Authorization: `Basic ${Buffer.from("ldap-user:whatever-pass").toString("base64")}` };
    expect((await call(gateway, "allow:read", unknownUser)).status).toBe(401);
    expect(auth.seen.length).toBe(before);
    // Unknown key, another scheme, no credentials: the service decides.
    expect((await call(gateway, "allow:read", bearer(OPAQUE_TOKEN))).status).toBe(200);
    expect((await call(gateway, "allow:read", { Authorization: "Negotiate abcdef" })).status).toBe(200);
    expect((await call(gateway, "deny:401")).status).toBe(401);
    expect(auth.seen.length).toBe(before + 3);
    // Two credentials are still a 400, before anything is asked.
    expect((await call(gateway, "allow:admin", { ...bearer(LOCAL_KEY), "X-API-Key": LOCAL_KEY })).status).toBe(400);
    expect(auth.seen.length).toBe(before + 3);
  });

  it("never hits a Lua runtime error", () => {
    for (const g of [gateway, exclusive, unreachable]) expect(g.errorLog()).not.toMatch(/runtime error|entry thread aborted|attempt to/);
  });

  it("exclusive mode: every request is decided by the service", async () => {
    const before = auth.seen.length;
    expect((await call(exclusive, "deny:403", bearer(LOCAL_KEY))).status).toBe(403);
    expect((await call(exclusive, "allow:admin", bearer(LOCAL_KEY), "/api/pull", "POST")).status).toBe(200);
    expect(auth.seen.length).toBe(before + 2);
  });
});
