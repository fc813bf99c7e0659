/**
 * Stack config -> typed, validated gateway settings. Pure: no Pulumi calls, so every rule is
 * testable without mocks and `index.ts` can refuse a bad stack before any resource exists.
 *
 * Values arrive as the Pulumi runtime hands them over: strings, with lists as JSON text.
 * Every problem is reported at once, each naming the key, the bad value (never a secret's)
 * and the fix. The key registry is config/keys.ts, the string formats config/formats.ts, the
 * wording config/messages.ts.
 */
import { formatIssues, type GatewaySettingsInput } from "../bundle/spec";
import {
  checkImagesPinned, checkModelsOnce, coerce, hs256SecretFormat, jwksFormat, parseCredentialList, parsePublicKeys, parseScopeValues, parseSuppliedSecrets,
  plainSchema, rateLimitFormat,
} from "./formats";
import { CONFIG_DEFAULTS, CONFIG_KEYS, EXTERNAL_AUTH_KEYS, JWT_KEYS, PROJECT } from "./keys";
import { key, parseFormat, type ScopeValueSources, secretShown, show, withPeriod } from "./messages";
import { proxyConfig } from "./proxyConfig";
import type { OnDemandRotation } from "./rotation";
import { backendsSettings } from "./backendsConfig";
import { metricsPort, parseCredentialPolicies, modelGrantsOf, requestLimits } from "./governanceConfig";
import { checkTarget, kubernetesSettings } from "./kubernetesConfig";
import { parseRotation, parseRotationGenerations } from "./rotationConfig";
import { type CredentialRotation, type ExternalAuthSettings, HS256_ROTATION_NAME, type JwtSettings, type StackConfigResult } from "./settings";

// The registry and the settings types are part of this module's interface (index.ts, scripts).
export * from "./keys";
export * from "./settings";
export { GATEWAY_NAME } from "./proxyConfig";

/**
 * Validates raw stack config (keys without the `ollama-gateway:` prefix, values as strings)
 * and fills in defaults. Never throws on bad input. `setSecrets`: secret keys that are set but
 * not read here (scripts/rotate.ts reads the stack file without decrypting it).
 */
export function parseStackConfig(raw: Readonly<Record<string, string | undefined>>, setSecrets: readonly string[] = []): StackConfigResult {
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

  // Names and ports, returned as they are in the settings below. Checked once each: the ports as
  // the proxy's listen and metrics ports (proxyConfig), the rest by plainSchema.
  const addressing = {
    hostname: get("hostname"),
    dnsNames: get("dnsNames"),
    ipAddresses: get("ipAddresses"),
    bindAddress: get("bindAddress"),
    httpPort: get("httpPort"),
    httpsPort: get("httpsPort"),
  };
  const plain = plainSchema.safeParse(
    {
      hostname: addressing.hostname,
      dnsNames: addressing.dnsNames,
      ipAddresses: addressing.ipAddresses,
      bindAddress: addressing.bindAddress,
      tlsMode: get("tlsMode"),
      tlsCertPem: coerced.tlsCertPem,
      models: get("models"),
      gpu: get("gpu"),
      internalNetwork: get("internalNetwork"),
      ollamaKeepAlive: get("ollamaKeepAlive"),
      ollamaNumParallel: coerced.ollamaNumParallel,
      ollamaMaxLoadedModels: coerced.ollamaMaxLoadedModels,
      maxKeepAlive: coerced.maxKeepAlive,
      ...Object.fromEntries(["target", "k8sNamespace", "k8sCreateNamespace", "ollamaReplicas", "ollamaGpus", "ollamaStorageSize", "proxyReplicas", "k8sServiceType"].map((name) => [name, get(name as keyof typeof CONFIG_DEFAULTS)])),
      ...Object.fromEntries(["ollamaStorageClass", "k8sIngressHost", "k8sIngressClass", "k8sIngressTlsSecret"].map((name) => [name, coerced[name]])),
    },
    { reportInput: true },
  );
  if (!plain.success) {
    const issues = plain.error.issues.map((issue) => ({ ...issue, path: [`${PROJECT}:${String(issue.path[0])}`, ...issue.path.slice(1)] }));
    errors.push(...formatIssues(issues).map(withPeriod));
  }
  // The proxy's port problems are listed here, with the other names and ports.
  const portsAt = errors.length;
  // Values the proxy's settings are derived from reach them only once plainSchema's stricter rule
  // passed, so they are not refused twice: `hostname` (a certificate and Ingress name, strict
  // DNS; the spec's `serverName` takes `_` or DNS-ish) and `k8sNamespace` (its upstream's host).
  const passed = <K extends "hostname" | "k8sNamespace">(name: K) =>
    plain.error?.issues.some((issue) => issue.path[0] === name) ? CONFIG_DEFAULTS[name] : get(name);
  const namespace = passed("k8sNamespace");

  checkImagesPinned({ ollamaImage: get("ollamaImage"), proxyImage: get("proxyImage") }, errors);

  const apiKeys = parseCredentialList("apiKeys", get("apiKeys"), errors);
  const basicUsers = parseCredentialList("basicUsers", get("basicUsers"), errors);
  const rateLimit = parseFormat(rateLimitFormat, "rateLimit", get("rateLimit"), errors);
  const governance = parseCredentialPolicies(coerced.credentialPolicies as string | undefined, new Set([...apiKeys, ...basicUsers].map((e) => e.name)), errors);
  const governed = <E extends { name: string }>(entry: E) => ({ ...entry, ...governance.get(entry.name) });
  const limits = requestLimits(coerced);
  const metrics = metricsPort(raw, get);

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
  let jwtSpec: GatewaySettingsInput["jwt"];
  const hs256Supplied = coerced.jwtHs256Secret !== undefined || setSecrets.includes(HS256_ROTATION_NAME);
  let jwtSettings: JwtSettings | undefined;
  if (coerced.jwtIssuer !== undefined) {
    const algorithms = get("jwtAlgorithms");
    const hs256Secret = coerced.jwtHs256Secret as string | undefined;
    if (hs256Secret !== undefined) parseFormat(hs256SecretFormat, "jwtHs256Secret", hs256Secret, errors);
    if (hs256Supplied && !algorithms.includes("HS256"))
      errors.push(`${key("jwtHs256Secret")} is set but \`jwtAlgorithms\` does not list \`HS256\`; add \`HS256\` to \`jwtAlgorithms\` or remove ${key("jwtHs256Secret")}.`);
    const scope = parseScopeValues("jwtScopeValues", get("jwtScopeValues"), errors);
    scopeSources.jwtScopeValues = scope.sources;
    const jwks = coerced.jwtJwks === undefined ? undefined : parseFormat(jwksFormat, "jwtJwks", coerced.jwtJwks, errors);
    jwtSettings = {
      issuer: coerced.jwtIssuer as string,
      audience: (coerced.jwtAudience as string | undefined) ?? "",
      algorithms: algorithms as JwtSettings["algorithms"],
      ...(hs256Secret !== undefined ? { hs256Secret } : {}),
      publicKeys: parsePublicKeys(get("jwtPublicKeysPem"), errors),
      ...(jwks !== undefined ? { jwks: jwks as JwtSettings["jwks"] } : {}),
      scopeClaim: get("jwtScopeClaim"),
      ...(scope.values ? { scopeValues: scope.values } : {}),
      ...modelGrantsOf("jwtModelGrants", coerced, errors),
      nameClaim: get("jwtNameClaim"),
      clockSkewSeconds: get("jwtClockSkewSeconds"),
    };
    // The settings of the section; its HS256 secret (supplied or generated) is a credential, checked above.
    const { hs256Secret: _secret, ...plainJwt } = jwtSettings;
    jwtSpec = plainJwt;
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
      ...modelGrantsOf("externalAuthModelGrants", coerced, errors),
    };
  }
  const network = {
    allow: get("allowCidrs"),
    deny: get("denyCidrs"),
    trustedProxies: get("trustedProxyCidrs"),
    clientAddressHeader: get("clientAddressHeader"),
  };

  // The proxy's settings, as it runs them, through the gateway settings' schema once: the proxy
  // and the CLI refuse the same values with the same words. Backend problems are listed later.
  const backendErrors: string[] = [];
  const { backends, sources: backendSources } = backendsSettings(get, backendErrors);
  const proxy = proxyConfig(
    {
      serverName: passed("hostname"),
      apiKeys: apiKeys.map(governed),
      basicUsers: basicUsers.map(governed),
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
    get,
    { backends, backendSources, metricsPort: metrics, namespace, scopeSources },
  );
  errors.splice(portsAt, 0, ...proxy.ports);
  errors.push(...proxy.errors);

  const supplied = coerced.suppliedSecrets === undefined ? undefined : parseSuppliedSecrets(coerced.suppliedSecrets as string, { apiKeys, basicUsers }, errors);

  const hs256InUse = jwtSettings?.algorithms.includes("HS256") ?? false;
  const policies = parseRotation(
    get("rotation"),
    new Set([...apiKeys, ...basicUsers].map((entry) => entry.name)),
    new Set([...(supplied?.apiKeys.keys() ?? []), ...(supplied?.basicUsers.keys() ?? [])]),
    !hs256InUse ? "off" : hs256Supplied ? "supplied" : "generated",
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

  checkTarget(get, coerced, isSet, errors);
  errors.push(...backendErrors, ...proxy.backends);

  const models = get("models");
  if (get("internalNetwork") && models.length > 0)
    errors.push(`${key("models")} is ${show(models)} but \`internalNetwork\` is true, and an internal network cannot reach the model registry; set \`internalNetwork\` to false or \`models\` to [].`);
  checkModelsOnce(models, errors);

  if (errors.length > 0 || !proxy.settings) return { ok: false, errors };
  const kubernetes = kubernetesSettings(get, coerced);
  return {
    ok: true,
    settings: {
      ...addressing,
      tls: tlsMode === "provided" ? { mode: "provided", certPem: certPem!, keyPem: keyPem! } : { mode: tlsMode },
      apiKeys: apiKeys.map((entry) => ({
        ...governed(entry),
        ...(supplied?.apiKeys.has(entry.name) ? { key: supplied.apiKeys.get(entry.name) } : {}),
        ...rotationOf(entry.name),
      })),
      basicUsers: basicUsers.map((entry) => ({
        ...governed(entry),
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
      backends,
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
      proxySettings: proxy.settings,
      ...(metrics !== undefined ? { metricsPort: metrics } : {}),
      limits,
      target: get("target"),
      ...(kubernetes ? { kubernetes } : {}),
    },
  };
}

export class StackConfigError extends Error {
  constructor(public readonly problems: string[]) {
    super(`Invalid stack config (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n- ${problems.join("\n- ")}`);
    this.name = "StackConfigError";
  }
}
