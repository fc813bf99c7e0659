/**
 * A burst of concurrent wrong Basic passwords from one loopback address, and what other clients
 * see meanwhile (issue 13, item 1): used by test/abuse-auth.test.ts (counts, generous bounds) and
 * bench/abuse-burst.ts (the measurement).
 */
import { randomBytes } from "node:crypto";
import { type Answer, send } from "./http";

export const basicHeader = (user: string, password: string) => ({
  Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`,
});

export interface BurstOptions {
  /** Base URL of the gateway. */
  url: string;
  /** The address the burst comes from, e.g. 127.0.0.1. */
  attacker: string;
  /** The user the wrong passwords are for (a real one, so each costs a bcrypt). */
  victim: string;
  requests: number;
  /** Another address: a first login of `login` and API-key requests from there during the burst. */
  other: string;
  login: { user: string; password: string };
  apiKey: string;
}

export interface BurstResult {
  counts: { "401": number; "429": number; "5xx": number; other: number };
  /** 429 answers without a Retry-After header. */
  withoutRetryAfter: number;
  burstMs: number;
  /** The other address's first Basic login (never verified before). */
  login: { status: number; ms: number };
  /** API-key requests from the other address, one after another while the burst lasts. */
  apiKeyMs: number[];
  apiKeyStatuses: number[];
}

/** Sends `requests` distinct wrong passwords at once, then measures the other address. */
export async function basicBurst(o: BurstOptions): Promise<BurstResult> {
  const started = performance.now();
  let done = false;
  const burst = Promise.all(
    Array.from({ length: o.requests }, () =>
      send(`${o.url}/api/version`, { headers: basicHeader(o.victim, `wrong-${randomBytes(9).toString("hex")}`), localAddress: o.attacker, timeoutMs: 60_000 }),
    ),
  ).then((answers) => {
    done = true;
    return answers;
  });
  // Let the burst reach the workers first.
  await new Promise((r) => setTimeout(r, 30));
  const apiKeys: Answer[] = [];
  const keyLoop = (async () => {
    do {
      apiKeys.push(await send(`${o.url}/api/version`, { headers: { Authorization: `Bearer ${o.apiKey}` }, localAddress: o.other, timeoutMs: 60_000 }));
      await new Promise((r) => setTimeout(r, 20));
    } while (!done);
  })();
  const login = await send(`${o.url}/api/version`, { headers: basicHeader(o.login.user, o.login.password), localAddress: o.other, timeoutMs: 60_000 });
  const answers = await burst;
  const burstMs = Math.round(performance.now() - started);
  await keyLoop;
  const count = (test: (s: number) => boolean) => answers.filter((a) => test(a.status)).length;
  return {
    counts: {
      "401": count((s) => s === 401),
      "429": count((s) => s === 429),
      "5xx": count((s) => s >= 500),
      other: count((s) => s !== 401 && s !== 429 && s < 500),
    },
    withoutRetryAfter: answers.filter((a) => a.status === 429 && !a.headers["retry-after"]).length,
    burstMs,
    login: { status: login.status, ms: login.ms },
    apiKeyMs: apiKeys.map((a) => a.ms),
    apiKeyStatuses: apiKeys.map((a) => a.status),
  };
}
