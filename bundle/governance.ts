/**
 * Governance at the edge (issue 16): request limits, per-credential concurrency and the
 * Prometheus listener. The spec fields are declared here and used by `bundle/spec.ts`; the
 * renderers turn them into `lua/gateway/policy.lua` (data read by gateway/governance.lua) and the
 * metrics `server` block. Pure functions over plain values.
 */
import { z } from "zod";
import { luaString } from "./routes";

const wholeNumber = (min: number, max: number) =>
  z.number().int({ error: `use a whole number from ${min} to ${max}` }).min(min, { error: `use a whole number from ${min} to ${max}` })
    .max(max, { error: `use a whole number from ${min} to ${max}` });

/**
 * Limits on what one request may ask Ollama for. Absent fields are not checked. Over a limit the
 * request gets 400 JSON naming the field, its value and the limit; nothing is rewritten.
 */
export const requestLimitsSchema = z.strictObject({
  /** Largest `options.num_ctx` (context window, the main driver of memory per loaded model). */
  maxNumCtx: wholeNumber(1, 16_777_216).optional(),
  /**
   * Largest number of tokens to generate: `options.num_predict` (Ollama), `max_tokens` (OpenAI,
   * Anthropic), `max_completion_tokens`, `max_output_tokens` (Responses). With it set, Ollama's
   * "unlimited" values (-1, -2) are refused; a request that names none keeps Ollama's default.
   */
  maxNumPredict: wholeNumber(1, 16_777_216).optional(),
  /** Longest `keep_alive` in seconds (Ollama reads numbers as seconds, strings as Go durations). */
  maxKeepAliveSeconds: wholeNumber(0, 31_536_000).optional(),
  /**
   * Whether `keep_alive` -1 (or any negative value: keep the model loaded forever) is allowed.
   * Default: allowed unless `maxKeepAliveSeconds` is set.
   */
  allowKeepAliveForever: z.boolean().optional(),
});
export type RequestLimits = z.output<typeof requestLimitsSchema>;

/** In-flight requests one credential may have at once (counted across workers); over it: 429. */
export const maxConcurrentSchema = wholeNumber(1, 100_000);

/** The separate Prometheus listener: never the API port, no credentials, `GET /metrics` only. */
export const metricsSchema = z.strictObject({
  listen: z.strictObject({
    /** Default `127.0.0.1`: scraped from the same host (or a sidecar). */
    address: z.union([z.ipv4(), z.ipv6()], { error: "use an IPv4 or IPv6 address such as 127.0.0.1" }).default("127.0.0.1"),
    port: wholeNumber(1, 65535),
  }),
});
export type MetricsSettings = z.output<typeof metricsSchema>;

/**
 * A model a credential may use: an exact name (`gemma3:1b`; without a tag it means `:latest`) or
 * a glob with `*` (`gemma3:*`, `*-embed:*`). Compared case-insensitively, as Ollama does, with
 * Ollama's default registry and namespace (`registry.ollama.ai/library/`) removed.
 */
export const modelPatternSchema = z.string().regex(/^[A-Za-z0-9*][A-Za-z0-9._:/*-]{0,99}$/, {
  error: "use a model name such as `gemma3:1b`, or a glob with `*` such as `gemma3:*` (at most 100 characters)",
});

/**
 * Tokens (prompt + completion, as Ollama reports them) a credential may use per clock minute and
 * per UTC day; exhausted: 429 with Retry-After until the window ends.
 */
export const tokenBudgetSchema = z
  .strictObject({ perMinute: wholeNumber(1, 1_000_000_000).optional(), perDay: wholeNumber(1, 1_000_000_000_000).optional() })
  .refine((b) => b.perMinute !== undefined || b.perDay !== undefined, { error: "use `perMinute`, `perDay` or both (an empty budget limits nothing)" });
export type TokenBudget = z.output<typeof tokenBudgetSchema>;

/**
 * JWT and external-auth callers: models granted per claim (or header) value, as `scopeValues`
 * grants scopes. With it set, a caller may use the union of its values' models, and none when
 * no value of its grants a model; without it, every model.
 */
export const modelGrantsSchema = z
  .record(z.string().regex(/^[\x21-\x7e]{1,256}$/, { error: "use a claim or header value of 1-256 printable ASCII characters" }), z.array(modelPatternSchema).max(1000))
  .optional();

/** The governance fields of an API key or Basic user entry. */
export const credentialGovernanceFields = {
  /**
   * Models this credential may use (names and globs); absent: every model. Requests naming
   * another model get 403; the model lists (/api/tags, /api/ps, /v1/models) show only these.
   */
  models: z.array(modelPatternSchema).max(1000, { error: "list at most 1000 models or globs" }).optional(),
  /** Token budget per minute and per day (docs/governance.md#token-budgets). Default: none. */
  tokenBudget: tokenBudgetSchema.optional(),
  /** In-flight requests at once for this credential; over it: 429 with Retry-After. Default: no limit. */
  maxConcurrent: maxConcurrentSchema.optional(),
  /** Overrides the gateway-wide `limits`, field by field. */
  limits: requestLimitsSchema.optional(),
};

/** The governance settings of one credential (the fields above, as an object). */
export const credentialGovernanceSchema = z.strictObject(credentialGovernanceFields);
export type CredentialGovernance = z.input<typeof credentialGovernanceSchema>;

/** Whether an entry carries any governance setting. */
export function hasGovernance(entry: CredentialGovernance): boolean {
  return Object.keys(credentialGovernanceFields).some((field) => (entry as Record<string, unknown>)[field] !== undefined);
}

/** An entry's governance settings alone. */
export function governanceOf(entry: CredentialGovernance): CredentialGovernance {
  return Object.fromEntries(Object.keys(credentialGovernanceFields).flatMap((field) => {
    const value = (entry as Record<string, unknown>)[field];
    return value === undefined ? [] : [[field, value]];
  }));
}

/** Label values are capped (gateway/metrics.lua): past this many, a value is counted as "(other)". */
export const METRICS_SERIES_CAP = { callers: 1000, models: 200 };

interface GovernedEntry {
  name: string;
  maxConcurrent?: number;
  limits?: RequestLimits;
  models?: string[];
  tokenBudget?: TokenBudget;
}

/** A model name as the allow-list compares it (gateway/models.lua does the same to requests). */
export function normalizeModel(name: string, glob = false): string {
  let n = name.trim().toLowerCase().replace(/^registry\.ollama\.ai\//, "").replace(/^library\//, "");
  if (!glob && !n.slice(n.lastIndexOf("/") + 1).includes(":")) n += ":latest";
  return n;
}

/** A glob as an anchored Lua pattern: `*` is any run of characters, everything else literal. */
function globToLuaPattern(glob: string): string {
  const escaped = normalizeModel(glob, true).replace(/[\^$()%.[\]+\-?]/g, (c) => `%${c}`);
  return `^${escaped.replaceAll("*", ".*")}$`;
}

function modelsLua(models: string[]): string {
  const exact = models.filter((m) => !m.includes("*")).map((m) => `[${luaString(normalizeModel(m))}] = true`);
  const globs = models.filter((m) => m.includes("*")).map((m) => luaString(globToLuaPattern(m)));
  return `{ exact = { ${exact.join(", ")} }, globs = { ${globs.join(", ")} } }`;
}

interface GovernedSpec {
  limits: RequestLimits;
  apiKeys: GovernedEntry[];
  basicUsers: GovernedEntry[];
  metrics?: MetricsSettings;
  jwt?: { modelGrants?: Record<string, string[]> };
  externalAuth?: { modelGrants?: Record<string, string[]> };
}

function grantsLua(grants: Record<string, string[]> | undefined): string {
  if (grants === undefined) return "nil";
  return `{ ${Object.entries(grants).map(([value, models]) => `[${luaString(value)}] = ${modelsLua(models)}`).join(", ")} }`;
}

function limitsLua(limits: RequestLimits | undefined): string {
  const merged = limits ?? {};
  const fields = [
    merged.maxNumCtx !== undefined ? `num_ctx = ${merged.maxNumCtx}` : undefined,
    merged.maxNumPredict !== undefined ? `num_predict = ${merged.maxNumPredict}` : undefined,
    merged.maxKeepAliveSeconds !== undefined ? `keep_alive = ${merged.maxKeepAliveSeconds}` : undefined,
    merged.allowKeepAliveForever !== undefined ? `keep_alive_forever = ${merged.allowKeepAliveForever}` : undefined,
  ].filter((f) => f !== undefined);
  return `{ ${fields.join(", ")} }`;
}

/** A credential's effective limits: the gateway-wide ones, overridden field by field. */
export function effectiveLimits(gateway: RequestLimits, own: RequestLimits | undefined): RequestLimits {
  return { ...gateway, ...Object.fromEntries(Object.entries(own ?? {}).filter(([, v]) => v !== undefined)) };
}

/**
 * `lua/gateway/policy.lua`: limits and concurrency per caller, keyed like the rate limiter
 * (`key:<name>` for API keys, `user:<name>` for Basic users). Config, not credentials: a change
 * takes a reload, as any other setting.
 */
export function renderPolicyLua(spec: GovernedSpec): string {
  const caller = (prefix: string, entry: GovernedEntry) => {
    if (entry.maxConcurrent === undefined && entry.limits === undefined && entry.models === undefined && entry.tokenBudget === undefined) return [];
    const budget = entry.tokenBudget;
    const fields = [
      budget !== undefined
        ? `budget = { ${[budget.perMinute !== undefined ? `minute = ${budget.perMinute}` : "", budget.perDay !== undefined ? `day = ${budget.perDay}` : ""].filter(Boolean).join(", ")} }`
        : undefined,
      entry.maxConcurrent !== undefined ? `max_concurrent = ${entry.maxConcurrent}` : undefined,
      entry.models !== undefined ? `models = ${modelsLua(entry.models)}` : undefined,
      entry.limits !== undefined ? `limits = ${limitsLua(effectiveLimits(spec.limits, entry.limits))}` : undefined,
    ].filter((f) => f !== undefined);
    return [`    [${luaString(`${prefix}:${entry.name}`)}] = { ${fields.join(", ")} },`];
  };
  return [
    "-- Generated by bundle/governance.ts from the gateway spec; do not edit.",
    "return {",
    "  -- Gateway-wide request limits (spec `limits`).",
    `  limits = ${limitsLua(spec.limits)},`,
    "  -- Per credential (spec `apiKeys[].maxConcurrent`, `.limits`; the same for `basicUsers`).",
    "  callers = {",
    ...spec.apiKeys.flatMap((e) => caller("key", e)),
    ...spec.basicUsers.flatMap((e) => caller("user", e)),
    "  },",
    "  -- Models per claim value (spec `jwt.modelGrants`) and per header value (`externalAuth.modelGrants`).",
    `  model_grants = { jwt = ${grantsLua(spec.jwt?.modelGrants)}, ext = ${grantsLua(spec.externalAuth?.modelGrants)} },`,
    `  metrics = ${spec.metrics !== undefined},`,
    `  series_cap = { callers = ${METRICS_SERIES_CAP.callers}, models = ${METRICS_SERIES_CAP.models} },`,
    "}",
    "",
  ].join("\n");
}

/** The metrics `server` block for nginx.conf, or a comment when metrics are off. */
export function renderMetricsServer(metrics: MetricsSettings | undefined): string {
  if (!metrics) return "    # Prometheus metrics are off (spec `metrics`).";
  const address = metrics.listen.address.includes(":") ? `[${metrics.listen.address}]` : metrics.listen.address;
  return [
    "    # Prometheus metrics (spec `metrics`): its own listener, never the API port. No credential",
    "    # is asked for or accepted here; bind it where only the scraper reaches it.",
    "    server {",
    `        listen ${address}:${metrics.listen.port};`,
    "        access_log off;",
    "        location = /metrics {",
    "            limit_except GET { deny all; }",
    '            content_by_lua_block { require("gateway.metrics").serve() }',
    "        }",
    "        location / {",
    "            return 404;",
    "        }",
    "    }",
  ].join("\n");
}
