/**
 * Hostile battery 2: protocol abuse over raw sockets against the real nginx running the rendered
 * bundle: request smuggling, duplicate credentials, size limits, control bytes, absolute-form
 * targets, pipelining, slow headers and bodies. docs/security.md sums up.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FAKE_MODEL } from "../harness/fake-ollama";
import { rawRequest } from "../harness/http";
import { finalStatusOf, statusesOf, statusOf, trickle } from "../harness/hostile";
import { nginxTestsEnabled, type RunningGateway, startGateway } from "../harness/nginx";
import { basicValue, KEYS, portOf, useHostileGateway } from "../harness/hostile-gateway";

describe.runIf(nginxTestsEnabled)("hostile: 2. protocol abuse over raw sockets, through the real nginx", () => {
  const battery = useHostileGateway();

  const key = KEYS.read;
  const auth = `Authorization: Bearer ${key}\r\n`;
  // A complete second request hidden where a confused parser would see it.
  const SMUGGLED = `POST /api/pull HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEYS.admin}\r\nContent-Length: 2\r\n\r\n{}`;
  const SMUGGLED_GET = "GET /api/ps HTTP/1.1\r\nHost: x\r\n\r\n";

  /** Sends `payload`; the answer must be `expected` (0 = closed without a response) and nothing may reach the upstream. */
  async function refused(payload: string | Buffer, expected: number[], waitMs = 1000) {
    const before = battery.fake.requests.length;
    const raw = await rawRequest(battery.port, payload, waitMs);
    const response = { ...raw, status: finalStatusOf(raw.text), statuses: statusesOf(raw.text) };
    await new Promise((r) => setTimeout(r, 50));
    const reached = battery.fake.requests.slice(before).map((r) => `${r.method} ${r.rawPath}`);
    return { response, reached, ok: expected.includes(response.status) && reached.length === 0 };
  }

  it.each([
    ["CL + TE", `POST /api/show HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED_GET}`],
    ["TE + CL", `POST /api/show HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\nContent-Length: 60\r\n\r\n0\r\n\r\n${SMUGGLED_GET}`],
    ["two Content-Lengths", `POST /api/show HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: 2\r\nContent-Length: ${2 + SMUGGLED.length}\r\n\r\n{}${SMUGGLED}`],
    ["two equal Content-Lengths", `POST /api/show HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}`],
    ["Content-Length list", `POST /api/show HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: 2, 2\r\n\r\n{}`],
    ["negative Content-Length", `POST /api/show HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: -1\r\n\r\n{}`],
    ["Content-Length with sign", `POST /api/show HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: +2\r\n\r\n{}`],
    ["huge Content-Length", `POST /api/show HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: 99999999999999999999999\r\n\r\n{}`],
    ["Transfer-Encoding: chunked, identity", `POST /api/show HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked, identity\r\n\r\n2\r\n{}\r\n0\r\n\r\n`],
    ["Transfer-Encoding: identity, chunked", `POST /api/show HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: identity, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n`],
    ["two Transfer-Encodings", `POST /api/show HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n2\r\n{}\r\n0\r\n\r\n`],
    ["obfuscated TE: space before colon", `POST /api/show HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n${SMUGGLED_GET}`],
    ["obfuscated TE: xchunked", `POST /api/show HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n`],
    ["obfuscated TE: tab", `POST /api/show HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n${SMUGGLED_GET}`],
    ["obfuscated TE: folded", `POST /api/show HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n`],
    ["obfuscated TE: quoted", `POST /api/show HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: "chunked"\r\n\r\n0\r\n\r\n`],
    ["obfuscated TE: vertical tab", `POST /api/show HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n`],
    ["chunked on HTTP/1.0", `POST /api/show HTTP/1.0\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n`],
    ["bad chunk size", `POST /api/show HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`],
    ["chunk size overflow", `POST /api/show HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n{}\r\n0\r\n\r\n`],
  ])("smuggling: %s is refused (400/413/501→400) and nothing reaches Ollama", async (_name, payload) => {
    const { response, reached } = await refused(payload, [400, 413]);
    expect(reached).toEqual([]);
    expect([0, 400, 413]).toContain(response.status);
    expect(response.statuses.every((s) => s < 500)).toBe(true);
  });

  it("a well-formed chunked body is forwarded de-chunked, with a Content-Length and no Transfer-Encoding", async () => {
    const before = battery.fake.requests.length;
    const body = JSON.stringify({ model: FAKE_MODEL });
    const chunked = `${(10).toString(16)}\r\n${body.slice(0, 10)}\r\n${(body.length - 10).toString(16)}\r\n${body.slice(10)}\r\n0\r\n\r\n`;
    const response = await rawRequest(battery.port, `POST /api/show HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunked}`);
    expect(response.status).toBe(200);
    const forwarded = battery.fake.requests.slice(before);
    expect(forwarded.map((r) => r.rawPath)).toEqual(["/api/show"]);
    expect(forwarded[0].headers["transfer-encoding"]).toBeUndefined();
    expect(forwarded[0].headers["content-length"]).toBe(String(body.length));
    expect(forwarded[0].body).toBe(body);
  });

  it("duplicate credentials get 400 and never reach Ollama", async () => {
    const cases = [
      `Authorization: Bearer ${key}\r\nAuthorization: Bearer ${key}\r\n`,
      `Authorization: Bearer ${key}\r\nAuthorization: Bearer wrong-key-000000000000000000000\r\n`,
      `Authorization: Bearer wrong-key-000000000000000000000\r\nAuthorization: Bearer ${KEYS.admin}\r\n`,
      `Authorization: ${basicValue("admin")}\r\nauthorization: Bearer ${key}\r\n`,
      `X-API-Key: ${key}\r\nX-API-Key: ${key}\r\n`,
      `X-API-Key: wrong\r\nx-api-key: ${KEYS.admin}\r\n`,
      `Authorization: Bearer ${key}\r\nX-API-Key: ${key}\r\n`,
    ];
    for (const headers of cases) {
      const { response, reached } = await refused(`GET /api/tags HTTP/1.1\r\nHost: x\r\n${headers}Connection: close\r\n\r\n`, [400]);
      expect.soft(response.status, headers).toBe(400);
      expect.soft(reached, headers).toEqual([]);
    }
  });

  it("size limits: long header, long URI, many headers, long credential", async () => {
    const cases: [string, string, number[]][] = [
      ["20 KiB header", `GET /api/tags HTTP/1.1\r\nHost: x\r\n${auth}X-Big: ${"a".repeat(20_000)}\r\nConnection: close\r\n\r\n`, [400]],
      ["header buffers exhausted", `GET /api/tags HTTP/1.1\r\nHost: x\r\n${auth}${Array.from({ length: 6 }, (_, i) => `X-Big${i}: ${"a".repeat(15_000)}\r\n`).join("")}Connection: close\r\n\r\n`, [400]],
      ["20 KiB URI", `GET /api/tags?${"a".repeat(20_000)} HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`, [414]],
      ["20 KiB path", `GET /api/${"a".repeat(20_000)} HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`, [414]],
      ["150 headers", `GET /api/tags HTTP/1.1\r\nHost: x\r\n${auth}${Array.from({ length: 150 }, (_, i) => `X-H${i}: v\r\n`).join("")}Connection: close\r\n\r\n`, [400]],
      ["150 headers, credential last", `GET /api/tags HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 150 }, (_, i) => `X-H${i}: v\r\n`).join("")}${auth}Connection: close\r\n\r\n`, [400]],
      ["10 KiB Bearer token", `GET /api/tags HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${"k".repeat(10_000)}\r\nConnection: close\r\n\r\n`, [401]],
      ["10 KiB Basic value", `GET /api/tags HTTP/1.1\r\nHost: x\r\nAuthorization: Basic ${"QUFB".repeat(2500)}\r\nConnection: close\r\n\r\n`, [401]],
      ["10 KiB X-API-Key", `GET /api/tags HTTP/1.1\r\nHost: x\r\nX-API-Key: ${"k".repeat(10_000)}\r\nConnection: close\r\n\r\n`, [401]],
    ];
    for (const [name, payload, expected] of cases) {
      const { response, reached } = await refused(payload, expected);
      expect.soft(response.status, name).toBeOneOf(expected);
      expect.soft(reached, name).toEqual([]);
      if (response.status !== 0) expect.soft(response.text, name).toMatch(/\{"error":/);
    }
  });

  it("NUL and control bytes in header values and the request line get 400", async () => {
    const cases: [string, string][] = [
      ["NUL in a header value", `GET /api/tags HTTP/1.1\r\nHost: x\r\n${auth}X-Foo: a\0b\r\nConnection: close\r\n\r\n`],
      ["NUL in the credential", `GET /api/tags HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\0x\r\nConnection: close\r\n\r\n`],
      ["SOH and DEL in a header value", `GET /api/tags HTTP/1.1\r\nHost: x\r\n${auth}X-Foo: a\x01\x7fb\r\nConnection: close\r\n\r\n`],
      ["ESC in a header value", `GET /api/tags HTTP/1.1\r\nHost: x\r\n${auth}User-Agent: \x1b[31mred\r\nConnection: close\r\n\r\n`],
      ["bare CR in a header value", `GET /api/tags HTTP/1.1\r\nHost: x\r\n${auth}X-Foo: a\rb\r\nConnection: close\r\n\r\n`],
      ["control byte in a header name", `GET /api/tags HTTP/1.1\r\nHost: x\r\n${auth}X-F\x01oo: a\r\nConnection: close\r\n\r\n`],
      ["obs-fold", `GET /api/tags HTTP/1.1\r\nHost: x\r\n${auth}X-Foo: a\r\n b\r\nConnection: close\r\n\r\n`],
      ["NUL in the path", `GET /api/tags\0 HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`],
      ["SOH in the path", `GET /api/t\x01ags HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`],
      ["DEL in the path", `GET /api/tags\x7f HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`],
      ["tab in the request line", `GET\t/api/tags HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`],
      ["NUL in the method", `G\0ET /api/tags HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`],
      ["bad version", `GET /api/tags HTTP/9.9\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`],
      ["HTTP/2.0 on an HTTP/1 connection", `GET /api/tags HTTP/2.0\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`],
      ["HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"],
      ["lowercase method", `get /api/tags HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`],
      ["CONNECT", `CONNECT 127.0.0.1:80 HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`],
      ["OPTIONS *", `OPTIONS * HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`],
      ["two Hosts", `GET /api/tags HTTP/1.1\r\nHost: x\r\nHost: y\r\n${auth}Connection: close\r\n\r\n`],
      ["HTTP/1.1 without Host", `GET /api/tags HTTP/1.1\r\n${auth}Connection: close\r\n\r\n`],
    ];
    for (const [name, payload] of cases) {
      const { response, reached } = await refused(payload, [400]);
      expect.soft(response.status, name).toBe(400);
      expect.soft(reached, name).toEqual([]);
    }
  });

  it("HTTP/1.0 without Host is served (Host is optional in 1.0) and Ollama gets its own Host", async () => {
    const before = battery.fake.requests.length;
    const response = await rawRequest(battery.port, `GET /api/tags HTTP/1.0\r\n${auth}\r\n`);
    expect(response.status).toBe(200);
    const forwarded = battery.fake.requests.slice(before);
    expect(forwarded.map((r) => r.rawPath)).toEqual(["/api/tags"]);
    expect(forwarded[0].headers.host).toBe(new URL(battery.fake.url).host);
    const unauthorised = await refused("GET /api/tags HTTP/1.0\r\n\r\n", [401]);
    expect(unauthorised.ok).toBe(true);
  });

  it("absolute-form targets get 400, whatever the credential, and never reach Ollama", async () => {
    const cases = [
      `GET http://127.0.0.1/api/tags HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`,
      `GET https://127.0.0.1:1/api/tags?x=1 HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`,
      `GET HTTP://EVIL/api/experimental/model-recommendations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEYS.admin}\r\nConnection: close\r\n\r\n`,
      `POST http://127.0.0.1/api/pull HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEYS.admin}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`,
      `POST http://x/api/chat/../pull HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEYS.inference}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`,
      `GET http://user:pw@127.0.0.1/api/tags HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`,
      `GET http://127.0.0.1 HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`,
      `GET /api/tags HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`.replace("GET /", "GET  http://127.0.0.1/"),
    ];
    for (const payload of cases) {
      const { response, reached } = await refused(payload, [400]);
      expect.soft(response.status, payload.split("\r\n")[0]).toBe(400);
      expect.soft(reached, payload.split("\r\n")[0]).toEqual([]);
    }
  });

  it("pipelined requests on one connection are judged one by one: the unauthorised ones get 401/403 and never reach Ollama", async () => {
    const req = (method: string, target: string, headers: string, body?: string) =>
      `${method} ${target} HTTP/1.1\r\nHost: x\r\n${headers}${body !== undefined ? `Content-Length: ${Buffer.byteLength(body)}\r\n` : ""}\r\n${body ?? ""}`;
    const payload = [
      req("GET", "/api/tags", auth),
      req("GET", "/api/ps", ""),
      req("GET", "/api/tags", "Authorization: Bearer wrong-key-00000000000000000000\r\n"),
      req("POST", "/api/pull", auth, "{}"),
      // A body that looks like an authorised request must stay a body.
      req("POST", "/api/show", "X-API-Key: nope-nope-nope-nope-nope-nope\r\n", SMUGGLED),
      req("POST", "/api/show", auth, `{"model":"${FAKE_MODEL}"}`),
      req("GET", "/api/experimental/model-recommendations", `Authorization: ${basicValue("inference")}\r\n`),
      req("GET", "/api/version", `Authorization: ${basicValue("read")}\r\n`),
      req("GET", "/api/ps", "Authorization: Basic d3Jvbmc6d3Jvbmc=\r\n"),
      req("GET", "/api/version", `${auth}Connection: close\r\n`),
    ].join("");
    const before = battery.fake.requests.length;
    const response = await rawRequest(battery.port, payload, 5000);
    // The unknown Basic user (9th) costs a bcrypt like a wrong password, so it counts against
    // this address's failed-login limit: 429 once earlier tests used it up, 401 before.
    const statuses = statusesOf(response.text);
    expect(statuses.slice(0, 8)).toEqual([200, 401, 401, 403, 401, 200, 403, 200]);
    expect([401, 429]).toContain(statuses[8]);
    expect(statuses[9]).toBe(200);
    expect(battery.fake.requests.slice(before).map((r) => `${r.method} ${r.rawPath}`)).toEqual([
      "GET /api/tags", "POST /api/show", "GET /api/version", "GET /api/version",
    ]);
  });

  describe("slow clients", () => {
    let slow: RunningGateway;
    beforeAll(async () => {
      slow = await startGateway({
        upstreamUrl: battery.fake.url,
        spec: { apiKeys: [{ name: "k", key, scope: "read" }], timeouts: { clientHeaderSeconds: 1, clientBodySeconds: 1 } },
      });
    });
    afterAll(() => slow?.stop());

    it("slow headers: a trickled header (one byte every 100 ms) is cut off after clientHeaderSeconds", async () => {
      const before = battery.fake.requests.length;
      const head = `GET /api/tags HTTP/1.1\r\nHost: x\r\n${auth}X-Slow: ${"a".repeat(40)}\r\n\r\n`;
      const result = await trickle(portOf(slow), [...head], 100, 5000);
      expect(result.closedByServer).toBe(true);
      expect([0, 408]).toContain(statusOf(result.text));
      expect(result.ms).toBeLessThan(2500);
      expect(result.sent).toBeLessThan(head.length);
      expect(battery.fake.requests.length).toBe(before);
    });

    it("slow body: a stalled body is cut off after clientBodySeconds and nothing reaches Ollama", async () => {
      const before = battery.fake.requests.length;
      for (const payload of [
        `POST /api/show HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: 100\r\n\r\n{"model":`,
        `POST /api/show HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\n\r\n5\r\n{"mod`,
      ]) {
        const started = Date.now();
        const response = await rawRequest(portOf(slow), payload, 5000);
        expect([0, 408]).toContain(response.status);
        expect(Date.now() - started).toBeLessThan(2500);
      }
      // A trickled body (each byte inside the timeout) is a slow but legitimate client.
      const body = `{"model":"${FAKE_MODEL}"}`;
      const trickled = await trickle(portOf(slow), [`POST /api/show HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: ${body.length}\r\nConnection: close\r\n\r\n`, ...body.match(/.{1,5}/g)!], 300, 8000);
      expect(statusOf(trickled.text)).toBe(200);
      expect(battery.fake.requests.slice(before).map((r) => r.body)).toEqual([body]);
    });

    it("a stalled body without a valid credential gets 401 at once, before any body is read", async () => {
      const before = battery.fake.requests.length;
      const started = Date.now();
      const response = await rawRequest(portOf(slow), `POST /api/show HTTP/1.1\r\nHost: x\r\nX-API-Key: wrong-key-0000000000000000000\r\nContent-Length: 100000\r\n\r\n{`, 800);
      expect(response.status).toBe(401);
      expect(Date.now() - started).toBeLessThan(1000);
      expect(battery.fake.requests.length).toBe(before);
    });
  });
});
