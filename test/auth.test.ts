/**
 * Authentication, route scopes, path safety and header stripping, through the real nginx
 * running the rendered bundle in front of the stand-in Ollama.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import routesFixture from "../harness/ollama-routes.json";
import { classifyRoute, scopeAllows } from "../bundle/routes";
import { SCOPES, type Scope } from "../bundle/spec";
import { type FakeOllama, startFakeOllama } from "../harness/fake-ollama";
import { basic, bearer, errorMessage, rawRequest, request } from "../harness/http";
import { nginxTestsEnabled, type RunningGateway, startGateway } from "../harness/nginx";

const routes: { method: string; path: string }[] = routesFixture.routes;

// Test-only credentials, made up for this file.
const KEYS: Record<Scope, string> = {
  read: "test-read-key-000000000000000000000",
  inference: "test-inference-key-0000000000000000",
  admin: "test-admin-key-000000000000000000000",
};
const PASSWORDS: Record<Scope, string> = {
  read: "reader-password-1",
  inference: "inference-password-1",
  admin: "admin-password-0001",
};

/** A concrete path for a route pattern (`:digest` -> a plausible value). */
function samplePath(pattern: string): string {
  return pattern
    .replace(":digest", "sha256:0123456789abcdef")
    .replace(":model", "gemma3:1b")
    .replace(":encodedKey", "c3NoLWVkMjU1MTk");
}

type CredentialKind = "bearer" | "x-api-key" | "basic";
function credentialHeaders(kind: CredentialKind, scope: Scope): Record<string, string> {
  if (kind === "bearer") return bearer(KEYS[scope]);
  if (kind === "x-api-key") return { "X-API-Key": KEYS[scope] };
  return basic(`user-${scope}`, PASSWORDS[scope]);
}

describe("route policy (pure)", () => {
  it("classifies every route Ollama registers", () => {
    const unclassified = routes.filter((r) => classifyRoute(r.method, r.path) === undefined);
    expect(unclassified).toEqual([]);
  });
  it("refuses account and cloud routes for every scope", () => {
    for (const p of ["/api/me", "/api/signout", "/api/experimental/web_search", "/api/experimental/web_fetch"]) {
      expect(SCOPES.some((s) => scopeAllows(s, classifyRoute("POST", p)!))).toBe(false);
    }
  });
});

describe.runIf(nginxTestsEnabled)("authentication through the real nginx", () => {
  let fake: FakeOllama;
  let gateway: RunningGateway;

  beforeAll(async () => {
    fake = await startFakeOllama({ chunks: 2, chunkIntervalMs: 1 });
    gateway = await startGateway({
      upstreamUrl: fake.url,
      spec: {
        apiKeys: SCOPES.map((scope) => ({ name: `key-${scope}`, key: KEYS[scope], scope })),
        basicUsers: SCOPES.map((scope) => ({ name: `user-${scope}`, password: PASSWORDS[scope], scope })),
        // The matrix sends hundreds of requests per credential.
        rateLimit: { requestsPerSecond: 10_000, burst: 10_000 },
      },
    });
  });
  afterAll(async () => {
    await gateway?.stop();
    await fake?.close();
  });

  it("enforces the full route x credential type x scope matrix", async () => {
    const failures: string[] = [];
    for (const route of routes) {
      const routeClass = classifyRoute(route.method, route.path)!;
      const target = samplePath(route.path);
      for (const kind of ["bearer", "x-api-key", "basic"] as const) {
        for (const scope of SCOPES) {
          const before = fake.requests.length;
          const response = await request(gateway.url + target, {
            method: route.method,
            headers: { ...credentialHeaders(kind, scope), "Content-Type": "application/json" },
            body: route.method === "POST" ? JSON.stringify({ model: "gemma3:1b", stream: false, prompt: "hi", messages: [], input: "x", name: "x", source: "a", destination: "b" }) : undefined,
          });
          const forwarded = fake.requests.slice(before);
          const allowed = scopeAllows(scope, routeClass);
          const label = `${route.method} ${target} with ${kind}/${scope}`;
          if (allowed) {
            if (forwarded.length !== 1 || forwarded[0].rawPath !== target) failures.push(`${label}: not forwarded exactly once`);
            if (response.status === 401 || response.status === 403) failures.push(`${label}: refused with ${response.status}`);
          } else {
            if (forwarded.length !== 0) failures.push(`${label}: reached the upstream`);
            if (response.status !== 403) failures.push(`${label}: expected 403, got ${response.status}`);
            else if (route.method !== "HEAD" && errorMessage(response) === undefined) failures.push(`${label}: no JSON error body`);
          }
        }
      }
    }
    expect(failures).toEqual([]);
  });

  it("answers missing or wrong credentials with 401, a JSON error and the accepted schemes", async () => {
    const attempts: Record<string, string>[] = [{}, bearer("wrong-key-00000000000000000000000"), { "X-API-Key": "nope-nope-nope-nope-nope-nope" }, basic("user-read", "wrong-password-1"), basic("nobody", "whatever-password")];
    for (const headers of attempts) {
      const before = fake.requests.length;
      const response = await request(`${gateway.url}/api/tags`, { headers });
      expect(response.status).toBe(401);
      expect(response.json()).toEqual({ error: expect.any(String) });
      expect(response.headers.get("www-authenticate")).toMatch(/Bearer realm=".*", Basic realm=/);
      expect(fake.requests.length).toBe(before);
    }
  });

  it("parses the Authorization header strictly", async () => {
    const key = KEYS.read;
    const cases: [string, number][] = [
      [`Bearer ${key}`, 200],
      [`bearer ${key}`, 200],
      [`BEARER ${key}`, 200],
      [`BeArEr ${key}`, 200],
      [`XyzBearer ${key}`, 401],
      [`Bearer${key}`, 401],
      [`Bearer ${key} extra`, 401],
      [`Bearer ${key},${key}`, 401],
      [`Token ${key}`, 401],
      ["Bearer", 401],
      [`Basic ${key}`, 401],
      ["Basic !!!not-base64!!!", 401],
      [`Basic ${Buffer.from("user-read").toString("base64")}`, 401],
      [`Basic ${Buffer.from(`user-read:${PASSWORDS.read}`).toString("base64")}`, 200],
      [`basic ${Buffer.from(`user-read:${PASSWORDS.read}`).toString("base64")}`, 200],
    ];
    for (const [authorization, expected] of cases) {
      const response = await request(`${gateway.url}/api/version`, { headers: { Authorization: authorization } });
      expect.soft(response.status, authorization).toBe(expected);
    }
  });

  it("refuses two credentials in one request", async () => {
    const port = Number(new URL(gateway.url).port);
    const duplicate = await rawRequest(
      port,
      `GET /api/version HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEYS.read}\r\nAuthorization: Bearer wrong\r\nConnection: close\r\n\r\n`,
    );
    expect(duplicate.status).toBe(400);
    const both = await request(`${gateway.url}/api/version`, { headers: { ...bearer(KEYS.read), "X-API-Key": KEYS.admin } });
    expect(both.status).toBe(400);
    expect(errorMessage(both)).toMatch(/not both/);
  });

  it("lets no path trick reach an admin route with an inference key", async () => {
    const tricks = [
      "/api//pull", "/api/./pull", "/api/chat/../pull", "/api/%70ull", "/api%2Fpull", "/api/pull%00",
      "/v1/models/..%2F..%2Fapi%2Fpull", "/v1/models/../../api/pull", "/API/PULL", "/api/pull/", "/api/pull/.",
      "/api/pull;x", "/api/blobs/sha256:1/../../pull", "/./api/pull", "//api/pull", "/api\\pull", "/api/pull%20",
      "/api/delete/..", "/api/chat%2F..%2Fpull",
    ];
    const before = fake.requests.length;
    for (const trick of tricks) {
      const port = Number(new URL(gateway.url).port);
      // A raw request line: fetch would normalise the path before sending it.
      const response = await rawRequest(
        port,
        `POST ${trick} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEYS.inference}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`,
      );
      expect.soft(response.status, trick).toBeGreaterThanOrEqual(400);
      expect.soft(response.status, trick).toBeLessThan(500);
    }
    const reached = fake.requests.slice(before).map((r) => r.rawPath);
    expect(reached).toEqual([]);
  });

  it("forwards exactly the authorised path and query, without credentials, cookies or Origin", async () => {
    const before = fake.requests.length;
    const response = await request(`${gateway.url}/api/chat?trace=1`, {
      method: "POST",
      headers: { ...bearer(KEYS.inference), Cookie: "session=secret-cookie", "Proxy-Authorization": "Basic eDp5" },
      body: JSON.stringify({ model: "gemma3:1b", messages: [{ role: "user", content: "hi" }], stream: false }),
    });
    expect(response.status).toBe(200);
    const [forwarded] = fake.requests.slice(before);
    expect(forwarded.rawPath).toBe("/api/chat?trace=1");
    const names = forwarded.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    for (const stripped of ["authorization", "x-api-key", "cookie", "proxy-authorization", "origin"]) {
      expect(names).not.toContain(stripped);
    }
    const viaApiKey = fake.requests.length;
    await request(`${gateway.url}/api/tags`, { headers: { "X-API-Key": KEYS.read } });
    const forwardedHeaders = fake.requests[viaApiKey].rawHeaders.map((h) => h.toLowerCase());
    expect(forwardedHeaders).not.toContain("x-api-key");
    expect(forwardedHeaders.join(" ")).not.toContain(KEYS.read);
  });

  it("logs the caller by name and never a key, password or Authorization value", async () => {
    await request(`${gateway.url}/api/generate`, {
      method: "POST",
      headers: basic("user-inference", PASSWORDS.inference),
      body: JSON.stringify({ model: "gemma3:1b", prompt: "hi", stream: false }),
    });
    await request(`${gateway.url}/api/tags?key=${KEYS.admin}`, { headers: bearer(KEYS.admin) });
    await new Promise((r) => setTimeout(r, 200));
    const entries = await gateway.settledAccessLog();
    expect(entries.some((e) => e.caller === "user-inference" && e.auth === "basic" && e.model === "gemma3:1b")).toBe(true);
    expect(entries.some((e) => e.caller === "key-admin" && e.scope === "admin" && e.path === "/api/tags")).toBe(true);
    const everything = gateway.accessLogText() + gateway.errorLog();
    for (const secret of [...Object.values(KEYS), ...Object.values(PASSWORDS)]) {
      expect(everything).not.toContain(secret);
      expect(everything).not.toContain(Buffer.from(secret).toString("base64").slice(0, 16));
    }
  });

  it("keeps keys in the bundle only as SHA-256 digests", () => {
    const files: string[] = [];
    const walk = (dir: string) =>
      readdirSync(dir).forEach((name) => {
        const full = path.join(dir, name);
        if (statSync(full).isDirectory()) walk(full);
        else files.push(full);
      });
    walk(gateway.dir);
    const content = files.map((f) => readFileSync(f, "latin1")).join("\n");
    for (const secret of [...Object.values(KEYS), ...Object.values(PASSWORDS)]) expect(content).not.toContain(secret);
  });
});
