/**
 * Rotation on the real nginx, under concurrent load: a key and a password rotate with an
 * overlap (the previous secret works until its notAfter, then the proxy refuses it by itself),
 * and a certificate is swapped under HTTPS load; no request and no handshake fails.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import type { TLSSocket } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GatewaySpecInput } from "../bundle/spec";
import { type FakeOllama, startFakeOllama } from "../harness/fake-ollama";
import { basic, bearer, request } from "../harness/http";
import { everyWorkerCaughtUp, nginxTestsEnabled, type RunningGateway, startGateway, waitUntil } from "../harness/nginx";

const OLD_KEY = "old-key-00000000000000000000000000000";
const NEW_KEY = "new-key-1111111111111111111111111abcd";
const OLD_PASSWORD = "old-password-0000";
const NEW_PASSWORD = "new-password-1111";
const RATE = { requestsPerSecond: 100_000, burst: 100_000 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Sample {
  start: number;
  end: number;
  status: number;
  error?: string;
}

/** `concurrency` loops sending requests with whatever `headers()` returns at the time, until stopped. */
function load(url: string, headers: () => Record<string, string>, concurrency: number) {
  let running = true;
  const samples: Sample[] = [];
  const loops = Array.from({ length: concurrency }, async () => {
    while (running) {
      const start = Date.now();
      try {
        const response = await request(`${url}/api/version`, { headers: headers() });
        samples.push({ start, end: Date.now(), status: response.status });
      } catch (error) {
        samples.push({ start, end: Date.now(), status: 0, error: String(error) });
      }
    }
  });
  return {
    samples,
    async stop() {
      running = false;
      await Promise.all(loops);
      return samples;
    },
  };
}

describe.runIf(nginxTestsEnabled)("rotation on the real nginx", () => {
  let fake: FakeOllama;
  beforeAll(async () => {
    fake = await startFakeOllama();
  });
  afterAll(async () => {
    await fake?.close();
  });

  describe("a key and a password with an overlap", () => {
    let gateway: RunningGateway;
    const before: GatewaySpecInput = {
      apiKeys: [{ name: "app", key: OLD_KEY, scope: "inference" }],
      basicUsers: [{ name: "alice", password: OLD_PASSWORD, scope: "inference" }],
      rateLimit: RATE,
      // The stale client below sends hundreds of refused keys: this suite checks when they are
      // refused, not the per-address failure limit (test/abuse-auth.test.ts does).
      failedAuth: { token: 100_000 },
    };
    beforeAll(async () => {
      gateway = await startGateway({ upstreamUrl: fake.url, spec: before });
    });
    afterAll(async () => {
      await gateway?.stop();
    });
    const status = async (headers: Record<string, string>) => (await request(`${gateway.url}/api/version`, { headers })).status;
    const consistently = async (headers: Record<string, string>, expected: number, count = 8) => {
      for (let i = 0; i < count; i++) if ((await status(headers)) !== expected) return false;
      return true;
    };

    it("serves clients that switch during the window with zero failures, and refuses the old secrets after it", async () => {
      let key = OLD_KEY;
      let password = OLD_PASSWORD;
      const switching = load(gateway.url, () => bearer(key), 6);
      const switchingUser = load(gateway.url, () => basic("alice", password), 2);
      // A client that never switches: served until notAfter, refused after.
      const stale = load(gateway.url, () => bearer(OLD_KEY), 2);
      await sleep(300);

      // What a rotation deploys: the new secret current, the old one previous until notAfter.
      const notAfterMs = (Math.floor(Date.now() / 1000) + 8) * 1000;
      const notAfter = new Date(notAfterMs).toISOString();
      gateway.updateCredentials({
        ...before,
        apiKeys: [{ name: "app", key: NEW_KEY, scope: "inference", previous: { key: OLD_KEY, notAfter } }],
        basicUsers: [{ name: "alice", password: NEW_PASSWORD, scope: "inference", previous: { password: OLD_PASSWORD, notAfter } }],
      });
      // Consumers fetch the new secret after the deployment, when the files are live.
      await waitUntil(() => consistently(bearer(NEW_KEY), 200), 2500);
      await waitUntil(() => consistently(basic("alice", NEW_PASSWORD), 200), 2500);
      await everyWorkerCaughtUp();
      expect(Date.now()).toBeLessThan(notAfterMs - 500);
      expect(await status(bearer(OLD_KEY))).toBe(200);
      expect(await status(basic("alice", OLD_PASSWORD))).toBe(200);
      key = NEW_KEY;
      password = NEW_PASSWORD;

      // Past notAfter, nothing redeployed: the proxy refuses the old secrets by itself.
      await sleep(notAfterMs - Date.now() + 1200);
      expect(await consistently(bearer(OLD_KEY), 401)).toBe(true);
      expect(await consistently(basic("alice", OLD_PASSWORD), 401)).toBe(true);
      expect(await consistently(bearer(NEW_KEY), 200)).toBe(true);
      expect(await consistently(basic("alice", NEW_PASSWORD), 200)).toBe(true);

      const keySamples = await switching.stop();
      const userSamples = await switchingUser.stop();
      const staleSamples = await stale.stop();
      expect(keySamples.filter((s) => s.status !== 200)).toEqual([]);
      expect(userSamples.filter((s) => s.status !== 200)).toEqual([]);
      expect(keySamples.length).toBeGreaterThan(100);
      expect(userSamples.length).toBeGreaterThan(20);
      // The stale client: every request answered before notAfter succeeded, every one sent a
      // second after it was refused (the proxy compares whole seconds).
      expect(staleSamples.filter((s) => s.end < notAfterMs - 50 && s.status !== 200)).toEqual([]);
      const late = staleSamples.filter((s) => s.start > notAfterMs + 1000);
      expect(late.length).toBeGreaterThan(0);
      expect(late.filter((s) => s.status !== 401)).toEqual([]);
      expect(gateway.errorLog()).not.toMatch(/signal process|reconfiguring/);
    });
  });

  describe("a certificate swap under HTTPS load", () => {
    let gateway: RunningGateway;
    let dir: string;
    const certs: { certPem: string; keyPem: string; fingerprint: string }[] = [];

    /** A self-signed ECDSA certificate for IP 127.0.0.1, made by openssl. */
    const makeCertificate = (name: string) => {
      const cert = path.join(dir, `${name}.crt`);
      const key = path.join(dir, `${name}.key`);
      execFileSync("openssl", [
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", cert, "-days", "2", "-subj", `/CN=${name}`, "-addext", "subjectAltName=IP:127.0.0.1",
      ], { stdio: "pipe" });
      const fingerprint = execFileSync("openssl", ["x509", "-in", cert, "-noout", "-fingerprint", "-sha256"], { encoding: "utf8" })
        .trim()
        .replace(/^.*=/, "");
      return { certPem: readFileSync(cert, "utf8"), keyPem: readFileSync(key, "utf8"), fingerprint };
    };

    beforeAll(async () => {
      dir = mkdtempSync(path.join(tmpdir(), "rotation-certs-"));
      certs.push(makeCertificate("first"), makeCertificate("second"));
      gateway = await startGateway({
        upstreamUrl: fake.url,
        spec: { apiKeys: [{ name: "app", key: NEW_KEY, scope: "read" }], rateLimit: RATE, tls: { certPem: certs[0].certPem, keyPem: certs[0].keyPem } },
      });
    });
    afterAll(async () => {
      await gateway?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it("moves new handshakes to the new certificate with zero failed requests or handshakes", async () => {
      // No keep-alive and no session cache: every request is a full handshake that presents a certificate.
      const agent = new https.Agent({ ca: [certs[0].certPem, certs[1].certPem], keepAlive: false, maxCachedSessions: 0 });
      const get = () =>
        new Promise<{ status: number; fingerprint: string }>((resolve, reject) => {
          const req = https.get(`${gateway.httpsUrl}/api/version`, { agent, headers: bearer(NEW_KEY), timeout: 10_000 }, (res) => {
            const fingerprint = (res.socket as TLSSocket).getPeerCertificate().fingerprint256;
            res.resume();
            res.on("end", () => resolve({ status: res.statusCode!, fingerprint }));
          });
          req.once("timeout", () => req.destroy(new Error("timeout")));
          req.once("error", reject);
        });

      let running = true;
      const samples: { start: number; end: number; status: number; fingerprint?: string; error?: string }[] = [];
      const loops = Array.from({ length: 8 }, async () => {
        while (running) {
          const start = Date.now();
          try {
            const { status, fingerprint } = await get();
            samples.push({ start, end: Date.now(), status, fingerprint });
          } catch (error) {
            samples.push({ start, end: Date.now(), status: 0, error: String(error) });
          }
        }
      });
      // Conditions rather than fixed sleeps: enough handshakes on each side, however busy the machine.
      await waitUntil(() => samples.length >= 40, 10_000);
      const swappedAt = Date.now();
      gateway.updateCredentials({ ...gateway.spec, tls: { certPem: certs[1].certPem, keyPem: certs[1].keyPem } });
      // A rename, read on the next handshake: the new certificate shows up at once.
      await waitUntil(() => samples.some((s) => s.start > swappedAt && s.fingerprint === certs[1].fingerprint), 2000);
      const firstSeen = samples.length;
      await waitUntil(() => samples.length >= firstSeen + 40, 10_000);
      running = false;
      await Promise.all(loops);

      expect(samples.filter((s) => s.status !== 200)).toEqual([]);
      // Handshakes complete before the swap began: the first certificate.
      const beforeSwap = samples.filter((s) => s.end < swappedAt);
      expect(beforeSwap.length).toBeGreaterThan(20);
      expect(new Set(beforeSwap.map((s) => s.fingerprint))).toEqual(new Set([certs[0].fingerprint]));
      // Every handshake begun after the first one that presented the new certificate presents it too.
      const firstNew = Math.min(...samples.filter((s) => s.fingerprint === certs[1].fingerprint).map((s) => s.end));
      const afterSwap = samples.filter((s) => s.start > firstNew);
      expect(afterSwap.length).toBeGreaterThan(20);
      expect(afterSwap.filter((s) => s.fingerprint !== certs[1].fingerprint)).toEqual([]);
      expect(gateway.errorLog()).not.toMatch(/\[(emerg|alert|crit)\]|signal process|reconfiguring/);
    });
  });
});
