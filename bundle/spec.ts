/**
 * The gateway spec: the one typed description of a proxy bundle.
 *
 * The CLI (`npm run render`) reads it from JSON; the Pulumi components build it from stack
 * config. Both go through `parseSpec`, so a bad value gets the same message everywhere.
 */
import { z } from "zod";

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
const port = z.number().int().min(1).max(65535, { error: "use a TCP port between 1 and 65535" });
const isoTime = z.iso.datetime({ offset: true, error: "use an ISO 8601 time such as 2026-12-31T00:00:00Z" });
const apiKey = z
  .string()
  .min(24, { error: "use at least 24 characters (generate one with `openssl rand -hex 24`)" })
  .max(256, { error: "use at most 256 characters" })
  .regex(KEY_PATTERN, { error: "use only letters, digits and `-._~+/` (token68), so clients can send it as a Bearer token" });
const keySha256 = z.string().regex(SHA256_HEX, { error: "use the lowercase hex SHA-256 of the key (64 characters)" });
const password = z.string().min(12, { error: "use at least 12 characters" }).max(72, {
  error: "use at most 72 bytes (bcrypt ignores the rest)",
});
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

const apiKeyEntry = z.strictObject({
  name,
  /** The key itself (the CLI digests it; it never reaches the bundle). */
  key: apiKey.optional(),
  /** Or only its SHA-256, as the Pulumi components pass it. */
  keySha256: keySha256.optional(),
  scope,
  /** After this time the proxy refuses the key, even if no deployment runs. */
  notAfter: isoTime.optional(),
  previous: previousKey.optional(),
  /** Overrides the gateway-wide `rateLimit` for this key. */
  rateLimit: rateLimit.optional(),
}).superRefine(exactlyOneOf("key", "keySha256"));

const basicUserEntry = z.strictObject({
  name,
  password: password.optional(),
  passwordHash: passwordHash.optional(),
  scope,
  notAfter: isoTime.optional(),
  previous: previousPassword.optional(),
  rateLimit: rateLimit.optional(),
}).superRefine(exactlyOneOf("password", "passwordHash"));

const seconds = (min: number, max: number) =>
  z.number().int().min(min, { error: `use a whole number of seconds from ${min} to ${max}` }).max(max, {
    error: `use a whole number of seconds from ${min} to ${max}`,
  });

export const gatewaySpecSchema = z
  .strictObject({
    /** Base URL of Ollama as the proxy reaches it. Default `http://127.0.0.1:11434`. */
    upstream: z
      .url({ protocol: /^https?$/, error: "use an http(s) URL with host and port, such as http://127.0.0.1:11434" })
      .default("http://127.0.0.1:11434"),
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
    tls: z
      .strictObject({
        certPem: z.string().includes("-----BEGIN CERTIFICATE-----", { error: "use a PEM certificate (chain)" }),
        keyPem: z.string().includes("PRIVATE KEY-----", { error: "use a PEM private key" }),
      })
      .optional(),
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
    /** Where the JSON access log goes; `/dev/stdout` in containers. Relative paths are under the prefix. */
    accessLog: z.string().min(1).default("logs/access.log"),
    errorLog: z.string().min(1).default("logs/error.log"),
    /** Threads that run bcrypt off the event loop, per worker. */
    bcryptThreads: z.number().int().min(1).max(64).default(2),
  })
  .superRefine((spec, ctx) => {
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

    if (spec.tls && spec.listen.https === undefined)
      ctx.addIssue({
        code: "custom",
        path: ["listen", "https"],
        input: undefined,
        message: "must be set when `tls` is set (for example 8443)",
      });
    if (!spec.tls && spec.listen.https !== undefined)
      ctx.addIssue({
        code: "custom",
        path: ["tls"],
        input: undefined,
        message: "must be set (certPem and keyPem) when `listen.https` is set",
      });
    if (spec.listen.https !== undefined && spec.listen.https === spec.listen.http)
      ctx.addIssue({
        code: "custom",
        path: ["listen", "https"],
        input: spec.listen.https,
        message: "is the same port as `listen.http`; use two different ports",
      });
  });

/** A spec as written by people (defaults optional). */
export type GatewaySpecInput = z.input<typeof gatewaySpecSchema>;
/** A validated spec with every default filled in. */
export type GatewaySpec = z.output<typeof gatewaySpecSchema>;
export type ApiKeyEntry = GatewaySpec["apiKeys"][number];
export type BasicUserEntry = GatewaySpec["basicUsers"][number];

/** Fields whose values are secret: their values never appear in an error message. */
const SECRET_FIELDS = new Set(["key", "password", "passwordHash", "keyPem", "certPem"]);

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

export class SpecError extends Error {
  constructor(public readonly problems: string[]) {
    super(`Invalid gateway spec (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n- ${problems.join("\n- ")}`);
    this.name = "SpecError";
  }
}
