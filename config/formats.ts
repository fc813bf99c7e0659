/**
 * The string formats stack config arrives in (Pulumi hands every value over as a string, lists
 * as JSON text), each a zod schema whose transform parses it: each key's type, `name:scope`,
 * `rps/burst`, scope values, public keys, JSON objects and supplied secrets (`name:every:overlap`
 * is in rotationConfig.ts, CIDR blocks in bundle/addresses.ts). `parseFormat` (messages.ts) runs
 * them: problems are worded by the spec's formatter (key, bad value, fix), never thrown.
 */
import { z } from "zod";
import { MODEL_NAME, pullResourceSuffix } from "../bundle/models";
import { gatewaySpecSchema, type Scope, SCOPES } from "../bundle/spec";
import { SERVICE_TYPES, TARGETS } from "../bundle/targets";
import { CONFIG_DEFAULTS, CONFIG_KEYS, DEFAULT_OLLAMA_IMAGE, type KeyType, TLS_MODES } from "./keys";
import { key, parseEach, parseFormat, secretShown, show, VALUE_IN_MESSAGE, withPeriod } from "./messages";
import type { CredentialConfig, ScopeValues } from "./settings";

/**
 * A string format: `parse` gives the value or undefined, and then `fix` ("use ...") is the
 * problem, worded with the bad value as the spec words its own; `hide` words a secret's instead.
 */
export const stringFormat = <T>(parse: (raw: string) => T | undefined, fix: string, hide?: (raw: string) => string) =>
  z.string().transform((raw, ctx) => {
    const value = parse(raw);
    if (value !== undefined) return value;
    ctx.addIssue(hide ? { code: "custom", input: VALUE_IN_MESSAGE, message: `is ${hide(raw)}; ${fix}` } : { code: "custom", input: raw, message: fix });
    return z.NEVER;
  });

function jsonOf(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return undefined;
  }
}

/** JSON text holding an object; `hidden` keeps a secret's text out of the message. */
export const jsonObject = (fix: string, hidden = false) =>
  stringFormat(
    (raw) => {
      const value = jsonOf(raw);
      return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
    },
    fix,
    hidden ? () => "not a JSON object (value not shown)" : undefined,
  );

export const DNS_NAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
/** Kubernetes object names: a DNS-1123 label (namespaces) or subdomain (most others). */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** A Kubernetes resource quantity for storage. */
const QUANTITY = /^[1-9][0-9]*(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$/;
const KEEP_ALIVE_LIMIT = /^(0|[0-9]+(s|m|h))$/;
export const DURATION = /^(-1|0|[0-9]+(\.[0-9]+)?(ms|s|m|h))$/;
/** `repo:tag` (tag not `latest`) or `repo@sha256:...`; a registry host may carry a port. */
export function isPinnedImage(image: string): boolean {
  if (/@sha256:[0-9a-f]{64}$/.test(image)) return true;
  const lastSegment = image.slice(image.lastIndexOf("/") + 1);
  const colon = lastSegment.indexOf(":");
  if (colon <= 0) return false;
  const tag = lastSegment.slice(colon + 1);
  return /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(tag) && tag !== "latest";
}

export const ip = z.union([z.ipv4(), z.ipv6()], { error: "use an IPv4 or IPv6 address such as 127.0.0.1" });
export const dnsName = z.string().regex(DNS_NAME, { error: "use a DNS name such as `ollama.example.com` or `localhost`" });
export const positiveCount = z.number().int().min(1, { error: "use a whole number from 1 to 64" }).max(64, {
  error: "use a whole number from 1 to 64",
});

/**
 * Non-secret keys after type coercion that are not proxy settings (those the gateway settings'
 * schema checks: ports, backends). Secrets are checked by hand so their values never reach a message.
 */
export const plainSchema = z.object({
  hostname: dnsName,
  dnsNames: z.array(dnsName),
  ipAddresses: z.array(ip),
  bindAddress: ip,
  tlsMode: z.enum(TLS_MODES, { error: "use one of `selfSigned`, `provided`, `none`" }),
  tlsCertPem: z.string().includes("-----BEGIN CERTIFICATE-----", { error: "use a PEM certificate (chain)" }).optional(),
  models: z.array(z.string().regex(MODEL_NAME, { error: "use an Ollama model name such as `gemma3:1b`" })),
  gpu: z.boolean(),
  internalNetwork: z.boolean(),
  ollamaKeepAlive: z.string().regex(DURATION, { error: "use a duration such as `5m`, `1h`, `0` (unload at once) or `-1` (never)" }),
  ollamaNumParallel: positiveCount.optional(),
  ollamaMaxLoadedModels: positiveCount.optional(),
  maxKeepAlive: z.string().regex(KEEP_ALIVE_LIMIT, { error: "use a duration such as `30m`, `2h` or `0` (seconds `s`, minutes `m`, hours `h`)" }).optional(),
  target: z.enum(TARGETS, { error: "use `docker` or `kubernetes`" }),
  k8sNamespace: z.string().regex(DNS_LABEL, { error: "use a Kubernetes namespace name: lowercase letters, digits and `-`, at most 63, such as `ollama-gateway`" }),
  k8sCreateNamespace: z.boolean(),
  ollamaReplicas: positiveCount,
  ollamaGpus: z.number().int().min(0, { error: "use a whole number from 0 to 16" }).max(16, { error: "use a whole number from 0 to 16" }),
  ollamaStorageSize: z.string().regex(QUANTITY, { error: "use a Kubernetes quantity such as `50Gi` or `500G`" }),
  ollamaStorageClass: z.string().regex(DNS_SUBDOMAIN, { error: "use a StorageClass name such as `fast-ssd` (lowercase letters, digits, `-`, `.`)" }).optional(),
  proxyReplicas: positiveCount,
  k8sServiceType: z.enum(SERVICE_TYPES, { error: "use `ClusterIP`, `NodePort` or `LoadBalancer`" }),
  k8sIngressHost: z.string().regex(DNS_NAME, { error: "use a DNS name such as `ollama.example.com`" }).optional(),
  k8sIngressClass: z.string().regex(DNS_SUBDOMAIN, { error: "use an IngressClass name such as `nginx` (lowercase letters, digits, `-`, `.`)" }).optional(),
  k8sIngressTlsSecret: z.string().regex(DNS_SUBDOMAIN, { error: "use a Secret name such as `ollama-tls` (lowercase letters, digits, `-`, `.`)" }).optional(),
});

/** Each key type's format: how Pulumi hands its values over (lists as JSON text). */
function typeFormat(type: Exclude<KeyType, "string">, example: unknown, hide?: (raw: string) => string): z.ZodType<unknown> {
  switch (type) {
    case "integer":
      return stringFormat((raw) => (/^-?[0-9]+$/.test(raw.trim()) ? Number(raw) : undefined), `use a whole number such as ${example}`, hide);
    case "boolean":
      return stringFormat((raw) => (raw === "true" || raw === "false" ? raw === "true" : undefined), "use `true` or `false`", hide);
    case "array":
      return stringFormat(
        (raw) => {
          const value = jsonOf(raw);
          return Array.isArray(value) && value.every((item) => typeof item === "string") ? (value as string[]) : undefined;
        },
        "use a list of strings (in Pulumi.<stack>.yaml a YAML list)",
        hide,
      );
  }
}

/** Coerces one raw string to its declared type; undefined + a message when it does not parse. */
export function coerce(name: string, raw: string, type: KeyType, secret: boolean, errors: string[]): unknown {
  if (type === "string") return raw;
  const example = CONFIG_DEFAULTS[name as keyof typeof CONFIG_DEFAULTS] ?? 1;
  return parseFormat(typeFormat(type, example, secret ? secretShown : undefined), name, raw, errors);
}

/** `name:scope`; the scope is after the last colon so names stay free of it (the spec checks both). */
export const credentialEntry = stringFormat((item): CredentialConfig | undefined => {
  const at = item.lastIndexOf(":");
  return at <= 0 ? undefined : { name: item.slice(0, at), scope: item.slice(at + 1) as Scope };
}, "use `<name>:<scope>`, such as `app:inference`");

/** `apiKeys`/`basicUsers`: the entries that parse (each bad one is reported). */
export const parseCredentialList = (name: string, list: string[], errors: string[]): CredentialConfig[] =>
  parseEach(credentialEntry, name, list, errors).filter((entry) => entry !== undefined);

export const rateLimitFormat = stringFormat((raw) => {
  const match = /^([0-9]+(?:\.[0-9]+)?)\/([0-9]+)$/.exec(raw);
  return match ? { requestsPerSecond: Number(match[1]), burst: Number(match[2]) } : undefined;
}, "use `<requests per second>/<burst>`, such as `20/40`");

/** A secret checked by the gateway spec's own rule for it (`probe` puts it where the spec has it); no message shows it. */
const specSecret = (probe: (secret: string) => unknown) =>
  z.unknown().transform((value, ctx) => {
    if (typeof value !== "string") {
      ctx.addIssue({ code: "custom", input: VALUE_IN_MESSAGE, message: `is of type ${value === null ? "null" : typeof value}; use a string` });
      return z.NEVER;
    }
    const result = gatewaySpecSchema.safeParse(probe(value));
    for (const issue of result.error?.issues ?? []) ctx.addIssue({ code: "custom", input: VALUE_IN_MESSAGE, message: `is ${secretShown(value)}; ${withPeriod(issue.message)}` });
    return result.success ? value : z.NEVER;
  });

export const hs256SecretFormat = specSecret((secret) => ({ jwt: { issuer: "x", audience: "x", algorithms: ["HS256"], hs256Secrets: [{ secret }] } }));
/** A supplied key or password, under the name of its entry (the spec's messages name it). */
const suppliedSecret = (group: "apiKeys" | "basicUsers", name: string) =>
  specSecret((secret) => ({ [group]: [{ name, scope: "read", [group === "apiKeys" ? "key" : "password"]: secret }] }));
const suppliedSecretsFormat = jsonObject('use JSON such as {"apiKeys": {"app": "<key>"}, "basicUsers": {"alice": "<password>"}}', true);

/** `suppliedSecrets`: each secret of a known entry that passes the spec's rules for it. */
export function parseSuppliedSecrets(raw: string, settings: { apiKeys: CredentialConfig[]; basicUsers: CredentialConfig[] }, errors: string[]) {
  const supplied = { apiKeys: new Map<string, string>(), basicUsers: new Map<string, string>() };
  const value = parseFormat(suppliedSecretsFormat, "suppliedSecrets", raw, errors) ?? {};
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
      if (!known.has(name)) {
        errors.push(`${key(`suppliedSecrets.${group}.${name}`)} names no entry of ${key(group)}; add \`${name}:<scope>\` there or remove the secret.`);
        continue;
      }
      // A secret the spec refuses is still recorded as supplied, so no rule reads it as generated.
      parseFormat(suppliedSecret(group, name), `suppliedSecrets.${group}.${name}`, secret, errors);
      if (typeof secret === "string") supplied[group].set(name, secret);
    }
  }
  return supplied;
}

/** `<value>:<scope>`, as `jwtScopeValues` and `externalAuthScopeValues` list them. */
export const scopeValueEntry = z.string().transform((item, ctx) => {
  const at = item.lastIndexOf(":");
  const scope = item.slice(at + 1);
  if (at <= 0) ctx.addIssue({ code: "custom", input: item, message: "use `<value>:<scope>`, such as `ollama-users:inference`" });
  else if (!(SCOPES as readonly string[]).includes(scope)) ctx.addIssue({ code: "custom", path: ["scope"], input: scope, message: "use one of `read`, `inference`, `admin`" });
  else return { value: item.slice(0, at), scope: scope as Scope };
  return z.NEVER;
});

/** `<value>:<scope>` entries -> the spec's `scopeValues`, and where each value came from. */
export function parseScopeValues(name: string, list: string[], errors: string[]): { values?: ScopeValues; sources: Record<Scope, number[]> } {
  const values: ScopeValues = { read: [], inference: [], admin: [] };
  const sources: Record<Scope, number[]> = { read: [], inference: [], admin: [] };
  parseEach(scopeValueEntry, name, list, errors).forEach((entry, i) => {
    if (!entry) return;
    values[entry.scope].push(entry.value);
    sources[entry.scope].push(i);
  });
  return { values: list.length > 0 ? values : undefined, sources };
}

/** What comes before a PEM (a `<kid>:` or nothing), and the PEM. */
function splitPem(item: string): { prefix: string; pem: string } {
  const begin = item.indexOf("-----BEGIN");
  return begin < 0 ? { prefix: "", pem: item } : { prefix: item.slice(0, begin).trim(), pem: item.slice(begin) };
}

/** A PEM, optionally preceded by `<kid>:` (the key id tokens name in their header); the spec checks the PEM. */
export const publicKeyEntry = z.string().transform((item, ctx): { kid?: string; pem: string } => {
  const { prefix, pem } = splitPem(item);
  if (prefix === "") return { pem };
  if (prefix.endsWith(":") && prefix.length > 1) return { kid: prefix.slice(0, -1).trim(), pem };
  ctx.addIssue({
    code: "custom",
    input: VALUE_IN_MESSAGE,
    message: `starts with ${show(prefix)}; give the PEM alone, or \`<kid>:\` then the PEM, such as \`2026-01:\\n-----BEGIN PUBLIC KEY-----...\``,
  });
  return z.NEVER;
});

/** `jwtPublicKeysPem`: every key, its PEM checked by the spec even when its kid prefix is refused. */
export const parsePublicKeys = (list: string[], errors: string[]) =>
  parseEach(publicKeyEntry, "jwtPublicKeysPem", list, errors).map((entry, i) => entry ?? { pem: splitPem(list[i]).pem });

export const jwksFormat = jsonObject('use a JWKS document as JSON, {"keys": [...]} (`curl -s https://<issuer>/.well-known/jwks.json | pulumi config set jwtJwks`)');

/** `ollamaImage` and `proxyImage` pinned to a tag or digest ("" proxyImage: built here). */
export function checkImagesPinned(images: { ollamaImage: string; proxyImage: string }, errors: string[]): void {
  for (const [name, example] of [["ollamaImage", DEFAULT_OLLAMA_IMAGE], ["proxyImage", "registry.example.com/ollama-gateway-proxy:1.0.0"]] as const)
    if (images[name] !== (CONFIG_KEYS[name].unset ?? undefined) && !isPinnedImage(images[name]))
      errors.push(`${key(name)} is ${show(images[name])}; pin a version tag such as \`${example}\` (not \`latest\`, not untagged).`);
}

/** Each model once, also as the pull containers name it (`gemma3:1b` and `Gemma3-1b` collide). */
export function checkModelsOnce(models: readonly string[], errors: string[]): void {
  const pullNames = new Map<string, string>();
  for (const model of models) {
    const other = pullNames.get(pullResourceSuffix(model));
    if (other !== undefined) errors.push(`${key("models")} lists ${show(model)} twice (or as ${show(other)}); list each model once.`);
    pullNames.set(pullResourceSuffix(model), model);
  }
}
