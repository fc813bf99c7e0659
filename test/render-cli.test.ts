/**
 * `npm run render` on a bundle a real nginx runs (issue 13, items 4 and 7): credential files
 * readable only by the workers' user, stale credential files removed, changes that need a
 * reload reported, and `--reload` signalling the bundle's nginx.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PID_FILE } from "../bundle/render";
import { lookupUser } from "../bundle/write";
import { makeCertificates } from "../harness/certs";
import { type FakeOllama, startFakeOllama } from "../harness/fake-ollama";
import { basic, bearer, request } from "../harness/http";
import { freePort, nginxTestsEnabled, requireNginxWithLua, waitUntil } from "../harness/nginx";
import { waitForPort } from "../harness/ports";

// Test-only credentials, made up for this file.
const API_KEY = "render-cli-key-00000000000000000000";
const PASSWORD = "render-cli-password-1";
const HS_SECRET = "render-cli-hs256-secret-0123456789abcdef";
const ISSUER = "https://idp.test";
const AUDIENCE = "ollama-gateway";

const b64url = (data: string | Buffer) => Buffer.from(data).toString("base64url");
function hs256Token(): string {
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${b64url(
    JSON.stringify({ iss: ISSUER, aud: AUDIENCE, sub: "alice", scope: "admin", exp: now + 300, iat: now }),
  )}`;
  return `${input}.${b64url(createHmac("sha256", HS_SECRET).update(input).digest())}`;
}

function runRender(args: string[]) {
  const result = spawnSync("npx", ["tsx", "scripts/render.ts", ...args], { encoding: "utf8", timeout: 60_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe.runIf(nginxTestsEnabled)("npm run render on a running bundle", () => {
  let fake: FakeOllama;
  let work: string;
  let out: string;
  let nginx: ChildProcess | undefined;
  let http: number;
  let https: number;
  const certs = makeCertificates();

  const spec = (withJwt: boolean) => ({
    upstream: fake.url,
    workerProcesses: 2,
    listen: { address: "127.0.0.1", http, https },
    tls: { certPem: certs.certPem, keyPem: certs.keyPem },
    apiKeys: [{ name: "ops", key: API_KEY, scope: "admin" }],
    basicUsers: [{ name: "alice", password: PASSWORD, scope: "read" }],
    ...(withJwt ? { jwt: { issuer: ISSUER, audience: AUDIENCE, algorithms: ["HS256"], hs256Secrets: [{ secret: HS_SECRET }] } } : {}),
  });
  const render = (withJwt: boolean, ...extra: string[]) => {
    const file = path.join(work, "spec.json");
    writeFileSync(file, JSON.stringify(spec(withJwt)));
    return runRender(["--config", file, "--out", out, "--flavor", "debian", "--bcrypt-cost", "4", ...extra]);
  };
  const get = (headers: Record<string, string>) =>
    new Promise<number>((resolve, reject) => {
      const socket = tls.connect({ host: "127.0.0.1", port: https, ca: certs.caPem, servername: "localhost" }, () => {
        const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("");
        socket.write(`GET /api/tags HTTP/1.1\r\nHost: localhost\r\n${lines}Connection: close\r\n\r\n`);
      });
      let text = "";
      socket.on("data", (d) => (text += d));
      socket.on("end", () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
      socket.on("error", reject);
    });

  beforeAll(async () => {
    fake = await startFakeOllama();
    work = mkdtempSync(path.join(tmpdir(), "render-cli-"));
    chmodSync(work, 0o755);
    out = path.join(work, "bundle");
    http = await freePort();
    https = await freePort();
  });
  afterAll(async () => {
    if (nginx && nginx.exitCode === null) {
      const exited = new Promise((r) => nginx!.once("exit", r));
      process.kill(nginx.pid!, "SIGQUIT");
      await exited;
    }
    await fake?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it("writes credential files readable only by the workers' user", () => {
    const result = render(true);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toContain("run it: nginx -p");
    const files = readdirSync(path.join(out, "credentials")).sort();
    expect(files).toEqual(["api-keys", "htpasswd", "jwt-keys", "tls.pem"]);
    const nobody = lookupUser("nobody");
    for (const file of files) {
      const stat = statSync(path.join(out, "credentials", file));
      expect((stat.mode & 0o777).toString(8), file).toBe("600");
      if (process.getuid?.() === 0) expect([stat.uid, stat.gid], file).toEqual([nobody!.uid, nobody!.gid]);
    }
    expect((statSync(path.join(out, "conf", "nginx.conf")).mode & 0o777).toString(8)).toBe("644");
  });

  it("serves API keys, Basic, JWT and TLS from those files (workers are nobody when the tests run as root)", async () => {
    const bin = requireNginxWithLua();
    nginx = spawn(bin, ["-p", `${out}/`, "-c", "conf/nginx.conf", "-e", "logs/error.log", "-g", "daemon off;"], { stdio: "ignore" });
    await waitForPort(https, "127.0.0.1", nginx, () => "", 10_000);
    await waitUntil(() => existsSync(path.join(out, PID_FILE)));
    if (process.getuid?.() === 0) {
      const workers = execFileSync("ps", ["-o", "user=", "--ppid", String(nginx.pid)], { encoding: "utf8" }).trim().split("\n");
      expect(new Set(workers)).toEqual(new Set(["nobody"]));
    }
    expect(await get(bearer(API_KEY))).toBe(200);
    expect(await get(basic("alice", PASSWORD))).toBe(200);
    expect(await get(bearer(hs256Token()))).toBe(200);
  });

  it("says when a re-render changes no config file: no reload needed", () => {
    const result = render(true);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toContain("no reload needed");
  });

  it("removes the JWT keys when `jwt` goes, reports the reload, and --reload makes nginx refuse JWTs", async () => {
    const result = render(false, "--reload");
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toContain("removed (credentials/jwt-keys)");
    expect(result.stdout).toMatch(/reload needed: .*lua\/gateway\/config\.lua/);
    expect(result.stdout).toContain(`sent SIGHUP to nginx (pid ${nginx!.pid})`);
    expect(existsSync(path.join(out, "credentials", "jwt-keys"))).toBe(false);
    await waitUntil(async () => (await get(bearer(hs256Token()))) === 401, 10_000, 100);
    expect(await get(bearer(API_KEY))).toBe(200);
  });

  it("reports a reload it cannot do, naming the pid file", async () => {
    const exited = new Promise((r) => nginx!.once("exit", r));
    process.kill(nginx!.pid!, "SIGQUIT");
    await exited;
    // nginx removes its pid file on exit; a config change then has nobody to reload.
    const result = render(true, "--reload");
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`no nginx pid in ${path.join(out, PID_FILE)}`);
    writeFileSync(path.join(out, PID_FILE), "999999999\n");
    const stale = render(false, "--reload");
    expect(stale.status).toBe(1);
    expect(stale.stderr).toContain("is not running (a stale pid file)");
  });
});

describe("npm run render --owner: a bundle for the proxy image's user", () => {
  const work = mkdtempSync(path.join(tmpdir(), "render-owner-"));
  const out = path.join(work, "bundle");
  const file = path.join(work, "spec.json");
  writeFileSync(file, JSON.stringify({ upstream: "http://ollama:11434", apiKeys: [{ name: "app", key: API_KEY, scope: "inference" }] }));
  const render = (...extra: string[]) => runRender(["--config", file, "--out", out, "--flavor", "debian", "--bcrypt-cost", "4", ...extra]);
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it.runIf(process.getuid?.() === 0)("writes each credential file owned by that UID:GID, and a re-render keeps it so", () => {
    for (let i = 0; i < 2; i++) {
      const result = render("--owner", "10001:10001");
      expect(result.status, result.stderr).toBe(0);
      const stat = statSync(path.join(out, "credentials", "api-keys"));
      expect([stat.uid, stat.gid, (stat.mode & 0o777).toString(8)]).toEqual([10001, 10001, "600"]);
    }
  });

  it("refuses an owner that is not numeric UID:GID, writing nothing", () => {
    const elsewhere = path.join(work, "refused");
    const result = runRender(["--config", file, "--out", elsewhere, "--flavor", "debian", "--owner", "nobody"]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('`--owner` is "nobody"; use a numeric `UID:GID`');
    expect(existsSync(elsewhere)).toBe(false);
  });
});
