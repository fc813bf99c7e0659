/**
 * The stack's config keys: each key's type and description (config/keys.json) and default.
 * Pulumi.yaml declares the same (test/pulumi-config.test.ts holds it to this registry) and
 * docs/configuration.md is generated from it (`npm run docs`, checked by test/docs.test.ts).
 */
import { DEPLOYMENT_DEFAULTS, endpointDefaults } from "../bundle/defaults";
import { validateSettings } from "../bundle/spec";
import type { ServiceType, Target } from "../bundle/targets";
import KEY_DECLARATIONS from "./keys.json";

export const PROJECT = "ollama-gateway";

export const DEFAULT_OLLAMA_IMAGE = DEPLOYMENT_DEFAULTS.ollamaImage;
/** "": build image/proxy/Dockerfile on the target Docker host. A set value names an image built from it. */
export const DEFAULT_PROXY_IMAGE = "";

export const TLS_MODES = ["selfSigned", "provided", "none"] as const;
export type TlsMode = (typeof TLS_MODES)[number];

export const KEY_TYPES = ["string", "integer", "boolean", "array"] as const;
export type KeyType = (typeof KEY_TYPES)[number];

/** One key's declaration, as config/keys.json lists it. */
export interface KeyDeclaration {
  type: KeyType;
  secret?: boolean;
  unset?: string;
  description: string;
}

/**
 * Every config key (config/keys.json, data kept apart from code): its type and description as
 * declared in Pulumi.yaml, and whether it is secret (test/pulumi-config.test.ts holds Pulumi.yaml
 * to this; `npm run docs` writes the table in docs/configuration.md from it, checked by
 * test/docs.test.ts). The CLI requires a declared key without a default, so optional keys declare
 * a default meaning "unset" (`unset`): "" for text, 0 for counts.
 *
 * Secret keys are NOT declared `secret: true` in Pulumi.yaml: since Pulumi CLI 3.202 a secret
 * key with a default fails every `pulumi up` that does not set it ("must be encrypted as it's
 * secret", pulumi/pulumi#21865). index.ts warns instead when a set value is not encrypted.
 */
export const CONFIG_KEYS: Record<string, KeyDeclaration> = KEY_DECLARATIONS as Record<string, KeyDeclaration>;
// JSON gives `type` as any string: a wrong one stops the program at once, not a key later.
for (const [name, declared] of Object.entries(CONFIG_KEYS))
  if (!(KEY_TYPES as readonly string[]).includes(declared.type)) throw new Error(`config/keys.json: \`${name}\` has type ${JSON.stringify(declared.type)}; use one of ${KEY_TYPES.join(", ")}.`);

/** Keys that only mean something on Kubernetes, and keys of the Docker form that mean nothing there. */
export const KUBERNETES_KEYS = ["k8sNamespace", "k8sCreateNamespace", "ollamaReplicas", "ollamaGpus", "ollamaStorageSize", "ollamaStorageClass", "proxyReplicas", "k8sServiceType", "k8sIngressHost", "k8sIngressClass", "k8sIngressTlsSecret"];
export const DOCKER_ONLY_KEYS: Record<string, string> = {
  bindAddress: "the Service (`k8sServiceType`) and the Ingress decide who reaches the proxy",
  gpu: "use `ollamaGpus` (GPUs per Ollama pod)",
  internalNetwork: "the NetworkPolicy admits only the proxy pods to Ollama; egress is the cluster's to restrict",
  ollamaLocal: "Ollama runs as the StatefulSet",
  ollamaGpuDevices: "use `ollamaGpus` (GPUs per Ollama pod) and `ollamaReplicas`",
  ollamaRemoteHosts: "use `ollamaReplicas`: the cluster places the pods",
  ollamaUrls: "the proxy serves the StatefulSet's pods",
  ollamaMaxConcurrent: "use `ollamaNumParallel` and the pods' resources",
};

/** Keys that only mean something with JWT on (`jwtIssuer` set) or external auth on (`externalAuthUrl` set). */
export const JWT_KEYS = ["jwtAudience", "jwtAlgorithms", "jwtHs256Secret", "jwtPublicKeysPem", "jwtJwks", "jwtScopeClaim", "jwtScopeValues", "jwtModelGrants", "jwtNameClaim", "jwtClockSkewSeconds"];
export const EXTERNAL_AUTH_KEYS = ["externalAuthMode", "externalAuthTimeoutSeconds", "externalAuthNameHeader", "externalAuthScopeHeader", "externalAuthScopeValues", "externalAuthModelGrants"];

/** The proxy spec's defaults, for the keys that set spec fields. */
const SPEC_DEFAULTS = validateSettings({});

/**
 * Each key's default: the deployment's and the spec's own, taken from where they are defined;
 * Pulumi.yaml declares the same values (test/pulumi-config.test.ts).
 */
export const CONFIG_DEFAULTS = {
  ...endpointDefaults(),
  tlsMode: "selfSigned" as TlsMode,
  apiKeys: [] as string[],
  basicUsers: [] as string[],
  rotation: [] as string[],
  rateLimit: `${SPEC_DEFAULTS.rateLimit.requestsPerSecond}/${SPEC_DEFAULTS.rateLimit.burst}`,
  maxBodySize: SPEC_DEFAULTS.maxBodySize,
  upstreamReadTimeoutSeconds: SPEC_DEFAULTS.timeouts.upstreamReadSeconds,
  corsAllowedOrigins: [] as string[],
  models: [...DEPLOYMENT_DEFAULTS.models] as string[],
  gpu: DEPLOYMENT_DEFAULTS.gpu as boolean,
  internalNetwork: DEPLOYMENT_DEFAULTS.internalNetwork as boolean,
  ollamaKeepAlive: DEPLOYMENT_DEFAULTS.ollamaKeepAlive as string,
  ollamaLocal: true,
  ollamaGpuDevices: [] as string[],
  ollamaRemoteHosts: [] as string[],
  ollamaUrls: [] as string[],
  ollamaMaxConcurrent: [] as string[],
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
  target: "docker" as Target,
  k8sNamespace: "ollama-gateway",
  k8sCreateNamespace: true,
  ollamaReplicas: 1,
  ollamaGpus: 0,
  ollamaStorageSize: "50Gi",
  proxyReplicas: 2,
  k8sServiceType: "ClusterIP" as ServiceType,
};
