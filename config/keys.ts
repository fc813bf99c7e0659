/**
 * The stack's config keys: each key's type, description and default, in one place. Pulumi.yaml
 * declares the same (test/pulumi-config.test.ts holds it to this registry) and
 * docs/configuration.md is generated from it (`npm run docs`, checked by test/docs.test.ts).
 */
import { DEPLOYMENT_DEFAULTS, endpointDefaults } from "../bundle/defaults";
import { validateSettings } from "../bundle/spec";
import type { ServiceType, Target } from "../bundle/targets";

export const PROJECT = "ollama-gateway";

export const DEFAULT_OLLAMA_IMAGE = DEPLOYMENT_DEFAULTS.ollamaImage;
/** "": build image/proxy/Dockerfile on the target Docker host. A set value names an image built from it. */
export const DEFAULT_PROXY_IMAGE = "";

export const TLS_MODES = ["selfSigned", "provided", "none"] as const;
export type TlsMode = (typeof TLS_MODES)[number];

export type KeyType = "string" | "integer" | "boolean" | "array";

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
  ollamaLocal: { type: "boolean", description: "Run Ollama on this Docker host (one container, or one per ollamaGpuDevices entry); false = only ollamaRemoteHosts and ollamaUrls serve." },
  ollamaGpuDevices: { type: "array", description: "One Ollama container per entry on this Docker host, each given those GPUs (--gpus device=...): an index or UUID, or a group such as \"0,1\"; no GPU in two entries. [] = one container (gpu decides its GPUs)." },
  ollamaRemoteHosts: { type: "array", description: "Ollama on other Docker hosts over SSH, as name=ssh://user@host[:port],privateIP (such as gpubox1=ssh://deploy@gpubox1.example.com,10.0.0.11); published on privateIP:11434 only, with every GPU when gpu is true." },
  ollamaUrls: { type: "array", description: "Existing Ollama servers, as name=URL (such as lab=http://10.0.0.5:11434); models are not pulled on them." },
  ollamaMaxConcurrent: { type: "array", description: "Requests in progress at once per backend, as name=N (N >= 1, such as gpu0=4); beyond it a request goes to another backend with the model, or gets 503 with Retry-After. [] = no limit." },
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
  jwtModelGrants: { type: "string", unset: "", description: "Models per claim value for JWT callers, JSON such as {\"ollama-users\": [\"gemma3:*\"]}: a caller may use the union of the models its values have, none when no value of its is listed (docs/governance.md); \"\" = every model." },
  jwtNameClaim: { type: "string", description: "Claim that names the caller in logs and rate limits." },
  jwtClockSkewSeconds: { type: "integer", description: "Leeway on exp, nbf and iat, 0 to 300 seconds." },
  externalAuthUrl: { type: "string", unset: "", description: "External authentication service check URL, such as http://10.0.0.5:4180/oauth2/auth (its host must resolve when the proxy starts); \"\" = off." },
  externalAuthMode: { type: "string", description: "fallback (only requests the gateway does not recognise go to the service) or exclusive (all)." },
  externalAuthTimeoutSeconds: { type: "integer", description: "Connect, send and read timeout for the service, 1 to 60 seconds." },
  externalAuthNameHeader: { type: "string", description: "Response header of the service that names the caller." },
  externalAuthScopeHeader: { type: "string", description: "Response header of the service with the granted values (commas or spaces between them)." },
  externalAuthScopeValues: { type: "array", description: "Header values that grant a gateway scope, as value:scope (such as ollama-users:inference); [] = read, inference and admin map to themselves." },
  externalAuthModelGrants: { type: "string", unset: "", description: "Models per header value for external-auth callers, JSON such as {\"ollama-users\": [\"gemma3:*\"]}, as jwtModelGrants; \"\" = every model." },
  allowCidrs: { type: "array", description: "Client addresses served (CIDR blocks or addresses); with any entry, all others get 403 (127.0.0.1 is added for the container's healthcheck)." },
  denyCidrs: { type: "array", description: "Client addresses always refused (403), checked before allowCidrs; may not cover 127.0.0.1." },
  trustedProxyCidrs: { type: "array", description: "Load balancers or reverse proxies in front of the gateway (CIDR blocks or addresses, never /0); only their clientAddressHeader is believed, for allowCidrs, denyCidrs, failed-login limits and logs." },
  credentialPolicies: { type: "string", unset: "", description: "Governance per API key or Basic user, JSON keyed by name: {\"<name>\": {\"models\": [\"gemma3:*\"], \"maxConcurrent\": 2, \"limits\": {\"maxNumCtx\": 8192}, \"tokenBudget\": {\"perMinute\": 20000, \"perDay\": 1000000}}} (docs/governance.md); \"\" = none." },
  metricsPort: { type: "integer", unset: "0", description: "Prometheus metrics (docs/governance.md) on this port of the host's 127.0.0.1 only, never the API ports; 0 = off." },
  maxNumCtx: { type: "integer", unset: "0", description: "Largest options.num_ctx a request may ask for (400 above it); 0 = no limit." },
  maxNumPredict: { type: "integer", unset: "0", description: "Largest number of tokens a request may ask to generate (options.num_predict, max_tokens...; 400 above it, and -1 is refused); 0 = no limit." },
  maxKeepAlive: { type: "string", unset: "", description: "Longest keep_alive a request may ask for, such as 30m (400 above it, and -1 is refused); \"\" = no limit." },
  clientAddressHeader: { type: "string", description: "Header in which trustedProxyCidrs name the client (X-Forwarded-For, X-Real-IP...); ignored on requests from other addresses." },
  target: { type: "string", description: "Where the gateway runs: docker (one Docker host) or kubernetes (the cluster of the current kubeconfig context; every k8s* key, ollamaReplicas... and a pushed proxyImage)." },
  k8sNamespace: { type: "string", description: "Kubernetes: the namespace everything goes in." },
  k8sCreateNamespace: { type: "boolean", description: "Kubernetes: create k8sNamespace (false: it must exist)." },
  ollamaReplicas: { type: "integer", description: "Kubernetes: Ollama pods (a StatefulSet), each with its own model volume and every configured model." },
  ollamaGpus: { type: "integer", description: "Kubernetes: nvidia.com/gpu per Ollama pod (needs the NVIDIA device plugin); 0 = none." },
  ollamaStorageSize: { type: "string", description: "Kubernetes: size of each Ollama pod's model volume (a quantity such as 50Gi)." },
  ollamaStorageClass: { type: "string", unset: "", description: "Kubernetes: StorageClass of the model volumes; \"\" = the cluster's default class." },
  proxyReplicas: { type: "integer", description: "Kubernetes: proxy pods (a Deployment). Each enforces rateLimit divided by this, so a caller's limit holds across them." },
  k8sServiceType: { type: "string", description: "Kubernetes: type of the proxy's Service: ClusterIP, NodePort or LoadBalancer." },
  k8sIngressHost: { type: "string", unset: "", description: "Kubernetes: host of an Ingress to the proxy (needs tlsMode none: TLS ends at the Ingress); \"\" = no Ingress." },
  k8sIngressClass: { type: "string", unset: "", description: "Kubernetes: ingressClassName of the Ingress; \"\" = the cluster's default class." },
  k8sIngressTlsSecret: { type: "string", unset: "", description: "Kubernetes: a TLS Secret in k8sNamespace for k8sIngressHost (managed outside this stack, e.g. by cert-manager); \"\" = plain HTTP at the Ingress." },
};

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
