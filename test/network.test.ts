/**
 * Network restriction through the real nginx: `network.allow` / `network.deny` checked before
 * any credential (clients connect from different 127.x addresses), and `listen.address`.
 */
import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { renderNetworkRules } from "../bundle/render";
import { parseSpec } from "../bundle/spec";
import { type FakeOllama, startFakeOllama } from "../harness/fake-ollama";
import { nginxTestsEnabled, type RunningGateway, startGateway } from "../harness/nginx";

const KEY = "test-network-key-00000000000000000000";

/** GET `url` from the local address `from`; status and body, or the connection error code. */
function getFrom(from: string, url: string, headers: Record<string, string> = { Authorization: `Bearer ${KEY}` }) {
  return new Promise<{ status: number; body: string; error?: string }>((resolve) => {
    const req = http.request(url, { localAddress: from, headers, agent: false, timeout: 5000 }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode!, body }));
    });
    req.on("error", (error: NodeJS.ErrnoException) => resolve({ status: 0, body: "", error: error.code }));
    req.end();
  });
}

describe("network spec", () => {
  it("validates CIDR blocks", () => {
    const result = parseSpec({
      network: { allow: ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "::1", "10.1.2.3/8", "300.1.1.1/8", "10.0.0.0/33", "fe80::1/10", "x"] },
    });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors).toEqual([
      "`network.allow[4]` (\"10.1.2.3/8\") has host bits set; use the network address of the block",
      "`network.allow[5]` is \"300.1.1.1/8\"; use an IPv4 or IPv6 address or CIDR block such as 10.0.0.0/8",
      "`network.allow[6]` is \"10.0.0.0/33\"; use a prefix length from 0 to 32",
      "`network.allow[7]` (\"fe80::1/10\") has host bits set; use the network address of the block",
      "`network.allow[8]` is \"x\"; use an IPv4 or IPv6 address or CIDR block such as 10.0.0.0/8",
    ]);
  });
  it("refuses a trusted proxy block that covers every address", () => {
    const result = parseSpec({ network: { trustedProxies: ["0.0.0.0/0", "::/0", "10.0.0.0/8"], clientAddressHeader: "X Forwarded" } });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors).toEqual([
      '`network.trustedProxies[0]` ("0.0.0.0/0") trusts every address, so any client could choose the address it is seen with; list your load balancers\' addresses',
      '`network.trustedProxies[1]` ("::/0") trusts every address, so any client could choose the address it is seen with; list your load balancers\' addresses',
      '`network.clientAddressHeader` is "X Forwarded"; use a header name of letters, digits and hyphens, such as X-Forwarded-For or X-Real-IP',
    ]);
  });

  it("renders deny rules first, then allow rules, then deny all", () => {
    const network = { allow: [], deny: [], trustedProxies: [], clientAddressHeader: "X-Forwarded-For" };
    expect(renderNetworkRules({ ...network, allow: ["10.0.0.0/8"], deny: ["10.9.0.0/16"] }).split("\n").slice(1)).toEqual([
      "# Client addresses (spec `network`), checked before any credential; refused: 403 JSON.",
      "deny 10.9.0.0/16;",
      "allow 10.0.0.0/8;",
      "deny all;",
    ]);
    expect(renderNetworkRules({ ...network, deny: ["10.9.0.0/16"] })).not.toContain("deny all");
    expect(renderNetworkRules(network)).not.toContain("real_ip");
  });
});

describe.runIf(nginxTestsEnabled)("network restriction through the real nginx", () => {
  let fake: FakeOllama;
  const gateways: RunningGateway[] = [];
  const start = async (spec: Parameters<typeof startGateway>[0]["spec"]) => {
    const gateway = await startGateway({ upstreamUrl: fake.url, spec: { apiKeys: [{ name: "net", key: KEY, scope: "read" }], ...spec } });
    gateways.push(gateway);
    return gateway;
  };

  beforeAll(async () => {
    fake = await startFakeOllama({ chunks: 1, chunkIntervalMs: 1 });
  });
  afterAll(async () => {
    await Promise.all(gateways.map((g) => g.stop()));
    await fake?.close();
  });

  it("allow list: only listed addresses get in, before any credential is looked at", async () => {
    const gateway = await start({ network: { allow: ["127.0.0.2/32", "127.0.1.0/24"] } });
    const before = fake.requests.length;
    expect((await getFrom("127.0.0.2", `${gateway.url}/api/tags`)).status).toBe(200);
    expect((await getFrom("127.0.1.77", `${gateway.url}/api/tags`)).status).toBe(200);
    for (const from of ["127.0.0.1", "127.0.0.3", "127.0.2.1"]) {
      const refused = await getFrom(from, `${gateway.url}/api/tags`);
      expect(refused.status, from).toBe(403);
      expect(JSON.parse(refused.body)).toEqual({ error: "forbidden" });
      // No credentials, a wrong one, /healthz and a CORS preflight: all refused the same way.
      expect((await getFrom(from, `${gateway.url}/api/tags`, {})).status).toBe(403);
      expect((await getFrom(from, `${gateway.url}/api/tags`, { Authorization: "Bearer wrong-wrong-wrong-wrong-wrong" })).status).toBe(403);
      expect((await getFrom(from, `${gateway.url}/healthz`, {})).status).toBe(403);
    }
    expect(fake.requests.length - before).toBe(2);
    // A denied client without credentials gets 403, an allowed one 401.
    expect((await getFrom("127.0.0.2", `${gateway.url}/api/tags`, {})).status).toBe(401);
    await new Promise((r) => setTimeout(r, 200));
    const refusedEntries = (await gateway.settledAccessLog()).filter((e) => e.status === 403);
    expect(refusedEntries.length).toBeGreaterThan(0);
    expect(refusedEntries.every((e) => e.client !== "127.0.0.2" && e.caller === "")).toBe(true);
  });

  it("deny entries win over a broader allow", async () => {
    const gateway = await start({ network: { allow: ["127.0.0.0/8"], deny: ["127.0.0.2/32"] } });
    expect((await getFrom("127.0.0.1", `${gateway.url}/api/tags`)).status).toBe(200);
    expect((await getFrom("127.0.0.5", `${gateway.url}/api/tags`)).status).toBe(200);
    expect((await getFrom("127.0.0.2", `${gateway.url}/api/tags`)).status).toBe(403);
  });

  it("a deny list alone refuses only its entries", async () => {
    const gateway = await start({ network: { deny: ["127.0.0.4/30"] } });
    expect((await getFrom("127.0.0.1", `${gateway.url}/api/tags`)).status).toBe(200);
    for (const from of ["127.0.0.4", "127.0.0.7"]) expect((await getFrom(from, `${gateway.url}/api/tags`)).status).toBe(403);
    expect((await getFrom("127.0.0.8", `${gateway.url}/api/tags`)).status).toBe(200);
  });

  it("believes the client address header only from trusted proxies: allow list, failed-login limit, log and upstream", async () => {
    const gateway = await start({
      network: { allow: ["10.0.0.0/8"], trustedProxies: ["127.0.0.2"] },
      basicUsers: [{ name: "ann", password: "ann-password-0000", scope: "read" }],
    });
    const url = `${gateway.url}/api/tags`;
    const via = (client: string, headers: Record<string, string> = { Authorization: `Bearer ${KEY}` }) => ({ ...headers, "X-Forwarded-For": client });
    const before = fake.requests.length;
    // From the trusted proxy, the address it names counts...
    expect((await getFrom("127.0.0.2", url, via("10.1.2.3"))).status).toBe(200);
    expect((await getFrom("127.0.0.2", url, via("192.0.2.7"))).status).toBe(403);
    // ...the last one in the chain that is not itself trusted: an address the client put in
    // front of the one the proxy appended changes nothing.
    expect((await getFrom("127.0.0.2", url, via("192.0.2.7, 10.1.2.3"))).status).toBe(200);
    expect((await getFrom("127.0.0.2", url, via("10.1.2.3, 192.0.2.7"))).status).toBe(403);
    // Without the header the proxy's own address counts; from any other peer the header is ignored.
    expect((await getFrom("127.0.0.2", url)).status).toBe(403);
    expect((await getFrom("127.0.0.3", url, via("10.1.2.3"))).status).toBe(403);
    // Ollama is told the client's address, one address, not the chain.
    expect(fake.requests.slice(before).map((r) => r.headers["x-forwarded-for"])).toEqual(["10.1.2.3", "10.1.2.3"]);

    // Failed logins are counted per client, not per proxy: one client's 20 failures lock out
    // that client only, though both come through the same proxy.
    const wrongBasic = (i: number) => ({ Authorization: `Basic ${Buffer.from(`ann:wrong-${i}`).toString("base64")}` });
    for (let i = 0; i < 20; i++) expect((await getFrom("127.0.0.2", url, via("10.0.0.5", wrongBasic(i)))).status).toBe(401);
    expect((await getFrom("127.0.0.2", url, via("10.0.0.5", wrongBasic(20)))).status).toBe(429);
    expect((await getFrom("127.0.0.2", url, via("10.0.0.6", wrongBasic(21)))).status).toBe(401);

    const entries = await gateway.settledAccessLog();
    expect(entries.filter((e) => e.status === 200).map((e) => [e.client, e.peer])).toEqual([
      ["10.1.2.3", "127.0.0.2"],
      ["10.1.2.3", "127.0.0.2"],
    ]);
    expect(entries.filter((e) => e.peer === "127.0.0.3").map((e) => e.client)).toEqual(["127.0.0.3"]);
  });

  it("listens only on listen.address", async () => {
    const gateway = await start({ listen: { address: "127.0.0.3" } });
    const port = new URL(gateway.url).port;
    expect(gateway.url).toBe(`http://127.0.0.3:${port}`);
    expect((await getFrom("127.0.0.1", `http://127.0.0.3:${port}/api/tags`)).status).toBe(200);
    const elsewhere = await getFrom("127.0.0.1", `http://127.0.0.1:${port}/api/tags`);
    expect(elsewhere.error).toBe("ECONNREFUSED");
  });
});
