/**
 * The Pulumi program evaluated with mocks: which resources it declares, with which inputs,
 * under which parents, and which outputs are secret.
 */
import { generateKeyPairSync } from "node:crypto";
import path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { DEBIAN_USAGE_MODULE, renderConfigFiles } from "../bundle/render";
import { CONFIG_DIGEST_LABEL, configDigest, syncScript } from "../components/AuthProxy";
import { validateSettings } from "../bundle/spec";
import { sha256Hex } from "../bundle/credentials";
import { jwtKeyRecords, renderJwtKeysFile } from "../bundle/jwt";
import {
  findResource,
  installMocks,
  isSecretValue,
  outputIsSecret,
  resourcesOfType,
  TYPES,
  unwrap,
  valueOf,
  type RecordedResource,
  devStackConfig,
  evaluateProgram,
  expectProgramRefuses,
  type Program,
  configUploads,
} from "../harness/pulumi-mocks";

installMocks();

const evaluate = evaluateProgram;

/** The proxy container's spec for the dev stack, without credentials: what AuthProxy renders its config files from. */
const DEV_PROXY_SPEC = {
  upstream: "http://ollama:11434",
  listen: { address: "0.0.0.0", http: 8080, https: 8443 },
  serverName: "localhost",
  tls: true,
  accessLog: "/dev/stdout",
  errorLog: "/dev/stderr",
  // Metrics are on in the program (`metricsPort` 9145), published on the host's loopback only.
  metrics: { listen: { address: "0.0.0.0", port: 9145 } },
};

const containers = () => resourcesOfType(TYPES.container);

describe("the dev stack", () => {
  let program: Program;
  let resources: RecordedResource[];
  beforeAll(async () => {
    ({ program, resources } = await evaluate(devStackConfig()));
  });

  it("declares the expected resources, each once, under its component", () => {
    const urns = resources.map((r) => r.urn);
    expect(new Set(urns).size).toBe(urns.length);
    const byName = Object.fromEntries(resources.map((r) => [r.name, r]));
    expect(byName["gateway"].type).toBe("ollama-gateway:index:OllamaGateway");
    expect(byName["gateway"].parent).toBe("");
    for (const [child, type] of [
      ["gateway-private", TYPES.network],
      ["gateway-edge", TYPES.network],
      ["gateway-ollama", "ollama-gateway:index:OllamaServer"],
      ["gateway-tls", "ollama-gateway:index:Certificates"],
      ["gateway-credentials", "ollama-gateway:index:Credentials"],
      ["gateway-proxy", "ollama-gateway:index:AuthProxy"],
    ])
      expect(byName[child], child).toMatchObject({ type, parent: byName["gateway"].urn });
    for (const r of resources.filter((r) => r.custom)) {
      const parent = resources.find((p) => p.urn === r.parent);
      expect(parent?.custom, `${r.name} has a component parent`).toBe(false);
      expect(r.name.startsWith(`${parent!.name}-`), `${r.name} is named after ${parent!.name}`).toBe(true);
    }
    expect(resources.map((r) => r.type).sort()).toEqual(
      [
        "ollama-gateway:index:OllamaGateway",
        "ollama-gateway:index:OllamaServer",
        "ollama-gateway:index:Certificates",
        "ollama-gateway:index:Credentials",
        "ollama-gateway:index:AuthProxy",
        TYPES.network,
        TYPES.network,
        TYPES.image, // ollama
        TYPES.build, // proxy
        TYPES.volume, // models
        TYPES.volume, // proxy config
        TYPES.volume, // credentials
        TYPES.container, // ollama
        TYPES.container, // model pull
        TYPES.container, // proxy
        TYPES.container, // config writer
        TYPES.container, // credential writer
        TYPES.privateKey,
        TYPES.privateKey,
        TYPES.selfSignedCert,
        TYPES.certRequest,
        TYPES.locallySignedCert,
        TYPES.password, // app
        TYPES.password, // ops
        TYPES.password, // alice
        TYPES.string, // alice's salt
      ].sort(),
    );
  });

  it("pins Ollama's image, builds the proxy's from image/proxy, and runs containers from image ids", () => {
    expect(resourcesOfType(TYPES.image).map((r) => r.inputs.name)).toEqual(["ollama/ollama:0.12.6"]);
    // Relative to the project, so the state does not depend on where the checkout lives.
    expect(findResource(TYPES.build, "gateway-proxy-image").inputs).toMatchObject({
      imageName: "ollama-gateway-proxy:local",
      build: { context: path.join("image", "proxy"), dockerfile: path.join("image", "proxy", "Dockerfile") },
      skipPush: true,
    });
    for (const c of containers()) expect(c.inputs.image, c.name).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it("keeps Ollama on the private network only, with no ports", () => {
    const privateNet = findResource(TYPES.network, "gateway-private");
    const ollama = findResource(TYPES.container, "gateway-ollama-server");
    expect(ollama.inputs.ports).toBeUndefined();
    expect(ollama.inputs.networkMode).toBeUndefined();
    expect(ollama.inputs.networksAdvanced).toEqual([{ name: expect.stringMatching(/^gateway-private-/), aliases: ["ollama"] }]);
    expect(privateNet.inputs.internal).toBe(false);
    expect(ollama.inputs.envs).toContain("OLLAMA_NO_CLOUD=1");
    expect(ollama.inputs.envs).toContain("OLLAMA_KEEP_ALIVE=5m");
    expect(ollama.inputs.healthcheck.tests).toEqual(["CMD", "ollama", "list"]);
    expect(ollama.inputs.wait).toBe(true);
    expect(ollama.inputs.gpus).toBeUndefined();
  });

  it("pulls each model with a one-shot client against the server", () => {
    const pull = findResource(TYPES.container, "gateway-ollama-pull-gemma3-1b");
    expect(pull.inputs).toMatchObject({
      command: ["pull", "gemma3:1b"],
      envs: ["OLLAMA_HOST=http://ollama:11434"],
      mustRun: false,
      restart: "no",
      attach: true,
    });
    expect(pull.inputs.ports).toBeUndefined();
  });

  it("publishes ports on the proxy only, on the bind address", () => {
    const withPorts = containers().filter((c) => c.inputs.ports !== undefined && c.inputs.ports.length > 0);
    expect(withPorts.map((c) => c.name)).toEqual(["gateway-proxy-server"]);
    expect(withPorts[0].inputs.ports).toEqual([
      { internal: 8080, external: 8080, ip: "127.0.0.1" },
      { internal: 8443, external: 8443, ip: "127.0.0.1" },
      { internal: 9145, external: 9145, ip: "127.0.0.1" },
    ]);
    expect(withPorts[0].inputs.networksAdvanced.map((n: { name: string }) => n.name.replace(/-[a-z0-9]{7}$/, ""))).toEqual([
      "gateway-edge",
      "gateway-private",
    ]);
  });

  it("writes exactly the rendered config files through a one-shot writer, none of them secret or credential-bearing", () => {
    const writer = findResource(TYPES.container, "gateway-proxy-config-writer");
    expect(writer.inputs).toMatchObject({ mustRun: false, restart: "no", networkMode: "none", attach: true, user: "0:0" });
    expect(isSecretValue(writer.inputs.uploads)).toBe(false);
    const spec = validateSettings(DEV_PROXY_SPEC);
    const files = renderConfigFiles(spec, "debian", DEBIAN_USAGE_MODULE);
    expect(configUploads()).toEqual(files);
    expect(Object.keys(files).some((file) => file.includes("credentials/"))).toBe(false);
    const configVolume = writer.inputs.volumes[0].volumeName;
    expect(writer.inputs.volumes).toEqual([{ volumeName: expect.stringMatching(/^gateway-proxy-config-/), containerPath: "/gateway" }]);

    const proxy = findResource(TYPES.container, "gateway-proxy-server");
    expect(proxy.inputs.uploads).toBeUndefined();
    expect(proxy.inputs.command).toEqual(["nginx", "-p", "/gateway", "-c", "conf/nginx.conf", "-e", "/dev/stderr", "-g", "daemon off;"]);
    // Read-only root, unprivileged, no capabilities; both volumes read-only.
    expect(proxy.inputs).toMatchObject({ readOnly: true, user: "10001:10001", capabilities: { drops: ["ALL"] }, securityOpts: ["no-new-privileges:true"] });
    expect(proxy.inputs.volumes).toEqual([
      { volumeName: configVolume, containerPath: "/gateway", readOnly: true },
      { volumeName: expect.stringMatching(/^gateway-proxy-credentials-/), containerPath: "/gateway/credentials", readOnly: true },
    ]);
    expect(Object.keys(proxy.inputs.tmpfs).sort()).toEqual(["/gateway/logs", "/gateway/tmp"]);
    // nginx's worker_rlimit_nofile (2 x 4096 worker connections + 128) fits exactly.
    expect(proxy.inputs.ulimits).toEqual([{ name: "nofile", soft: 8320, hard: 8320 }]);
    expect(files["conf/nginx.conf"]).toContain("worker_rlimit_nofile 8320;");
    // A config change replaces the proxy (nginx reads its config at start); credentials do not.
    expect(proxy.inputs.labels).toEqual([{ label: CONFIG_DIGEST_LABEL, value: configDigest(files) }]);
  });

  it("writes credential files through a one-shot writer whose uploads are secret", async () => {
    const writer = findResource(TYPES.container, "gateway-proxy-credentials-writer");
    expect(writer.inputs).toMatchObject({ mustRun: false, restart: "no", networkMode: "none", attach: true });
    expect(isSecretValue(writer.inputs.uploads)).toBe(true);
    const uploads = unwrap(writer.inputs.uploads) as { file: string; content: string }[];
    expect(uploads.map((u) => u.file).sort()).toEqual([
      "/staging/credentials/api-keys",
      "/staging/credentials/htpasswd",
      "/staging/credentials/tls.pem",
    ]);
    const keys = await valueOf(program.apiKeys);
    const apiKeysFile = uploads.find((u) => u.file.endsWith("api-keys"))!.content;
    expect(apiKeysFile).toContain(`app\tinference\tcurrent\t-\t-\t${sha256Hex(keys.app)}`);
    expect(apiKeysFile).toContain(`ops\tadmin\tcurrent\t-\t-\t${sha256Hex(keys.ops)}`);
    expect(apiKeysFile).not.toContain(keys.app);
    expect(uploads.find((u) => u.file.endsWith("htpasswd"))!.content).toMatch(/^alice:\$2b\$10\$[./A-Za-z0-9]{53}:inference current - -$/m);
    // Copy to a temporary name in the volume, then rename: the proxy never reads a half-written file.
    expect(writer.inputs.command).toEqual([syncScript("/staging/credentials", "/gateway/credentials", { mode: "0600", subdirs: ["."] })]);
    // Only the workers' user reads them (the writer runs as that user); what the script does is
    // proven on a real engine by test/containers.test.ts.
    expect(writer.inputs.user).toBe("10001:10001");
    const proxyVolume = findResource(TYPES.container, "gateway-proxy-server").inputs.volumes[1].volumeName;
    expect(writer.inputs.volumes).toEqual([{ volumeName: proxyVolume, containerPath: "/gateway/credentials" }]);
  });

  it("generates credentials with stable random resources and a bcrypt salt alphabet", () => {
    expect(findResource(TYPES.password, "gateway-credentials-key-app-current").inputs).toMatchObject({ length: 40, special: false });
    expect(findResource(TYPES.password, "gateway-credentials-password-alice-current").inputs).toMatchObject({ length: 24 });
    expect(findResource(TYPES.string, "gateway-credentials-salt-alice-current").inputs).toMatchObject({
      length: 22,
      special: true,
      overrideSpecial: "./",
      keepers: { name: "alice", slot: "current" },
    });
  });

  it("issues a server certificate for the host name and address from a private CA", () => {
    expect(findResource(TYPES.privateKey, "gateway-tls-ca-key").inputs).toMatchObject({ algorithm: "ECDSA", ecdsaCurve: "P256" });
    expect(findResource(TYPES.selfSignedCert, "gateway-tls-ca").inputs.isCaCertificate).toBe(true);
    expect(findResource(TYPES.certRequest, "gateway-tls-server-csr").inputs).toMatchObject({ dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] });
    expect(findResource(TYPES.locallySignedCert, "gateway-tls-server").inputs).toMatchObject({
      validityPeriodHours: 8760,
      earlyRenewalHours: 720,
      allowedUses: ["digital_signature", "key_encipherment", "server_auth"],
    });
  });

  it("exports URLs in the clear and every credential-bearing output as secret", async () => {
    expect(await valueOf(program.endpoint)).toBe("https://localhost:8443");
    expect(await valueOf(program.healthUrl)).toBe("https://localhost:8443/healthz");
    expect(await valueOf(program.openaiBaseUrl)).toBe("https://localhost:8443/v1");
    expect(await valueOf(program.caCertPem)).toContain("-----BEGIN CERTIFICATE-----");
    for (const name of ["endpoint", "healthUrl", "openaiBaseUrl", "caCertPem"] as const)
      expect(await outputIsSecret(program[name]), name).toBe(false);
    for (const name of ["apiKeys", "basicAuth", "curlExample", "clientEnv"] as const) expect(await outputIsSecret(program[name]), name).toBe(true);

    const keys = await valueOf(program.apiKeys);
    expect(Object.keys(keys).sort()).toEqual(["app", "ops"]);
    expect(keys.app).toMatch(/^[A-Za-z0-9]{40}$/);
    expect(Object.keys(await valueOf(program.basicAuth))).toEqual(["alice"]);
    expect(await valueOf(program.curlExample)).toBe(
      `curl --cacert ca.pem -H 'Authorization: Bearer ${keys.app}' https://localhost:8443/v1/models`,
    );
    const caPem = await valueOf(program.caCertPem);
    expect(await valueOf(program.clientEnv)).toBe(
      [
        "# Ollama and OpenAI clients, Node and Python: docs/clients.md",
        `printf '%s' '${caPem}' > ca.pem`,
        "export OLLAMA_HOST='https://localhost:8443'",
        `export OLLAMA_API_KEY='${keys.app}'`,
        "export OPENAI_BASE_URL='https://localhost:8443/v1'",
        `export OPENAI_API_KEY='${keys.app}'`,
        'export NODE_EXTRA_CA_CERTS="$PWD/ca.pem"',
        'export SSL_CERT_FILE="$PWD/ca.pem"',
        "",
      ].join("\n"),
    );
  });

  it("gives identical proxy and writer inputs on a second evaluation", async () => {
    const first = ["gateway-proxy-server", "gateway-proxy-credentials-writer"].map((name) => findResource(TYPES.container, name).inputs);
    const again = await evaluate(devStackConfig());
    const second = ["gateway-proxy-server", "gateway-proxy-credentials-writer"].map((name) => findResource(TYPES.container, name).inputs);
    expect(JSON.stringify(second)).toBe(JSON.stringify(first));
    expect(await valueOf(again.program.apiKeys)).toEqual(await valueOf(program.apiKeys));
  });
});

describe("stack variants", () => {
  it("uses a provided certificate instead of generating one", async () => {
    const certPem = "-----BEGIN CERTIFICATE-----\nprovided\n-----END CERTIFICATE-----";
    const keyPem = "-----BEGIN PRIVATE KEY-----\nprovided\n-----END PRIVATE KEY-----";
    const { program, resources } = await evaluate({
      ...devStackConfig(),
      tlsMode: "provided",
      tlsCertPem: certPem,
      tlsKeyPem: keyPem,
    });
    expect(resources.filter((r) => r.type.startsWith("tls:"))).toEqual([]);
    const writer = findResource(TYPES.container, "gateway-proxy-credentials-writer");
    const tlsFile = (unwrap(writer.inputs.uploads) as { file: string; content: string }[]).find((u) => u.file.endsWith("tls.pem"))!;
    expect(tlsFile.content).toBe(`${certPem}\n${keyPem}\n`);
    expect(await valueOf(program.caCertPem)).toBe(certPem);
  });

  it("uses supplied secrets and serves plain HTTP without TLS", async () => {
    const key = "supplied-key-5f8c2a9e7d1b4f6a";
    const { program, resources } = await evaluate({
      ...devStackConfig(),
      tlsMode: "none",
      bindAddress: "0.0.0.0",
      httpPort: "9000",
      gpu: "true",
      models: "[]",
      suppliedSecrets: JSON.stringify({ apiKeys: { app: key } }),
    });
    expect(resources.filter((r) => r.type.startsWith("tls:"))).toEqual([]);
    expect(resources.some((r) => r.name === "gateway-credentials-key-app-current")).toBe(false);
    expect((await valueOf(program.apiKeys)).app).toBe(key);
    expect(await valueOf(program.endpoint)).toBe("http://localhost:9000");
    expect(findResource(TYPES.container, "gateway-proxy-server").inputs.ports).toEqual([
      { internal: 9000, external: 9000, ip: "0.0.0.0" },
      // Metrics stay on loopback whatever bindAddress is.
      { internal: 9145, external: 9145, ip: "127.0.0.1" },
    ]);
    expect(findResource(TYPES.container, "gateway-ollama-server").inputs.gpus).toBe("all");
    expect(containers().map((c) => c.name).sort()).toEqual([
      "gateway-ollama-server",
      "gateway-proxy-config-writer",
      "gateway-proxy-credentials-writer",
      "gateway-proxy-server",
    ]);
  });

  it("refuses invalid config with every problem listed and declares nothing", async () => {
    await expectProgramRefuses({ ...devStackConfig(), httpPort: "70000", apiKeys: JSON.stringify(["app:root"]), ollamaImage: "ollama/ollama:latest" }, [
        "Invalid stack config (3 problems):",
        "- `ollama-gateway:httpPort` is 70000; use a TCP port between 1 and 65535.",
        '- `ollama-gateway:ollamaImage` is "ollama/ollama:latest"; pin a version tag such as `ollama/ollama:0.12.6` (not `latest`, not untagged).',
      '- `ollama-gateway:apiKeys[0].scope` is "root"; use one of `read`, `inference`, `admin`.',
    ]);
  });
});

describe("enterprise authentication and network restriction", () => {
  const rsaPem = generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey.export({ type: "spki", format: "pem" }).toString();
  const authUrl = "http://10.0.0.5:4180/oauth2/auth";
  const enterpriseConfig = () => ({
    ...devStackConfig(),
    jwtIssuer: "https://login.example.com/",
    jwtAudience: "ollama-gateway",
    jwtAlgorithms: JSON.stringify(["HS256", "RS256"]),
    jwtPublicKeysPem: JSON.stringify([`2026-01:\n${rsaPem}`]),
    jwtScopeClaim: "roles",
    jwtScopeValues: JSON.stringify(["llm-user:inference", "llm-admin:admin"]),
    externalAuthUrl: authUrl,
    allowCidrs: JSON.stringify(["10.0.0.0/8", "2001:db8::/32"]),
    denyCidrs: JSON.stringify(["10.9.0.0/16"]),
    trustedProxyCidrs: JSON.stringify(["10.20.0.0/24"]),
  });
  /** The writer's files, path relative to the prefix, secrets unwrapped. */
  const writerFiles = () =>
    Object.fromEntries(
      (unwrap(findResource(TYPES.container, "gateway-proxy-credentials-writer").inputs.uploads) as { file: string; content: string }[]).map(
        (u) => [u.file.replace("/staging/", ""), u.content],
      ),
    );
  let program: Program;
  let resources: RecordedResource[];
  beforeAll(async () => {
    ({ program, resources } = await evaluate(enterpriseConfig()));
  });

  it("uploads the config files renderConfigFiles gives for the same settings, whatever the HS256 secret", () => {
    // Settings alone: config files name issuer, audience and algorithms, never a key.
    const spec = validateSettings({
      ...DEV_PROXY_SPEC,
      jwt: {
        issuer: "https://login.example.com/",
        audience: "ollama-gateway",
        algorithms: ["HS256", "RS256"],
        publicKeys: [{ kid: "2026-01", pem: rsaPem }],
        scopeClaim: "roles",
        scopeValues: { read: [], inference: ["llm-user"], admin: ["llm-admin"] },
      },
      externalAuth: { url: authUrl },
      // 127.0.0.1: the container's own healthcheck.
      network: { allow: ["10.0.0.0/8", "2001:db8::/32", "127.0.0.1"], deny: ["10.9.0.0/16"], trustedProxies: ["10.20.0.0/24"] },
    });
    const uploaded = configUploads();
    expect(uploaded).toEqual(renderConfigFiles(spec, "debian", DEBIAN_USAGE_MODULE));
    expect(uploaded["lua/gateway/config.lua"]).toContain('issuer = "https://login.example.com/"');
    expect(uploaded["conf/gateway-locations.conf"]).toContain(`proxy_pass ${authUrl};`);
  });

  it("renders the network lists into realip and allow/deny rules, deny first, keeping the healthcheck's 127.0.0.1", () => {
    const proxy = findResource(TYPES.container, "gateway-proxy-server");
    const common = configUploads()["conf/gateway-common.conf"];
    expect(common).toContain(["set_real_ip_from 10.20.0.0/24;", "real_ip_header X-Forwarded-For;", "real_ip_recursive on;"].join("\n"));
    expect(common).toContain(
      ["deny 10.9.0.0/16;", "allow 10.0.0.0/8;", "allow 2001:db8::/32;", "allow 127.0.0.1;", "deny all;"].join("\n"),
    );
    expect(proxy.inputs.healthcheck.tests).toEqual(["CMD", "curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/healthz"]);
  });

  it("generates the HS256 secret once, exports it as a secret, and writes it only to credentials/jwt-keys", async () => {
    expect(findResource(TYPES.password, "gateway-credentials-jwt-hs256").inputs).toMatchObject({ length: 64, special: false });
    expect(resources.find((r) => r.name === "gateway-credentials-jwt-hs256")?.parent).toBe(
      resources.find((r) => r.name === "gateway-credentials")?.urn,
    );
    expect(await outputIsSecret(program.jwtHs256Secret)).toBe(true);
    const secret = (await valueOf(program.jwtHs256Secret))!;
    expect(secret).toMatch(/^[A-Za-z0-9]{64}$/);

    const writer = findResource(TYPES.container, "gateway-proxy-credentials-writer");
    expect(isSecretValue(writer.inputs.uploads)).toBe(true);
    const files = writerFiles();
    expect(Object.keys(files).sort()).toEqual(["credentials/api-keys", "credentials/htpasswd", "credentials/jwt-keys", "credentials/tls.pem"]);
    expect(files["credentials/jwt-keys"]).toBe(
      renderJwtKeysFile(jwtKeyRecords({ hs256Secrets: [{ secret }], publicKeys: [{ kid: "2026-01", pem: rsaPem }] })),
    );
    expect(files["credentials/jwt-keys"]).toContain(`HS256\t-\t${Buffer.from(secret).toString("base64")}`);
    // Nowhere else: not in any other resource's inputs, in the clear or base64.
    for (const r of resources.filter((r) => r.name !== "gateway-proxy-credentials-writer")) {
      const inputs = JSON.stringify(unwrap(r.inputs));
      expect(inputs, r.name).not.toContain(secret);
      expect(inputs, r.name).not.toContain(Buffer.from(secret).toString("base64"));
    }
  });

  it("exports what token issuers need, not secret", async () => {
    expect(await outputIsSecret(program.jwtSettings)).toBe(false);
    expect(await valueOf(program.jwtSettings)).toEqual({
      issuer: "https://login.example.com/",
      audience: "ollama-gateway",
      algorithms: ["HS256", "RS256"],
      scopeClaim: "roles",
      scopeValues: { read: [], inference: ["llm-user"], admin: ["llm-admin"] },
      nameClaim: "sub",
    });
  });

  it("gives identical resources and the same secret on a second evaluation", async () => {
    const inputsOf = (list: RecordedResource[]) => new Map(list.map((r) => [r.urn, JSON.stringify(unwrap(r.inputs))]));
    const first = inputsOf(resources);
    const secret = await valueOf(program.jwtHs256Secret);
    const again = await evaluate(enterpriseConfig());
    expect(inputsOf(again.resources)).toEqual(first);
    expect(await valueOf(again.program.jwtHs256Secret)).toBe(secret);
    const urns = again.resources.map((r) => r.urn);
    expect(new Set(urns).size).toBe(urns.length);
  });

  it("uses a supplied HS256 secret, generates none, and keeps it secret", async () => {
    const supplied = "a-supplied-hs256-secret-of-40-characters";
    const { program: p, resources: r } = await evaluate({ ...enterpriseConfig(), jwtHs256Secret: supplied });
    expect(r.some((res) => res.name === "gateway-credentials-jwt-hs256")).toBe(false);
    expect(await outputIsSecret(p.jwtHs256Secret)).toBe(true);
    expect(await valueOf(p.jwtHs256Secret)).toBe(supplied);
    expect(writerFiles()["credentials/jwt-keys"]).toContain(`HS256\t-\t${Buffer.from(supplied).toString("base64")}`);
    expect(JSON.stringify(unwrap(findResource(TYPES.container, "gateway-proxy-server").inputs))).not.toContain(supplied);
  });

  it("exports no HS256 secret with RS256 only, and nothing JWT with JWT off", async () => {
    const rsOnly = await evaluate({ ...enterpriseConfig(), jwtAlgorithms: JSON.stringify(["RS256"]) });
    expect(rsOnly.resources.some((r) => r.name === "gateway-credentials-jwt-hs256")).toBe(false);
    expect(await valueOf(rsOnly.program.jwtHs256Secret)).toBeUndefined();
    expect(writerFiles()["credentials/jwt-keys"]).toMatch(/^RS256\t2026-01\t/m);
    expect(writerFiles()["credentials/jwt-keys"]).not.toMatch(/^HS256\t/m);
    const off = await evaluate(devStackConfig());
    expect(await valueOf(off.program.jwtHs256Secret)).toBeUndefined();
    expect(await valueOf(off.program.jwtSettings)).toBeUndefined();
    expect(Object.keys(writerFiles())).not.toContain("credentials/jwt-keys");
  });

  it("refuses invalid JWT, external auth and network config with exact messages and declares nothing", async () => {
    await expectProgramRefuses(
      {
        ...enterpriseConfig(),
        jwtHs256Secret: "too-short",
        externalAuthMode: "always",
        denyCidrs: JSON.stringify(["127.0.0.1"]),
        allowCidrs: JSON.stringify(["10.1.0.0/8"]),
      },
      [
        "Invalid stack config (4 problems):",
        "- `ollama-gateway:jwtHs256Secret` is a secret of 9 characters (not shown); use at least 32 characters (RFC 7518: the key must be as long as the hash).",
        '- `ollama-gateway:denyCidrs[0]` is "127.0.0.1", which covers 127.0.0.1, where the proxy\'s own healthcheck comes from; remove it (inside the container 127.0.0.1 is only the proxy itself).',
        '- `ollama-gateway:externalAuthMode` is "always"; use `fallback` or `exclusive`.',
        '- `ollama-gateway:allowCidrs[0]` ("10.1.0.0/8") has host bits set; use the network address of the block.',
      ],
    );
  });
});

describe("secret keys stored in plain text", () => {
  it("are deployed but warned about, since Pulumi.yaml cannot declare them secret", async () => {
    const warn = vi.spyOn(pulumi.log, "warn").mockImplementation(async () => undefined);
    try {
      const supplied = JSON.stringify({ apiKeys: { app: "plain-text-key-000000000000000000" } });
      await evaluate({ ...devStackConfig(), suppliedSecrets: supplied }, ["suppliedSecrets"]);
      const messages = warn.mock.calls.map((call) => String(call[0]));
      expect(messages).toContain(
        "`ollama-gateway:suppliedSecrets` is stored in plain text in the stack file; set it again with `pulumi config set --secret suppliedSecrets`.",
      );
      expect(messages.join("\n")).not.toContain("plain-text-key");
      warn.mockClear();
      await evaluate({ ...devStackConfig(), suppliedSecrets: supplied });
      expect(warn.mock.calls.map((call) => String(call[0])).join("\n")).not.toContain("plain text");
    } finally {
      warn.mockRestore();
    }
  });
});

describe("the proxy image build", () => {
  it("refuses a build context without a Dockerfile before declaring anything, naming the path and the fix", async () => {
    const { AuthProxy } = await import("../components/AuthProxy.js");
    const { proxySettingsFor } = await import("../bundle/proxySettings.js");
    expect(
      () =>
        new AuthProxy("broken", {
          settings: proxySettingsFor({}, { ports: { http: 8080 }, backend: { upstream: "http://ollama:11434" } }),
          credentials: { apiKeys: [], basicUsers: [] },
          edgeNetwork: "edge",
          privateNetwork: "private",
          imageBuild: { context: "/nonexistent/image/proxy" },
        }),
    ).toThrow(
      "`imageBuild`: no Dockerfile at /nonexistent/image/proxy/Dockerfile; point `imageBuild.context` at a copy of this package's image/proxy, or set `image` to an image built from it.",
    );
  });
});

describe("governance in the program (issue 16)", () => {
  it("renders each credential's governance into the proxy's config files, never its secret", async () => {
    await evaluate({
      ...devStackConfig(),
      maxNumCtx: "8192",
      credentialPolicies: JSON.stringify({ app: { models: ["gemma3:*"], maxConcurrent: 2, tokenBudget: { perMinute: 20000 } }, alice: { limits: { maxNumCtx: 4096 } } }),
    });
    const policy = configUploads()["lua/gateway/policy.lua"];
    expect(policy).toContain("limits = { num_ctx = 8192 },");
    expect(policy).toContain('["key:app"] = { budget = { minute = 20000 }, max_concurrent = 2, models = { exact = {  }, globs = { "^gemma3:.*$" } } },');
    expect(policy).toContain('["user:alice"] = { limits = { num_ctx = 4096 } },');
    expect(policy).not.toContain("ops");
    expect(Object.values(configUploads()).join("\n")).not.toMatch(/\$2b\$10\$a{53}|0{64}/);
  });
  it("renders jwtModelGrants and externalAuthModelGrants into the policy the proxy runs", async () => {
    await evaluate({
      ...devStackConfig(),
      jwtIssuer: "https://login.example.com/",
      jwtAudience: "ollama-gateway",
      jwtAlgorithms: JSON.stringify(["HS256"]),
      jwtModelGrants: JSON.stringify({ "llm-user": ["gemma3:*"] }),
      externalAuthUrl: "http://10.0.0.5:4180/oauth2/auth",
      externalAuthModelGrants: JSON.stringify({ "ollama-users": ["qwen3:8b"] }),
    });
    const policy = configUploads()["lua/gateway/policy.lua"];
    expect(policy).toContain('model_grants = { jwt = { ["llm-user"] = { exact = {  }, globs = { "^gemma3:.*$" } } }, ext = { ["ollama-users"] = { exact = { ["qwen3:8b"] = true }, globs = {  } } } },');
  });
});
