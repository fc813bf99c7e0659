/**
 * Stack config -> typed, validated gateway settings. Pure: no Pulumi calls, so every rule is
 * testable without mocks and `index.ts` can refuse a bad stack before any resource exists.
 *
 * Values arrive as the Pulumi runtime hands them over: strings, with lists as JSON text.
 * Every problem is reported at once, each naming the key, the bad value (never a secret's)
 * and the fix.
 */
import { z } from "zod";
import { type CredentialGovernance, credentialGovernanceSchema, type RequestLimits } from "../bundle/governance";
import { formatIssues, gatewaySpecSchema, type GatewaySpecInput, type Scope, SCOPES } from "../bundle/spec";
import { coversProxyLoopback } from "../components/AuthProxy";
import { pullResourceSuffix } from "../components/OllamaServer";
import { type OnDemandRotation, parseDuration, type RotationPolicy } from "./rotation";

export const PROJECT = "ollama-gateway";

export const DEFAULT_OLLAMA_IMAGE = "ollama/ollama:0.12.6";
/** "": build image/proxy/Dockerfile on the target Docker host. A set value names an image built from it. */
export const DEFAULT_PROXY_IMAGE = "";

export const TLS_MODES = ["selfSigned", "provided", "none"] as const;
export type TlsMode = (typeof TLS_MODES)[number];

type KeyType = "string" | "integer" | "boolean" | "array";

/**
 * Every config key: its type and description as declared in Pulumi.yaml, and whether it is
 * secret (test/pulumi-config.test.ts holds Pulumi.yaml to this; `npm run docs` writes the table
 * in docs/configuration.md from it, checked by test/docs.test.ts). The CLI
 * requires a declared key without a default, so optional keys declare a default meaning
 * "unset" (`unset`): "" for text, 0 for counts.
 *
 * Secret keys are NOT declared `secret: true` in Pulumi.yaml: since Pulumi CLI 3.202 a secret
 * key with a default fails every `pulumi up` that does not set it ("must be encrypted as it's
 * secret", pulumi/pulumi#21865). index.ts warns instead when a set value is not encrypted.
 */
export const CONFIG_KEYS: Record<string, { type: KeyType; secret?: boolean; unset?: string; description: string }> = {
  hostname: { type: "string", description: "DNS name clients use; endpoint host, first certificate name and nginx server_name." },
  dnsNames: { type: "array", description: "More DNS names for the certificate (subjectAltName)." },
  ipAddresses: { type: "array", description: "IP addresses for the certificate (subjectAltName)." },
  bindAddress: { type: "string", description: "Host address the proxy's ports are published on; 0.0.0.0 serves other hosts." },
  httpPort: { type: "integer", description: "HTTP port on the host (and in the proxy). With TLS it serves /healthz and redirects to HTTPS." },
  httpsPort: { type: "integer", description: "HTTPS port on the host (and in the proxy); unused when tlsMode is none." },
  tlsMode: { type: "string", description: "selfSigned (a private CA and a server certificate), provided (tlsCertPem and tlsKeyPem), or none (plain HTTP)." },
  tlsCertPem: { type: "string", unset: "", description: "With tlsMode provided, the server certificate followed by its intermediates (PEM). A certificate is public." },
  tlsKeyPem: { type: "string", secret: true, unset: "", description: "With tlsMode provided, the server private key (PEM). Secret: set it with `pulumi config set --secret`." },
  apiKeys: { type: "array", description: "API keys as name:scope (scope read, inference or admin), such as app:inference. Keys are generated unless given in suppliedSecrets." },
  basicUsers: { type: "array", description: "Basic auth users as name:scope, such as alice:inference. Passwords are generated unless given in suppliedSecrets." },
  suppliedSecrets: { type: "string", secret: true, unset: "", description: "JSON with keys and passwords you choose instead of generated ones: {\"apiKeys\": {\"<name>\": \"<key>\"}, \"basicUsers\": {\"<name>\": \"<password>\"}}. Secret: set it with `pulumi config set --secret`." },
  rotation: { type: "array", description: "Rotation policies as name:every:overlap, such as app:30d:48h (every: <n>d, <n>h or manual; overlap: how long the previous secret still works, <n>h, <n>d or 0). Names must be generated apiKeys or basicUsers, or jwtHs256Secret for the generated HS256 secret." },
  rotationGenerations: { type: "string", unset: "", description: "On-demand rotations, written by npm run rotate: JSON {\"<name>\": {\"generation\": <n>, \"at\": \"<ISO time>\"}}; \"\" = none." },
  rateLimit: { type: "string", description: "Requests per second and burst per caller, as rps/burst." },
  maxBodySize: { type: "string", description: "Largest request body (nginx size, such as 100m); images travel base64 in the body." },
  upstreamReadTimeoutSeconds: { type: "integer", description: "Longest pause the proxy waits for Ollama's next bytes (cold model loads, long generations)." },
  corsAllowedOrigins: { type: "array", description: "Browser origins allowed to call the gateway, such as https://app.example.com." },
  models: { type: "array", description: "Models to pull when the stack is deployed, such as gemma3:1b." },
  gpu: { type: "boolean", description: "Give Ollama every GPU (needs the NVIDIA container toolkit)." },
  internalNetwork: { type: "boolean", description: "Cut Ollama's network off from the internet; then models must be empty." },
  ollamaKeepAlive: { type: "string", description: "OLLAMA_KEEP_ALIVE, how long a model stays loaded after a request (5m, 1h, 0, -1)." },
  ollamaNumParallel: { type: "integer", unset: "0", description: "OLLAMA_NUM_PARALLEL, parallel requests per model; 0 leaves Ollama's own choice." },
  ollamaMaxLoadedModels: { type: "integer", unset: "0", description: "OLLAMA_MAX_LOADED_MODELS; 0 leaves Ollama's own choice." },
  ollamaImage: { type: "string", description: "Ollama image, pinned to a version tag or digest (latest and untagged are refused)." },
  proxyImage: { type: "string", unset: "", description: "Proxy image, pinned, built from image/proxy/Dockerfile and pushed to your registry; \"\" = build that Dockerfile on the Docker host (the build the tests run)." },
  jwtIssuer: { type: "string", unset: "", description: "JWT bearer tokens: the iss every token must carry; \"\" = JWT off (every other jwt* key must then keep its default)." },
  jwtAudience: { type: "string", unset: "", description: "The aud every token must carry (or contain); required with jwtIssuer." },
  jwtAlgorithms: { type: "array", description: "Algorithms accepted: HS256, RS256, ES256 (at least one with jwtIssuer). Each needs a key: HS256 jwtHs256Secret (generated if empty), RS256/ES256 jwtPublicKeysPem or jwtJwks." },
  jwtHs256Secret: { type: "string", secret: true, unset: "", description: "HS256 secret (at least 32 characters; its UTF-8 bytes are the key), with HS256 in jwtAlgorithms; \"\" = generate 64 characters (stack output jwtHs256Secret). Secret: set it with `pulumi config set --secret`." },
  jwtPublicKeysPem: { type: "array", description: "PEM public keys or certificates (RSA >= 2048 bits for RS256, P-256 for ES256), each optionally preceded by <kid>: on its own line." },
  jwtJwks: { type: "string", unset: "", description: "A JWKS document as JSON, {\"keys\": [...]}, as the identity provider publishes it; \"\" = none." },
  jwtScopeClaim: { type: "string", description: "Claim that grants scopes, a space-separated string or an array (scope, roles, groups)." },
  jwtScopeValues: { type: "array", description: "Claim values that grant a gateway scope, as value:scope (such as ollama:inference:inference); [] = read, inference and admin map to themselves." },
  jwtNameClaim: { type: "string", description: "Claim that names the caller in logs and rate limits." },
  jwtClockSkewSeconds: { type: "integer", description: "Leeway on exp, nbf and iat, 0 to 300 seconds." },
  externalAuthUrl: { type: "string", unset: "", description: "External authentication service check URL, such as http://10.0.0.5:4180/oauth2/auth (its host must resolve when the proxy starts); \"\" = off." },
  externalAuthMode: { type: "string", description: "fallback (only requests the gateway does not recognise go to the service) or exclusive (all)." },
  externalAuthTimeoutSeconds: { type: "integer", description: "Connect, send and read timeout for the service, 1 to 60 seconds." },
  externalAuthNameHeader: { type: "string", description: "Response header of the service that names the caller." },
  externalAuthScopeHeader: { type: "string", description: "Response header of the service with the granted values (commas or spaces between them)." },
  externalAuthScopeValues: { type: "array", description: "Header values that grant a gateway scope, as value:scope (such as ollama-users:inference); [] = read, inference and admin map to themselves." },
  allowCidrs: { type: "array", description: "Client addresses served (CIDR blocks or addresses); with any entry, all others get 403 (127.0.0.1 is added for the container's healthcheck)." },
  denyCidrs: { type: "array", description: "Client addresses always refused (403), checked before allowCidrs; may not cover 127.0.0.1." },
  trustedProxyCidrs: { type: "array", description: "Load balancers or reverse proxies in front of the gateway (CIDR blocks or addresses, never /0); only their clientAddressHeader is believed, for allowCidrs, denyCidrs, failed-login limits and logs." },
  credentialPolicies: { type: "string", unset: "", description: "Governance per API key or Basic user, JSON keyed by name: {\"<name>\": {\"models\": [\"gemma3:*\"], \"maxConcurrent\": 2, \"limits\": {\"maxNumCtx\": 8192}, \"tokenBudget\": {\"perMinute\": 20000, \"perDay\": 1000000}}} (docs/governance.md); \"\" = none." },
  metricsPort: { type: "integer", unset: "0", description: "Prometheus metrics (docs/governance.md) on this port of the host's 127.0.0.1 only, never the API ports; 0 = off." },
  maxNumCtx: { type: "integer", unset: "0", description: "Largest options.num_ctx a request may ask for (400 above it); 0 = no limit." },
  maxNumPredict: { type: "integer", unset: "0", description: "Largest number of tokens a request may ask to generate (options.num_predict, max_tokens...; 400 above it, and -1 is refused); 0 = no limit." },
  maxKeepAlive: { type: "string", unset: "", description: "Longest keep_alive a request may ask for, such as 30m (400 above it, and -1 is refused); \"\" = no limit." },
  clientAddressHeader: { type: "string", description: "Header in which trustedProxyCidrs name the client (X-Forwarded-For, X-Real-IP...); ignored on requests from other addresses." },
};

/** Keys that only mean something with JWT on (`jwtIssuer` set) or external auth on (`externalAuthUrl` set). */
const JWT_KEYS = ["jwtAudience", "jwtAlgorithms", "jwtHs256Secret", "jwtPublicKeysPem", "jwtJwks", "jwtScopeClaim", "jwtScopeValues", "jwtNameClaim", "jwtClockSkewSeconds"];
const EXTERNAL_AUTH_KEYS = ["externalAuthMode", "externalAuthTimeoutSeconds", "externalAuthNameHeader", "externalAuthScopeHeader", "externalAuthScopeValues"];

/** Defaults in one place; Pulumi.yaml declares the same values. */
export const CONFIG_DEFAULTS = {
  hostname: "localhost",
  dnsNames: [] as string[],
  ipAddresses: ["127.0.0.1"],
  bindAddress: "127.0.0.1",
  httpPort: 8080,
  httpsPort: 8443,
  tlsMode: "selfSigned" as TlsMode,
  apiKeys: [] as string[],
  basicUsers: [] as string[],
  rotation: [] as string[],
  rateLimit: "20/40",
  maxBodySize: "100m",
  upstreamReadTimeoutSeconds: 900,
  corsAllowedOrigins: [] as string[],
  models: [] as string[],
  gpu: false,
  internalNetwork: false,
  ollamaKeepAlive: "5m",
  ollamaImage: DEFAULT_OLLAMA_IMAGE,
  proxyImage: DEFAULT_PROXY_IMAGE,
  jwtAlgorithms: [] as string[],
  jwtPublicKeysPem: [] as string[],
  jwtScopeClaim: "scope",
  jwtScopeValues: [] as string[],
  jwtNameClaim: "sub",
  jwtClockSkewSeconds: 60,
  externalAuthMode: "fallback",
  externalAuthTimeoutSeconds: 5,
  externalAuthNameHeader: "X-Auth-Request-User",
  externalAuthScopeHeader: "X-Auth-Request-Groups",
  externalAuthScopeValues: [] as string[],
  allowCidrs: [] as string[],
  denyCidrs: [] as string[],
  trustedProxyCidrs: [] as string[],
  clientAddressHeader: "X-Forwarded-For",
  metricsPort: 9145,
};

export interface CredentialConfig {
  name: string;
  scope: Scope;
}

/** A credential's rotation: its policy and the last on-demand request, if any. */
export interface CredentialRotation {
  policy: RotationPolicy;
  onDemand?: OnDemandRotation;
}

/** Claim or header values that grant each scope; undefined = the spec's default (each scope's own name). */
export type ScopeValues = Record<Scope, string[]>;

/** The spec's `jwt` section without HS256 secrets (those travel as secrets, see `hs256Secret`). */
export interface JwtSettings {
  issuer: string;
  audience: string;
  algorithms: ("HS256" | "RS256" | "ES256")[];
  /** The HS256 secret from `jwtHs256Secret`; undefined with HS256 listed = generate one. */
  hs256Secret?: string;
  publicKeys: { kid?: string; pem: string }[];
  /** A JWKS document, as the identity provider publishes it. */
  jwks?: { keys: ({ kty: string } & Record<string, unknown>)[] };
  scopeClaim: string;
  scopeValues?: ScopeValues;
  nameClaim: string;
  clockSkewSeconds: number;
  /** Rotation of the generated HS256 secret (`rotation` entry `jwtHs256Secret:<every>:<overlap>`). */
  hs256Rotation?: CredentialRotation;
}

/** The `rotation` entry name that rotates the generated HS256 secret (its config key). */
export const HS256_ROTATION_NAME = "jwtHs256Secret";

export interface ExternalAuthSettings {
  url: string;
  mode: "fallback" | "exclusive";
  timeoutSeconds: number;
  nameHeader: string;
  scopeHeader: string;
  scopeValues?: ScopeValues;
}

/** The validated stack, plain values only; `index.ts` wraps the secret ones in `pulumi.secret`. */
export interface StackSettings {
  hostname: string;
  dnsNames: string[];
  ipAddresses: string[];
  bindAddress: string;
  httpPort: number;
  httpsPort: number;
  tls: { mode: "none" } | { mode: "selfSigned" } | { mode: "provided"; certPem: string; keyPem: string };
  apiKeys: (CredentialConfig & CredentialGovernance & { key?: string; rotation?: CredentialRotation })[];
  basicUsers: (CredentialConfig & CredentialGovernance & { password?: string; rotation?: CredentialRotation })[];
  rateLimit: { requestsPerSecond: number; burst: number };
  maxBodySize: string;
  upstreamReadTimeoutSeconds: number;
  corsAllowedOrigins: string[];
  models: string[];
  gpu: boolean;
  internalNetwork: boolean;
  ollama: { keepAlive: string; numParallel?: number; maxLoadedModels?: number };
  ollamaImage: string;
  /** Undefined: build image/proxy/Dockerfile on the Docker host. */
  proxyImage?: string;
  /** Undefined: JWT off (`jwtIssuer` is ""). */
  jwt?: JwtSettings;
  /** Undefined: external auth off (`externalAuthUrl` is ""). */
  externalAuth?: ExternalAuthSettings;
  network: { allow: string[]; deny: string[]; trustedProxies: string[]; clientAddressHeader: string };
  /** Undefined: metrics off (`metricsPort` 0). */
  metricsPort?: number;
  /** Request limits for every caller (the spec's `limits`). */
  limits: RequestLimits;
}

export type StackConfigResult = { ok: true; settings: StackSettings } | { ok: false; errors: string[] };

const key = (name: string) => `\`${PROJECT}:${name}\``;
const show = (value: unknown) => {
  const text = JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
};
const secretShown = (value: string) => `a secret of ${value.length} characters (not shown)`;
const withPeriod = (message: string) => (/[.!?]$/.test(message) ? message : `${message}.`);

const DNS_NAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const MODEL = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}(:[A-Za-z0-9._-]{1,128})?$/;
const DURATION = /^(-1|0|[0-9]+(\.[0-9]+)?(ms|s|m|h))$/;
const KEEP_ALIVE_LIMIT = /^(0|[0-9]+(s|m|h))$/;
const KEEP_ALIVE_UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600 };
/** `repo:tag` (tag not `latest`) or `repo@sha256:...`; a registry host may carry a port. */
function isPinnedImage(image: string): boolean {
  if (/@sha256:[0-9a-f]{64}$/.test(image)) return true;
  const lastSegment = image.slice(image.lastIndexOf("/") + 1);
  const colon = lastSegment.indexOf(":");
  if (colon <= 0) return false;
  const tag = lastSegment.slice(colon + 1);
  return /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(tag) && tag !== "latest";
}

const port = z.number().int().min(1).max(65535, { error: "use a TCP port between 1 and 65535" });
const ip = z.union([z.ipv4(), z.ipv6()], { error: "use an IPv4 or IPv6 address such as 127.0.0.1" });
const dnsName = z.string().regex(DNS_NAME, { error: "use a DNS name such as `ollama.example.com` or `localhost`" });
const positiveCount = z.number().int().min(1, { error: "use a whole number from 1 to 64" }).max(64, {
  error: "use a whole number from 1 to 64",
});

/** Non-secret keys after type coercion. Secrets are checked by hand so their values never reach a message. */
const plainSchema = z.object({
  hostname: dnsName,
  dnsNames: z.array(dnsName),
  ipAddresses: z.array(ip),
  bindAddress: ip,
  httpPort: port,
  httpsPort: port,
  tlsMode: z.enum(TLS_MODES, { error: "use one of `selfSigned`, `provided`, `none`" }),
  tlsCertPem: z.string().includes("-----BEGIN CERTIFICATE-----", { error: "use a PEM certificate (chain)" }).optional(),
  models: z.array(z.string().regex(MODEL, { error: "use an Ollama model name such as `gemma3:1b`" })),
  gpu: z.boolean(),
  internalNetwork: z.boolean(),
  ollamaKeepAlive: z.string().regex(DURATION, { error: "use a duration such as `5m`, `1h`, `0` (unload at once) or `-1` (never)" }),
  ollamaNumParallel: positiveCount.optional(),
  ollamaMaxLoadedModels: positiveCount.optional(),
  metricsPort: port.optional(),
  maxKeepAlive: z.string().regex(KEEP_ALIVE_LIMIT, { error: "use a duration such as `30m`, `2h` or `0` (seconds `s`, minutes `m`, hours `h`)" }).optional(),
});

/** `jwt`/`externalAuth`/`network` fields of the gateway spec -> the config key that sets them. */
const SECTION_KEYS: Record<string, string> = {
  "jwt.issuer": "jwtIssuer",
  "jwt.audience": "jwtAudience",
  "jwt.algorithms": "jwtAlgorithms",
  "jwt.publicKeys": "jwtPublicKeysPem",
  "jwt.jwks": "jwtJwks",
  "jwt.scopeClaim": "jwtScopeClaim",
  "jwt.scopeValues": "jwtScopeValues",
  "jwt.nameClaim": "jwtNameClaim",
  "jwt.clockSkewSeconds": "jwtClockSkewSeconds",
  "externalAuth.url": "externalAuthUrl",
  "externalAuth.mode": "externalAuthMode",
  "externalAuth.timeoutSeconds": "externalAuthTimeoutSeconds",
  "externalAuth.nameHeader": "externalAuthNameHeader",
  "externalAuth.scopeHeader": "externalAuthScopeHeader",
  "externalAuth.scopeValues": "externalAuthScopeValues",
  "network.allow": "allowCidrs",
  "network.deny": "denyCidrs",
  "network.trustedProxies": "trustedProxyCidrs",
  "network.clientAddressHeader": "clientAddressHeader",
};

/** Where each `<scope>[i]` of a spec `scopeValues` came from in its config list. */
type ScopeValueSources = Partial<Record<string, Record<Scope, number[]>>>;

/** Proxy-setting paths of the gateway spec -> the config key that sets them. */
function specPathToKey(path: readonly PropertyKey[], scopeSources: ScopeValueSources = {}): PropertyKey[] {
  const [head, ...rest] = path;
  const sectionKey = SECTION_KEYS[`${String(head)}.${String(rest[0])}`];
  if (sectionKey) {
    const tail = rest.slice(1);
    // A PEM's problem is the list item's problem: `jwtPublicKeysPem[0]`, not `...[0].pem`.
    if (sectionKey === "jwtPublicKeysPem" && tail[1] === "pem") return [`${PROJECT}:${sectionKey}`, tail[0]];
    const sources = scopeSources[sectionKey];
    if (sources && typeof tail[1] === "number") return [`${PROJECT}:${sectionKey}`, sources[tail[0] as Scope][tail[1]]];
    return [`${PROJECT}:${sectionKey}`, ...tail];
  }
  switch (head) {
    case "rateLimit":
      return [`${PROJECT}:rateLimit`];
    case "limits":
      return [`${PROJECT}:${({ maxNumCtx: "maxNumCtx", maxNumPredict: "maxNumPredict" } as Record<string, string>)[String(rest[0])] ?? "maxKeepAlive"}`];
    case "timeouts":
      return [`${PROJECT}:upstreamReadTimeoutSeconds`];
    case "cors":
      return [`${PROJECT}:corsAllowedOrigins`, ...rest.slice(1)];
    case "serverName":
      return [`${PROJECT}:hostname`];
    default:
      return [`${PROJECT}:${String(head)}`, ...rest];
  }
}

/** Coerces one raw string to its declared type; undefined + a message when it does not parse. */
function coerce(name: string, raw: string, type: KeyType, secret: boolean, errors: string[]): unknown {
  const shown = secret ? secretShown(raw) : show(raw);
  switch (type) {
    case "string":
      return raw;
    case "integer":
      if (/^-?[0-9]+$/.test(raw.trim())) return Number(raw);
      errors.push(`${key(name)} is ${shown}; use a whole number such as ${CONFIG_DEFAULTS[name as keyof typeof CONFIG_DEFAULTS] ?? 1}.`);
      return undefined;
    case "boolean":
      if (raw === "true" || raw === "false") return raw === "true";
      errors.push(`${key(name)} is ${shown}; use \`true\` or \`false\`.`);
      return undefined;
    case "array": {
      let value: unknown;
      try {
        value = JSON.parse(raw);
      } catch {
        value = undefined;
      }
      if (Array.isArray(value) && value.every((item) => typeof item === "string")) return value;
      errors.push(`${key(name)} is ${shown}; use a list of strings (in Pulumi.<stack>.yaml a YAML list).`);
      return undefined;
    }
  }
}

/** `name:scope` -> entry; the scope is after the last colon so names stay free of it. */
function parseCredentialList(name: string, list: string[], errors: string[]): CredentialConfig[] {
  const entries: CredentialConfig[] = [];
  list.forEach((item, i) => {
    const at = item.lastIndexOf(":");
    if (at <= 0) {
      errors.push(`${key(`${name}[${i}]`)} is ${show(item)}; use \`<name>:<scope>\`, such as \`app:inference\`.`);
      return;
    }
    entries.push({ name: item.slice(0, at), scope: item.slice(at + 1) as Scope });
  });
  return entries;
}

function parseRateLimit(raw: string, errors: string[]) {
  const match = /^([0-9]+(?:\.[0-9]+)?)\/([0-9]+)$/.exec(raw);
  if (match) return { requestsPerSecond: Number(match[1]), burst: Number(match[2]) };
  errors.push(`${key("rateLimit")} is ${show(raw)}; use \`<requests per second>/<burst>\`, such as \`20/40\`.`);
  return undefined;
}

/** Messages for supplied keys and passwords, from the gateway spec's own rules, without values. */
function checkSuppliedSecret(field: "key" | "password", value: unknown, label: string, errors: string[]) {
  if (typeof value !== "string") {
    errors.push(`${key(label)} is of type ${value === null ? "null" : typeof value}; use a string.`);
    return;
  }
  const entry = field === "key" ? { name: "x", scope: "read", key: value } : { name: "x", scope: "read", password: value };
  const result = gatewaySpecSchema.safeParse({ [field === "key" ? "apiKeys" : "basicUsers"]: [entry] });
  if (result.success) return;
  for (const issue of result.error.issues) errors.push(`${key(label)} is ${secretShown(value)}; ${withPeriod(issue.message)}`);
}

/** `raw` parsed as a JSON object, or undefined when it is not one. */
function jsonObject(raw: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(raw);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function parseSuppliedSecrets(raw: string, settings: { apiKeys: CredentialConfig[]; basicUsers: CredentialConfig[] }, errors: string[]) {
  const supplied = { apiKeys: new Map<string, string>(), basicUsers: new Map<string, string>() };
  const value = jsonObject(raw);
  if (value === undefined) {
    errors.push(
      `${key("suppliedSecrets")} is not a JSON object (value not shown); use JSON such as {"apiKeys": {"app": "<key>"}, "basicUsers": {"alice": "<password>"}}.`,
    );
    return supplied;
  }
  for (const [group, entries] of Object.entries(value)) {
    if (group !== "apiKeys" && group !== "basicUsers") {
      errors.push(`${key("suppliedSecrets")} has unknown field \`${group}\`; use \`apiKeys\` and \`basicUsers\`.`);
      continue;
    }
    if (typeof entries !== "object" || entries === null || Array.isArray(entries)) {
      errors.push(`${key(`suppliedSecrets.${group}`)} is not an object (value not shown); map each name to its secret.`);
      continue;
    }
    const known = new Set(settings[group].map((entry) => entry.name));
    for (const [name, secret] of Object.entries(entries as Record<string, unknown>)) {
      const label = `suppliedSecrets.${group}.${name}`;
      if (!known.has(name)) {
        errors.push(`${key(label)} names no entry of ${key(group)}; add \`${name}:<scope>\` there or remove the secret.`);
        continue;
      }
      checkSuppliedSecret(group === "apiKeys" ? "key" : "password", secret, label, errors);
      if (typeof secret === "string") supplied[group].set(name, secret);
    }
  }
  return supplied;
}

/** `credentialPolicies`: name -> governance settings, each checked with the spec's own schema. */
function parseCredentialPolicies(raw: string, names: Set<string>, errors: string[]): Map<string, CredentialGovernance> {
  const policies = new Map<string, CredentialGovernance>();
  const value = jsonObject(raw);
  if (value === undefined) {
    errors.push(`${key("credentialPolicies")} is ${show(raw)}; use a JSON object keyed by credential name, such as {"app": {"maxConcurrent": 2}}.`);
    return policies;
  }
  for (const [name, entry] of Object.entries(value)) {
    if (!names.has(name)) {
      errors.push(`${key(`credentialPolicies.${name}`)} names no entry of \`apiKeys\` or \`basicUsers\`; add \`${name}:<scope>\` there or remove it.`);
      continue;
    }
    const result = credentialGovernanceSchema.safeParse(entry, { reportInput: true });
    if (result.success) policies.set(name, result.data);
    else errors.push(...formatIssues(result.error.issues, `${PROJECT}:credentialPolicies.${name}`).map(withPeriod));
  }
  return policies;
}

/**
 * `name:every:overlap` entries -> policies, with every problem of every entry. `hs256` says
 * whether the name `jwtHs256Secret` (the HS256 secret) can rotate: only a generated secret can.
 */
function parseRotation(
  list: string[],
  names: Set<string>,
  supplied: Set<string>,
  hs256: "generated" | "supplied" | "off",
  errors: string[],
): Map<string, RotationPolicy> {
  const policies = new Map<string, RotationPolicy>();
  list.forEach((item, i) => {
    const label = `rotation[${i}]`;
    const parts = item.split(":");
    if (parts.length !== 3) {
      errors.push(`${key(label)} is ${show(item)}; use \`<name>:<every>:<overlap>\`, such as \`app:30d:48h\` (every: \`<n>d\`, \`<n>h\` or \`manual\`; overlap: \`<n>h\`, \`<n>d\` or \`0\`).`);
      return;
    }
    const [name, every, overlap] = parts;
    let ok = true;
    if (name === HS256_ROTATION_NAME) {
      if (hs256 !== "generated") {
        errors.push(
          hs256 === "off"
            ? `${key(label)} names \`${HS256_ROTATION_NAME}\`, but no HS256 secret is in use (\`jwtIssuer\` empty or \`HS256\` not in \`jwtAlgorithms\`); add \`HS256\` to \`jwtAlgorithms\` or remove the policy.`
            : `${key(label)} names \`${HS256_ROTATION_NAME}\`, which is set in the stack config; the program can only rotate secrets it generates: remove it (\`pulumi config rm ${HS256_ROTATION_NAME}\`) or remove the policy.`,
        );
        ok = false;
      } else if (policies.has(name)) {
        errors.push(`${key(label)} is a second policy for ${show(name)}; give each secret one policy.`);
        ok = false;
      }
    } else if (!names.has(name)) {
      errors.push(`${key(label)} names ${show(name)}, which is in neither \`apiKeys\` nor \`basicUsers\`; add \`${name}:<scope>\` to one of them or remove the policy.`);
      ok = false;
    } else if (policies.has(name)) {
      errors.push(`${key(label)} is a second policy for ${show(name)}; give each credential one policy.`);
      ok = false;
    } else if (supplied.has(name)) {
      errors.push(
        `${key(label)} names ${show(name)}, whose secret is given in \`suppliedSecrets\`; the program can only rotate secrets it generates: remove it from \`suppliedSecrets\` or remove the policy.`,
      );
      ok = false;
    }
    const everyMs = every === "manual" ? undefined : parseDuration(every, false);
    if (every !== "manual" && everyMs === undefined) {
      errors.push(`${key(`${label}.every`)} is ${show(every)}; use a period such as \`30d\` or \`12h\` (1 to 99999), or \`manual\` for on-demand rotation only.`);
      ok = false;
    }
    const overlapMs = parseDuration(overlap, true);
    if (overlapMs === undefined) {
      errors.push(`${key(`${label}.overlap`)} is ${show(overlap)}; use a duration such as \`48h\` or \`2d\`, or \`0\` to refuse the previous secret at once.`);
      ok = false;
    } else if (everyMs !== undefined && overlapMs >= everyMs) {
      errors.push(`${key(`${label}.overlap`)} is ${show(overlap)}, not shorter than the period ${show(every)}; use an overlap shorter than the period, so at most two secrets are valid at once.`);
      ok = false;
    }
    if (ok) policies.set(name, { name, everyMs, overlapMs: overlapMs! });
  });
  return policies;
}

/** `{"<name>": {"generation": n, "at": "<ISO time>"}}`, as `npm run rotate` writes it. */
function parseRotationGenerations(raw: string, policies: Map<string, RotationPolicy>, errors: string[]): Map<string, OnDemandRotation> {
  const result = new Map<string, OnDemandRotation>();
  const example = '{"app": {"generation": 1, "at": "2026-11-05T10:00:00Z"}}';
  const value = jsonObject(raw);
  if (value === undefined) {
    errors.push(`${key("rotationGenerations")} is ${show(raw)}; use a JSON object such as ${example} (\`npm run rotate\` writes it).`);
    return result;
  }
  for (const [name, entry] of Object.entries(value)) {
    const label = `rotationGenerations.${name}`;
    if (!policies.has(name)) {
      errors.push(`${key(label)} names no credential with a \`rotation\` policy; add \`${name}:manual:24h\` (or a period) to \`rotation\`, or remove ${show(name)}.`);
      continue;
    }
    const e = entry as { generation?: unknown; at?: unknown } | null;
    const generationOk = typeof e === "object" && e !== null && Number.isInteger(e.generation) && (e.generation as number) >= 0;
    const atOk = typeof e === "object" && e !== null && typeof e.at === "string" && /^\d{4}-\d\d-\d\dT/.test(e.at) && !Number.isNaN(Date.parse(e.at));
    if (!generationOk || !atOk || Object.keys(e as object).some((k) => k !== "generation" && k !== "at")) {
      errors.push(`${key(label)} is ${show(entry)}; use {"generation": <whole number, 0 or more>, "at": "<ISO 8601 time>"}, such as ${example.slice(8, -1)}.`);
      continue;
    }
    result.set(name, { generation: e!.generation as number, at: e!.at as string });
  }
  return result;
}

/** `<value>:<scope>` entries -> the spec's `scopeValues`, and where each value came from. */
function parseScopeValues(name: string, list: string[], errors: string[]): { values?: ScopeValues; sources: Record<Scope, number[]> } {
  const values: ScopeValues = { read: [], inference: [], admin: [] };
  const sources: Record<Scope, number[]> = { read: [], inference: [], admin: [] };
  list.forEach((item, i) => {
    const at = item.lastIndexOf(":");
    if (at <= 0) {
      errors.push(`${key(`${name}[${i}]`)} is ${show(item)}; use \`<value>:<scope>\`, such as \`ollama-users:inference\`.`);
      return;
    }
    const scope = item.slice(at + 1);
    if (!(SCOPES as readonly string[]).includes(scope)) {
      errors.push(`${key(`${name}[${i}].scope`)} is ${show(scope)}; use one of \`read\`, \`inference\`, \`admin\`.`);
      return;
    }
    values[scope as Scope].push(item.slice(0, at));
    sources[scope as Scope].push(i);
  });
  return { values: list.length > 0 ? values : undefined, sources };
}

/** A PEM, optionally preceded by `<kid>:` (the key id tokens name in their header). */
function parsePublicKeys(list: string[], errors: string[]): { kid?: string; pem: string }[] {
  return list.map((item, i) => {
    const begin = item.indexOf("-----BEGIN");
    const prefix = (begin < 0 ? "" : item.slice(0, begin)).trim();
    const pem = begin < 0 ? item : item.slice(begin);
    if (prefix === "") return { pem };
    if (!prefix.endsWith(":") || prefix.length === 1) {
      errors.push(`${key(`jwtPublicKeysPem[${i}]`)} starts with ${show(prefix)}; give the PEM alone, or \`<kid>:\` then the PEM, such as \`2026-01:\\n-----BEGIN PUBLIC KEY-----...\`.`);
      return { pem };
    }
    return { kid: prefix.slice(0, -1).trim(), pem };
  });
}

function parseJwks(raw: string, errors: string[]): unknown {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    value = undefined;
  }
  if (typeof value === "object" && value !== null && !Array.isArray(value)) return value;
  errors.push(
    `${key("jwtJwks")} is ${show(raw)}; use a JWKS document as JSON, {"keys": [...]} (\`curl -s https://<issuer>/.well-known/jwks.json | pulumi config set jwtJwks\`).`,
  );
  return undefined;
}

/** The HS256 secret against the gateway spec's own rule, without its value. */
function checkHs256Secret(value: string, errors: string[]) {
  const result = gatewaySpecSchema.safeParse({
    jwt: { issuer: "x", audience: "x", algorithms: ["HS256"], hs256Secrets: [{ secret: value }] },
  });
  if (result.success) return;
  for (const issue of result.error.issues) errors.push(`${key("jwtHs256Secret")} is ${secretShown(value)}; ${withPeriod(issue.message)}`);
}

/** Spec messages that name spec fields inside a section: name the config keys instead. */
const sectionWording = (message: string) =>
  message
    .replace("`publicKeys` or `jwks`", "`jwtPublicKeysPem` or `jwtJwks`")
    .replace(/`jwt\.publicKeys\[(\d+)\]\.kid`/g, "`jwtPublicKeysPem[$1]`")
    .replace(/`jwt\.jwks\.keys\[(\d+)\]\.kid`/g, "`jwtJwks.keys[$1]`")
    // Custom issues read "`field` ("value") use ..."; give them the "is ...; use ..." shape of the others.
    .replace(/^(`[^`]+`) \(("[^"]*")\) use /, "$1 is $2; use ");

/**
 * Validates raw stack config (keys without the `ollama-gateway:` prefix, values as strings)
 * and fills in defaults. Never throws on bad input.
 */
export function parseStackConfig(raw: Readonly<Record<string, string | undefined>>): StackConfigResult {
  const errors: string[] = [];
  const coerced: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(raw)) {
    if (value === undefined) continue;
    const declared = CONFIG_KEYS[name];
    if (!declared) {
      const hint = Object.keys(CONFIG_KEYS).find((known) => known.toLowerCase() === name.toLowerCase());
      errors.push(`${key(name)} is not a known key; ${hint ? `did you mean \`${hint}\`?` : "remove it or check the spelling (see Pulumi.yaml)."}`);
      continue;
    }
    if (declared.unset !== undefined && value.trim() === declared.unset) continue;
    const parsed = coerce(name, value, declared.type, declared.secret === true, errors);
    if (parsed !== undefined) coerced[name] = parsed;
  }
  const get = <K extends keyof typeof CONFIG_DEFAULTS>(name: K) => (coerced[name] ?? CONFIG_DEFAULTS[name]) as (typeof CONFIG_DEFAULTS)[K];

  const plain = plainSchema.safeParse(
    {
      hostname: get("hostname"),
      dnsNames: get("dnsNames"),
      ipAddresses: get("ipAddresses"),
      bindAddress: get("bindAddress"),
      httpPort: get("httpPort"),
      httpsPort: get("httpsPort"),
      tlsMode: get("tlsMode"),
      tlsCertPem: coerced.tlsCertPem,
      models: get("models"),
      gpu: get("gpu"),
      internalNetwork: get("internalNetwork"),
      ollamaKeepAlive: get("ollamaKeepAlive"),
      ollamaNumParallel: coerced.ollamaNumParallel,
      ollamaMaxLoadedModels: coerced.ollamaMaxLoadedModels,
      metricsPort: coerced.metricsPort,
      maxKeepAlive: coerced.maxKeepAlive,
    },
    { reportInput: true },
  );
  if (!plain.success) {
    const issues = plain.error.issues.map((issue) => ({ ...issue, path: [`${PROJECT}:${String(issue.path[0])}`, ...issue.path.slice(1)] }));
    errors.push(...formatIssues(issues).map(withPeriod));
  }

  for (const [name, example] of [["ollamaImage", DEFAULT_OLLAMA_IMAGE], ["proxyImage", "registry.example.com/ollama-gateway-proxy:1.0.0"]] as const)
    if (get(name) !== (CONFIG_KEYS[name].unset ?? undefined) && !isPinnedImage(get(name)))
      errors.push(`${key(name)} is ${show(get(name))}; pin a version tag such as \`${example}\` (not \`latest\`, not untagged).`);

  const apiKeys = parseCredentialList("apiKeys", get("apiKeys"), errors);
  const basicUsers = parseCredentialList("basicUsers", get("basicUsers"), errors);
  const credentialPolicies =
    coerced.credentialPolicies === undefined
      ? new Map<string, CredentialGovernance>()
      : parseCredentialPolicies(coerced.credentialPolicies as string, new Set([...apiKeys, ...basicUsers].map((e) => e.name)), errors);
  const rateLimit = parseRateLimit(get("rateLimit"), errors);

  // JWT, external auth and network: built in the spec's shape and checked with the rest below.
  const isSet = (name: string) =>
    coerced[name] !== undefined && JSON.stringify(coerced[name]) !== JSON.stringify((CONFIG_DEFAULTS as Record<string, unknown>)[name]);
  const offSections = [
    ["jwtIssuer", JWT_KEYS, "JWT"],
    ["externalAuthUrl", EXTERNAL_AUTH_KEYS, "external auth"],
  ] as const;
  for (const [switchKey, keys, what] of offSections)
    if (coerced[switchKey] === undefined)
      for (const name of keys.filter(isSet))
        errors.push(`${key(name)} is set but \`${switchKey}\` is empty, so ${what} is off; set \`${switchKey}\` or remove ${key(name)}.`);

  const scopeSources: ScopeValueSources = {};
  let jwtSpec: GatewaySpecInput["jwt"];
  let jwtSettings: JwtSettings | undefined;
  if (coerced.jwtIssuer !== undefined) {
    const algorithms = get("jwtAlgorithms");
    const hs256Secret = coerced.jwtHs256Secret as string | undefined;
    if (hs256Secret !== undefined) {
      checkHs256Secret(hs256Secret, errors);
      if (!algorithms.includes("HS256"))
        errors.push(`${key("jwtHs256Secret")} is set but \`jwtAlgorithms\` does not list \`HS256\`; add \`HS256\` to \`jwtAlgorithms\` or remove ${key("jwtHs256Secret")}.`);
    }
    const scope = parseScopeValues("jwtScopeValues", get("jwtScopeValues"), errors);
    scopeSources.jwtScopeValues = scope.sources;
    const jwks = coerced.jwtJwks === undefined ? undefined : parseJwks(coerced.jwtJwks as string, errors);
    jwtSettings = {
      issuer: coerced.jwtIssuer as string,
      audience: (coerced.jwtAudience as string | undefined) ?? "",
      algorithms: algorithms as JwtSettings["algorithms"],
      ...(hs256Secret !== undefined ? { hs256Secret } : {}),
      publicKeys: parsePublicKeys(get("jwtPublicKeysPem"), errors),
      ...(jwks !== undefined ? { jwks: jwks as JwtSettings["jwks"] } : {}),
      scopeClaim: get("jwtScopeClaim"),
      ...(scope.values ? { scopeValues: scope.values } : {}),
      nameClaim: get("jwtNameClaim"),
      clockSkewSeconds: get("jwtClockSkewSeconds"),
    };
    const { hs256Secret: _secret, ...plainJwt } = jwtSettings;
    // A stand-in for the HS256 secret (supplied or generated): it was checked above, without its value.
    jwtSpec = { ...plainJwt, hs256Secrets: algorithms.includes("HS256") ? [{ secret: "x".repeat(32) }] : [] };
  }
  let externalAuth: ExternalAuthSettings | undefined;
  if (coerced.externalAuthUrl !== undefined) {
    const scope = parseScopeValues("externalAuthScopeValues", get("externalAuthScopeValues"), errors);
    scopeSources.externalAuthScopeValues = scope.sources;
    externalAuth = {
      url: coerced.externalAuthUrl as string,
      mode: get("externalAuthMode") as ExternalAuthSettings["mode"],
      timeoutSeconds: get("externalAuthTimeoutSeconds"),
      nameHeader: get("externalAuthNameHeader"),
      scopeHeader: get("externalAuthScopeHeader"),
      ...(scope.values ? { scopeValues: scope.values } : {}),
    };
  }
  const network = {
    allow: get("allowCidrs"),
    deny: get("denyCidrs"),
    trustedProxies: get("trustedProxyCidrs"),
    clientAddressHeader: get("clientAddressHeader"),
  };
  network.deny.forEach((block, i) => {
    if (coversProxyLoopback(block))
      errors.push(
        `${key(`denyCidrs[${i}]`)} is ${show(block)}, which covers 127.0.0.1, where the proxy's own healthcheck comes from; remove it (inside the container 127.0.0.1 is only the proxy itself).`,
      );
  });

  // Request limits (bundle/governance.ts): 0 and "" mean none.
  const keepAlive = coerced.maxKeepAlive as string | undefined;
  const keepAliveMatch = keepAlive === undefined ? null : /^([0-9]+)([smh])?$/.exec(keepAlive);
  const limits: RequestLimits = {
    ...(coerced.maxNumCtx !== undefined ? { maxNumCtx: coerced.maxNumCtx as number } : {}),
    ...(coerced.maxNumPredict !== undefined ? { maxNumPredict: coerced.maxNumPredict as number } : {}),
    ...(keepAliveMatch ? { maxKeepAliveSeconds: Number(keepAliveMatch[1]) * KEEP_ALIVE_UNIT_SECONDS[keepAliveMatch[2] ?? "s"] } : {}),
  };
  // On by default (9145); `0` turns metrics off.
  const metricsPort = raw.metricsPort?.trim() === "0" ? undefined : get("metricsPort");
  if (metricsPort !== undefined && (metricsPort === get("httpPort") || (get("tlsMode") !== "none" && metricsPort === get("httpsPort"))))
    errors.push(`${key("metricsPort")} is ${metricsPort}, an API port; give metrics a port of their own (for example 9145), or 0 to turn them off.`);

  // Proxy settings and credential names go through the gateway spec's schema, so the proxy
  // and the CLI refuse the same values with the same words. The digest is a placeholder:
  // this check never renders anything.
  const placeholder = "0".repeat(64);
  const spec = gatewaySpecSchema.safeParse(
    {
      serverName: get("hostname"),
      apiKeys: apiKeys.map((entry) => ({ ...entry, keySha256: placeholder })),
      basicUsers: basicUsers.map((entry) => ({ ...entry, passwordHash: `$2b$10$${"a".repeat(53)}` })),
      ...(rateLimit ? { rateLimit } : {}),
      maxBodySize: get("maxBodySize"),
      timeouts: {
        upstreamConnectSeconds: 5,
        upstreamReadSeconds: get("upstreamReadTimeoutSeconds"),
        upstreamSendSeconds: 900,
        clientHeaderSeconds: 10,
        clientBodySeconds: 60,
      },
      cors: { allowedOrigins: get("corsAllowedOrigins") },
      limits,
      ...(jwtSpec ? { jwt: jwtSpec } : {}),
      ...(externalAuth ? { externalAuth } : {}),
      network,
    },
    { reportInput: true },
  );
  if (!spec.success) {
    const seen = new Set(errors);
    const issues = spec.error.issues
      // `hostname` was already checked with the stricter DNS rule above.
      .filter((issue) => issue.path[0] !== "serverName")
      .map((issue) => ({ ...issue, path: specPathToKey(issue.path, scopeSources) }));
    for (const message of formatIssues(issues).map(sectionWording).map(withPeriod)) if (!seen.has(message)) errors.push(message);
  }

  const supplied = coerced.suppliedSecrets === undefined ? undefined : parseSuppliedSecrets(coerced.suppliedSecrets as string, { apiKeys, basicUsers }, errors);

  const hs256InUse = jwtSettings?.algorithms.includes("HS256") ?? false;
  const policies = parseRotation(
    get("rotation"),
    new Set([...apiKeys, ...basicUsers].map((entry) => entry.name)),
    new Set([...(supplied?.apiKeys.keys() ?? []), ...(supplied?.basicUsers.keys() ?? [])]),
    !hs256InUse ? "off" : jwtSettings?.hs256Secret !== undefined ? "supplied" : "generated",
    errors,
  );
  [...apiKeys.map((e, i) => [e.name, `apiKeys[${i}]`]), ...basicUsers.map((e, i) => [e.name, `basicUsers[${i}]`])]
    .filter(([name]) => name === HS256_ROTATION_NAME)
    .forEach(([, label]) =>
      errors.push(`${key(label)} is named \`${HS256_ROTATION_NAME}\`, which \`rotation\` keeps for the HS256 secret; choose another name.`),
    );
  const onDemand =
    coerced.rotationGenerations === undefined ? new Map<string, OnDemandRotation>() : parseRotationGenerations(coerced.rotationGenerations as string, policies, errors);
  const rotationOf = <Field extends string = "rotation">(name: string, field: Field = "rotation" as Field) => {
    const policy = policies.get(name);
    if (!policy) return {};
    const request = onDemand.get(name);
    return { [field]: { policy, ...(request ? { onDemand: request } : {}) } } as { [F in Field]?: CredentialRotation };
  };

  // TLS: PEMs only with `provided`, and both of them then.
  const tlsMode = get("tlsMode");
  const certPem = coerced.tlsCertPem as string | undefined;
  const keyPem = coerced.tlsKeyPem as string | undefined;
  if (tlsMode === "provided") {
    if (certPem === undefined)
      errors.push(`${key("tlsCertPem")} is missing; set it (\`cat server.crt | pulumi config set tlsCertPem\`) when \`tlsMode\` is \`provided\`.`);
    if (keyPem === undefined)
      errors.push(
        `${key("tlsKeyPem")} is missing; set it (\`cat server.key | pulumi config set --secret tlsKeyPem\`) when \`tlsMode\` is \`provided\`.`,
      );
    else if (!keyPem.includes("PRIVATE KEY-----")) errors.push(`${key("tlsKeyPem")} is ${secretShown(keyPem)}; use a PEM private key.`);
  } else {
    for (const name of ["tlsCertPem", "tlsKeyPem"] as const)
      if (coerced[name] !== undefined)
        errors.push(`${key(name)} is set but \`tlsMode\` is ${show(tlsMode)}; set \`tlsMode\` to \`provided\` or remove ${key(name)}.`);
  }
  if (tlsMode !== "none" && get("httpPort") === get("httpsPort"))
    errors.push(`${key("httpsPort")} is ${get("httpsPort")}, the same as \`httpPort\`; use two different ports.`);

  const models = get("models");
  if (get("internalNetwork") && models.length > 0)
    errors.push(
      `${key("models")} is ${show(models)} but \`internalNetwork\` is true, and an internal network cannot reach the model registry; set \`internalNetwork\` to false or \`models\` to [].`,
    );
  const pullNames = new Map<string, string>();
  for (const model of models) {
    const other = pullNames.get(pullResourceSuffix(model));
    if (other !== undefined) errors.push(`${key("models")} lists ${show(model)} twice (or as ${show(other)}); list each model once.`);
    pullNames.set(pullResourceSuffix(model), model);
  }

  if (errors.length > 0) return { ok: false, errors };
  return {
    ok: true,
    settings: {
      hostname: get("hostname"),
      dnsNames: get("dnsNames"),
      ipAddresses: get("ipAddresses"),
      bindAddress: get("bindAddress"),
      httpPort: get("httpPort"),
      httpsPort: get("httpsPort"),
      tls: tlsMode === "provided" ? { mode: "provided", certPem: certPem!, keyPem: keyPem! } : { mode: tlsMode },
      apiKeys: apiKeys.map((entry) => ({
        ...entry,
        ...credentialPolicies.get(entry.name),
        ...(supplied?.apiKeys.has(entry.name) ? { key: supplied.apiKeys.get(entry.name) } : {}),
        ...rotationOf(entry.name),
      })),
      basicUsers: basicUsers.map((entry) => ({
        ...entry,
        ...credentialPolicies.get(entry.name),
        ...(supplied?.basicUsers.has(entry.name) ? { password: supplied.basicUsers.get(entry.name) } : {}),
        ...rotationOf(entry.name),
      })),
      rateLimit: rateLimit!,
      maxBodySize: get("maxBodySize"),
      upstreamReadTimeoutSeconds: get("upstreamReadTimeoutSeconds"),
      corsAllowedOrigins: get("corsAllowedOrigins"),
      models,
      gpu: get("gpu"),
      internalNetwork: get("internalNetwork"),
      ollama: {
        keepAlive: get("ollamaKeepAlive"),
        ...(coerced.ollamaNumParallel !== undefined ? { numParallel: coerced.ollamaNumParallel as number } : {}),
        ...(coerced.ollamaMaxLoadedModels !== undefined ? { maxLoadedModels: coerced.ollamaMaxLoadedModels as number } : {}),
      },
      ollamaImage: get("ollamaImage"),
      ...(get("proxyImage") !== "" ? { proxyImage: get("proxyImage") } : {}),
      ...(jwtSettings ? { jwt: { ...jwtSettings, ...rotationOf(HS256_ROTATION_NAME, "hs256Rotation") } } : {}),
      ...(externalAuth ? { externalAuth } : {}),
      network,
      ...(metricsPort !== undefined ? { metricsPort } : {}),
      limits,
    },
  };
}

export class StackConfigError extends Error {
  constructor(public readonly problems: string[]) {
    super(`Invalid stack config (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n- ${problems.join("\n- ")}`);
    this.name = "StackConfigError";
  }
}
