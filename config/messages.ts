/**
 * How config problems are worded: the key with its project prefix, the bad value (never a
 * secret's), and spec messages mapped back to the config keys that set those spec fields.
 */
import type { z } from "zod";
import { formatIssues, type Scope } from "../bundle/spec";
import { PROJECT } from "./keys";

export const key = (name: string) => `\`${PROJECT}:${name}\``;
export const show = (value: unknown) => {
  const text = JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
};
export const secretShown = (value: string) => `a secret of ${value.length} characters (not shown)`;
export const withPeriod = (message: string) => (/[.!?]$/.test(message) ? message : `${message}.`);

/**
 * The `input` of a custom issue whose message words the value itself, or hides a secret's:
 * formatIssues then adds none ("`key` names ...", "`key` is a secret of ...").
 */
export const VALUE_IN_MESSAGE: unknown = Object.freeze({});

/**
 * Runs a config format's schema on the value of `name` (a key, or a path below one such as
 * `apiKeys[0]`): the parsed value, or undefined with every problem pushed to `errors`, worded
 * by the spec's own formatter (key, bad value, fix).
 */
export function parseFormat<T>(schema: z.ZodType<T>, name: string, value: unknown, errors: string[]): T | undefined {
  const result = schema.safeParse(value, { reportInput: true });
  if (result.success) return result.data;
  errors.push(...formatIssues(result.error.issues, `${PROJECT}:${name}`).map(withPeriod));
  return undefined;
}

/** Each item of a list on its own, so the good ones are kept (and checked further) beside every bad one's problems. */
export const parseEach = <T>(schema: z.ZodType<T>, name: string, list: readonly unknown[], errors: string[]): (T | undefined)[] =>
  list.map((item, i) => parseFormat(schema, `${name}[${i}]`, item, errors));

/** `jwt`/`externalAuth`/`network` fields of the gateway spec -> the config key that sets them. */
export const SECTION_KEYS: Record<string, string> = {
  "jwt.issuer": "jwtIssuer",
  "jwt.audience": "jwtAudience",
  "jwt.algorithms": "jwtAlgorithms",
  "jwt.publicKeys": "jwtPublicKeysPem",
  "jwt.jwks": "jwtJwks",
  "jwt.scopeClaim": "jwtScopeClaim",
  "jwt.scopeValues": "jwtScopeValues",
  "jwt.modelGrants": "jwtModelGrants",
  "jwt.nameClaim": "jwtNameClaim",
  "jwt.clockSkewSeconds": "jwtClockSkewSeconds",
  "externalAuth.url": "externalAuthUrl",
  "externalAuth.mode": "externalAuthMode",
  "externalAuth.timeoutSeconds": "externalAuthTimeoutSeconds",
  "externalAuth.nameHeader": "externalAuthNameHeader",
  "externalAuth.scopeHeader": "externalAuthScopeHeader",
  "externalAuth.scopeValues": "externalAuthScopeValues",
  "externalAuth.modelGrants": "externalAuthModelGrants",
  "network.allow": "allowCidrs",
  "network.deny": "denyCidrs",
  "network.trustedProxies": "trustedProxyCidrs",
  "network.clientAddressHeader": "clientAddressHeader",
};

/** Where each `<scope>[i]` of a spec `scopeValues` came from in its config list. */
export type ScopeValueSources = Partial<Record<string, Record<Scope, number[]>>>;

/** Proxy-setting paths of the gateway spec -> the config key that sets them. */
export function specPathToKey(path: readonly PropertyKey[], scopeSources: ScopeValueSources = {}): PropertyKey[] {
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
    // The deployment's fields that keys set (backends: backendProblem in backendsConfig.ts).
    case "listen":
      return [`${PROJECT}:${rest[0] === "https" ? "httpsPort" : "httpPort"}`];
    case "metrics":
      return [`${PROJECT}:metricsPort`];
    case "upstream":
    case "upstreamResolver":
      // Only Kubernetes gives the proxy one `upstream`, named after the namespace.
      return [`${PROJECT}:k8sNamespace`];
    default:
      return [`${PROJECT}:${String(head)}`, ...rest];
  }
}

/** Spec messages that name spec fields inside a section: name the config keys instead. */
export const sectionWording = (message: string) =>
  message
    // The port rules between the deployment's fields, in the keys' words and with their fixes.
    .replace(/^(`[^`]+:httpsPort`) \((\d+)\) is the same port as `listen.http`;/, "$1 is $2, the same as `httpPort`;")
    .replace(/^(`[^`]+:metricsPort`) \((\d+)\) is an API port \(`listen.http` or `listen.https`\); give metrics a port of their own$/, "$1 is $2, an API port; give metrics a port of their own (for example 9145), or 0 to turn them off")
    .replace("`publicKeys` or `jwks`", "`jwtPublicKeysPem` or `jwtJwks`")
    .replace(/`jwt\.publicKeys\[(\d+)\]\.kid`/g, "`jwtPublicKeysPem[$1]`")
    .replace(/`jwt\.jwks\.keys\[(\d+)\]\.kid`/g, "`jwtJwks.keys[$1]`")
    // Custom issues read "`field` ("value") use ..."; give them the "is ...; use ..." shape of the others.
    .replace(/^(`[^`]+`) \(("[^"]*")\) use /, "$1 is $2; use ");
