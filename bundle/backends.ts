/**
 * The Ollama backends a Docker stack can have (docs/backends.md), named and addressed the same
 * way by the stack config's checks (config/backendsConfig.ts) and the components that create
 * them (components/OllamaGateway.ts): one fact in one place.
 */
import type { ProxyBackend } from "./proxySettings";
import { SINGLE_BACKEND_NAME } from "./spec";

/** The port Ollama listens on, in its container and where a remote host publishes it. */
export const OLLAMA_PORT = 11434;
/** The single local server's backend name (and its alias on the private network). */
export const LOCAL_BACKEND_NAME = SINGLE_BACKEND_NAME;
/** The backend name of the container for `ollamaGpuDevices[index]`. */
export const gpuBackendName = (index: number) => `gpu${index}`;
/** A GPU as `--gpus device=` takes it: an index (`0`) or a UUID (`GPU-...`, `MIG-...`). */
export const GPU_DEVICE_ID = /^([0-9]{1,3}|(GPU|MIG)-[0-9A-Fa-f-]{8,64})$/;

/** `http://<address>:11434`, with IPv6 addresses in brackets. */
export function ollamaUrlAt(address: string, port = OLLAMA_PORT): string {
  return `http://${address.includes(":") ? `[${address}]` : address}:${port}`;
}

/** The private-network alias of the local server for `backend`: `ollama` alone, `ollama-gpu0` per GPU group. */
export const localBackendAlias = (backend: string) => (backend === LOCAL_BACKEND_NAME ? LOCAL_BACKEND_NAME : `ollama-${backend}`);

/** A Docker stack's Ollama servers (config/backendsConfig.ts checks them, components/OllamaGateway.ts creates them). */
export interface DockerBackends {
  local: boolean;
  gpuDevices: string[][];
  remoteHosts: { name: string; privateAddress: string }[];
  urls: { name: string; url: string }[];
  maxConcurrent?: Record<string, number>;
}

/** Every backend with the URL the proxy reaches it at: local (one, or one per GPU group), remote hosts, then URLs. */
export function dockerBackendList(b: DockerBackends): { name: string; url: string }[] {
  const local = !b.local ? [] : b.gpuDevices.length > 0 ? b.gpuDevices.map((_, i) => gpuBackendName(i)) : [LOCAL_BACKEND_NAME];
  return [
    ...local.map((name) => ({ name, url: ollamaUrlAt(localBackendAlias(name)) })),
    ...b.remoteHosts.map((h) => ({ name: h.name, url: ollamaUrlAt(h.privateAddress) })),
    ...b.urls,
  ];
}

/** The proxy's backend on Docker: the single local server alone, unlimited, as `upstream` (as before pools existed); else a pool. */
export function dockerProxyBackend(b: DockerBackends): ProxyBackend {
  const list = dockerBackendList(b);
  const limits = b.maxConcurrent ?? {};
  if (b.local && b.gpuDevices.length === 0 && list.length === 1 && limits[LOCAL_BACKEND_NAME] === undefined) return { upstream: list[0].url };
  return { upstreams: list.map((u) => (limits[u.name] !== undefined ? { ...u, maxConcurrent: limits[u.name] } : u)) };
}

/** Kubernetes defaults: the DNS server the proxy asks, and the cluster's domain. */
export const KUBERNETES_DNS_DEFAULTS = { dnsServer: "kube-dns.kube-system.svc.cluster.local", clusterDomain: "cluster.local" };

/** The name of gateway `name`'s Ollama StatefulSet and headless Service on Kubernetes. */
export const kubernetesOllamaName = (name: string) => `${name}-ollama`;
/** The headless Service's DNS name for gateway `name`'s Ollama pods. */
export const ollamaServiceName = (name: string, namespace: string, clusterDomain: string) => `${kubernetesOllamaName(name)}.${namespace}.svc.${clusterDomain}`;

/** The proxy's backend on Kubernetes: the headless Service, resolved while the proxy runs (a restarted pod has a new address). */
export const kubernetesProxyBackend = (serviceName: string, dnsServer: string): ProxyBackend => ({
  upstream: ollamaUrlAt(serviceName),
  resolver: { address: dnsServer, validSeconds: 5 },
});
