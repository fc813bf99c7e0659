/**
 * The gateway spec: the one typed description of a proxy bundle, in two halves.
 *
 * - Settings (`gatewaySettingsSchema`): everything that is not secret (names, scopes, limits,
 *   governance, whether TLS is on, JWT issuers and public keys). Config files render from them.
 * - Credentials (`gatewayCredentialsSchema`): API keys or their digests, passwords or bcrypt
 *   hashes, previous secrets, HS256 secrets, TLS material. Credential files render from both.
 *
 * The CLI (`npm run render`) reads the whole spec (`gatewaySpecSchema`, both halves in one JSON)
 * and splits it (`splitSpec`). The Pulumi program validates a proxy's settings once
 * (bundle/proxySettings.ts, called by config/ on the stack path) and the credentials
 * (`validateCredentials`) where their values are known, inside a secret Output. The rules are
 * the same pieces either way, so a bad value gets the same words, and no check needs a stand-in
 * secret.
 */
import { z } from "zod";
import { cidr, trustedProxyCidr } from "./addresses";
import { credentialGovernanceFields, metricsSchema, modelGrantsSchema, requestLimitsSchema } from "./governance";
import { JWT_ALGORITHMS, publicKeyFromJwk, publicKeyFromPem, secretBytes } from "./jwt";

export const SCOPES = ["read", "inference", "admin"] as const;
export type Scope = (typeof SCOPES)[number];

export const FLAVORS = ["openresty", "debian"] as const;
export type Flavor = (typeof FLAVORS)[number];

/** Names appear in logs and rate-limit keys, and in the credential files' line format. */
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
/** RFC 6750 token68 characters, so a key survives `Authorization: Bearer` unchanged. */
const KEY_PATTERN = /^[A-Za-z0-9._~+/-]+=*$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
/** bcrypt hashes as produced by bcryptjs (`$2b$`) or htpasswd -B (`$2y$`). */
const BCRYPT_HASH = /^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$/;
/** nginx size syntax: bytes, or a number with k/m/g. */
const NGINX_SIZE = /^[1-9][0-9]*[kKmMgG]?$/;

const name = z.string().regex(NAME_PATTERN, {
  error: "use 1-64 characters: letters, digits, `.`, `_`, `@`, `-`, starting with a letter or digit",
});
const scope = z.enum(SCOPES, { error: "use one of `read`, `inference`, `admin`" });
const port = z.number().int().min(1, { error: "use a TCP port between 1 and 65535" }).max(65535, { error: "use a TCP port between 1 and 65535" });
const isoTime = z.iso.datetime({ offset: true, error: "use an ISO 8601 time such as 2026-12-31T00:00:00Z" });
const apiKey = z
  .string()
  .min(24, { error: "use at least 24 characters (generate one with `openssl rand -hex 24`)" })
  .max(256, { error: "use at most 256 characters" })
  .regex(KEY_PATTERN, { error: "use only letters, digits and `-._~+/` (token68), so clients can send it as a Bearer token" });
const keySha256 = z.string().regex(SHA256_HEX, { error: "use the lowercase hex SHA-256 of the key (64 characters)" });
const password = z
  .string()
  .min(12, { error: "use at least 12 characters" })
  // bcrypt reads 72 bytes, not characters, and the proxy refuses longer passwords at login.
  .refine((value) => Buffer.byteLength(value, "utf8") <= 72, { error: "use at most 72 bytes in UTF-8 (bcrypt reads no more)" });
const passwordHash = z.string().regex(BCRYPT_HASH, {
  error: "use a bcrypt hash (`$2b$` or `$2y$`, as made by bcryptjs or `htpasswd -B`)",
});

/** A previous secret that stays valid until `notAfter` (rotation overlap). */
const previousKey = z
  .strictObject({ key: apiKey.optional(), keySha256: keySha256.optional(), notAfter: isoTime })
  .superRefine(exactlyOneOf("key", "keySha256"));
const previousPassword = z.strictObject({
  password: password.optional(),
  passwordHash: passwordHash.optional(),
  notAfter: isoTime,
}).superRefine(exactlyOneOf("password", "passwordHash"));

const rateLimit = z.strictObject({
  requestsPerSecond: z.number().positive({ error: "use a number of requests per second above 0" }).max(100_000),
  burst: z.number().int().min(0, { error: "use a whole number of requests, 0 or more" }).max(100_000),
});

/** Adds an issue unless exactly one of two alternative fields is set. */
function exactlyOneOf(a: string, b: string) {
  return (obj: object, ctx: z.RefinementCtx) => {
    const has = (k: string) => (obj as Record<string, unknown>)[k] !== undefined;
    if (has(a) !== has(b)) return;
    ctx.addIssue({ code: "custom", path: [], input: has(a) ? "both" : "neither", message: `needs exactly one of \`${a}\` or \`${b}\`` });
  };
}

/** Fewer distinct characters than this make a key guessable however long it is (`aaaa…`). */
export const MIN_DISTINCT_KEY_CHARACTERS = 8;

/**
 * Words that mark a key copied from documentation or a template rather than generated: such a
 * key is public however random the rest looks.
 */
const DOCUMENTATION_KEY_WORDS = /changeme|change-me|change_me|example|placeholder|your-?key|your_key|replace|sample|dummy|xxxxxx|<|>/i;

/** A key given in clear (current or previous) must not be guessable; the message names the entry, never the key. */
function notGuessable(entry: { name: string; key?: string; previous?: { key?: string } }, ctx: z.RefinementCtx) {
  for (const [path, key] of [[["key"], entry.key], [["previous", "key"], entry.previous?.key]] as const) {
    if (key !== undefined && DOCUMENTATION_KEY_WORDS.test(key)) {
      ctx.addIssue({
        code: "custom",
        path: [...path],
        input: key,
        message: `use a key of your own (\`openssl rand -hex 24\`): the key of \`${entry.name}\` looks like a placeholder or a documentation example (a word such as \`changeme\`, \`example\` or \`your-key\`), which others know too`,
      });
      continue;
    }
    const distinct = key === undefined ? MIN_DISTINCT_KEY_CHARACTERS : new Set(key).size;
    if (distinct < MIN_DISTINCT_KEY_CHARACTERS)
      ctx.addIssue({
        code: "custom",
        path: [...path],
        input: key,
        message: `use a random key instead (\`openssl rand -hex 24\`): the key of \`${entry.name}\` has only ${distinct} distinct character${distinct === 1 ? "" : "s"} (at least ${MIN_DISTINCT_KEY_CHARACTERS}), so it can be guessed`,
      });
  }
}

/** A credential's settings after its name, scope and end. */
const credentialTailFields = {
  /** Overrides the gateway-wide `rateLimit` for this credential. */
  rateLimit: rateLimit.optional(),
  /** Allows Ollama's cloud features (`:cloud`/`-cloud` models, server-side web search and fetch). Default false. */
  cloud: z.boolean().optional(),
  // Governance (bundle/governance.ts): maxConcurrent, limits.
  ...credentialGovernanceFields,
};
/** After this time the proxy refuses the credential, even if no deployment runs. */
const notAfter = isoTime.optional();
/** What a credential is apart from its secret: settings, written into its credential file line and policy.lua. */
const credentialSettings = z.strictObject({ name, scope, notAfter, ...credentialTailFields });

/** An API key's secret: the key itself (the CLI digests it; it never reaches the bundle), or only its SHA-256. */
const apiKeySecret = { key: apiKey.optional(), keySha256: keySha256.optional() };
const basicUserSecret = { password: password.optional(), passwordHash: passwordHash.optional() };
const apiKeyCredential = z
  .strictObject({ name, ...apiKeySecret, previous: previousKey.optional() })
  .superRefine(exactlyOneOf("key", "keySha256"))
  .superRefine(notGuessable);
const basicUserCredential = z
  .strictObject({ name, ...basicUserSecret, previous: previousPassword.optional() })
  .superRefine(exactlyOneOf("password", "passwordHash"));

/** A whole spec's entries: settings and secret together, in the order people write them (problems are listed so). */
const apiKeyEntry = z
  .strictObject({ name, ...apiKeySecret, scope, notAfter, previous: previousKey.optional(), ...credentialTailFields })
  .superRefine(exactlyOneOf("key", "keySha256"))
  .superRefine(notGuessable);
const basicUserEntry = z
  .strictObject({ name, ...basicUserSecret, scope, notAfter, previous: previousPassword.optional(), ...credentialTailFields })
  .superRefine(exactlyOneOf("password", "passwordHash"));

const seconds = (min: number, max: number) =>
  z.number().int().min(min, { error: `use a whole number of seconds from ${min} to ${max}` }).max(max, {
    error: `use a whole number of seconds from ${min} to ${max}`,
  });

/** Claim values (JWT) or header values (external auth) that grant each gateway scope. */
const scopeValue = z.string().regex(/^[\x21-\x7e]{1,256}$/, { error: "use 1-256 printable ASCII characters without spaces or commas" })
  .refine((v) => !v.includes(","), { error: "use 1-256 printable ASCII characters without spaces or commas" });
const scopeValues = z
  .strictObject({
    read: z.array(scopeValue).default([]),
    inference: z.array(scopeValue).default([]),
    admin: z.array(scopeValue).default([]),
  })
  .default({ read: ["read"], inference: ["inference"], admin: ["admin"] });
/** A JWT `kid`: printable ASCII, no spaces (it is a field of the tab-separated key file). */
const kid = z.string().regex(/^[\x21-\x7e]{1,128}$/, { error: "use 1-128 printable ASCII characters without spaces" });
const claimName = z.string().regex(/^[\x21-\x7e]{1,256}$/, { error: "use a claim name of 1-256 printable ASCII characters" });
/** An HTTP header name (RFC 9110 token). */
const headerName = z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/, { error: "use an HTTP header name such as X-Auth-Request-User" });

const hs256Secret = z
  .strictObject({
    kid: kid.optional(),
    /** The secret as text (its UTF-8 bytes are the key). */
    secret: z.string().min(32, { error: "use at least 32 characters (RFC 7518: the key must be as long as the hash)" }).optional(),
    /** Or its bytes in base64. */
    secretBase64: z.base64({ error: "use standard base64" }).optional(),
    /** The proxy refuses tokens signed with it after this time (a rotated-out secret's overlap). */
    notAfter: isoTime.optional(),
  })
  .superRefine(exactlyOneOf("secret", "secretBase64"))
  .superRefine((entry, ctx) => {
    if (entry.secretBase64 !== undefined && secretBytes(entry).length < 32)
      ctx.addIssue({ code: "custom", path: ["secretBase64"], input: undefined, message: "decodes to fewer than 32 bytes; use at least 32" });
  });

/** A PEM public key; checked on its own, so its problem is reported with every other one. */
const publicKeyEntry = z.strictObject({ kid: kid.optional(), pem: z.string().min(1) }).superRefine((entry, ctx) => {
  const record = publicKeyFromPem(entry.pem);
  if (typeof record === "string") ctx.addIssue({ code: "custom", path: ["pem"], input: undefined, message: record });
});
const jwkEntry = z.looseObject({ kty: z.string({ error: "use a JWK with `kty` (RSA or EC)" }) }).superRefine((jwk, ctx) => {
  const record = publicKeyFromJwk(jwk);
  if (typeof record === "string") ctx.addIssue({ code: "custom", path: [], input: undefined, message: record });
});

const jwtSection = z.strictObject({
  /** Required `iss` claim. */
  issuer: z.string().min(1, { error: "use the issuer your identity provider puts in `iss`" }).max(512),
  /** Required in `aud` (a string, or an array containing it). */
  audience: z.string().min(1, { error: "use the audience your identity provider puts in `aud`" }).max(512),
  /** Algorithms accepted; each needs keys of its kind. `none` is never accepted. */
  algorithms: z.array(z.enum(JWT_ALGORITHMS, { error: "use `HS256`, `RS256` or `ES256`" })).min(1, { error: "list at least one algorithm" }),
  hs256Secrets: z.array(hs256Secret).max(64).default([]),
  /** PEM public keys (SPKI `BEGIN PUBLIC KEY`, or a certificate): RSA >= 2048 bits or P-256. */
  publicKeys: z.array(publicKeyEntry).max(64).default([]),
  /** A JWKS document (`{"keys": [...]}`) as the identity provider publishes it. */
  jwks: z.strictObject({ keys: z.array(jwkEntry).max(64) }).optional(),
  /** Claim holding the granted scopes: a space-separated string or an array of strings. */
  scopeClaim: claimName.default("scope"),
  scopeValues,
  /** Claim naming the caller in logs and rate limits. */
  nameClaim: claimName.default("sub"),
  clockSkewSeconds: z.number().int().min(0, { error: "use a whole number of seconds from 0 to 300" }).max(300, {
    error: "use a whole number of seconds from 0 to 300",
  }).default(60),
  /** Longer Bearer tokens are refused before any parsing. */
  maxTokenBytes: z.number().int().min(512).max(16384, { error: "use at most 16384 (nginx's header buffers are 16k)" }).default(8192),
  /** Allows every caller it admits Ollama's cloud features (as `apiKeys[].cloud`). Default false. */
  cloud: z.boolean().default(false),
  /** Models per granted value (bundle/governance.ts); absent: every model. */
  modelGrants: modelGrantsSchema,
});

const externalAuthSection = z.strictObject({
  /** The service's check endpoint, such as http://127.0.0.1:4180/oauth2/auth. */
  url: z.url({ protocol: /^https?$/, error: "use an http(s) URL such as http://127.0.0.1:4180/oauth2/auth" }).refine(
    (u) => {
      const url = new URL(u);
      return url.username === "" && url.password === "" && url.hash === "" && !/[\s;{}'"$]/.test(u);
    },
    { error: "use a URL without user info, fragment, spaces, quotes, `;`, `{`, `}` or `$`" },
  ),
  /** `fallback`: only credentials the gateway does not recognise go to the service; `exclusive`: all. */
  mode: z.enum(["fallback", "exclusive"], { error: "use `fallback` or `exclusive`" }).default("fallback"),
  timeoutSeconds: seconds(1, 60).default(5),
  nameHeader: headerName.default("X-Auth-Request-User"),
  scopeHeader: headerName.default("X-Auth-Request-Groups"),
  scopeValues,
  /** CA bundle that verifies an https `url` (path on the proxy's host or image). */
  trustedCaFile: z.string().regex(/^\/[A-Za-z0-9._\/-]+$/, { error: "use an absolute path such as /etc/ssl/certs/ca-certificates.crt" })
    .default("/etc/ssl/certs/ca-certificates.crt"),
  /** Allows every caller it admits Ollama's cloud features (as `apiKeys[].cloud`). Default false. */
  cloud: z.boolean().default(false),
  /** Models per granted value (bundle/governance.ts); absent: every model. */
  modelGrants: modelGrantsSchema,
});

/** The Ollama server the proxy reaches when neither `upstream` nor `upstreams` is set. */
export const DEFAULT_UPSTREAM = "http://127.0.0.1:11434";
/** The backend name a single `upstream` gets (logs, `/healthz`). */
export const SINGLE_BACKEND_NAME = "ollama";
const BACKEND_URL_FIX = "use an http(s) URL with host and optional port and no path, such as http://10.0.0.5:11434";

/** One Ollama server of a pool (spec `upstreams`). */
const upstreamEntry = z.strictObject({
  /** Names the backend in `X-Ollama-Backend`, the access log and `/healthz`. */
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, {
    error: "use 1-64 characters: letters, digits, `.`, `_`, `-`, starting with a letter or digit",
  }),
  /** Base URL as the proxy reaches it; an unreachable one is fine (reported unhealthy). */
  url: z.url({ protocol: /^https?$/, error: BACKEND_URL_FIX }).refine(
    (u) => {
      if (!URL.canParse(u)) return true; // reported by z.url already
      const url = new URL(u);
      return url.username === "" && url.password === "" && url.hash === "" && url.search === "" && url.pathname === "/"
        && !/[\s;{}'"$]/.test(u);
    },
    { error: BACKEND_URL_FIX },
  ),
  /** Share of requests among backends equally suited to a request. Default 1. */
  weight: z.number().int().min(1, { error: "use a whole number from 1 to 100" }).max(100, { error: "use a whole number from 1 to 100" }).default(1),
  /** Requests in progress at once on this backend; more wait for another. Default: no limit. */
  maxConcurrent: z.number().int({ error: "use a whole number of requests, 1 or more" }).min(1, { error: "use a whole number of requests, 1 or more" }).optional(),
});
export type UpstreamEntry = z.output<typeof upstreamEntry>;

/** TLS material, one PEM chain and its key. */
const tlsMaterial = z.strictObject({
  certPem: z.string().includes("-----BEGIN CERTIFICATE-----", { error: "use a PEM certificate (chain)" }),
  keyPem: z.string().includes("PRIVATE KEY-----", { error: "use a PEM private key" }),
});

/** Every field of a whole spec, before the rules between fields. */
const specShape = z
  .strictObject({
    /** Base URL of Ollama as the proxy reaches it (a pool of one). Default `http://127.0.0.1:11434`. */
    upstream: z
      .url({ protocol: /^https?$/, error: "use an http(s) URL with host and port, such as http://127.0.0.1:11434" })
      .optional(),
    /**
     * A DNS server that nginx asks for `upstream`'s host while it runs (nginx `resolver`), instead
     * of resolving it once at start: on Kubernetes a restarted Ollama pod comes back with a new
     * address. Requests spread over every address the name has. Default: resolved once at start.
     */
    upstreamResolver: z
      .strictObject({
        /** `10.96.0.10`, `kube-dns.kube-system.svc.cluster.local`, `127.0.0.1:5353` or `[fd00::a]:53`. */
        address: z.string().regex(/^([A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$/, {
          error: "use a DNS server's address or name, with an optional port, such as 10.96.0.10 or kube-dns.kube-system.svc.cluster.local",
        }),
        /** How long an answer is used before it is asked again (overrides the record's TTL). */
        validSeconds: seconds(1, 300).default(5),
      })
      .optional(),
    /** Several Ollama servers (instead of `upstream`): model-aware routing, health checks, failover. */
    upstreams: z.array(upstreamEntry).min(1, { error: "list at least one backend, or use `upstream`" }).max(64).optional(),
    /** Pool: how often each backend's /api/version, /api/tags and /api/ps are read. Default 2. */
    probeIntervalSeconds: seconds(1, 60).default(2),
    /** Pool: `caller` keeps a caller on the backend it last used while that stays suitable (KV-cache reuse). */
    affinity: z.enum(["none", "caller"], { error: "use `none` or `caller`" }).default("none"),
    listen: z
      .strictObject({
        /** Bind address. Default `127.0.0.1`; `0.0.0.0` or `::` to serve other hosts. */
        address: z.union([z.ipv4(), z.ipv6()], { error: "use an IPv4 or IPv6 address such as 127.0.0.1" }).default("127.0.0.1"),
        http: port.default(8080),
        /** HTTPS port; required when `tls` is set. */
        https: port.optional(),
      })
      .default({ address: "127.0.0.1", http: 8080 }),
    /** `server_name`, and the host name used in redirects. Default `_` (any). */
    serverName: z.string().regex(/^(_|[A-Za-z0-9.-]{1,253})$/, { error: "use a DNS name or `_`" }).default("_"),
    /**
     * With `tls`: the host plain-HTTP requests without credentials are redirected to (308). Default
     * `serverName`; with `serverName` `_` and no `redirectHost` nothing is redirected (a JSON 400
     * names the HTTPS port), as the client's own Host header is never trusted for it.
     */
    redirectHost: z.string().regex(/^[A-Za-z0-9.-]{1,253}$/, { error: "use a DNS name or address such as api.example.com" }).optional(),
    tls: tlsMaterial.optional(),
    apiKeys: z.array(apiKeyEntry).default([]),
    basicUsers: z.array(basicUserEntry).default([]),
    rateLimit: rateLimit.default({ requestsPerSecond: 20, burst: 40 }),
    timeouts: z
      .strictObject({
        upstreamConnectSeconds: seconds(1, 60).default(5),
        /** Cold model loads and long generations: at least 10 minutes by default. */
        upstreamReadSeconds: seconds(1, 86_400).default(900),
        upstreamSendSeconds: seconds(1, 86_400).default(900),
        clientHeaderSeconds: seconds(1, 300).default(10),
        clientBodySeconds: seconds(1, 3600).default(60),
      })
      .default({
        upstreamConnectSeconds: 5,
        upstreamReadSeconds: 900,
        upstreamSendSeconds: 900,
        clientHeaderSeconds: 10,
        clientBodySeconds: 60,
      }),
    /** Largest request body; multimodal requests carry base64 images. Default `100m`. */
    maxBodySize: z.string().regex(NGINX_SIZE, { error: "use an nginx size such as `100m`, `512k` or `1g`" }).default("100m"),
    cors: z
      .strictObject({
        allowedOrigins: z.array(
          z.string().regex(/^https?:\/\/[A-Za-z0-9.-]+(:[0-9]{1,5})?$/, {
            error: "use an origin such as https://app.example.com (scheme, host, optional port; no path)",
          }),
        ),
      })
      .default({ allowedOrigins: [] }),
    workerProcesses: z.union([z.literal("auto"), z.number().int().min(1).max(256)]).default("auto"),
    /**
     * Connections per worker (nginx `worker_connections`), clients and Ollama together. The
     * open-file limit is derived from it (`workerFileLimit`): the host's or container's `nofile`
     * limit must be at least that. Default 4096.
     */
    workerConnections: z.number().int().min(256, { error: "use a whole number from 256 to 65536" })
      .max(65536, { error: "use a whole number from 256 to 65536" }).default(4096),
    /**
     * Requests in progress at once per client address (nginx `limit_conn`, after trusted proxies
     * are resolved); over it: 429. Default 64.
     */
    connectionsPerAddress: z.number().int().min(1, { error: "use a whole number from 1 to 65536" })
      .max(65536, { error: "use a whole number from 1 to 65536" }).default(64),
    /** Where the JSON access log goes; `/dev/stdout` in containers. Relative paths are under the prefix. */
    accessLog: z.string().min(1).default("logs/access.log"),
    errorLog: z.string().min(1).default("logs/error.log"),
    /**
     * nginx `user` ("name" or "name group"): who the workers run as when the master runs as root.
     * Credential files are written 0600 and, by a root renderer, owned by this user. Default: not
     * rendered, nginx's built-in `nobody` (group `nogroup` on Debian).
     */
    user: z
      .string()
      .regex(/^[a-z_][a-z0-9_-]{0,31}( [a-z_][a-z0-9_-]{0,31})?$/, { error: "use a user name, optionally with a group, such as `nobody` or `www-data www-data`" })
      .optional(),
    /** Threads that run bcrypt off the event loop, per worker. */
    bcryptThreads: z.number().int().min(1).max(64).default(2),
    /**
     * Failed authentications per client address (an IPv6 client by its /64) within
     * `windowSeconds` before it gets 429 with Retry-After: `basic` wrong passwords (counted before
     * bcrypt starts), `token` wrong API keys and JWTs. The window starts at the first failure.
     */
    failedAuth: z
      .strictObject({
        basic: z.number().int().min(1, { error: "use a whole number of attempts from 1 to 10000" }).max(10_000, { error: "use a whole number of attempts from 1 to 10000" }).default(20),
        token: z.number().int().min(1, { error: "use a whole number of attempts from 1 to 100000" }).max(100_000, { error: "use a whole number of attempts from 1 to 100000" }).default(60),
        windowSeconds: seconds(1, 86_400).default(60),
      })
      .default({ basic: 20, token: 60, windowSeconds: 60 }),
    /** JWT bearer tokens verified in the proxy (README, "Enterprise authentication"). */
    jwt: jwtSection.optional(),
    /** An external service that decides requests the gateway does not recognise (or all of them). */
    externalAuth: externalAuthSection.optional(),
    /** Request limits for every caller (bundle/governance.ts); credentials may override them. Default none. */
    limits: requestLimitsSchema.default({}),
    /** Prometheus metrics on their own listener (bundle/governance.ts). Default off. */
    metrics: metricsSchema.optional(),
    /** Client addresses: `deny` first, then `allow`; with any `allow`, everything else is refused (403). */
    network: z
      .strictObject({
        allow: z.array(cidr).max(1000).default([]),
        deny: z.array(cidr).max(1000).default([]),
        /**
         * Load balancers or reverse proxies in front of the gateway. A request from one of them is
         * treated as coming from the address it names in `clientAddressHeader` (nginx's realip
         * module, the last address not itself trusted), for `allow`/`deny`, failed-login limits and
         * the log. Default none: the header is ignored, the peer's address counts.
         */
        trustedProxies: z.array(trustedProxyCidr).max(1000).default([]),
        /** The header trusted proxies put the client's address in. Default `X-Forwarded-For`. */
        clientAddressHeader: z
          .string()
          .regex(/^[A-Za-z][A-Za-z0-9-]{0,63}$/, { error: "use a header name of letters, digits and hyphens, such as X-Forwarded-For or X-Real-IP" })
          .default("X-Forwarded-For"),
      })
      .default({ allow: [], deny: [], trustedProxies: [], clientAddressHeader: "X-Forwarded-For" }),
  });

/** The spec's `jwt` section without HS256 secrets (those are credentials). */
const jwtSettingsSection = jwtSection.omit({ hs256Secrets: true });

/** The whole spec as the CLI reads it: settings and credentials in one document. */
export const gatewaySpecSchema = specShape
  .superRefine((spec, ctx) => {
    checkSettings(spec, { tlsOn: spec.tls !== undefined, tlsMissing: "must be set (certPem and keyPem) when `listen.https` is set", hs256Secrets: spec.jwt?.hs256Secrets }, ctx);
  })
  .check(deploymentCheck());

/**
 * The settings: the spec without a secret. `tls` says only whether TLS is on; credentials carry
 * no settings but their names, and `jwt` has no `hs256Secrets`.
 */
export const gatewaySettingsSchema = specShape
  .extend({
    tls: z.boolean().default(false),
    apiKeys: z.array(credentialSettings).default([]),
    basicUsers: z.array(credentialSettings).default([]),
    jwt: jwtSettingsSection.optional(),
  })
  .superRefine((settings, ctx) => {
    checkSettings(settings, { tlsOn: settings.tls, tlsMissing: "must be true when `listen.https` is set" }, ctx);
  })
  .check(deploymentCheck());

/** The credentials: every secret, each credential by the name its settings have. */
export const gatewayCredentialsSchema = z.strictObject({
  apiKeys: z.array(apiKeyCredential).default([]),
  basicUsers: z.array(basicUserCredential).default([]),
  /** The `jwt` section's HS256 secrets. */
  hs256Secrets: z.array(hs256Secret).max(64).default([]),
  /** Exactly when the settings' `tls` is true. */
  tls: tlsMaterial.optional(),
});

type SettingsOutput = z.output<typeof gatewaySettingsSchema>;
/** What the rules between settings fields read: the fields the spec and the settings share. */
type CheckedSettings = Omit<SettingsOutput, "tls" | "apiKeys" | "basicUsers" | "jwt"> & {
  apiKeys: { name: string; models?: unknown }[];
  basicUsers: { name: string; models?: unknown }[];
  jwt?: JwtSettingsSection;
};

/**
 * The rules between settings fields (the whole spec's too): names, backends, ports, TLS on, JWT
 * keys, scope values. `hs256Secrets`: the HS256 secrets, undefined where they are not known yet.
 */
function checkSettings(
  spec: CheckedSettings,
  { tlsOn, tlsMissing, hs256Secrets }: { tlsOn: boolean; tlsMissing: string; hs256Secrets?: HS256Secret[] },
  ctx: z.RefinementCtx,
) {
  const seen = new Map<string, string>();
  const checkUnique = (list: { name: string }[], field: string) =>
    list.forEach((entry, i) => {
      const other = seen.get(entry.name);
      if (other) {
        ctx.addIssue({
          code: "custom",
          path: [field, i, "name"],
          input: entry.name,
          message: `is already used by \`${other}\`; give every credential its own name`,
        });
      } else seen.set(entry.name, `${field}[${i}].name`);
    });
  checkUnique(spec.apiKeys, "apiKeys");
  checkUnique(spec.basicUsers, "basicUsers");
  if (spec.upstreams) checkUpstreams(spec, ctx);

  if (tlsOn && spec.listen.https === undefined)
    ctx.addIssue({
      code: "custom",
      path: ["listen", "https"],
      input: undefined,
      message: "must be set when `tls` is set (for example 8443)",
    });
  if (!tlsOn && spec.listen.https !== undefined)
    ctx.addIssue({
      code: "custom",
      path: ["tls"],
      input: undefined,
      message: tlsMissing,
    });
  if (spec.jwt) checkJwt(spec.jwt, hs256Secrets, ctx);
  if (spec.jwt) checkScopeValues(spec.jwt.scopeValues, ["jwt", "scopeValues"], ctx);
  if (spec.externalAuth) checkScopeValues(spec.externalAuth.scopeValues, ["externalAuth", "scopeValues"], ctx);
}

/** The fields `checkDeployment` reads. */
const DEPLOYMENT_PATHS = ["listen", "metrics", "upstreams"];
type DeploymentFields = { listen: { http: number; https?: number }; metrics?: { listen: { port: number } }; upstreams?: { name: unknown; url: unknown }[] };

/**
 * The rules between the fields a deployment sets (backend names and schemes, ports), run
 * whenever those fields are sound, whatever else is wrong: zod skips a refinement after any
 * problem it cannot continue from (a bad scope, say), and these must be reported with it.
 */
function deploymentCheck(): z.core.$ZodCheck<DeploymentFields> {
  const check = z.superRefine<DeploymentFields>((spec, ctx) => checkDeployment(spec, ctx));
  // zod 4.1's superRefine takes no params; `when` is its check definition's field for this.
  check._zod.def.when = (payload) => !payload.issues.some((issue) => issue.continue !== true && DEPLOYMENT_PATHS.includes(String(issue.path?.[0])));
  return check;
}

function checkDeployment(spec: DeploymentFields, ctx: z.RefinementCtx) {
  const upstreams = spec.upstreams ?? [];
  const names = new Map<string, number>();
  upstreams.forEach((entry, i) => {
    if (typeof entry.name !== "string") return;
    const other = names.get(entry.name);
    if (other !== undefined)
      ctx.addIssue({ code: "custom", path: ["upstreams", i, "name"], input: entry.name, message: `is already used by \`upstreams[${other}]\`; give every backend its own name` });
    else names.set(entry.name, i);
  });
  const scheme = (url: string) => url.slice(0, url.indexOf(":"));
  const first = upstreams[0]?.url;
  upstreams.forEach((entry, i) => {
    // Malformed URLs were reported on their own.
    if (i > 0 && typeof entry.url === "string" && typeof first === "string" && URL.canParse(entry.url) && URL.canParse(first) && scheme(entry.url) !== scheme(first))
      ctx.addIssue({ code: "custom", path: ["upstreams", i, "url"], input: entry.url, message: `uses ${scheme(entry.url)} but \`upstreams[0].url\` uses ${scheme(first)}; use one scheme for every backend` });
  });
  if (spec.metrics && [spec.listen.http, spec.listen.https].includes(spec.metrics.listen.port))
    ctx.addIssue({
      code: "custom",
      path: ["metrics", "listen", "port"],
      input: spec.metrics.listen.port,
      message: "is an API port (`listen.http` or `listen.https`); give metrics a port of their own",
    });
  if (spec.listen.https !== undefined && spec.listen.https === spec.listen.http)
    ctx.addIssue({
      code: "custom",
      path: ["listen", "https"],
      input: spec.listen.https,
      message: "is the same port as `listen.http`; use two different ports",
    });
}

/** `upstream` and `upstreamResolver` are not set with a pool (its names and schemes: `checkDeployment`). */
function checkUpstreams(spec: { upstream?: string; upstreams?: UpstreamEntry[]; upstreamResolver?: unknown }, ctx: z.RefinementCtx) {
  if (spec.upstream !== undefined)
    ctx.addIssue({ code: "custom", path: ["upstream"], input: spec.upstream, message: "is set together with `upstreams`; list that server in `upstreams` and remove `upstream`" });
  // The pool's balancer resolves its backends' names itself, at every probe.
  if (spec.upstreamResolver !== undefined)
    ctx.addIssue({ code: "custom", path: ["upstreamResolver"], input: spec.upstreamResolver, message: "is set together with `upstreams`; remove it (a pool resolves its backends' names at every probe) or use one `upstream`" });
}

/** The backends a spec names: `upstreams`, or `upstream` (or the default) as a pool of one. */
export function specBackends(spec: Pick<GatewaySpec, "upstream" | "upstreams">): UpstreamEntry[] {
  return spec.upstreams ?? [{ name: SINGLE_BACKEND_NAME, url: spec.upstream ?? DEFAULT_UPSTREAM, weight: 1 }];
}

type JwtSettingsSection = z.output<typeof jwtSettingsSection>;
type HS256Secret = z.output<typeof hs256Secret>;

/**
 * Keys parse, match the algorithms listed, and have unique kids. Without `hs256Secrets` (the
 * settings alone) HS256 is not checked: its secrets are credentials, checked with them.
 */
function checkJwt(jwt: JwtSettingsSection, hs256Secrets: HS256Secret[] | undefined, ctx: z.RefinementCtx) {
  const kinds = new Map<string, number>();
  const kids = new Map<string, string>();
  const note = (alg: string, kid: string | undefined, field: (string | number)[]) => {
    kinds.set(alg, (kinds.get(alg) ?? 0) + 1);
    if (kid === undefined) return;
    const path = ["jwt", ...field, "kid"];
    const other = kids.get(kid);
    if (other) ctx.addIssue({ code: "custom", path, input: kid, message: `is already the kid of \`${other}\`; give every key its own kid` });
    else kids.set(kid, formatPath(path));
  };
  hs256Secrets?.forEach((s, i) => note("HS256", s.kid, ["hs256Secrets", i]));
  // Keys that do not parse were reported by their own schema (and then this check does not run).
  jwt.publicKeys.forEach((entry, i) => {
    const record = publicKeyFromPem(entry.pem, entry.kid);
    if (typeof record !== "string") note(record.alg, entry.kid, ["publicKeys", i]);
  });
  jwt.jwks?.keys.forEach((jwk, i) => {
    const record = publicKeyFromJwk(jwk);
    if (record && typeof record !== "string") note(record.alg, record.kid, ["jwks", "keys", i]);
  });
  for (const alg of JWT_ALGORITHMS) {
    if (alg === "HS256" && hs256Secrets === undefined) continue;
    const listed = jwt.algorithms.includes(alg);
    const count = kinds.get(alg) ?? 0;
    if (listed && count === 0)
      ctx.addIssue({ code: "custom", path: ["jwt", "algorithms"], input: alg, message: `has no key: add ${alg === "HS256" ? "`hs256Secrets`" : `${alg === "RS256" ? "an RSA" : "a P-256"} key to \`publicKeys\` or \`jwks\``}, or remove it` });
    if (!listed && count > 0)
      ctx.addIssue({ code: "custom", path: ["jwt", "algorithms"], input: alg, message: `is not listed but ${count} key(s) are for it; add it or remove those keys` });
  }
}

/** A value may grant only one scope. */
function checkScopeValues(values: Record<Scope, string[]>, path: string[], ctx: z.RefinementCtx) {
  const seen = new Map<string, Scope>();
  for (const scope of SCOPES) {
    values[scope].forEach((value, i) => {
      const other = seen.get(value);
      if (other) ctx.addIssue({ code: "custom", path: [...path, scope, i], input: value, message: `already grants \`${other}\`; list each value under one scope` });
      else seen.set(value, scope);
    });
  }
}

/** A spec as written by people (defaults optional). */
export type GatewaySpecInput = z.input<typeof gatewaySpecSchema>;
/** A validated spec with every default filled in. */
export type GatewaySpec = z.output<typeof gatewaySpecSchema>;
export type ApiKeyEntry = GatewaySpec["apiKeys"][number];
export type BasicUserEntry = GatewaySpec["basicUsers"][number];
/** Settings as written (defaults optional). */
export type GatewaySettingsInput = z.input<typeof gatewaySettingsSchema>;
/** Validated settings with every default filled in: all config files need. */
export type GatewaySettings = z.output<typeof gatewaySettingsSchema>;
/** A credential's settings (name, scope, end, rate limit, governance). */
export type CredentialSettings = GatewaySettings["apiKeys"][number];
export type GatewayCredentialsInput = z.input<typeof gatewayCredentialsSchema>;
/** Validated credentials, held to the settings they belong to (`validateCredentials`). */
export type GatewayCredentials = z.output<typeof gatewayCredentialsSchema>;

/**
 * The rules between settings and credentials: every credential has exactly one secret entry, by
 * name; HS256 is listed exactly when it has secrets (with kids unique among all JWT keys); TLS
 * material is given exactly when TLS is on.
 */
function checkCredentials(settings: GatewaySettings, credentials: GatewayCredentials, ctx: z.RefinementCtx) {
  for (const field of ["apiKeys", "basicUsers"] as const) {
    const named = new Set(settings[field].map((entry) => entry.name));
    const given = new Set<string>();
    credentials[field].forEach((entry, i) => {
      if (!named.has(entry.name))
        ctx.addIssue({ code: "custom", path: [field, i, "name"], input: entry.name, message: `has a secret but no entry in the settings' \`${field}\`; add one or remove the secret` });
      else if (given.has(entry.name))
        ctx.addIssue({ code: "custom", path: [field, i, "name"], input: entry.name, message: "has a second secret; give one per credential" });
      given.add(entry.name);
    });
    settings[field].forEach((entry, i) => {
      if (!given.has(entry.name))
        ctx.addIssue({ code: "custom", path: [field, i, "name"], input: entry.name, message: "has no secret; give one for every credential of the settings" });
    });
  }
  if (settings.jwt) checkJwt(settings.jwt, credentials.hs256Secrets, ctx);
  else if (credentials.hs256Secrets.length > 0)
    ctx.addIssue({ code: "custom", path: ["jwt", "hs256Secrets"], input: undefined, message: "are given but `jwt` is off; set `jwt` or remove them" });
  if (settings.tls && !credentials.tls)
    ctx.addIssue({ code: "custom", path: ["tls"], input: undefined, message: "must be given (certPem and keyPem) when `tls` is on" });
  if (!settings.tls && credentials.tls)
    ctx.addIssue({ code: "custom", path: ["tls"], input: undefined, message: "is given but `tls` is off in the settings; turn it on or remove it" });
}

/** Fields whose values are secret: their values never appear in an error message. */
const SECRET_FIELDS = new Set(["key", "password", "passwordHash", "keyPem", "certPem", "secret", "secretBase64"]);

export type ParseResult = { ok: true; spec: GatewaySpec } | { ok: false; errors: string[] };

/** Formats a path as the user wrote it: `apiKeys[2].scope`. */
export function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((acc, part) => {
    if (typeof part === "number") return `${acc}[${part}]`;
    return acc ? `${acc}.${String(part)}` : String(part);
  }, "");
}

function describeValue(field: PropertyKey | undefined, value: unknown): string {
  if (value === undefined) return "missing";
  if (typeof field === "string" && SECRET_FIELDS.has(field))
    return typeof value === "string" ? `a secret of ${value.length} characters (not shown)` : `of type ${typeof value}`;
  const text = JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** One message per problem, each naming the field, the bad value and the fix. */
export function formatIssues(issues: readonly z.core.$ZodIssue[], prefix = ""): string[] {
  return issues.map((issue) => {
    const field = formatPath([...(prefix ? [prefix] : []), ...issue.path]);
    const last = issue.path[issue.path.length - 1];
    if (issue.code === "unrecognized_keys")
      return `${field ? `\`${field}\`` : "The spec"} has unknown field(s) ${issue.keys.map((k) => `\`${k}\``).join(", ")}; remove them or check the spelling`;
    if (issue.code === "invalid_type" && issue.input === undefined)
      return `\`${field}\` is missing; ${issue.message.startsWith("Invalid input") ? `set it (${issue.expected})` : issue.message}`;
    const message = issue.message.startsWith("Invalid input") ? `expected ${"expected" in issue ? issue.expected : "another value"}` : issue.message;
    const shown = issue.code === "custom" ? issue.input : describeValue(last, issue.input);
    // Custom issues carry the offending value only when it is a plain value.
    const plain = ["string", "number", "boolean"].includes(typeof shown);
    const valueText = issue.code === "custom" ? (plain ? ` (${describeValue(last, shown)})` : "") : ` is ${shown}`;
    // A refinement that states a fix ("use ...") reads like any other bad value.
    if (issue.code === "custom" && message.startsWith("use ")) return `\`${field}\` is ${describeValue(last, issue.input)}; ${message}`;
    if (issue.code === "custom") return `\`${field}\`${valueText} ${message}`;
    return `\`${field}\`${valueText}; ${message}`;
  });
}

/** Validates a spec and fills in defaults; never throws on bad input. */
export function parseSpec(input: unknown): ParseResult {
  const result = gatewaySpecSchema.safeParse(input, { reportInput: true });
  if (result.success) return { ok: true, spec: result.data };
  return { ok: false, errors: formatIssues(result.error.issues) };
}

/** Like `parseSpec` but throws one error listing every problem. */
export function validateSpec(input: unknown): GatewaySpec {
  const result = parseSpec(input);
  if (!result.ok) throw new SpecError(result.errors);
  return result.spec;
}

/** Validates settings and fills in defaults; throws one error listing every problem. */
export function validateSettings(input: unknown): GatewaySettings {
  const result = gatewaySettingsSchema.safeParse(input, { reportInput: true });
  if (!result.success) throw new SpecError(formatIssues(result.error.issues));
  return result.data;
}

/**
 * Validates the credentials of `settings` (validated already): each secret, then the rules
 * between the two (`checkCredentials`). Throws one error listing every problem, never a secret.
 */
export function validateCredentials(settings: GatewaySettings, input: unknown): GatewayCredentials {
  const schema = gatewayCredentialsSchema.superRefine((credentials, ctx) => checkCredentials(settings, credentials, ctx));
  const result = schema.safeParse(input, { reportInput: true });
  if (!result.success) throw new SpecError(formatIssues(result.error.issues));
  return result.data;
}

/** A validated whole spec as its two halves (valid each, and together). */
export function splitSpec(spec: GatewaySpec): { settings: GatewaySettings; credentials: GatewayCredentials } {
  const { tls, apiKeys, basicUsers, jwt, ...rest } = spec;
  const settings: GatewaySettings = {
    ...rest,
    tls: tls !== undefined,
    apiKeys: apiKeys.map(({ key: _key, keySha256: _digest, previous: _previous, ...entry }) => entry),
    basicUsers: basicUsers.map(({ password: _password, passwordHash: _hash, previous: _previous, ...entry }) => entry),
    ...(jwt ? { jwt: (({ hs256Secrets: _secrets, ...section }) => section)(jwt) } : {}),
  };
  const credentials: GatewayCredentials = {
    apiKeys: apiKeys.map(({ name, key, keySha256, previous }) => ({ name, key, keySha256, previous })),
    basicUsers: basicUsers.map(({ name, password, passwordHash, previous }) => ({ name, password, passwordHash, previous })),
    hs256Secrets: jwt?.hs256Secrets ?? [],
    tls,
  };
  return { settings, credentials };
}

export class SpecError extends Error {
  constructor(public readonly problems: string[]) {
    super(`Invalid gateway spec (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n- ${problems.join("\n- ")}`);
    this.name = "SpecError";
  }
}
