/**
 * The Pulumi program: stack config -> validated settings -> one OllamaGateway -> stack outputs.
 * The only module that reads config; components take typed args.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { type CredentialRotationArgs, KubernetesGateway, OllamaGateway } from "./components";
import { rotationClock, rotationState, type RotationState } from "./config/rotation";
import { CONFIG_KEYS, type CredentialRotation, GATEWAY_NAME, HS256_ROTATION_NAME, parseStackConfig, PROJECT, StackConfigError } from "./config/stackConfig";

// Every key of this project's namespace, as raw strings: the parser validates them all at once
// (secrets included, so a bad key is refused before any resource exists) and flags unknown
// keys. Secret values are wrapped in `pulumi.secret` right below and never printed.
const prefix = `${PROJECT}:`;
const raw = Object.fromEntries(
  Object.entries(pulumi.runtime.allConfig())
    .filter(([key]) => key.startsWith(prefix))
    .map(([key, value]) => [key.slice(prefix.length), value]),
);
const parsed = parseStackConfig(raw);
if (!parsed.ok) throw new StackConfigError(parsed.errors);
const s = parsed.settings;

// Pulumi.yaml cannot declare these keys `secret: true` (pulumi/pulumi#21865, see CONFIG_KEYS):
// warn when one is stored in plain text. The SDK's runtime knows, though its typings hide it.
const runtimeConfig = pulumi.runtime as unknown as { isConfigSecret?: (key: string) => boolean };
for (const [name, declared] of Object.entries(CONFIG_KEYS)) {
  const value = raw[name];
  if (!declared.secret || !value || value === declared.unset || !runtimeConfig.isConfigSecret) continue;
  if (!runtimeConfig.isConfigSecret(`${prefix}${name}`))
    pulumi.log.warn(`\`${prefix}${name}\` is stored in plain text in the stack file; set it again with \`pulumi config set --secret ${name}\`.`);
}

// The program's only reading of the clock, once, before any resource: it picks each rotating
// credential's generation (an input, like any config value), so a run on a given date with a
// given config is deterministic. OLLAMA_GATEWAY_ROTATION_NOW fixes it (tests, replays).
const now = rotationClock();
const rotations: Record<string, RotationState> = {};
const rotationArgs = (name: string, rotation: CredentialRotation | undefined): { rotation?: CredentialRotationArgs } => {
  if (!rotation) return {};
  const state = (rotations[name] = rotationState(rotation.policy, rotation.onDemand, now));
  return { rotation: { generation: state.generation, ...(state.previousLive ? { previousNotAfter: state.previousNotAfter } : {}) } };
};

// What both targets take the same way: names, TLS, credentials, the proxy's settings.
const common = {
  hostname: s.hostname,
  dnsNames: s.dnsNames,
  ipAddresses: s.ipAddresses,
  httpPort: s.httpPort,
  httpsPort: s.httpsPort,
  tls: s.tls.mode === "provided" ? { mode: "provided" as const, certPem: s.tls.certPem, keyPem: pulumi.secret(s.tls.keyPem) } : s.tls,
  apiKeys: s.apiKeys.map(({ key, rotation, ...entry }) => ({
    ...entry,
    ...(key !== undefined ? { key: pulumi.secret(key) } : {}),
    ...rotationArgs(entry.name, rotation),
  })),
  basicUsers: s.basicUsers.map(({ password, rotation, ...entry }) => ({
    ...entry,
    ...(password !== undefined ? { password: pulumi.secret(password) } : {}),
    ...rotationArgs(entry.name, rotation),
  })),
  // What the proxy runs, validated by config/ for these same ports and backends: rendered as it is.
  settings: s.proxySettings,
  ...(s.jwt
    ? {
        jwt: (({ hs256Secret, hs256Rotation, ...jwt }) => ({
          ...jwt,
          ...(hs256Secret !== undefined ? { hs256Secret: pulumi.secret(hs256Secret) } : {}),
          ...(hs256Rotation !== undefined ? { hs256Rotation: rotationArgs(HS256_ROTATION_NAME, hs256Rotation).rotation } : {}),
        }))(s.jwt),
      }
    : {}),
};
const ollama = { image: s.ollamaImage, models: s.models, keepAlive: s.ollama.keepAlive, numParallel: s.ollama.numParallel, maxLoadedModels: s.ollama.maxLoadedModels };

const k = s.kubernetes;
const gateway = k
  ? new KubernetesGateway(
      GATEWAY_NAME,
      {
        ...common,
        namespace: k.namespace,
        createNamespace: k.createNamespace,
        ollama: { ...ollama, replicas: k.ollamaReplicas, gpus: k.ollamaGpus, storageSize: k.ollamaStorageSize, storageClass: k.ollamaStorageClass },
        // Required with target kubernetes (stackConfig.ts refuses the stack without it).
        proxyImage: s.proxyImage!,
        proxyReplicas: k.proxyReplicas,
        ...(s.metricsPort !== undefined ? { metricsPort: s.metricsPort } : {}),
        serviceType: k.serviceType,
        ...(k.ingress ? { ingress: k.ingress } : {}),
      },
      // The current kubeconfig context's cluster. Secrets mutable: a new key updates the Secret in
      // place, so the kubelet swaps the files under the running proxies instead of a new Secret
      // (and a rollout) per credential change.
      { providers: [new k8s.Provider("kubernetes", { enableSecretMutable: true })] },
    )
  : new OllamaGateway(GATEWAY_NAME, {
      ...common,
      bindAddress: s.bindAddress,
      ...(s.metricsPort !== undefined ? { metricsPort: s.metricsPort } : {}),
      ollama: { ...ollama, gpu: s.gpu },
      backends: s.backends,
      ...(s.proxyImage !== undefined ? { proxyImage: s.proxyImage } : {}),
      internalNetwork: s.internalNetwork,
    });

export const endpoint = gateway.endpoint;
export const healthUrl = gateway.healthUrl;
export const openaiBaseUrl = gateway.openaiBaseUrl;
export const apiKeys = gateway.apiKeys;
export const basicAuth = gateway.basicAuth;
export const caCertPem = gateway.caCertPem;
export const curlExample = gateway.curlExample;
/** `export` lines for Ollama and OpenAI clients, Node and Python: URLs, the first API key, the CA (written to ./ca.pem). Secret. */
export const clientEnv = gateway.clientEnv;
/** The HS256 secret JWT issuers sign with (its UTF-8 bytes are the key); secret; absent unless `jwtAlgorithms` lists HS256. */
export const jwtHs256Secret = gateway.jwtHs256Secret;
/** What JWT issuers must put in tokens: issuer, audience, algorithms, scope and name claims. Not secret; absent with JWT off. */
export const jwtSettings = gateway.jwtSettings;
/** Per rotating credential (and `jwtHs256Secret`, the HS256 secret, when it rotates): generation, when it took over, until when the previous secret works, next scheduled rotation. Not secret. */
export const rotation = pulumi.output(
  Object.fromEntries(
    Object.entries(rotations).map(([name, r]) => [
      name,
      {
        generation: r.generation,
        rotatedAt: r.rotatedAt ?? null,
        previousNotAfter: r.previousNotAfter ?? null,
        previousValid: r.previousLive,
        nextRotation: r.nextRotation ?? null,
      },
    ]),
  ),
);
