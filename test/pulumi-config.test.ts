/** Stack config validation (pure) and the agreement of Pulumi.yaml with the parser. */
import { describe, expect, it } from "vitest";
import { CONFIG_DEFAULTS, CONFIG_KEYS, parseStackConfig } from "../config/stackConfig";
import { devStackConfig, readYaml } from "./support/pulumi-mocks";

const errorsOf = (raw: Record<string, string>) => {
  const result = parseStackConfig(raw);
  if (result.ok) throw new Error("expected problems");
  return result.errors;
};

describe("parseStackConfig", () => {
  it("accepts the dev stack and fills in defaults", () => {
    const result = parseStackConfig(devStackConfig());
    expect(result).toMatchObject({
      ok: true,
      settings: {
        hostname: "localhost",
        bindAddress: "127.0.0.1",
        httpPort: 8080,
        httpsPort: 8443,
        tls: { mode: "selfSigned" },
        apiKeys: [
          { name: "app", scope: "inference" },
          { name: "ops", scope: "admin" },
        ],
        basicUsers: [{ name: "alice", scope: "inference" }],
        models: ["gemma3:1b"],
        rateLimit: { requestsPerSecond: 20, burst: 40 },
        ollamaImage: "ollama/ollama:0.12.6",
        proxyImage: "openresty/openresty:1.27.1.2-alpine",
      },
    });
  });

  it("treats the declared 'unset' defaults as unset", () => {
    const result = parseStackConfig({ tlsCertPem: "", tlsKeyPem: "", suppliedSecrets: "", ollamaNumParallel: "0" });
    expect(result.ok).toBe(true);
  });

  it.each([
    [{ httpPort: "70000" }, "`ollama-gateway:httpPort` is 70000; use a TCP port between 1 and 65535."],
    [{ httpPort: "eighty" }, '`ollama-gateway:httpPort` is "eighty"; use a whole number such as 8080.'],
    [{ bindAddress: "localhost" }, '`ollama-gateway:bindAddress` is "localhost"; use an IPv4 or IPv6 address such as 127.0.0.1.'],
    [{ tlsMode: "acme" }, '`ollama-gateway:tlsMode` is "acme"; use one of `selfSigned`, `provided`, `none`.'],
    [{ gpu: "yes" }, '`ollama-gateway:gpu` is "yes"; use `true` or `false`.'],
    [{ models: "gemma3:1b" }, '`ollama-gateway:models` is "gemma3:1b"; use a list of strings (in Pulumi.<stack>.yaml a YAML list).'],
    [{ proxyImage: "openresty/openresty" }, '`ollama-gateway:proxyImage` is "openresty/openresty"; pin a version tag such as `openresty/openresty:1.27.1.2-alpine` (not `latest`, not untagged).'],
    [{ apiKeys: '["app"]' }, '`ollama-gateway:apiKeys[0]` is "app"; use `<name>:<scope>`, such as `app:inference`.'],
    [{ apiKeys: '["app:root"]' }, '`ollama-gateway:apiKeys[0].scope` is "root"; use one of `read`, `inference`, `admin`.'],
    [
      { apiKeys: '["app:read"]', basicUsers: '["app:read"]' },
      '`ollama-gateway:basicUsers[0].name` ("app") is already used by `apiKeys[0].name`; give every credential its own name.',
    ],
    [{ rateLimit: "fast" }, '`ollama-gateway:rateLimit` is "fast"; use `<requests per second>/<burst>`, such as `20/40`.'],
    [{ maxBodySize: "lots" }, '`ollama-gateway:maxBodySize` is "lots"; use an nginx size such as `100m`, `512k` or `1g`.'],
    [{ upstreamReadTimeoutSeconds: "0" }, "`ollama-gateway:upstreamReadTimeoutSeconds` is 0; use a whole number of seconds from 1 to 86400."],
    [
      { corsAllowedOrigins: '["https://app.example.com/path"]' },
      '`ollama-gateway:corsAllowedOrigins[0]` is "https://app.example.com/path"; use an origin such as https://app.example.com (scheme, host, optional port; no path).',
    ],
    [{ httpPort: "8443" }, "`ollama-gateway:httpsPort` is 8443, the same as `httpPort`; use two different ports."],
    [{ httpport: "80" }, "`ollama-gateway:httpport` is not a known key; did you mean `httpPort`?"],
    [
      { tlsMode: "provided", tlsCertPem: "-----BEGIN CERTIFICATE-----" },
      "`ollama-gateway:tlsKeyPem` is missing; set it (`cat server.key | pulumi config set --secret tlsKeyPem`) when `tlsMode` is `provided`.",
    ],
    [
      { tlsKeyPem: "-----BEGIN PRIVATE KEY-----" },
      '`ollama-gateway:tlsKeyPem` is set but `tlsMode` is "selfSigned"; set `tlsMode` to `provided` or remove `ollama-gateway:tlsKeyPem`.',
    ],
    [
      { internalNetwork: "true", models: '["gemma3:1b"]' },
      '`ollama-gateway:models` is ["gemma3:1b"] but `internalNetwork` is true, and an internal network cannot reach the model registry; set `internalNetwork` to false or `models` to [].',
    ],
  ])("refuses %j", (raw, message) => {
    expect(errorsOf(raw)).toEqual([message]);
  });

  it("never shows a secret value", () => {
    const errors = errorsOf({
      apiKeys: '["app:inference"]',
      tlsMode: "provided",
      tlsCertPem: "-----BEGIN CERTIFICATE-----",
      tlsKeyPem: "hunter2-not-a-pem",
      suppliedSecrets: JSON.stringify({ apiKeys: { app: "short-secret", ghost: "x".repeat(30) } }),
    });
    expect(errors).toEqual([
      "`ollama-gateway:suppliedSecrets.apiKeys.app` is a secret of 12 characters (not shown); use at least 24 characters (generate one with `openssl rand -hex 24`).",
      "`ollama-gateway:suppliedSecrets.apiKeys.ghost` names no entry of `ollama-gateway:apiKeys`; add `ghost:<scope>` there or remove the secret.",
      "`ollama-gateway:tlsKeyPem` is a secret of 17 characters (not shown); use a PEM private key.",
    ]);
    expect(errors.join("\n")).not.toMatch(/short-secret|hunter2|xxxxxxxx/);
    expect(errorsOf({ suppliedSecrets: "{not json: hunter2" })[0]).not.toContain("hunter2");
  });

  it("reports every problem at once", () => {
    expect(errorsOf({ httpPort: "0", httpsPort: "70000", tlsMode: "tls", gpu: "1" })).toHaveLength(4);
  });
});

describe("Pulumi.yaml", () => {
  const project = readYaml("Pulumi.yaml");

  it("is the ollama-gateway TypeScript project", () => {
    expect(project.name).toBe("ollama-gateway");
    expect(project.runtime).toEqual({ name: "nodejs", options: { typescript: true } });
  });

  it("declares every key the parser knows, with its type, description, default and secrecy", () => {
    expect(Object.keys(project.config).sort()).toEqual(Object.keys(CONFIG_KEYS).sort());
    for (const [key, declared] of Object.entries(CONFIG_KEYS)) {
      const entry = project.config[key];
      expect(entry.type, key).toBe(declared.type);
      expect(entry.description, key).toMatch(/\S/);
      expect(entry.secret === true, key).toBe(declared.secret === true);
      // The CLI requires declared keys without default; every key here is optional.
      expect(entry.default, key).toBeDefined();
      const expected = key in CONFIG_DEFAULTS ? CONFIG_DEFAULTS[key as keyof typeof CONFIG_DEFAULTS] : declared.unset === "0" ? 0 : "";
      expect(entry.default, key).toEqual(expected);
      if (declared.type === "array") expect(entry.items, key).toEqual({ type: "string" });
    }
  });
});
