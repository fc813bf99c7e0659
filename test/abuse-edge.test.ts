/**
 * Abuse at the edge (issue 13, items 2, 5, 6, 9 and the log part of 10), through the real nginx:
 * connection floods from one address, the health probe, the plain-HTTP port with TLS on, what
 * reaches the error log, and access-log lines that stay valid JSON and keep who did what.
 */
import net from "node:net";
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { workerFileLimit } from "../bundle/render";
import { parseSpec } from "../bundle/spec";
import { makeCertificates } from "../harness/certs";
import { type FakeOllama, FAKE_MODEL, startFakeOllama } from "../harness/fake-ollama";
import { type Answer, rawRequest, send } from "../harness/http";
import { freePort, nginxTestsEnabled, type RunningGateway, startGateway, waitUntil } from "../harness/nginx";

const KEY = "edge-key-0123456789abcdef000000000000";
const QUERY_SECRET = "query-secret-9f3c2a7e5b1d";
const REFERER_SECRET = "referer-token-4e8a1c6f0d2b";
/** Another client address on loopback: its requests must keep being answered during a flood. */
const OTHER_CLIENT = "127.0.0.2";

/** Opens `count` connections from 127.0.0.1, each sending `payload` once connected. */
async function flood(port: number, count: number, payload: string) {
  const sockets: net.Socket[] = [];
  let answered = 0;
  let closedByServer = 0;
  for (let i = 0; i < count; i++) {
    const socket = net.connect({ port, host: "127.0.0.1" });
    socket.on("connect", () => socket.write(payload));
    socket.once("data", () => answered++);
    socket.on("close", () => closedByServer++);
    socket.on("error", () => undefined);
    sockets.push(socket);
    // Batches, so the listen backlog is not the thing under test.
    if (i % 250 === 249) await new Promise((r) => setTimeout(r, 20));
  }
  return {
    sockets,
    answered: () => answered,
    closedByServer: () => closedByServer,
    end: () => sockets.forEach((s) => s.destroy()),
  };
}

/** Five authenticated requests from another address, 200 ms apart: statuses and slowest time. */
async function probeOtherClient(url: string) {
  const answers: Answer[] = [];
  for (let i = 0; i < 5; i++) {
    answers.push(await send(`${url}/api/version`, { headers: { Authorization: `Bearer ${KEY}` }, localAddress: OTHER_CLIENT, timeoutMs: 3000 }));
    await new Promise((r) => setTimeout(r, 200));
  }
  return { statuses: answers.map((a) => a.status), slowestMs: Math.max(...answers.map((a) => a.ms)) };
}

/** The access log as bytes, decoded strictly: throws on invalid UTF-8; every line must be JSON. */
function strictAccessLog(gateway: RunningGateway) {
  const bytes = readFileSync(path.join(gateway.dir, "logs", "access.log"));
  const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  return text.split("\n").filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe.runIf(nginxTestsEnabled)("abuse at the edge, through the real nginx", () => {
  let fake: FakeOllama;
  let gateway: RunningGateway;

  beforeAll(async () => {
    fake = await startFakeOllama();
    gateway = await startGateway({
      upstreamUrl: fake.url,
      // The limit a container gets by default: nginx must raise its own from the rendered setting.
      openFileLimit: 1024,
      spec: {
        apiKeys: [{ name: "edge", key: KEY, scope: "inference" }],
        rateLimit: { requestsPerSecond: 10_000, burst: 10_000 },
        connectionsPerAddress: 2,
        maxBodySize: "1k",
        timeouts: { clientHeaderSeconds: 3, upstreamReadSeconds: 2 },
      },
    });
  });
  afterAll(async () => {
    await gateway?.stop();
    await fake?.close();
  });

  describe("connection exhaustion (item 2)", () => {
    it("renders the open-file limit from worker_connections", () => {
      const conf = readFileSync(path.join(gateway.dir, "conf", "nginx.conf"), "utf8");
      expect(conf).toContain("worker_connections 4096;");
      expect(conf).toContain(`worker_rlimit_nofile ${workerFileLimit({ workerConnections: 4096 })};`);
      expect(workerFileLimit({ workerConnections: 4096 })).toBe(8320);
      expect(parseSpec({ workerConnections: 100, connectionsPerAddress: 0, redirectHost: "a b" })).toEqual({
        ok: false,
        errors: [
          "`redirectHost` is \"a b\"; use a DNS name or address such as api.example.com",
          "`workerConnections` is 100; use a whole number from 256 to 65536",
          "`connectionsPerAddress` is 0; use a whole number from 1 to 65536",
        ],
      });
    });

    it("keeps answering another address during an idle keep-alive flood of 2,500 connections", async () => {
      const port = Number(new URL(gateway.url).port);
      const idle = await flood(port, 2500, "GET /api/version HTTP/1.1\r\nHost: x\r\n\r\n");
      try {
        const deadline = Date.now() + 8000;
        while (idle.answered() < 2500 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
        const probe = await probeOtherClient(gateway.url);
        console.info(`[measure] idle keep-alive flood: ${idle.answered()}/2500 answered and held open; other address: ${probe.statuses.join(",")}, slowest ${probe.slowestMs} ms`);
        expect(idle.answered()).toBe(2500);
        expect(probe.statuses).toEqual([200, 200, 200, 200, 200]);
        expect(probe.slowestMs).toBeLessThan(1000);
      } finally {
        idle.end();
      }
      expect(gateway.errorLog()).not.toContain("Too many open files");
    }, 30_000);

    it("keeps answering another address during a slow-header flood, and drops the slow ones after client_header_timeout", async () => {
      const port = Number(new URL(gateway.url).port);
      const started = Date.now();
      const slow = await flood(port, 2500, "GET /api/version HTTP/1.1\r\nHost: x\r\nX-Slow: ");
      try {
        const probe = await probeOtherClient(gateway.url);
        console.info(`[measure] slow-header flood: other address ${probe.statuses.join(",")}, slowest ${probe.slowestMs} ms`);
        expect(probe.statuses).toEqual([200, 200, 200, 200, 200]);
        expect(probe.slowestMs).toBeLessThan(1000);
        // timeouts.clientHeaderSeconds is 3: nginx closes every one of them, with no answer.
        const deadline = started + 9000;
        while (slow.closedByServer() < 2500 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
        console.info(`[measure] slow-header flood: ${slow.closedByServer()}/2500 closed by nginx after ${Date.now() - started} ms`);
        expect(slow.closedByServer()).toBe(2500);
        expect(slow.answered()).toBe(0);
      } finally {
        slow.end();
      }
      expect(gateway.errorLog()).not.toContain("Too many open files");
    }, 30_000);

    it("limits requests in progress per client address with a JSON 429, other addresses unaffected", async () => {
      fake.setOptions({ firstByteDelayMs: 1500 });
      try {
        const chat = (localAddress?: string) =>
          send(`${gateway.url}/api/chat`, {
            method: "POST",
            headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
            body: JSON.stringify({ model: FAKE_MODEL, messages: [{ role: "user", content: "hi" }], stream: false }),
            localAddress,
          });
        const held = [chat(), chat()];
        await new Promise((r) => setTimeout(r, 300));
        const over = await send(`${gateway.url}/api/version`, { headers: { Authorization: `Bearer ${KEY}` } });
        expect(over.status).toBe(429);
        expect(JSON.parse(over.body).error).toMatch(/too many requests in progress/);
        expect(over.headers["retry-after"]).toBe("1");
        const other = await send(`${gateway.url}/api/version`, { headers: { Authorization: `Bearer ${KEY}` }, localAddress: OTHER_CLIENT });
        expect(other.status).toBe(200);
        expect((await Promise.all(held)).map((a) => a.status)).toEqual([200, 200]);
        // nginx frees a request's slot in its log phase, just after the client has the answer.
        await waitUntil(async () => (await send(`${gateway.url}/api/version`, { headers: { Authorization: `Bearer ${KEY}` } })).status === 200, 1000, 20);
      } finally {
        fake.setOptions({ firstByteDelayMs: 0 });
      }
    }, 15_000);
  });

  it("sends nothing of the client's to Ollama from /healthz, so an Origin cannot make it fail (item 5)", async () => {
    const before = fake.requests.length;
    const health = await send(`${gateway.url}/healthz`, {
      headers: {
        Authorization: `Bearer ${KEY}`,
        "X-API-Key": KEY,
        Cookie: "session=health-cookie",
        Origin: "https://evil.example",
        "X-Custom": "custom-value",
        "User-Agent": "probe-agent",
      },
    });
    expect(health.status).toBe(200);
    const probes = fake.requests.slice(before);
    expect(probes.map((r) => r.rawPath)).toEqual(["/api/version"]);
    const names = probes[0].rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    expect(names).toEqual(["host"]);
    expect(probes[0].rawHeaders.join(" ")).not.toContain(KEY);
  });

  describe("the error log keeps no query string or Referer secrets (item 9)", () => {
    it("refuses credentials in the query string before the 413 check, and drops the Referer", async () => {
      const big = "x".repeat(4096);
      const headers = { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json", Referer: `https://app.example/page?token=${REFERER_SECRET}` };
      const withKey = await send(`${gateway.url}/api/chat?api_key=${QUERY_SECRET}`, { method: "POST", headers, body: big });
      expect(withKey.status).toBe(400);
      expect(JSON.parse(withKey.body).error).toMatch(/never in the URL/);
      for (const name of ["key", "access_token", "Api-Key", "password", "auth"]) {
        expect((await send(`${gateway.url}/api/tags?${name}=${QUERY_SECRET}`, { headers })).status, name).toBe(400);
      }
      // The 413, without a credential in the URL: logged, but without the Referer.
      const tooLarge = await send(`${gateway.url}/api/chat?trace=1`, { method: "POST", headers, body: big });
      expect(tooLarge.status).toBe(413);
      expect(JSON.parse(tooLarge.body).error).toBe("request body too large");
      await gateway.settledAccessLog();
      const errorLog = gateway.errorLog();
      expect(errorLog).toContain("client intended to send too large body");
      expect(errorLog).not.toContain(QUERY_SECRET);
      expect(errorLog).not.toContain(REFERER_SECRET);
      expect(errorLog).not.toContain("referrer:");
      expect(gateway.accessLogText()).not.toContain(QUERY_SECRET);
      // The 413 line keeps its path although nginx refused it before any location ran.
      expect(gateway.accessLog().some((e) => e.status === 413 && e.path === "/api/chat")).toBe(true);
    });
  });

  describe("access-log lines (item 10, edge part)", () => {
    it("stay valid UTF-8 JSON for a refused path with raw bytes C0 AF", async () => {
      const refused = await rawRequest(
        Number(new URL(gateway.url).port),
        Buffer.concat([Buffer.from("GET /api/tags/"), Buffer.from([0xc0, 0xaf]), Buffer.from(` HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nConnection: close\r\n\r\n`)]),
      );
      expect(refused.status).toBe(400);
      await gateway.settledAccessLog();
      const entries = strictAccessLog(gateway);
      expect(entries.some((e) => e.path === "(refused) /api/tags/%C0%AF")).toBe(true);
    });

    it("keep caller, auth and path on a 504 after a successful authentication", async () => {
      fake.setOptions({ firstByteDelayMs: 3000 });
      try {
        const timedOut = await send(`${gateway.url}/api/generate`, {
          method: "POST",
          headers: { "X-API-Key": KEY },
          body: JSON.stringify({ model: FAKE_MODEL, prompt: "hi", stream: false }),
        });
        expect(timedOut.status).toBe(504);
      } finally {
        fake.setOptions({ firstByteDelayMs: 0 });
      }
      const entries = await gateway.settledAccessLog();
      expect(entries.filter((e) => e.status === 504).map(({ caller, auth, path, model }) => ({ caller, auth, path, model }))).toEqual([
        { caller: "edge", auth: "x-api-key", path: "/api/generate", model: FAKE_MODEL },
      ]);
    });
  });
});

describe.runIf(nginxTestsEnabled)("Ollama down: error-log and access-log lines of a 502", () => {
  it("log no Referer and keep caller, auth and path", async () => {
    const closedPort = await freePort();
    const gateway = await startGateway({ upstreamUrl: `http://127.0.0.1:${closedPort}`, spec: { apiKeys: [{ name: "edge", key: KEY, scope: "read" }] } });
    try {
      const down = await send(`${gateway.url}/api/tags`, { headers: { Authorization: `Bearer ${KEY}`, Referer: `https://app.example/?token=${REFERER_SECRET}` } });
      expect(down.status).toBe(502);
      const entries = await gateway.settledAccessLog();
      expect(entries.map(({ caller, auth, path, status }) => ({ caller, auth, path, status }))).toEqual([
        { caller: "edge", auth: "bearer", path: "/api/tags", status: 502 },
      ]);
      expect(gateway.errorLog()).toContain("connect() failed");
      expect(gateway.errorLog()).not.toContain(REFERER_SECRET);
    } finally {
      await gateway.stop();
    }
  });
});

describe.runIf(nginxTestsEnabled)("the plain-HTTP port when TLS is on (item 6)", () => {
  let fake: FakeOllama;
  let gateway: RunningGateway;
  let httpsPort: number;

  beforeAll(async () => {
    const certs = makeCertificates();
    fake = await startFakeOllama();
    gateway = await startGateway({
      upstreamUrl: fake.url,
      spec: {
        apiKeys: [{ name: "edge", key: KEY, scope: "read" }],
        basicUsers: [{ name: "edge-user", password: "edge-password-0000", scope: "read" }],
        tls: { certPem: certs.certPem, keyPem: certs.keyPem },
        serverName: "gateway.test",
      },
    });
    httpsPort = Number(new URL(gateway.httpsUrl!).port);
  });
  afterAll(async () => {
    await gateway?.stop();
    await fake?.close();
  });

  it("refuses every kind of credential with a JSON 403 naming the HTTPS URL: not forwarded, not redirected", async () => {
    const before = fake.requests.length;
    const cases: [string, string, Record<string, string>][] = [
      ["Bearer", "/api/tags", { Authorization: `Bearer ${KEY}` }],
      ["X-API-Key", "/api/tags", { "X-API-Key": KEY }],
      ["Basic", "/api/tags", { Authorization: `Basic ${Buffer.from("edge-user:edge-password-0000").toString("base64")}` }],
      ["query", `/api/tags?api_key=${KEY}`, {}],
      ["Cookie", "/api/tags", { Cookie: "_oauth2_proxy=abc" }],
      ["health with a key", "/healthz", { Authorization: `Bearer ${KEY}` }],
    ];
    for (const [name, target, headers] of cases) {
      const answer = await send(`${gateway.url}${target}`, { headers });
      expect(answer.status, name).toBe(403);
      expect(answer.headers["content-type"], name).toMatch(/^application\/json/);
      expect(answer.headers.location, name).toBeUndefined();
      expect(JSON.parse(answer.body).error, name).toContain(`Use https://gateway.test:${httpsPort} `);
    }
    expect(fake.requests.length).toBe(before);
  });

  it("redirects other requests with a JSON 308 to the configured host only, never the client's Host", async () => {
    const answer = await send(`${gateway.url}/api/tags?x=1`, { headers: { Host: "evil.example" } });
    expect(answer.status).toBe(308);
    expect(answer.headers.location).toBe(`https://gateway.test:${httpsPort}/api/tags?x=1`);
    expect(answer.headers["content-type"]).toMatch(/^application\/json/);
    expect(JSON.parse(answer.body).error).toBe(`use https://gateway.test:${httpsPort}`);
    const entries = await gateway.settledAccessLog();
    expect(entries.some((e) => e.status === 308 && e.path === "/api/tags")).toBe(true);
    expect((await send(`${gateway.url}/healthz`)).status).toBe(200);
  });

  it("answers plain HTTP sent to the HTTPS port with JSON, not HTML", async () => {
    const answer = await rawRequest(httpsPort, "GET /api/tags HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    expect(answer.status).toBe(400);
    expect(answer.text).toMatch(/content-type: application\/json/i);
    expect(answer.text).toContain('{"error":"plain HTTP was sent to the HTTPS port; use https://"}');
    expect(answer.text).not.toMatch(/<html>/i);
  });
});
