/**
 * TLS through the real nginx, with a CA and server certificate made by openssl in the test:
 * TLS 1.2/1.3 only, modern ciphers, plain HTTP answered with JSON (health excepted), HSTS.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientEnvScript } from "../bundle/clientEnv";
import { makeCertificates } from "../harness/certs";
import { type FakeOllama, startFakeOllama } from "../harness/fake-ollama";
import { request } from "../harness/http";
import { nginxTestsEnabled, type RunningGateway, startGateway } from "../harness/nginx";
import { ROOT } from "../harness/pulumi-mocks";

const KEY = "tls-key-0000000000000000000000000000";

function handshake(port: number, options: tls.ConnectionOptions): Promise<{ protocol: string | null; cipher: string }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername: "localhost", ...options }, () => {
      const result = { protocol: socket.getProtocol(), cipher: socket.getCipher().name };
      socket.end();
      resolve(result);
    });
    socket.once("error", reject);
  });
}

function httpsGet(url: string, ca: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
    const req = https.get(url, { ca, headers }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.once("error", reject);
  });
}

describe.runIf(nginxTestsEnabled)("TLS through the real nginx", () => {
  let fake: FakeOllama;
  let gateway: RunningGateway;
  let certs: ReturnType<typeof makeCertificates>;

  beforeAll(async () => {
    certs = makeCertificates();
    fake = await startFakeOllama();
    gateway = await startGateway({
      upstreamUrl: fake.url,
      spec: {
        apiKeys: [{ name: "tls", key: KEY, scope: "read" }],
        tls: { certPem: certs.certPem, keyPem: certs.keyPem },
        rateLimit: { requestsPerSecond: 10_000, burst: 10_000 },
      },
    });
  });
  afterAll(async () => {
    await gateway?.stop();
    await fake?.close();
  });

  it("serves an OpenAI SDK configured only by the `clientEnv` output's lines, in a fresh Node process", async () => {
    // The lines write the CA to ./ca.pem themselves.
    const dir = mkdtempSync(path.join(tmpdir(), "client-env-"));
    const client = `const { OpenAI } = require(${JSON.stringify(require.resolve("openai", { paths: [ROOT] }))});
new OpenAI().models.list().then((page) => console.log(JSON.stringify(page.data.map((m) => m.id))));`;
    const script = `${clientEnvScript({ endpoint: gateway.httpsUrl!, apiKey: KEY, caPem: certs.caPem })}exec node -e '${client}'\n`;
    try {
      // Nothing from this process's environment but PATH: the lines alone configure the client.
      const stdout = await new Promise<string>((resolve, reject) =>
        execFile("bash", ["-c", script], { cwd: dir, env: { PATH: process.env.PATH! }, timeout: 20_000 }, (error, out, err) =>
          error ? reject(new Error(`${error.message}\n${err}`)) : resolve(out),
        ),
      );
      expect(JSON.parse(stdout).length).toBeGreaterThan(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("serves the API over HTTPS with a certificate the CA verifies, with HSTS", async () => {
    const response = await httpsGet(`${gateway.httpsUrl}/api/version`, certs.caPem, { Authorization: `Bearer ${KEY}` });
    expect(response.status).toBe(200);
    expect(JSON.parse(response.body)).toHaveProperty("version");
    expect(response.headers["strict-transport-security"]).toMatch(/max-age=\d+/);
    const refused = await httpsGet(`${gateway.httpsUrl}/api/version`, certs.caPem);
    expect(refused.status).toBe(401);
  });

  it("speaks TLS 1.3 and 1.2 with forward-secret AEAD ciphers only", async () => {
    const port = Number(new URL(gateway.httpsUrl!).port);
    expect((await handshake(port, { ca: certs.caPem, minVersion: "TLSv1.3" })).protocol).toBe("TLSv1.3");
    const v12 = await handshake(port, { ca: certs.caPem, maxVersion: "TLSv1.2" });
    expect(v12.protocol).toBe("TLSv1.2");
    expect(v12.cipher).toMatch(/^ECDHE-.*(GCM|CHACHA20)/);
    // A static-RSA/CBC cipher and TLS 1.1 are refused by the server.
    await expect(handshake(port, { ca: certs.caPem, maxVersion: "TLSv1.2", ciphers: "AES128-SHA:AES256-SHA" })).rejects.toThrow();
    await expect(handshake(port, { ca: certs.caPem, minVersion: "TLSv1", maxVersion: "TLSv1.1", ciphers: "DEFAULT:@SECLEVEL=0" })).rejects.toThrow();
  });

  it("survives repeated certificate swaps under concurrent handshakes with zero failures", async () => {
    const other = makeCertificates("second");
    const ca = [certs.caPem, other.caPem];
    const spec = { apiKeys: [{ name: "tls", key: KEY, scope: "read" as const }] };
    let running = true;
    const failures: string[] = [];
    let ok = 0;
    const loops = Array.from({ length: 6 }, async () => {
      while (running) {
        try {
          // A fresh connection each time: every request is a full handshake.
          const response = await new Promise<number>((resolve, reject) => {
            const req = https.get(`${gateway.httpsUrl}/api/version`, { ca, agent: false, headers: { Authorization: `Bearer ${KEY}` } }, (res) => {
              res.resume();
              res.on("end", () => resolve(res.statusCode!));
            });
            req.once("error", reject);
          });
          if (response === 200) ok++;
          else failures.push(String(response));
        } catch (error) {
          failures.push(String(error));
        }
      }
    });
    for (let swap = 0; swap < 12; swap++) {
      const next = swap % 2 === 0 ? other : certs;
      gateway.updateCredentials({ ...spec, tls: { certPem: next.certPem, keyPem: next.keyPem } });
      await new Promise((r) => setTimeout(r, 250));
    }
    running = false;
    await Promise.all(loops);
    gateway.updateCredentials({ ...spec, tls: { certPem: certs.certPem, keyPem: certs.keyPem } });
    console.info(`[measure] 12 certificate swaps: ${ok} handshakes served, ${failures.length} failed`);
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(50);
  });

  it("fails handshakes closed while the certificate file is missing, and recovers", async () => {
    const port = Number(new URL(gateway.httpsUrl!).port);
    rmSync(path.join(gateway.dir, "credentials", "tls.pem"));
    await new Promise((r) => setTimeout(r, 1200));
    await expect(handshake(port, { ca: certs.caPem })).rejects.toThrow();
    expect(gateway.errorLog()).toMatch(/TLS file credentials\/tls.pem is missing/);
    gateway.updateCredentials({ apiKeys: [{ name: "tls", key: KEY, scope: "read" }], tls: { certPem: certs.certPem, keyPem: certs.keyPem } });
    await new Promise((r) => setTimeout(r, 1200));
    expect((await handshake(port, { ca: certs.caPem })).protocol).toMatch(/TLSv1\.[23]/);
  });

  it("answers plain HTTP with JSON naming the HTTPS port, never redirecting to the client's Host, except the health endpoint", async () => {
    // serverName `_` and no redirectHost: there is no fixed host to redirect to (test/abuse-edge.test.ts has one).
    const port = new URL(gateway.httpsUrl!).port;
    const withKey = await request(`${gateway.url}/api/tags?x=1`, { headers: { Authorization: `Bearer ${KEY}` } });
    expect(withKey.status).toBe(403);
    expect(withKey.json().error).toContain(`Use HTTPS on port ${port} `);
    const plain = await request(`${gateway.url}/api/tags?x=1`);
    expect(plain.status).toBe(400);
    expect(plain.headers.get("location")).toBeNull();
    expect(plain.json().error).toBe(`this port answers only /healthz over plain HTTP; use HTTPS on port ${port}`);
    const health = await request(`${gateway.url}/healthz`);
    expect(health.status).toBe(200);
  });
});
