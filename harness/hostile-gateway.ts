/**
 * The gateway the hostile batteries attack (test/hostile-*.test.ts): the real nginx with the
 * rendered bundle in front of the stand-in Ollama, a key and a Basic user per scope, rate limits
 * out of the way. Each battery file starts its own, so the batteries run independently.
 */
import { afterAll, beforeAll, expect } from "vitest";
import { SCOPES, type Scope } from "../bundle/spec";
import { FAKE_MODEL, type FakeOllama, startFakeOllama } from "./fake-ollama";
import type { Credentials } from "./hostile";
import { request } from "./http";
import { type RunningGateway, startGateway } from "./nginx";

// Test-only credentials, made up for the batteries.
export const KEYS: Record<Scope, string> = {
  read: "hostile-read-key-0000000000000000000",
  inference: "hostile-inference-key-0000000000000",
  admin: "hostile-admin-key-000000000000000000",
};
export const PASSWORDS: Record<Scope, string> = {
  read: "hostile-reader-pw-1",
  inference: "hostile-inference-pw-1",
  admin: "hostile-admin-pw-0001",
};
export const CREDS: Credentials = {
  keys: KEYS,
  users: Object.fromEntries(SCOPES.map((scope) => [`user-${scope}`, { password: PASSWORDS[scope], scope }])),
};
export const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
export const basicValue = (scope: Scope) => `Basic ${b64(`user-${scope}:${PASSWORDS[scope]}`)}`;
export const JSON_BODY = JSON.stringify({ model: FAKE_MODEL, prompt: "hi", stream: false, messages: [], input: "x", name: "x", source: "a", destination: "b" });

export const portOf = (gateway: RunningGateway) => Number(new URL(gateway.url).port);

export interface HostileGateway {
  fake: FakeOllama;
  gateway: RunningGateway;
  port: number;
}

/**
 * Registers the battery's gateway in the calling `describe`: started before its tests, and after
 * them checked for crashed workers or internal errors, then stopped. Fields are set by beforeAll.
 */
export function useHostileGateway(): HostileGateway {
  const context = {} as HostileGateway;
  beforeAll(async () => {
    context.fake = await startFakeOllama({ chunks: 2, chunkIntervalMs: 1 });
    context.gateway = await startGateway({
      upstreamUrl: context.fake.url,
      spec: {
        apiKeys: SCOPES.map((scope) => ({ name: `key-${scope}`, key: KEYS[scope], scope })),
        basicUsers: SCOPES.map((scope) => ({ name: `user-${scope}`, password: PASSWORDS[scope], scope })),
        rateLimit: { requestsPerSecond: 100_000, burst: 100_000 },
        // The load battery runs 100 concurrent streams from one address (default limit 64).
        connectionsPerAddress: 1000,
        // Thousands of wrong keys and tokens from one address: each must be refused with the
        // status its case names, not with the per-address limit's 429 (test/abuse-auth.test.ts).
        failedAuth: { token: 100_000 },
      },
    });
    context.port = portOf(context.gateway);
    // Verify each Basic user once, so wrong passwords (429 after 20 failures per address and
    // minute, by design) cannot stand in the way of a correct one.
    for (const scope of SCOPES) {
      const warm = await request(`${context.gateway.url}/api/version`, { headers: { Authorization: basicValue(scope) } });
      expect(warm.status).toBe(200);
    }
  });
  afterAll(async () => {
    if (context.gateway) {
      // No worker may have crashed or hit an internal error during the whole battery.
      expect(context.gateway.errorLog()).not.toMatch(/exited on signal|\[alert\]|\[emerg\]|lua entry thread aborted|runtime error/);
    }
    await context.gateway?.stop();
    await context.fake?.close();
  });
  return context;
}
