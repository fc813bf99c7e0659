/** Stack config validation (pure) and the agreement of Pulumi.yaml with the parser. */
import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { CONFIG_KEYS, parseStackConfig } from "../config/stackConfig";
import { declaredDefault } from "../scripts/docs";
import { devStackConfig, readYaml } from "../harness/pulumi-mocks";

/** JWT on with HS256 (secret generated): the smallest valid JWT config. */
const JWT_ON = { jwtIssuer: "https://login.example.com/", jwtAudience: "ollama-gateway", jwtAlgorithms: '["HS256"]' };
const AUTH_URL = "http://10.0.0.5:4180/oauth2/auth";
const RSA_PEM = generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey.export({ type: "spki", format: "pem" }).toString();

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
    [
      { proxyImage: "registry.example.com/ollama-gateway-proxy" },
      '`ollama-gateway:proxyImage` is "registry.example.com/ollama-gateway-proxy"; pin a version tag such as `registry.example.com/ollama-gateway-proxy:1.0.0` (not `latest`, not untagged).',
    ],
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
    [
      { jwtAudience: "ollama-gateway" },
      "`ollama-gateway:jwtAudience` is set but `jwtIssuer` is empty, so JWT is off; set `jwtIssuer` or remove `ollama-gateway:jwtAudience`.",
    ],
    [{ jwtIssuer: "iss", jwtAudience: "aud" }, "`ollama-gateway:jwtAlgorithms` is []; list at least one algorithm."],
    [{ ...JWT_ON, jwtAudience: "" }, '`ollama-gateway:jwtAudience` is ""; use the audience your identity provider puts in `aud`.'],
    [{ ...JWT_ON, jwtAlgorithms: '["PS256"]' }, '`ollama-gateway:jwtAlgorithms[0]` is "PS256"; use `HS256`, `RS256` or `ES256`.'],
    [
      { ...JWT_ON, jwtAlgorithms: '["RS256"]' },
      '`ollama-gateway:jwtAlgorithms` ("RS256") has no key: add an RSA key to `jwtPublicKeysPem` or `jwtJwks`, or remove it.',
    ],
    [
      { ...JWT_ON, jwtHs256Secret: "short-secret" },
      "`ollama-gateway:jwtHs256Secret` is a secret of 12 characters (not shown); use at least 32 characters (RFC 7518: the key must be as long as the hash).",
    ],
    [
      { ...JWT_ON, jwtAlgorithms: '["RS256"]', jwtHs256Secret: "s".repeat(40), jwtPublicKeysPem: JSON.stringify([RSA_PEM]) },
      "`ollama-gateway:jwtHs256Secret` is set but `jwtAlgorithms` does not list `HS256`; add `HS256` to `jwtAlgorithms` or remove `ollama-gateway:jwtHs256Secret`.",
    ],
    [
      { ...JWT_ON, jwtAlgorithms: '["HS256", "RS256"]', jwtPublicKeysPem: JSON.stringify(["-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----", RSA_PEM]) },
      "`ollama-gateway:jwtPublicKeysPem[0]` is a private key; give only the public key (openssl pkey -pubout).",
    ],
    [
      { ...JWT_ON, jwtAlgorithms: '["HS256", "RS256"]', jwtPublicKeysPem: JSON.stringify([`kid 1\n${RSA_PEM}`]) },
      '`ollama-gateway:jwtPublicKeysPem[0]` starts with "kid 1"; give the PEM alone, or `<kid>:` then the PEM, such as `2026-01:\\n-----BEGIN PUBLIC KEY-----...`.',
    ],
    [
      { ...JWT_ON, jwtJwks: "{not json" },
      '`ollama-gateway:jwtJwks` is "{not json"; use a JWKS document as JSON, {"keys": [...]} (`curl -s https://<issuer>/.well-known/jwks.json | pulumi config set jwtJwks`).',
    ],
    [{ ...JWT_ON, jwtScopeValues: '["ollama:read:root"]' }, '`ollama-gateway:jwtScopeValues[0].scope` is "root"; use one of `read`, `inference`, `admin`.'],
    [{ ...JWT_ON, jwtScopeValues: '["ollama"]' }, '`ollama-gateway:jwtScopeValues[0]` is "ollama"; use `<value>:<scope>`, such as `ollama-users:inference`.'],
    [
      { ...JWT_ON, jwtScopeValues: '["a:read", "b:admin", "a:admin"]' },
      '`ollama-gateway:jwtScopeValues[2]` ("a") already grants `read`; list each value under one scope.',
    ],
    [{ ...JWT_ON, jwtClockSkewSeconds: "900" }, "`ollama-gateway:jwtClockSkewSeconds` is 900; use a whole number of seconds from 0 to 300."],
    [
      { externalAuthMode: "exclusive" },
      "`ollama-gateway:externalAuthMode` is set but `externalAuthUrl` is empty, so external auth is off; set `externalAuthUrl` or remove `ollama-gateway:externalAuthMode`.",
    ],
    [{ externalAuthUrl: "ftp://auth" }, '`ollama-gateway:externalAuthUrl` is "ftp://auth"; use an http(s) URL such as http://127.0.0.1:4180/oauth2/auth.'],
    [{ externalAuthUrl: AUTH_URL, externalAuthMode: "always" }, '`ollama-gateway:externalAuthMode` is "always"; use `fallback` or `exclusive`.'],
    [
      { externalAuthUrl: AUTH_URL, externalAuthScopeHeader: "X Groups" },
      '`ollama-gateway:externalAuthScopeHeader` is "X Groups"; use an HTTP header name such as X-Auth-Request-User.',
    ],
    [{ externalAuthUrl: AUTH_URL, externalAuthTimeoutSeconds: "0" }, "`ollama-gateway:externalAuthTimeoutSeconds` is 0; use a whole number of seconds from 1 to 60."],
    [{ allowCidrs: '["10.1.2.3/8"]' }, '`ollama-gateway:allowCidrs[0]` ("10.1.2.3/8") has host bits set; use the network address of the block.'],
    [{ allowCidrs: '["10.0.0.0/33"]' }, '`ollama-gateway:allowCidrs[0]` is "10.0.0.0/33"; use a prefix length from 0 to 32.'],
    [
      { trustedProxyCidrs: '["0.0.0.0/0"]' },
      "`ollama-gateway:trustedProxyCidrs[0]` (\"0.0.0.0/0\") trusts every address, so any client could choose the address it is seen with; list your load balancers' addresses.",
    ],
    [{ clientAddressHeader: "X Real IP" }, '`ollama-gateway:clientAddressHeader` is "X Real IP"; use a header name of letters, digits and hyphens, such as X-Forwarded-For or X-Real-IP.'],
    [{ denyCidrs: '["nope"]' }, '`ollama-gateway:denyCidrs[0]` is "nope"; use an IPv4 or IPv6 address or CIDR block such as 10.0.0.0/8.'],
    [
      { denyCidrs: '["127.0.0.0/8"]' },
      '`ollama-gateway:denyCidrs[0]` is "127.0.0.0/8", which covers 127.0.0.1, where the proxy\'s own healthcheck comes from; remove it (inside the container 127.0.0.1 is only the proxy itself).',
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

  it("maps JWT, external auth and network keys to the spec's sections", () => {
    const jwks = { keys: [{ kty: "EC", crv: "P-256", kid: "idp-1", x: "a", y: "b" }] };
    const result = parseStackConfig({
      ...JWT_ON,
      jwtAlgorithms: '["HS256", "RS256"]',
      jwtHs256Secret: "s".repeat(40),
      jwtPublicKeysPem: JSON.stringify([`2026-01:\n${RSA_PEM}`]),
      jwtScopeValues: '["ollama:read:read", "ollama:admin:admin"]',
      jwtNameClaim: "client_id",
      jwtClockSkewSeconds: "30",
      externalAuthUrl: AUTH_URL,
      externalAuthMode: "exclusive",
      externalAuthScopeValues: '["ollama-users:inference"]',
      allowCidrs: '["10.0.0.0/8", "2001:db8::/32"]',
      denyCidrs: '["10.9.0.0/16"]',
      trustedProxyCidrs: '["10.20.0.0/24"]',
      clientAddressHeader: "X-Real-IP",
    });
    expect(result).toEqual({
      ok: true,
      settings: expect.objectContaining({
        jwt: {
          issuer: "https://login.example.com/",
          audience: "ollama-gateway",
          algorithms: ["HS256", "RS256"],
          hs256Secret: "s".repeat(40),
          publicKeys: [{ kid: "2026-01", pem: RSA_PEM }],
          scopeClaim: "scope",
          scopeValues: { read: ["ollama:read"], inference: [], admin: ["ollama:admin"] },
          nameClaim: "client_id",
          clockSkewSeconds: 30,
        },
        externalAuth: {
          url: AUTH_URL,
          mode: "exclusive",
          timeoutSeconds: 5,
          nameHeader: "X-Auth-Request-User",
          scopeHeader: "X-Auth-Request-Groups",
          scopeValues: { read: [], inference: ["ollama-users"], admin: [] },
        },
        network: { allow: ["10.0.0.0/8", "2001:db8::/32"], deny: ["10.9.0.0/16"], trustedProxies: ["10.20.0.0/24"], clientAddressHeader: "X-Real-IP" },
      }),
    });
    // A JWKS key that is not a usable public key is reported under `jwtJwks`.
    expect(errorsOf({ ...JWT_ON, jwtAlgorithms: '["ES256"]', jwtJwks: JSON.stringify(jwks) })).toEqual([
      "`ollama-gateway:jwtJwks.keys[0]` is not a valid EC public JWK.",
      '`ollama-gateway:jwtAlgorithms` ("ES256") has no key: add a P-256 key to `jwtPublicKeysPem` or `jwtJwks`, or remove it.',
    ]);
  });

  it("leaves JWT, external auth and network off by default, also with the declared defaults given", () => {
    const defaults = Object.fromEntries(
      Object.entries(readYaml("Pulumi.yaml").config as Record<string, { default: unknown }>).map(([k, v]) => [
        k,
        typeof v.default === "string" ? v.default : JSON.stringify(v.default),
      ]),
    );
    const result = parseStackConfig(defaults);
    if (!result.ok) throw new Error(result.errors.join("\n"));
    expect(result.settings.jwt).toBeUndefined();
    expect(result.settings.externalAuth).toBeUndefined();
    expect(result.settings.network).toEqual({ allow: [], deny: [], trustedProxies: [], clientAddressHeader: "X-Forwarded-For" });
  });

  it("never shows the HS256 secret", () => {
    const errors = errorsOf({ ...JWT_ON, jwtAlgorithms: '["ES256"]', jwtHs256Secret: "hunter2-hunter2" });
    expect(errors.join("\n")).not.toContain("hunter2");
    expect(errorsOf({ jwtHs256Secret: "hunter2-hunter2" })).toEqual([
      "`ollama-gateway:jwtHs256Secret` is set but `jwtIssuer` is empty, so JWT is off; set `jwtIssuer` or remove `ollama-gateway:jwtHs256Secret`.",
    ]);
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

  it("declares every key the registry knows, with the registry's type, description and default", () => {
    expect(Object.keys(project.config).sort()).toEqual(Object.keys(CONFIG_KEYS).sort());
    for (const [key, declared] of Object.entries(CONFIG_KEYS)) {
      const entry = project.config[key];
      expect(entry.type, key).toBe(declared.type);
      expect(entry.description, key).toBe(declared.description);
      // No key may be declared `secret: true` with a default (pulumi/pulumi#21865: every
      // `pulumi up` that does not set it fails); secret keys say so in their description.
      expect(entry.secret, key).toBeUndefined();
      if (declared.secret) expect(entry.description, key).toContain("pulumi config set --secret");
      // The CLI requires declared keys without default; every key here is optional.
      expect(entry.default, key).toBeDefined();
      expect(entry.default, key).toEqual(declaredDefault(key));
      if (declared.type === "array") expect(entry.items, key).toEqual({ type: "string" });
    }
  });
});

describe("governance keys (issue 16)", () => {
  it("turns metrics on at 9145 by default and off with 0, and reads the request limits", () => {
    const on = parseStackConfig(devStackConfig());
    expect(on.ok && on.settings.metricsPort).toBe(9145);
    const off = parseStackConfig({ ...devStackConfig(), metricsPort: "0", maxNumCtx: "8192", maxNumPredict: "1024", maxKeepAlive: "30m" });
    expect(off).toMatchObject({ ok: true, settings: { limits: { maxNumCtx: 8192, maxNumPredict: 1024, maxKeepAliveSeconds: 1800 } } });
    expect(off.ok && off.settings.metricsPort).toBeUndefined();
    const none = parseStackConfig({ ...devStackConfig(), maxNumCtx: "0", maxKeepAlive: "" });
    expect(none.ok && none.settings.limits).toEqual({});
  });

  it("reports every bad governance value at once, naming key, value and fix", () => {
    expect(errorsOf({ metricsPort: "8080", maxKeepAlive: "-1", maxNumCtx: "-5", maxNumPredict: "many" })).toEqual([
      '`ollama-gateway:maxNumPredict` is "many"; use a whole number such as 1.',
      '`ollama-gateway:maxKeepAlive` is "-1"; use a duration such as `30m`, `2h` or `0` (seconds `s`, minutes `m`, hours `h`).',
      "`ollama-gateway:metricsPort` is 8080, an API port; give metrics a port of their own (for example 9145), or 0 to turn them off.",
      "`ollama-gateway:maxNumCtx` is -5; use a whole number from 1 to 16777216.",
    ]);
  });
});

describe("credentialPolicies (issue 16)", () => {
  it("puts each credential's governance on its entry", () => {
    const result = parseStackConfig({
      ...devStackConfig(),
      credentialPolicies: JSON.stringify({ app: { models: ["gemma3:*"], maxConcurrent: 2, tokenBudget: { perMinute: 20000 } }, alice: { limits: { maxNumCtx: 4096 } } }),
    });
    expect(result).toMatchObject({
      ok: true,
      settings: {
        apiKeys: [{ name: "app", scope: "inference", models: ["gemma3:*"], maxConcurrent: 2, tokenBudget: { perMinute: 20000 } }, { name: "ops", scope: "admin" }],
        basicUsers: [{ name: "alice", scope: "inference", limits: { maxNumCtx: 4096 } }],
      },
    });
  });

  it("names the key, the field, the value and the fix for every problem", () => {
    expect(errorsOf({ ...devStackConfig(), credentialPolicies: JSON.stringify({ app: { maxConcurrent: 0, models: ["no spaces"], extra: 1 }, nobody: {} }) })).toEqual([
      '`ollama-gateway:credentialPolicies.app.models[0]` is "no spaces"; use a model name such as `gemma3:1b`, or a glob with `*` such as `gemma3:*` (at most 100 characters).',
      "`ollama-gateway:credentialPolicies.app.maxConcurrent` is 0; use a whole number from 1 to 100000.",
      "`ollama-gateway:credentialPolicies.app` has unknown field(s) `extra`; remove them or check the spelling.",
      "`ollama-gateway:credentialPolicies.nobody` names no entry of `apiKeys` or `basicUsers`; add `nobody:<scope>` there or remove it.",
    ]);
    expect(errorsOf({ credentialPolicies: "[1]" })).toEqual([
      '`ollama-gateway:credentialPolicies` is "[1]"; use a JSON object keyed by credential name, such as {"app": {"maxConcurrent": 2}}.',
    ]);
  });

  it("takes model grants for JWT and external-auth callers, and names the key, value and fix of a bad one", () => {
    const jwt = { ...JWT_ON, jwtModelGrants: JSON.stringify({ "llm-user": ["gemma3:*"] }) };
    const parsed = parseStackConfig(jwt);
    expect(parsed.ok && parsed.settings.jwt?.modelGrants).toEqual({ "llm-user": ["gemma3:*"] });
    expect(errorsOf({ ...JWT_ON, jwtModelGrants: JSON.stringify({ "llm-user": ["no spaces"] }) })).toEqual([
      '`ollama-gateway:jwtModelGrants.llm-user[0]` is "no spaces"; use a model name such as `gemma3:1b`, or a glob with `*` such as `gemma3:*` (at most 100 characters).',
    ]);
    expect(errorsOf({ externalAuthUrl: "http://10.0.0.5:4180/oauth2/auth", externalAuthModelGrants: "[1]" })).toEqual([
      '`ollama-gateway:externalAuthModelGrants` is "[1]"; use a JSON object from claim or header value to models, such as {"ollama-users": ["gemma3:*"]}.',
    ]);
    expect(errorsOf({ jwtModelGrants: JSON.stringify({ a: ["gemma3:1b"] }) })).toEqual([
      "`ollama-gateway:jwtModelGrants` is set but `jwtIssuer` is empty, so JWT is off; set `jwtIssuer` or remove `ollama-gateway:jwtModelGrants`.",
    ]);
  });

  it("takes model lists with a pool of backends too (listings are the backends' union, cut down)", () => {
    const policies = { apiKeys: JSON.stringify(["app:inference"]), credentialPolicies: JSON.stringify({ app: { models: ["gemma3:*"] } }) };
    expect(parseStackConfig({ ...policies, ollamaUrls: JSON.stringify(["lab=http://10.0.0.5:11434"]) }).ok).toBe(true);
    expect(parseStackConfig(policies).ok).toBe(true);
  });
});
