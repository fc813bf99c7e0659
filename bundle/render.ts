/**
 * Renders a gateway spec into a bundle: the files of an nginx prefix directory, runnable
 * unchanged with `nginx -p <dir> -c conf/nginx.conf`.
 *
 * The bundle has two halves that change independently:
 * - config files (`conf/`, `lua/`): rendered from the settings alone (bundle/spec.ts);
 * - credential files (`credentials/`): from the settings and the credentials: keys (as SHA-256
 *   digests), bcrypt hashes, HS256 secrets, TLS material.
 * The proxy re-reads credential files when they change, so rotating a secret never needs a
 * reload or a new container.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import {
  API_KEYS_FILE,
  type ApiKeyRecord,
  type BasicUserRecord,
  bcryptHash,
  HTPASSWD_FILE,
  renderApiKeysFile,
  renderHtpasswdFile,
  sha256Hex,
  TLS_PEM_FILE,
  toUnixSeconds,
} from "./credentials";
import { renderMetricsServer, renderPolicyLua } from "./governance";
import { JWT_KEYS_FILE, jwtKeyRecords, renderJwtKeysFile } from "./jwt";
import { FINAL_OBJECT_PATHS, luaString, ROUTE_POLICY, renderRoutesLua, SCOPE_RANK } from "./routes";
import { type Flavor, type GatewayCredentials, type GatewaySettings, type GatewaySpec, type Scope, specBackends, splitSpec } from "./spec";

export type BundleFiles = Record<string, string>;

export interface RenderOptions {
  flavor?: Flavor;
  /**
   * The token-accounting body filter built from image/proxy/usage-module/
   * (scripts/build-usage-module.sh) for the nginx that runs the bundle: its .so path there.
   * Absent: the Lua body filter (gateway/usage.lua), the same numbers at about 2,800 more
   * instructions per streamed chunk (bench/results/governance.md).
   */
  usageModule?: string;
  /** Hashes a Basic password given in clear. Default: bcrypt cost 10 with a random salt. */
  hashPassword?: (userName: string, password: string) => string;
}

export interface Bundle {
  /** Every file, path relative to the nginx prefix. */
  files: BundleFiles;
  /** Paths (keys of `files`) that are credential files: secret, live-updated. */
  credentialPaths: string[];
}

/** The data plane's source files, shipped with the package. */
export const NGINX_SOURCE_DIR = path.join(__dirname, "..", "nginx");

/** The master's pid file, inside the bundle: `render --reload` signals the pid in it. */
export const PID_FILE = "logs/nginx.pid";

/** Seconds a client is asked to wait after a 503 that names no time itself. */
const RETRY_AFTER_SECONDS = 5;

/**
 * Open files each nginx worker may hold (`worker_rlimit_nofile`): every proxied request uses two
 * connections (client and Ollama), plus log files, listeners and credential reads. The container's
 * or host's `nofile` limit must be at least this, or nginx cannot raise its own.
 */
export function workerFileLimit(spec: Pick<GatewaySettings, "workerConnections">): number {
  return 2 * spec.workerConnections + 128;
}

/** bcrypt verifications one client address may have in flight at once; more get 429. */
export const BCRYPT_IN_FLIGHT_PER_ADDRESS = 2;

/**
 * bcrypt verifications one worker may have in flight (running or queued for its thread pool); more
 * get 429. A few per thread keep a short queue, so a burst of logins waits a few bcrypts at most.
 * Each holds a Lua VM of the pool (`lua_worker_thread_vm_pool_size`, rendered from this).
 */
export function bcryptInFlightPerWorker(spec: Pick<GatewaySettings, "bcryptThreads">): number {
  return 4 * spec.bcryptThreads;
}

/** `https://host[:port]` plain-HTTP clients are sent to, or undefined when no fixed host is configured. */
export function httpsBaseUrl(spec: Pick<GatewaySettings, "tls" | "serverName" | "redirectHost" | "listen">): string | undefined {
  const host = spec.redirectHost ?? (spec.serverName === "_" ? undefined : spec.serverName);
  if (!spec.tls || host === undefined || spec.listen.https === undefined) return undefined;
  return `https://${host}${spec.listen.https === 443 ? "" : `:${spec.listen.https}`}`;
}

/** Debian's nginx loads Lua as dynamic modules; OpenResty has it built in. */
const MODULE_LOADING: Record<Flavor, string> = {
  openresty: "# OpenResty: the Lua module is built in.",
  debian: [
    "# Debian nginx with libnginx-mod-http-lua: the Lua module and its NDK dependency.",
    "load_module /usr/lib/nginx/modules/ndk_http_module.so;",
    "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;",
  ].join("\n"),
};

/** Where the proxy image (image/proxy/Dockerfile) installs the token-accounting module. */
export const DEBIAN_USAGE_MODULE = "/usr/lib/nginx/modules/ngx_http_gateway_usage_filter_module.so";

function usageModuleLoading(so: string): string {
  if (!/^[^\s;"'{}$\\]+$/.test(so)) throw new Error(`usageModule: ${JSON.stringify(so)} is not a file path nginx can load (no spaces, quotes, ;, {, }, $ or \\)`);
  return ["# The gateway's token-accounting body filter (image/proxy/usage-module/, gateway_usage).", `load_module ${so};`].join("\n");
}

/**
 * What the C body filter reads per route (`gateway_usage $gw_usage_mode`): Ollama's final object
 * on native generation routes, the last count fields on other inference routes, nothing
 * elsewhere. Keyed by method and the raw path access.lua admitted ($gw_path).
 */
function renderUsageModeMap(): string {
  const entries = ROUTE_POLICY.filter((route) => route.class === "inference" && !route.path.includes("/:")).map(
    (route) => `        "${route.method} ${route.path}" ${FINAL_OBJECT_PATHS.includes(route.path) ? "final" : "scan"};`,
  );
  return ["    map \"$request_method $gw_path\" $gw_usage_mode {", "        default \"\";", ...entries, "    }"].join("\n");
}

/**
 * Fills `{{name}}` placeholders and `{{#if name}}...{{else}}...{{/if}}` blocks (not nested).
 * Throws on a placeholder without a value, so a template and its renderer cannot drift apart.
 */
export function fillTemplate(template: string, values: Record<string, string | boolean>): string {
  const withBlocks = template.replace(
    /\{\{#if (\w+)\}\}\n?([\s\S]*?)(?:\{\{else\}\}\n?([\s\S]*?))?\{\{\/if\}\}\n?/g,
    (_, name: string, then: string, otherwise = "") => (values[name] ? then : otherwise),
  );
  return withBlocks.replace(/\{\{(\w+)\}\}/g, (_, name: string) => {
    const value = values[name];
    if (value === undefined || typeof value === "boolean") throw new Error(`template value \`${name}\` is not set`);
    return value;
  });
}

function readSource(relative: string): string {
  return readFileSync(path.join(NGINX_SOURCE_DIR, relative), "utf8");
}

function upstreamParts(upstream: string) {
  const url = new URL(upstream);
  const scheme = url.protocol.replace(":", "");
  const port = url.port || (scheme === "https" ? "443" : "80");
  const hostPort = `${url.hostname}:${port}`;
  // IPv6 literals keep their brackets in host:port, not as an address to connect to.
  return { scheme, hostPort, host: url.hostname.replace(/^\[(.*)\]$/, "$1"), port };
}

/** The `pool` entry of config.lua: rendered only for more than one backend. */
function poolLua(spec: GatewaySettings): string[] {
  const backends = specBackends(spec);
  if (backends.length < 2) return [];
  return [
    "  -- The pool of Ollama backends (spec `upstreams`), routed by gateway/pool.lua.",
    "  pool = {",
    `    probe_interval = ${spec.probeIntervalSeconds},`,
    `    affinity_caller = ${spec.affinity === "caller"},`,
    "    backends = {",
    ...backends.map((b) => {
      const parts = upstreamParts(b.url);
      const max = b.maxConcurrent === undefined ? "" : `, max_concurrent = ${b.maxConcurrent}`;
      return `      { name = ${luaString(b.name)}, scheme = ${luaString(parts.scheme)}, host = ${luaString(parts.host)}, port = ${parts.port}, host_header = ${luaString(parts.hostPort)}, weight = ${b.weight}${max} },`;
    }),
    "    },",
    "  },",
  ];
}

/** `{ ["claim value"] = "scope", ... }` for config.lua. */
function scopeValuesLua(values: Record<Scope, string[]>): string {
  const entries = (Object.entries(values) as [Scope, string[]][]).flatMap(([scope, list]) =>
    list.map((value) => `[${luaString(value)}] = ${luaString(scope)}`),
  );
  return `{ ${entries.join(", ")} }`;
}

/** The `jwt` and `external_auth` entries of config.lua (issuer, claims; never a key). */
function enterpriseAuthLua(spec: GatewaySettings): string[] {
  const lines: string[] = [];
  if (spec.jwt) {
    const jwt = spec.jwt;
    lines.push(
      "  -- JWT bearer tokens; the keys are in credentials/jwt-keys.",
      "  jwt = {",
      `    issuer = ${luaString(jwt.issuer)},`,
      `    audience = ${luaString(jwt.audience)},`,
      `    algorithms = { ${jwt.algorithms.map((a) => `${a} = true`).join(", ")} },`,
      `    scope_claim = ${luaString(jwt.scopeClaim)},`,
      `    scope_values = ${scopeValuesLua(jwt.scopeValues)},`,
      `    name_claim = ${luaString(jwt.nameClaim)},`,
      `    clock_skew = ${jwt.clockSkewSeconds},`,
      `    max_token_bytes = ${jwt.maxTokenBytes},`,
      `    cloud = ${jwt.cloud},`,
      "  },",
    );
  }
  if (spec.externalAuth) {
    const ext = spec.externalAuth;
    lines.push(
      "  -- External authentication service, asked through /_gw/external-auth.",
      "  external_auth = {",
      `    mode = ${luaString(ext.mode)},`,
      `    name_header = ${luaString(ext.nameHeader.toLowerCase())},`,
      `    scope_header = ${luaString(ext.scopeHeader.toLowerCase())},`,
      `    scope_values = ${scopeValuesLua(ext.scopeValues)},`,
      `    cloud = ${ext.cloud},`,
      "  },",
    );
  }
  return lines;
}

/**
 * The client address (nginx realip, for trusted proxies only), then the `allow`/`deny` rules:
 * deny entries first, then allow entries, then `deny all` if any allow.
 */
export function renderNetworkRules(network: GatewaySettings["network"]): string {
  const realIp =
    network.trustedProxies.length === 0
      ? ["# The client address is the peer's: no trusted proxies (spec `network.trustedProxies`)."]
      : [
          `# The client address comes from ${network.clientAddressHeader} only on requests from these proxies`,
          "# (spec `network.trustedProxies`): the last address in it that is not itself a trusted proxy.",
          ...network.trustedProxies.map((c) => `set_real_ip_from ${c};`),
          `real_ip_header ${network.clientAddressHeader};`,
          "real_ip_recursive on;",
        ];
  const rules =
    network.allow.length === 0 && network.deny.length === 0
      ? ["# No client address restrictions (spec `network`)."]
      : [
          "# Client addresses (spec `network`), checked before any credential; refused: 403 JSON.",
          ...network.deny.map((c) => `deny ${c};`),
          ...network.allow.map((c) => `allow ${c};`),
          ...(network.allow.length > 0 ? ["deny all;"] : []),
        ];
  return [...realIp, ...rules].join("\n");
}

/** The internal location that asks the external authentication service. */
function externalAuthLocation(spec: GatewaySettings): string {
  const ext = spec.externalAuth;
  if (!ext) return "";
  const https = ext.url.startsWith("https:");
  return [
    "",
    "# The external authentication service (spec `externalAuth`), asked by gateway/external_auth.lua",
    "# through a subrequest: no body, the client's own headers (Authorization, X-API-Key, Cookie...),",
    "# and the original method and URI.",
    "location = /_gw/external-auth {",
    "    internal;",
    `    proxy_pass ${ext.url};`,
    "    proxy_http_version 1.1;",
    "    proxy_pass_request_body off;",
    '    proxy_set_header Content-Length "";',
    "    proxy_set_header X-Original-Method $request_method;",
    "    proxy_set_header X-Original-URI $request_uri;",
    "    proxy_set_header X-Forwarded-For $remote_addr;",
    "    proxy_set_header X-Forwarded-Proto $scheme;",
    "    proxy_set_header X-Forwarded-Host $host;",
    `    proxy_connect_timeout ${ext.timeoutSeconds}s;`,
    `    proxy_send_timeout ${ext.timeoutSeconds}s;`,
    `    proxy_read_timeout ${ext.timeoutSeconds}s;`,
    "    proxy_buffering on;",
    "    proxy_buffer_size 16k;",
    "    proxy_buffers 4 16k;",
    "    proxy_next_upstream off;",
    "    proxy_intercept_errors off;",
    ...(https
      ? [
          "    proxy_ssl_server_name on;",
          "    proxy_ssl_verify on;",
          "    proxy_ssl_verify_depth 4;",
          `    proxy_ssl_trusted_certificate ${ext.trustedCaFile};`,
        ]
      : []),
    "}",
    "",
  ].join("\n");
}

/** `gateway/config.lua`: the runtime settings the Lua modules read (no credentials). */
export function renderConfigLua(spec: GatewaySettings, usageModule = false): string {
  const httpsBase = httpsBaseUrl(spec);
  const origins = spec.cors.allowedOrigins.map((origin) => `    [${luaString(origin)}] = true,`);
  return [
    "-- Generated by bundle/render.ts from the gateway spec; do not edit.",
    "return {",
    `  realm = "ollama-gateway",`,
    "  -- The plain-HTTP port when TLS is on (gateway/edge.lua): never forwards, redirects only to a fixed host.",
    `  plain_http = ${spec.tls ? `{ https_port = ${spec.listen.https}, https_base = ${httpsBase === undefined ? "nil" : luaString(httpsBase)} }` : "nil"},`,
    `  rate = { rps = ${spec.rateLimit.requestsPerSecond}, burst = ${spec.rateLimit.burst} },`,
    "  -- Scope order (bundle/routes.ts SCOPE_RANK), read by gateway/scopes.lua.",
    `  scope_rank = { ${Object.entries(SCOPE_RANK).map(([scope, rank]) => `${scope} = ${rank}`).join(", ")} },`,
    "  -- A verified Basic credential is trusted for this long without another bcrypt.",
    "  basic_cache_ttl = 600,",
    "  -- A wrong password is remembered this long, so repeating it costs no bcrypt.",
    "  basic_negative_ttl = 60,",
    "  -- Failed authentications per client address and window (spec `failedAuth`) before 429, and",
    "  -- bcrypt verifications in flight per address and per worker (gateway/failed_auth.lua).",
    `  failed_auth = { basic = ${spec.failedAuth.basic}, token = ${spec.failedAuth.token}, window_seconds = ${spec.failedAuth.windowSeconds},`,
    `    bcrypt_per_address = ${BCRYPT_IN_FLIGHT_PER_ADDRESS}, bcrypt_per_worker = ${bcryptInFlightPerWorker(spec)} },`,
    "  cors_origins = {",
    ...origins,
    "  },",
    ...enterpriseAuthLua(spec),
    ...poolLua(spec),
    "  -- Token counts come from the C body filter's $gateway_* variables, not ngx.ctx (gateway/usage.lua).",
    `  usage_module = ${usageModule},`,
    "}",
    "",
  ].join("\n");
}

/** Config files: nginx configuration and Lua. They never contain credentials. */
export function renderConfigFiles(spec: GatewaySettings, flavor: Flavor = "openresty", usageModule?: string): BundleFiles {
  const backends = specBackends(spec);
  const upstream = upstreamParts(backends[0].url);
  const values = {
    moduleLoading: usageModule === undefined ? MODULE_LOADING[flavor] : `${MODULE_LOADING[flavor]}\n${usageModuleLoading(usageModule)}`,
    usageModule: usageModule !== undefined,
    usageModeMap: renderUsageModeMap(),
    usageVariablePrefix: usageModule === undefined ? "gw_" : "gateway_",
    workerProcesses: String(spec.workerProcesses),
    pidFile: PID_FILE,
    userDirective: spec.user
      ? `# Workers run as this user when the master runs as root (spec \`user\`); it owns the credential files.\nuser ${spec.user};`
      : "# Workers run as nginx's default user (nobody) when the master runs as root; it owns the credential files.",
    errorLog: spec.errorLog,
    accessLog: spec.accessLog,
    bcryptThreads: String(spec.bcryptThreads),
    bcryptInFlightPerWorker: String(bcryptInFlightPerWorker(spec)),
    retryAfterSeconds: String(RETRY_AFTER_SECONDS),
    // ssl_certificate resolves relative paths against conf/.
    tlsPemPath: `../${TLS_PEM_FILE}`,
    upstreamHostPort: upstream.hostPort,
    upstreamResolver: spec.upstreamResolver !== undefined,
    resolverAddress: spec.upstreamResolver?.address ?? "",
    resolverValidSeconds: String(spec.upstreamResolver?.validSeconds ?? ""),
    // A variable in proxy_pass makes nginx resolve the name per request (through `resolver`).
    upstreamTarget: spec.upstreamResolver ? "$gw_upstream" : "ollama",
    upstreamScheme: upstream.scheme,
    upstreamHostHeader: upstream.hostPort,
    pool: backends.length > 1,
    // One backend at an address fixed when nginx starts (neither a pool nor resolved while running).
    staticUpstream: backends.length === 1 && spec.upstreamResolver === undefined,
    // With one backend the access log names it whenever nginx reached it.
    singleBackendName: backends[0].name,
    tls: spec.tls,
    cors: spec.cors.allowedOrigins.length > 0,
    listenAddress: spec.listen.address.includes(":") ? `[${spec.listen.address}]` : spec.listen.address,
    httpPort: String(spec.listen.http),
    httpsPort: String(spec.listen.https ?? ""),
    serverName: spec.serverName,
    workerConnections: String(spec.workerConnections),
    workerFileLimit: String(workerFileLimit(spec)),
    connectionsPerAddress: String(spec.connectionsPerAddress),
    maxBodySize: spec.maxBodySize,
    clientHeaderSeconds: String(spec.timeouts.clientHeaderSeconds),
    clientBodySeconds: String(spec.timeouts.clientBodySeconds),
    upstreamConnectSeconds: String(spec.timeouts.upstreamConnectSeconds),
    upstreamReadSeconds: String(spec.timeouts.upstreamReadSeconds),
    upstreamSendSeconds: String(spec.timeouts.upstreamSendSeconds),
    networkRules: renderNetworkRules(spec.network),
    externalAuthLocation: externalAuthLocation(spec),
    metricsServer: renderMetricsServer(spec.metrics),
  };
  const files: BundleFiles = {
    "conf/nginx.conf": fillTemplate(readSource("nginx.conf.template"), values),
    "conf/gateway-common.conf": fillTemplate(readSource("gateway-common.conf.template"), values),
    "conf/gateway-locations.conf": fillTemplate(readSource("gateway-locations.conf.template"), values),
    "conf/gateway-health-probe.conf": fillTemplate(readSource("gateway-health-probe.conf.template"), values),
    "lua/gateway/config.lua": renderConfigLua(spec, usageModule !== undefined),
    "lua/gateway/routes.lua": renderRoutesLua(),
    "lua/gateway/policy.lua": renderPolicyLua(spec),
  };
  for (const file of readdirSync(path.join(NGINX_SOURCE_DIR, "lua", "gateway")).sort()) {
    if (file.endsWith(".lua")) files[`lua/gateway/${file}`] = readSource(path.join("lua", "gateway", file));
  }
  // Empty directories nginx needs inside the prefix.
  files["logs/.keep"] = "";
  files["tmp/.keep"] = "";
  return files;
}

const defaultHashPassword = (_name: string, password: string) => bcryptHash(password, 10);

/**
 * Credential files: API key digests, bcrypt hashes, HS256 secrets and, with TLS, the certificate
 * and key. Each credential's line joins its settings (scope, end, rate limit) and its secret, by
 * name; `credentials` were validated against `settings` (`validateCredentials`, or `splitSpec`).
 */
export function renderCredentials(settings: GatewaySettings, credentials: GatewayCredentials, hashPassword = defaultHashPassword): BundleFiles {
  const byName = <T extends { name: string }>(list: readonly T[]) => new Map(list.map((entry) => [entry.name, entry]));
  const keys = byName(credentials.apiKeys);
  const passwords = byName(credentials.basicUsers);
  const keyRecords: ApiKeyRecord[] = settings.apiKeys.flatMap((entry) => {
    const secret = keys.get(entry.name)!;
    const current: ApiKeyRecord = {
      name: entry.name,
      scope: entry.scope,
      slot: "current",
      keySha256: secret.keySha256 ?? sha256Hex(secret.key!),
      notAfter: toUnixSeconds(entry.notAfter),
      rateLimit: entry.rateLimit,
      cloud: entry.cloud,
    };
    if (!secret.previous) return [current];
    const previous: ApiKeyRecord = {
      ...current,
      slot: "previous",
      keySha256: secret.previous.keySha256 ?? sha256Hex(secret.previous.key!),
      notAfter: toUnixSeconds(secret.previous.notAfter),
    };
    return [current, previous];
  });
  const userRecords: BasicUserRecord[] = settings.basicUsers.flatMap((entry) => {
    const secret = passwords.get(entry.name)!;
    const current: BasicUserRecord = {
      name: entry.name,
      scope: entry.scope,
      slot: "current",
      passwordHash: secret.passwordHash ?? hashPassword(entry.name, secret.password!),
      notAfter: toUnixSeconds(entry.notAfter),
      rateLimit: entry.rateLimit,
      cloud: entry.cloud,
    };
    if (!secret.previous) return [current];
    const previous: BasicUserRecord = {
      ...current,
      slot: "previous",
      passwordHash: secret.previous.passwordHash ?? hashPassword(entry.name, secret.previous.password!),
      notAfter: toUnixSeconds(secret.previous.notAfter),
    };
    return [current, previous];
  });
  const files: BundleFiles = {
    [API_KEYS_FILE]: renderApiKeysFile(keyRecords),
    [HTPASSWD_FILE]: renderHtpasswdFile(userRecords),
  };
  if (settings.jwt) files[JWT_KEYS_FILE] = renderJwtKeysFile(jwtKeyRecords({ ...settings.jwt, hs256Secrets: credentials.hs256Secrets }));
  if (credentials.tls) {
    // Certificate chain and key in one file, replaced by one rename: a handshake can never
    // see a new certificate with an old key.
    files[TLS_PEM_FILE] = `${credentials.tls.certPem.trim()}\n${credentials.tls.keyPem.trim()}\n`;
  }
  return files;
}

/** The credential files of a whole spec (as the CLI reads it). */
export function renderCredentialFiles(spec: GatewaySpec, hashPassword = defaultHashPassword): BundleFiles {
  const { settings, credentials } = splitSpec(spec);
  return renderCredentials(settings, credentials, hashPassword);
}

/** The user the workers run as, who must be able to read the credential files. */
export function workerUser(spec: Pick<GatewaySettings, "user">): string {
  return spec.user?.split(" ")[0] ?? "nobody";
}

export function renderBundle(spec: GatewaySpec, options: RenderOptions = {}): Bundle {
  const { settings, credentials } = splitSpec(spec);
  const credentialFiles = renderCredentials(settings, credentials, options.hashPassword);
  return { files: { ...renderConfigFiles(settings, options.flavor, options.usageModule), ...credentialFiles }, credentialPaths: Object.keys(credentialFiles) };
}
