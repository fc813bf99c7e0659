import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { DEPLOYMENT_DEFAULTS } from "../bundle/defaults";
import type { ServiceType } from "../bundle/targets";
import { DEBIAN_USAGE_MODULE, renderConfigFiles } from "../bundle/render";
import { KUBERNETES_DNS_DEFAULTS, kubernetesOllamaName, kubernetesProxyBackend, ollamaServiceName } from "../bundle/backends";
import { CREDENTIALS_DIR, configDigest, PROXY_PREFIX, PROXY_USER, proxyCredentialFiles, proxySettingsOn } from "./AuthProxy";
import type { ApiKeyArgs, BasicUserArgs } from "./Credentials";
import { callerProxySettings, gatewayAccess, type GatewayCommonArgs, GatewayComponent, type GatewayTlsArgs } from "./gatewayAccess";
import { OLLAMA_PORT } from "./OllamaServer";

/** The pod template annotation with the digest of the proxy's config files: a new config rolls the Deployment. */
export const CONFIG_CHECKSUM_ANNOTATION = "ollama-gateway/config-sha256";
/** Where Ollama keeps its models (and its identity key) in the official image; a PVC per pod. */
export const OLLAMA_HOME = "/root/.ollama";
/**
 * How long a stopping Ollama pod keeps serving after it left the headless Service (its preStop
 * hook): longer than the proxy's DNS answer lifetime (`upstreamResolver.validSeconds`, 5 s) plus
 * the endpoint and DNS propagation, so no new request reaches it once it stops.
 */
export const OLLAMA_DRAIN_SECONDS = 30;
const PROXY_UID = Number(PROXY_USER.split(":")[0]);

/** Requests and limits of a container, as Kubernetes takes them. */
export interface ContainerResources {
  requests?: Record<string, string>;
  limits?: Record<string, string>;
}

export interface KubernetesOllamaArgs {
  /** Pinned image. Default `ollama/ollama:0.12.6`. */
  image?: string;
  /** Models the init container pulls into every pod's volume before Ollama serves. Default none. */
  models?: string[];
  /** Pods of the StatefulSet, each with its own model volume. Default 1. */
  replicas?: number;
  /** `nvidia.com/gpu` per pod (needs the NVIDIA device plugin); 0 = none. Default 0. */
  gpus?: number;
  /** Size of each pod's model volume. Default `50Gi`. */
  storageSize?: string;
  /** StorageClass of the model volumes. Default: the cluster's default class. */
  storageClass?: string;
  /** `OLLAMA_KEEP_ALIVE`. Default `5m`. */
  keepAlive?: string;
  /** `OLLAMA_NUM_PARALLEL`. Default: Ollama's own choice. */
  numParallel?: number;
  /** `OLLAMA_MAX_LOADED_MODELS`. Default: Ollama's own choice. */
  maxLoadedModels?: number;
  /** Default: requests 1 CPU and 4Gi, memory limit 16Gi (GPUs are added to the limits). */
  resources?: ContainerResources;
}

export interface KubernetesGatewayArgs extends GatewayCommonArgs {
  /** Namespace everything goes in. Default `ollama-gateway`. */
  namespace?: string;
  /** Create the namespace (else it must exist). Default `true`. */
  createNamespace?: boolean;
  /** Refused together with `ingress` (the Ingress reaches the proxy over plain HTTP). Default `{ mode: "none" }`. */
  tls?: GatewayTlsArgs;
  /**
   * `rateLimit` is the limit per caller across all proxy pods: each pod enforces
   * `requestsPerSecond / proxyReplicas` and `floor(burst / proxyReplicas)` (`perProxyRateLimit`).
   */
  proxy?: GatewayCommonArgs["proxy"];
  ollama?: KubernetesOllamaArgs;
  /**
   * The proxy image: image/proxy/Dockerfile built and pushed to a registry the cluster pulls
   * from, pinned (tag or digest). Required: a cluster cannot build it.
   */
  proxyImage: string;
  /** Proxy pods. Default 2. */
  proxyReplicas?: number;
  /**
   * Prometheus metrics (docs/governance.md) on this port of each proxy pod, announced by the
   * `prometheus.io/*` pod annotations. Not a port of the proxy's Service, so never reachable
   * through it or the Ingress; each pod counts its own requests (sum them in PromQL). Default: off.
   */
  metricsPort?: number;
  /** Default: requests 100m CPU and 64Mi, limits 1 CPU and 256Mi. */
  proxyResources?: ContainerResources;
  /** The proxy Service's type. Default `ClusterIP`. */
  serviceType?: ServiceType;
  /** An Ingress to the proxy Service's HTTP port: host, optional class and TLS Secret. Default none. */
  ingress?: { host: string; className?: string; tlsSecret?: string };
  /**
   * The DNS server the proxy asks for Ollama's pods (nginx does not read /etc/resolv.conf). Default
   * `kube-dns.kube-system.svc.cluster.local`, the Service name CoreDNS keeps in nearly every cluster.
   */
  dnsServer?: string;
  /** The cluster's DNS domain. Default `cluster.local`. */
  clusterDomain?: string;
}

const DEFAULTS = {
  namespace: "ollama-gateway",
  createNamespace: true,
  hostname: DEPLOYMENT_DEFAULTS.hostname as string,
  dnsNames: [] as string[],
  // A pod's address is not known in advance: the certificate names DNS names only.
  ipAddresses: [] as string[],
  httpPort: DEPLOYMENT_DEFAULTS.httpPort as number,
  httpsPort: DEPLOYMENT_DEFAULTS.httpsPort as number,
  tls: { mode: "none" } as GatewayTlsArgs,
  apiKeys: [] as ApiKeyArgs[],
  basicUsers: [] as BasicUserArgs[],
  proxyReplicas: 2,
  proxyResources: { requests: { cpu: "100m", memory: "64Mi" }, limits: { cpu: "1", memory: "256Mi" } } as ContainerResources,
  serviceType: "ClusterIP" as ServiceType,
  ...KUBERNETES_DNS_DEFAULTS,
};
const OLLAMA_DEFAULTS = {
  image: DEPLOYMENT_DEFAULTS.ollamaImage as string,
  models: [] as string[],
  replicas: 1,
  gpus: 0,
  storageSize: "50Gi",
  keepAlive: DEPLOYMENT_DEFAULTS.ollamaKeepAlive as string,
  resources: { requests: { cpu: "1", memory: "4Gi" }, limits: { memory: "16Gi" } } as ContainerResources,
};

/** `conf/nginx.conf` -> `conf.nginx.conf`: ConfigMap keys cannot hold `/`; volume items put each file back. */
export const configMapKey = (file: string): string => file.replaceAll("/", ".");

/** The shell the Ollama init container runs: a local `ollama serve` only for the pulls, then stopped. */
export function pullModelsScript(): string {
  return [
    "set -eu",
    "ollama serve & server=$!",
    // Stopped however the script ends, so a failed pull fails the pod start at once.
    `trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT`,
    "tries=0",
    "until ollama list >/dev/null 2>&1; do",
    '  tries=$((tries + 1)); [ "$tries" -le 120 ] || { echo "ollama serve did not answer within 120 s" >&2; exit 1; }',
    '  kill -0 "$server" 2>/dev/null || { echo "ollama serve exited" >&2; exit 1; }',
    "  sleep 1",
    "done",
    'for model in "$@"; do echo "pulling $model"; ollama pull "$model"; done',
  ].join("\n");
}

/** Container security shared by every container here: nothing gained, nothing kept. */
const DROP_ALL = { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] }, seccompProfile: { type: "RuntimeDefault" } };

/**
 * The gateway on Kubernetes: Ollama as a StatefulSet (a model volume per pod, models pulled by an
 * init container, GPUs as `nvidia.com/gpu`) behind a headless Service, and the same proxy image and
 * bundle as the Docker form as a Deployment: settings from a ConfigMap, credentials from a Secret
 * the kubelet updates in place (the proxy re-reads them, no restart), a Service, an optional
 * Ingress, probes on /healthz, PodDisruptionBudgets, and a NetworkPolicy that lets only the proxy
 * pods reach Ollama.
 *
 * Pass a `k8s.Provider` with `enableSecretMutable: true` (index.ts does), so a credential change
 * updates the Secret rather than replacing it.
 */
export class KubernetesGateway extends GatewayComponent {
  /** The headless Service's DNS name the proxy resolves for Ollama's pods. */
  public readonly ollamaServiceName: string;

  constructor(name: string, args: KubernetesGatewayArgs, opts?: pulumi.ComponentResourceOptions) {
    super("ollama-gateway:index:KubernetesGateway", name, {}, opts);
    const a = { ...DEFAULTS, ...args };
    const ollama = { ...OLLAMA_DEFAULTS, ...args.ollama };
    const tlsInProxy = a.tls.mode !== "none";
    if (a.ingress && tlsInProxy)
      throw new pulumi.ResourceError("`ingress` and `tls` are both set; the Ingress reaches the proxy over plain HTTP, so set `tls` to `{ mode: \"none\" }` and TLS at the Ingress (`ingress.tlsSecret`), or remove `ingress`.", this);
    for (const [field, value] of [["proxyReplicas", a.proxyReplicas], ["ollama.replicas", ollama.replicas]] as const)
      if (!Number.isInteger(value) || value < 1) throw new pulumi.ResourceError(`\`${field}\` is ${value}; use a whole number, 1 or more.`, this);

    const labels = (component: "proxy" | "ollama") => ({
      "app.kubernetes.io/name": "ollama-gateway",
      "app.kubernetes.io/instance": name,
      "app.kubernetes.io/component": component,
    });
    const proxyLabels = labels("proxy");
    const ollamaLabels = labels("ollama");
    const child = { parent: this };

    const namespaceResource = a.createNamespace ? new k8s.core.v1.Namespace(`${name}-namespace`, { metadata: { name: a.namespace } }, child) : undefined;
    const namespace = namespaceResource ? namespaceResource.metadata.name : pulumi.output(a.namespace);
    const meta = (resourceName: string, component: "proxy" | "ollama") => ({ name: resourceName, namespace, labels: labels(component) });

    // --- Ollama: a StatefulSet, each pod with its own model volume, behind a headless Service.
    const ollamaName = kubernetesOllamaName(name);
    this.ollamaServiceName = ollamaServiceName(name, a.namespace, a.clusterDomain);
    new k8s.core.v1.Service(
      `${name}-ollama-headless`,
      {
        metadata: meta(ollamaName, "ollama"),
        // Headless: the name resolves to every ready pod's address, not to one virtual IP.
        spec: { clusterIP: "None", selector: ollamaLabels, ports: [{ name: "http", port: OLLAMA_PORT, targetPort: "http" }] },
      },
      child,
    );
    const ollamaEnv = [
      { name: "OLLAMA_KEEP_ALIVE", value: ollama.keepAlive },
      ...(ollama.numParallel !== undefined ? [{ name: "OLLAMA_NUM_PARALLEL", value: String(ollama.numParallel) }] : []),
      ...(ollama.maxLoadedModels !== undefined ? [{ name: "OLLAMA_MAX_LOADED_MODELS", value: String(ollama.maxLoadedModels) }] : []),
      // Cloud models act with the server's ollama.com identity; the proxy blocks their routes too.
      { name: "OLLAMA_NO_CLOUD", value: "1" },
    ];
    const modelsMount = { name: "models", mountPath: OLLAMA_HOME };
    const ollamaResources = {
      ...ollama.resources,
      limits: { ...ollama.resources.limits, ...(ollama.gpus > 0 ? { "nvidia.com/gpu": String(ollama.gpus) } : {}) },
    };
    // The image has no curl: `ollama list` asks the local server and fails until it answers.
    const ollamaReady = { exec: { command: ["ollama", "list"] }, periodSeconds: 10, timeoutSeconds: 5, failureThreshold: 3 };
    new k8s.apps.v1.StatefulSet(
      `${name}-ollama`,
      {
        metadata: meta(ollamaName, "ollama"),
        spec: {
          serviceName: ollamaName,
          replicas: ollama.replicas,
          // Pods are independent servers: start and replace them in parallel.
          podManagementPolicy: "Parallel",
          selector: { matchLabels: ollamaLabels },
          template: {
            metadata: { labels: ollamaLabels },
            spec: {
              automountServiceAccountToken: false,
              securityContext: { seccompProfile: { type: "RuntimeDefault" } },
              terminationGracePeriodSeconds: OLLAMA_DRAIN_SECONDS + 30,
              ...(ollama.models.length > 0
                ? {
                    initContainers: [
                      {
                        name: "pull-models",
                        image: ollama.image,
                        command: ["/bin/sh", "-c", pullModelsScript(), "pull-models", ...ollama.models],
                        // Only this container talks to that temporary server.
                        env: [...ollamaEnv, { name: "OLLAMA_HOST", value: `127.0.0.1:${OLLAMA_PORT}` }],
                        volumeMounts: [modelsMount],
                        resources: ollama.resources,
                        securityContext: DROP_ALL,
                      },
                    ],
                  }
                : {}),
              containers: [
                {
                  name: "ollama",
                  image: ollama.image,
                  env: [...ollamaEnv, { name: "OLLAMA_HOST", value: `0.0.0.0:${OLLAMA_PORT}` }],
                  ports: [{ name: "http", containerPort: OLLAMA_PORT, protocol: "TCP" }],
                  volumeMounts: [modelsMount],
                  resources: ollamaResources,
                  readinessProbe: ollamaReady,
                  livenessProbe: { ...ollamaReady, initialDelaySeconds: 30, failureThreshold: 6 },
                  // Out of the Service first, then keep serving what still arrives (see OLLAMA_DRAIN_SECONDS).
                  lifecycle: { preStop: { exec: { command: ["/bin/sh", "-c", `sleep ${OLLAMA_DRAIN_SECONDS}`] } } },
                  securityContext: DROP_ALL,
                },
              ],
            },
          },
          volumeClaimTemplates: [
            {
              metadata: { name: "models" },
              spec: {
                accessModes: ["ReadWriteOnce"],
                ...(ollama.storageClass !== undefined ? { storageClassName: ollama.storageClass } : {}),
                resources: { requests: { storage: ollama.storageSize } },
              },
            },
          ],
        },
      },
      child,
    );
    new k8s.policy.v1.PodDisruptionBudget(
      `${name}-ollama-pdb`,
      { metadata: meta(`${name}-ollama`, "ollama"), spec: { maxUnavailable: 1, selector: { matchLabels: ollamaLabels } } },
      child,
    );
    new k8s.networking.v1.NetworkPolicy(
      `${name}-ollama-ingress`,
      {
        metadata: meta(`${name}-ollama-from-proxy`, "ollama"),
        spec: {
          podSelector: { matchLabels: ollamaLabels },
          policyTypes: ["Ingress"],
          ingress: [{ from: [{ podSelector: { matchLabels: proxyLabels } }], ports: [{ protocol: "TCP", port: OLLAMA_PORT }] }],
        },
      },
      child,
    );

    // --- The proxy: the Docker form's spec and bundle, Ollama resolved through cluster DNS.
    const access = gatewayAccess(this, name, a);
    const { certificates, credentials, jwt } = access;
    const httpsPort = tlsInProxy ? a.httpsPort : undefined;
    // The configured (or the spec's default) limit is the whole gateway's; each pod gets its share.
    const settings =
      args.settings ??
      proxySettingsOn(this, callerProxySettings(a, jwt), {
        ports: { http: a.httpPort, https: httpsPort, metrics: a.metricsPort },
        backend: kubernetesProxyBackend(this.ollamaServiceName, a.dnsServer),
        replicas: a.proxyReplicas,
      });
    const configFiles = Object.fromEntries(Object.entries(renderConfigFiles(settings, "debian", DEBIAN_USAGE_MODULE)).filter(([file]) => !file.endsWith("/.keep")));
    const configMap = new k8s.core.v1.ConfigMap(
      `${name}-proxy-config`,
      // No fixed name: a changed config is a new ConfigMap, so running pods keep the files they started with.
      { metadata: { namespace, labels: proxyLabels }, data: Object.fromEntries(Object.entries(configFiles).map(([file, content]) => [configMapKey(file), content])) },
      child,
    );
    const credentialFiles = proxyCredentialFiles(this, settings, credentials.specCredentials, certificates ? { certPem: certificates.certPem, keyPem: certificates.keyPem } : undefined);
    const secret = new k8s.core.v1.Secret(
      `${name}-proxy-credentials`,
      {
        metadata: meta(`${name}-proxy-credentials`, "proxy"),
        type: "Opaque",
        // credentials/api-keys -> key `api-keys`, mounted back at /gateway/credentials/api-keys.
        stringData: pulumi.secret(credentialFiles.apply((files) => Object.fromEntries(Object.entries(files).map(([file, content]) => [file.replace(/^credentials\//, ""), content])))),
      },
      child,
    );

    const configItems = (dir: string) =>
      Object.keys(configFiles)
        .filter((file) => file.startsWith(`${dir}/`))
        .map((file) => ({ key: configMapKey(file), path: file.slice(dir.length + 1) }));
    const ports = [{ name: "http", containerPort: a.httpPort, protocol: "TCP" }, ...(httpsPort !== undefined ? [{ name: "https", containerPort: httpsPort, protocol: "TCP" }] : [])];
    const health = `http://127.0.0.1:${a.httpPort}/healthz`;
    const pidFile = `${PROXY_PREFIX}/logs/nginx.pid`;
    const proxyName = `${name}-proxy`;
    new k8s.apps.v1.Deployment(
      `${name}-proxy`,
      {
        metadata: meta(proxyName, "proxy"),
        spec: {
          replicas: a.proxyReplicas,
          selector: { matchLabels: proxyLabels },
          strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
          template: {
            metadata: {
              labels: proxyLabels,
              annotations: {
                [CONFIG_CHECKSUM_ANNOTATION]: configDigest(configFiles),
                ...(a.metricsPort !== undefined
                  ? { "prometheus.io/scrape": "true", "prometheus.io/port": String(a.metricsPort), "prometheus.io/path": "/metrics" }
                  : {}),
              },
            },
            spec: {
              automountServiceAccountToken: false,
              // fsGroup: the Secret's files (mode 0440) are readable by nginx's group and no one else.
              securityContext: { runAsNonRoot: true, runAsUser: PROXY_UID, runAsGroup: PROXY_UID, fsGroup: PROXY_UID, seccompProfile: { type: "RuntimeDefault" } },
              // Streams finish during the graceful stop (preStop below); the rest get this long.
              terminationGracePeriodSeconds: 120,
              containers: [
                {
                  name: "proxy",
                  image: a.proxyImage,
                  command: ["nginx", "-p", PROXY_PREFIX, "-c", "conf/nginx.conf", "-e", "/dev/stderr", "-g", "daemon off;"],
                  ports: [...ports, ...(a.metricsPort !== undefined ? [{ name: "metrics", containerPort: a.metricsPort, protocol: "TCP" }] : [])],
                  resources: a.proxyResources,
                  // From inside the pod (127.0.0.1, which `network.allow` always admits): ready only
                  // while Ollama answers and the credentials load; alive while nginx answers at all,
                  // so an Ollama outage never restarts the proxies.
                  readinessProbe: { exec: { command: ["curl", "-fsS", "-o", "/dev/null", "--max-time", "4", health] }, periodSeconds: 5, timeoutSeconds: 5, failureThreshold: 2 },
                  livenessProbe: { exec: { command: ["curl", "-sS", "-o", "/dev/null", "--max-time", "4", health] }, periodSeconds: 10, timeoutSeconds: 5, failureThreshold: 3 },
                  // Leave the Service first, then stop gracefully (QUIT: streams finish); SIGTERM would cut them.
                  lifecycle: {
                    preStop: { exec: { command: ["/bin/sh", "-c", `sleep 5; pid=$(cat ${pidFile}); kill -QUIT "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 1; done`] } },
                  },
                  securityContext: { ...DROP_ALL, readOnlyRootFilesystem: true, runAsNonRoot: true, runAsUser: PROXY_UID },
                  volumeMounts: [
                    { name: "conf", mountPath: `${PROXY_PREFIX}/conf`, readOnly: true },
                    { name: "lua", mountPath: `${PROXY_PREFIX}/lua`, readOnly: true },
                    { name: "credentials", mountPath: CREDENTIALS_DIR, readOnly: true },
                    { name: "tmp", mountPath: `${PROXY_PREFIX}/tmp` },
                    { name: "logs", mountPath: `${PROXY_PREFIX}/logs` },
                  ],
                },
              ],
              volumes: [
                { name: "conf", configMap: { name: configMap.metadata.name, items: configItems("conf") } },
                { name: "lua", configMap: { name: configMap.metadata.name, items: configItems("lua") } },
                { name: "credentials", secret: { secretName: secret.metadata.name, defaultMode: 0o440 } },
                { name: "tmp", emptyDir: { sizeLimit: "256Mi" } },
                { name: "logs", emptyDir: { sizeLimit: "16Mi" } },
              ],
            },
          },
        },
      },
      child,
    );
    new k8s.policy.v1.PodDisruptionBudget(
      `${name}-proxy-pdb`,
      { metadata: meta(proxyName, "proxy"), spec: { maxUnavailable: 1, selector: { matchLabels: proxyLabels } } },
      child,
    );
    new k8s.core.v1.Service(
      `${name}-proxy-service`,
      {
        metadata: meta(name, "proxy"),
        spec: {
          type: a.serviceType,
          selector: proxyLabels,
          ports: ports.map((p) => ({ name: p.name, port: p.containerPort, targetPort: p.name, protocol: "TCP" })),
        },
      },
      child,
    );
    if (a.ingress) {
      const ingress = a.ingress;
      new k8s.networking.v1.Ingress(
        `${name}-ingress`,
        {
          metadata: meta(name, "proxy"),
          spec: {
            ...(ingress.className !== undefined ? { ingressClassName: ingress.className } : {}),
            rules: [{ host: ingress.host, http: { paths: [{ path: "/", pathType: "Prefix", backend: { service: { name, port: { name: "http" } } } }] } }],
            ...(ingress.tlsSecret !== undefined ? { tls: [{ hosts: [ingress.host], secretName: ingress.tlsSecret }] } : {}),
          },
        },
        child,
      );
    }

    const endpoint = a.ingress
      ? `${a.ingress.tlsSecret !== undefined ? "https" : "http"}://${a.ingress.host}`
      : tlsInProxy
        ? `https://${a.hostname}:${a.httpsPort}`
        : `http://${a.hostname}:${a.httpPort}`;
    this.exportOutputs(endpoint, access);
  }
}
