/** The spec's validation messages and the render CLI's refusal of bad input. */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { renderBundle, renderConfigFiles, renderCredentials } from "../bundle/render";
import { parseSpec, splitSpec, validateCredentials, validateSettings, validateSpec } from "../bundle/spec";
import { chooseFlavor, DEBIAN_LUA_MODULE } from "../scripts/flavor";
import { startFakeOllama } from "../harness/fake-ollama";
import { request } from "../harness/http";
import { nginxTestsEnabled, startGateway } from "../harness/nginx";

const VALID_KEY = "valid-key-000000000000000000000000";

describe("parseSpec", () => {
  it("fills in defaults", () => {
    const result = parseSpec({});
    expect(result.ok && result.spec.timeouts.upstreamReadSeconds).toBe(900);
    expect(result.ok && result.spec.listen).toEqual({ address: "127.0.0.1", http: 8080 });
  });

  it("reports every problem at once, each with field, value and fix, never a secret", () => {
    const result = parseSpec({
      upstream: "ftp://x",
      listen: { http: 70000 },
      apiKeys: [
        { name: "app", key: "short-secret-key", scope: "root" },
        { name: "app", keySha256: "0".repeat(64), scope: "read" },
        { name: "nokey", scope: "read" },
      ],
      basicUsers: [{ name: "bad name", password: "p", scope: "admin" }],
      maxBodySize: "10 mb",
      colour: "blue",
    });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors).toEqual([
      "`upstream` is \"ftp://x\"; use an http(s) URL with host and port, such as http://127.0.0.1:11434",
      "`listen.http` is 70000; use a TCP port between 1 and 65535",
      "`apiKeys[0].key` is a secret of 16 characters (not shown); use at least 24 characters (generate one with `openssl rand -hex 24`)",
      "`apiKeys[0].scope` is \"root\"; use one of `read`, `inference`, `admin`",
      "`apiKeys[2]` (\"neither\") needs exactly one of `key` or `keySha256`",
      "`basicUsers[0].name` is \"bad name\"; use 1-64 characters: letters, digits, `.`, `_`, `@`, `-`, starting with a letter or digit",
      "`basicUsers[0].password` is a secret of 1 characters (not shown); use at least 12 characters",
      "`maxBodySize` is \"10 mb\"; use an nginx size such as `100m`, `512k` or `1g`",
      "The spec has unknown field(s) `colour`; remove them or check the spelling",
    ]);
    expect(result.errors.join("\n")).not.toContain("short-secret-key");
  });

  it("refuses duplicate names and TLS settings that do not fit together", () => {
    const result = parseSpec({
      apiKeys: [{ name: "app", key: VALID_KEY, scope: "read" }],
      basicUsers: [{ name: "app", password: "long-enough-password", scope: "read" }],
      listen: { https: 8443 },
    });
    expect(result.ok ? [] : result.errors).toEqual([
      "`basicUsers[0].name` (\"app\") is already used by `apiKeys[0].name`; give every credential its own name",
      "`tls` must be set (certPem and keyPem) when `listen.https` is set",
    ]);
  });

  it("takes a DNS server for the upstream only as an address or name, never nginx syntax", () => {
    const result = parseSpec({ upstreamResolver: { address: "10.96.0.10 ipv6=off; include /etc/passwd", validSeconds: 0 } });
    expect(result.ok ? [] : result.errors).toEqual([
      "`upstreamResolver.address` is \"10.96.0.10 ipv6=off; include /etc/passwd\"; use a DNS server's address or name, with an optional port, such as 10.96.0.10 or kube-dns.kube-system.svc.cluster.local",
      "`upstreamResolver.validSeconds` is 0; use a whole number of seconds from 1 to 300",
    ]);
    for (const address of ["10.96.0.10", "kube-dns.kube-system.svc.cluster.local", "127.0.0.1:5353", "[fd00::a]:53"])
      expect(parseSpec({ upstreamResolver: { address } }).ok, address).toBe(true);
  });

  it("refuses a DNS server for the upstream together with a pool, which resolves its backends itself", () => {
    const result = parseSpec({ upstreamResolver: { address: "10.96.0.10" }, upstreams: [{ name: "a", url: "http://ollama-a:11434" }, { name: "b", url: "http://ollama-b:11434" }] });
    expect(result.ok ? [] : result.errors).toEqual([
      expect.stringMatching(/^`upstreamResolver` is .*; remove it \(a pool resolves its backends' names at every probe\) or use one `upstream`$/),
    ]);
  });
});

describe("settings and credentials", () => {
  const SECRET = "s".repeat(16) + "0123456789abcdef";
  it("split a whole spec into two halves that render the same bundle", () => {
    const spec = validateSpec({
      apiKeys: [{ name: "a", key: VALID_KEY, scope: "read", models: ["gemma3:*"] }],
      jwt: { issuer: "i", audience: "a", algorithms: ["HS256"], hs256Secrets: [{ kid: "k", secret: SECRET }] },
    });
    const { settings, credentials } = splitSpec(spec);
    expect(JSON.stringify(settings)).not.toContain(VALID_KEY);
    expect(JSON.stringify(settings)).not.toContain(SECRET);
    expect(validateSettings(settings)).toEqual(settings);
    const rendered = { ...renderConfigFiles(settings), ...renderCredentials(settings, validateCredentials(settings, credentials)) };
    expect(rendered).toEqual(renderBundle(spec).files);
  });

  it("hold the credentials to the settings: HS256 listed exactly with secrets, TLS material exactly with TLS, a secret per name", () => {
    const settings = validateSettings({
      listen: { https: 8443 },
      tls: true,
      apiKeys: [{ name: "a", scope: "read" }],
      jwt: { issuer: "i", audience: "a", algorithms: ["HS256"] },
    });
    expect(() => validateCredentials(settings, { apiKeys: [{ name: "b", keySha256: "0".repeat(64) }], hs256Secrets: [{ secret: "short" }] })).toThrow(
      [
        "Invalid gateway spec (4 problems):",
        "- `hs256Secrets[0].secret` is a secret of 5 characters (not shown); use at least 32 characters (RFC 7518: the key must be as long as the hash)",
      ].join("\n"),
    );
    let message = "";
    try {
      validateCredentials(settings, { apiKeys: [{ name: "b", keySha256: "0".repeat(64) }] });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message.split("\n- ").slice(1)).toEqual([
      "`apiKeys[0].name` (\"b\") has a secret but no entry in the settings' `apiKeys`; add one or remove the secret",
      "`apiKeys[0].name` (\"a\") has no secret; give one for every credential of the settings",
      "`jwt.algorithms` (\"HS256\") has no key: add `hs256Secrets`, or remove it",
      "`tls` must be given (certPem and keyPem) when `tls` is on",
    ]);
  });
});

describe("renderer", () => {
  it("keeps config files independent of credentials", () => {
    const a = splitSpec(validateSpec({ apiKeys: [{ name: "a", key: VALID_KEY, scope: "read" }] })).settings;
    const b = splitSpec(validateSpec({ basicUsers: [{ name: "b", passwordHash: `$2b$10$${"a".repeat(53)}`, scope: "admin" }] })).settings;
    expect(renderConfigFiles(a, "openresty")).toEqual(renderConfigFiles(b, "openresty"));
  });

  it("differs between flavours only in module loading", () => {
    const spec = validateSettings({});
    const debian = renderConfigFiles(spec, "debian");
    const openresty = renderConfigFiles(spec, "openresty");
    for (const file of Object.keys(debian)) if (file !== "conf/nginx.conf") expect(openresty[file]).toBe(debian[file]);
    const changed = debian["conf/nginx.conf"].split("\n").filter((line) => !openresty["conf/nginx.conf"].includes(line));
    expect(changed.every((line) => /load_module|^#/.test(line))).toBe(true);
  });

  it("renders the same bytes for the same spec", () => {
    const spec = validateSpec({ apiKeys: [{ name: "a", key: VALID_KEY, scope: "read" }] });
    expect(renderBundle(spec).files).toEqual(renderBundle(spec).files);
  });
});

describe("render CLI", () => {
  const cli = (args: string[]) =>
    spawnSync(process.execPath, [require.resolve("tsx/cli"), path.join(__dirname, "..", "scripts", "render.ts"), ...args], { encoding: "utf8" });

  it("prints every problem, exits 2 and writes nothing for a bad spec", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "render-cli-"));
    const specFile = path.join(dir, "spec.json");
    writeFileSync(specFile, JSON.stringify({ listen: { http: 0 }, apiKeys: [{ name: "x", key: "tiny", scope: "root" }] }));
    const result = cli(["--config", specFile, "--out", path.join(dir, "bundle")]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("`listen.http` is 0");
    expect(result.stderr).toContain("`apiKeys[0].scope` is \"root\"");
    expect(result.stderr).not.toContain("tiny");
    expect(existsSync(path.join(dir, "bundle"))).toBe(false);
  });

  it("refuses keys that look like placeholders or documentation examples, never showing them", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "render-cli-"));
    const specFile = path.join(dir, "spec.json");
    const copied = ["sk-your-key-here-0123456789", "CHANGEME-0123456789abcdefgh", "example-api-key-0123456789ab"];
    writeFileSync(specFile, JSON.stringify({ apiKeys: copied.map((key, i) => ({ name: `app${i}`, key, scope: "inference" })) }));
    const result = cli(["--config", specFile, "--out", path.join(dir, "bundle"), "--flavor", "debian"]);
    expect(result.status).toBe(2);
    for (const i of [0, 1, 2]) expect(result.stderr).toContain(`\`apiKeys[${i}].key\` is a secret of ${copied[i].length} characters (not shown); use a key of your own`);
    for (const key of copied) expect(result.stderr).not.toContain(key);
    expect(existsSync(path.join(dir, "bundle"))).toBe(false);
  });

  it("renders a bundle, and re-rendering unchanged input rewrites nothing", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "render-cli-"));
    const specFile = path.join(dir, "spec.json");
    writeFileSync(specFile, JSON.stringify({ apiKeys: [{ name: "app", key: VALID_KEY, scope: "inference" }], basicUsers: [{ name: "alice", password: "alice-password-1", scope: "read" }] }));
    const out = path.join(dir, "bundle");
    const first = cli(["--config", specFile, "--out", out, "--flavor", "debian", "--bcrypt-cost", "4"]);
    expect(first.status).toBe(0);
    const htpasswd = readFileSync(path.join(out, "credentials", "htpasswd"), "utf8");
    const second = cli(["--config", specFile, "--out", out, "--flavor", "debian", "--bcrypt-cost", "4"]);
    expect(second.stdout).toMatch(/0 file\(s\) written/);
    expect(readFileSync(path.join(out, "credentials", "htpasswd"), "utf8")).toBe(htpasswd);
    expect(execFileSync("nginx", ["-t", "-p", `${out}/`, "-c", "conf/nginx.conf", "-e", "logs/error.log"], { encoding: "utf8", stdio: "pipe" })).toBeDefined();
  });

  it.runIf(nginxTestsEnabled)("without --flavor, detects Debian's nginx and renders a bundle it accepts", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "render-cli-"));
    const specFile = path.join(dir, "spec.json");
    writeFileSync(specFile, JSON.stringify({ apiKeys: [{ name: "app", key: VALID_KEY, scope: "inference" }] }));
    const out = path.join(dir, "bundle");
    const result = cli(["--config", specFile, "--out", out]);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain(`(debian, detected: Debian's nginx with ${DEBIAN_LUA_MODULE})`);
    expect(execFileSync("nginx", ["-t", "-p", `${out}/`, "-c", "conf/nginx.conf", "-e", "logs/error.log"], { encoding: "utf8", stdio: "pipe" })).toBeDefined();
  });
});

describe("flavour detection", () => {
  it("picks openresty for OpenResty or an nginx with Lua built in, debian for Debian's module", () => {
    expect(chooseFlavor({ openresty: true, debianLuaModule: false })).toMatchObject({ flavor: "openresty" });
    expect(chooseFlavor({ openresty: false, nginxV: "nginx version: openresty/1.27.1.2", debianLuaModule: false })).toMatchObject({ flavor: "openresty" });
    expect(chooseFlavor({ openresty: false, nginxV: "nginx version: nginx/1.22.1", debianLuaModule: true })).toMatchObject({ flavor: "debian" });
  });

  it("asks for --flavor, with the install command, when no nginx with Lua is found", () => {
    for (const host of [{ openresty: false, debianLuaModule: false }, { openresty: false, nginxV: "nginx version: nginx/1.22.1", debianLuaModule: false }]) {
      const choice = chooseFlavor(host);
      expect(choice).toHaveProperty("error");
      expect((choice as { error: string }).error).toMatch(/apt-get install -y nginx libnginx-mod-http-lua.*--flavor debian/);
    }
  });
});

describe.runIf(nginxTestsEnabled)("the openresty flavour", () => {
  it("runs as rendered (Lua module loaded from the command line, as OpenResty has it built in)", async () => {
    const fake = await startFakeOllama();
    const gateway = await startGateway({ flavor: "openresty", upstreamUrl: fake.url, spec: { apiKeys: [{ name: "a", key: VALID_KEY, scope: "read" }] } });
    try {
      expect(readFileSync(path.join(gateway.dir, "conf", "nginx.conf"), "utf8")).not.toContain("load_module");
      expect((await request(`${gateway.url}/api/version`, { headers: { Authorization: `Bearer ${VALID_KEY}` } })).status).toBe(200);
      const refused = await request(`${gateway.url}/api/version`);
      expect(refused.status).toBe(401);
      // No Basic users in this spec: only the Bearer scheme is offered.
      expect(refused.headers.get("www-authenticate")).toBe('Bearer realm="ollama-gateway"');
    } finally {
      await gateway.stop();
      await fake.close();
    }
  });
});

describe("password length", () => {
  it("counts bytes, as bcrypt does, and never shows the password", () => {
    const password = "é".repeat(40); // 40 characters, 80 bytes
    const result = parseSpec({ basicUsers: [{ name: "u", password, scope: "read" }] });
    expect(result.ok ? [] : result.errors).toEqual([
      "`basicUsers[0].password` is a secret of 40 characters (not shown); use at most 72 bytes in UTF-8 (bcrypt reads no more)",
    ]);
  });
});
