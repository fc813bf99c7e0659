/** What a validated stack config becomes: plain values, typed; index.ts wraps the secret ones. */
import type { CredentialGovernance, RequestLimits } from "../bundle/governance";
import type { ProxyGatewaySettings } from "../bundle/proxySettings";
import type { Scope } from "../bundle/spec";
import type { ServiceType, Target } from "../bundle/targets";
import type { OnDemandRotation, RotationPolicy } from "./rotation";

export interface CredentialConfig {
  name: string;
  scope: Scope;
}

/** A credential's rotation: its policy and the last on-demand request, if any. */
export interface CredentialRotation {
  policy: RotationPolicy;
  onDemand?: OnDemandRotation;
}

/** Claim or header values that grant each scope; undefined = the spec's default (each scope's own name). */
export type ScopeValues = Record<Scope, string[]>;

/** The spec's `jwt` section without HS256 secrets (those travel as secrets, see `hs256Secret`). */
export interface JwtSettings {
  issuer: string;
  audience: string;
  algorithms: ("HS256" | "RS256" | "ES256")[];
  /** The HS256 secret from `jwtHs256Secret`; undefined with HS256 listed = generate one. */
  hs256Secret?: string;
  publicKeys: { kid?: string; pem: string }[];
  /** A JWKS document, as the identity provider publishes it. */
  jwks?: { keys: ({ kty: string } & Record<string, unknown>)[] };
  scopeClaim: string;
  scopeValues?: ScopeValues;
  /** Models per claim value (`jwtModelGrants`); undefined: every model. */
  modelGrants?: Record<string, string[]>;
  nameClaim: string;
  clockSkewSeconds: number;
  /** Rotation of the generated HS256 secret (`rotation` entry `jwtHs256Secret:<every>:<overlap>`). */
  hs256Rotation?: CredentialRotation;
}

/** The `rotation` entry name that rotates the generated HS256 secret (its config key). */
export const HS256_ROTATION_NAME = "jwtHs256Secret";

export interface ExternalAuthSettings {
  url: string;
  mode: "fallback" | "exclusive";
  timeoutSeconds: number;
  nameHeader: string;
  scopeHeader: string;
  scopeValues?: ScopeValues;
  /** Models per header value (`externalAuthModelGrants`); undefined: every model. */
  modelGrants?: Record<string, string[]>;
}

/** The validated stack, plain values only; `index.ts` wraps the secret ones in `pulumi.secret`. */
export interface StackSettings {
  hostname: string;
  dnsNames: string[];
  ipAddresses: string[];
  bindAddress: string;
  httpPort: number;
  httpsPort: number;
  tls: { mode: "none" } | { mode: "selfSigned" } | { mode: "provided"; certPem: string; keyPem: string };
  apiKeys: (CredentialConfig & CredentialGovernance & { key?: string; rotation?: CredentialRotation })[];
  basicUsers: (CredentialConfig & CredentialGovernance & { password?: string; rotation?: CredentialRotation })[];
  rateLimit: { requestsPerSecond: number; burst: number };
  maxBodySize: string;
  upstreamReadTimeoutSeconds: number;
  corsAllowedOrigins: string[];
  models: string[];
  gpu: boolean;
  internalNetwork: boolean;
  /** The Docker target's Ollama backends (config/backendsConfig.ts). */
  backends: OllamaBackendsSettings;
  ollama: { keepAlive: string; numParallel?: number; maxLoadedModels?: number };
  ollamaImage: string;
  /** Undefined: build image/proxy/Dockerfile on the Docker host. */
  proxyImage?: string;
  /** Undefined: JWT off (`jwtIssuer` is ""). */
  jwt?: JwtSettings;
  /** Undefined: external auth off (`externalAuthUrl` is ""). */
  externalAuth?: ExternalAuthSettings;
  network: { allow: string[]; deny: string[]; trustedProxies: string[]; clientAddressHeader: string };
  /**
   * What the proxy runs (config/proxyConfig.ts): the settings above plus the deployment's ports,
   * backend(s) and, on Kubernetes, each pod's share of `rateLimit`; validated, rendered as it is.
   */
  proxySettings: ProxyGatewaySettings;
  /** Undefined: metrics off (`metricsPort` 0). */
  metricsPort?: number;
  /** Request limits for every caller (the spec's `limits`). */
  limits: RequestLimits;
  target: Target;
  /** Undefined unless `target` is `kubernetes`. */
  kubernetes?: KubernetesSettings;
}

export interface OllamaBackendsSettings {
  /** Ollama on this Docker host: one container, or one per `gpuDevices` group. */
  local: boolean;
  /** GPU groups, one local container each; [] = one container. */
  gpuDevices: string[][];
  /** Ollama on other Docker hosts, reached over SSH, published on `privateAddress` only. */
  remoteHosts: { name: string; sshUrl: string; privateAddress: string }[];
  /** Existing servers, served as they are. */
  urls: { name: string; url: string }[];
  /** Backend name -> requests in progress at once (spec `upstreams[].maxConcurrent`). */
  maxConcurrent: Record<string, number>;
}

export interface KubernetesSettings {
  namespace: string;
  createNamespace: boolean;
  ollamaReplicas: number;
  ollamaGpus: number;
  ollamaStorageSize: string;
  ollamaStorageClass?: string;
  proxyReplicas: number;
  serviceType: ServiceType;
  ingress?: { host: string; className?: string; tlsSecret?: string };
}

export type StackConfigResult = { ok: true; settings: StackSettings } | { ok: false; errors: string[] };
