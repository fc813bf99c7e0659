/**
 * The governance keys (docs/governance.md): per-credential policies (`credentialPolicies`, each
 * checked with the spec's own schema), gateway-wide request limits and the metrics port.
 * Problems go to `errors`; values arrive coerced and typed.
 */
import { type CredentialGovernance, credentialGovernanceSchema, type RequestLimits } from "../bundle/governance";
import { jsonObject } from "./formats";
import { CONFIG_DEFAULTS } from "./keys";
import { key, parseFormat } from "./messages";

const KEEP_ALIVE_UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600 };

type Get = <K extends keyof typeof CONFIG_DEFAULTS>(name: K) => (typeof CONFIG_DEFAULTS)[K];

const POLICIES_FORMAT = jsonObject('use a JSON object keyed by credential name, such as {"app": {"maxConcurrent": 2}}');

/** `credentialPolicies`: name -> governance settings, each checked with the spec's own schema. */
export function parseCredentialPolicies(raw: string | undefined, names: Set<string>, errors: string[]): Map<string, CredentialGovernance> {
  const policies = new Map<string, CredentialGovernance>();
  if (raw === undefined) return policies;
  const value = parseFormat(POLICIES_FORMAT, "credentialPolicies", raw, errors) ?? {};
  for (const [name, entry] of Object.entries(value)) {
    if (!names.has(name)) {
      errors.push(`${key(`credentialPolicies.${name}`)} names no entry of \`apiKeys\` or \`basicUsers\`; add \`${name}:<scope>\` there or remove it.`);
      continue;
    }
    const policy = parseFormat(credentialGovernanceSchema, `credentialPolicies.${name}`, entry, errors);
    if (policy) policies.set(name, policy);
  }
  return policies;
}

const GRANTS_FORMAT = jsonObject('use a JSON object from claim or header value to models, such as {"ollama-users": ["gemma3:*"]}');

/**
 * `jwtModelGrants` / `externalAuthModelGrants` as the section's `modelGrants` field: value ->
 * models, as JSON; the spec's schema checks each entry (its wording mapped back to the key).
 */
export function modelGrantsOf(name: "jwtModelGrants" | "externalAuthModelGrants", coerced: Record<string, unknown>, errors: string[]): { modelGrants?: Record<string, string[]> } {
  if (coerced[name] === undefined) return {};
  const modelGrants = parseFormat(GRANTS_FORMAT, name, coerced[name], errors) as Record<string, string[]> | undefined;
  return modelGrants ? { modelGrants } : {};
}

/** Gateway-wide request limits (bundle/governance.ts): 0 and "" mean none. */
export function requestLimits(coerced: Record<string, unknown>): RequestLimits {
  const keepAlive = coerced.maxKeepAlive as string | undefined;
  const keepAliveMatch = keepAlive === undefined ? null : /^([0-9]+)([smh])?$/.exec(keepAlive);
  return {
    ...(coerced.maxNumCtx !== undefined ? { maxNumCtx: coerced.maxNumCtx as number } : {}),
    ...(coerced.maxNumPredict !== undefined ? { maxNumPredict: coerced.maxNumPredict as number } : {}),
    ...(keepAliveMatch ? { maxKeepAliveSeconds: Number(keepAliveMatch[1]) * KEEP_ALIVE_UNIT_SECONDS[keepAliveMatch[2] ?? "s"] } : {}),
  };
}

/** The metrics port: on by default (9145), `0` turns metrics off (the proxy's settings check it, an API port too). */
export function metricsPort(raw: Readonly<Record<string, string | undefined>>, get: Get): number | undefined {
  return raw.metricsPort?.trim() === "0" ? undefined : get("metricsPort");
}
