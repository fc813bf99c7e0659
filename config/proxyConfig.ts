/**
 * The proxy's settings, derived from the stack's keys and the deployment they describe (ports,
 * TLS, metrics, backends, Kubernetes replicas) and validated once (bundle/proxySettings.ts):
 * index.ts hands the result to the gateway component, which renders from it as it is.
 */
import { dockerBackendList, dockerProxyBackend, KUBERNETES_DNS_DEFAULTS, kubernetesProxyBackend, ollamaServiceName } from "../bundle/backends";
import { parseProxySettings, type ProxyDeployment, type ProxyGatewaySettings, type ProxySettings } from "../bundle/proxySettings";
import { formatIssues } from "../bundle/spec";
import { type BackendSource, backendProblem } from "./backendsConfig";
import type { CONFIG_DEFAULTS } from "./keys";
import { type ScopeValueSources, sectionWording, specPathToKey, withPeriod } from "./messages";
import type { OllamaBackendsSettings } from "./settings";

/** The gateway's resource name in index.ts; on Kubernetes its Ollama Service's DNS name follows from it. */
export const GATEWAY_NAME = "gateway";

type Get = <K extends keyof typeof CONFIG_DEFAULTS>(name: K) => (typeof CONFIG_DEFAULTS)[K];

/** Where the proxy listens and which Ollama it reaches, as the keys say (index.ts passes the same to the component). */
function deployment(get: Get, backends: OllamaBackendsSettings, metricsPort: number | undefined, namespace: string): ProxyDeployment {
  const ports = { http: get("httpPort"), ...(get("tlsMode") !== "none" ? { https: get("httpsPort") } : {}), ...(metricsPort !== undefined ? { metrics: metricsPort } : {}) };
  if (get("target") !== "kubernetes") return { ports, backend: dockerProxyBackend(backends) };
  const { clusterDomain, dnsServer } = KUBERNETES_DNS_DEFAULTS;
  // The stack's rate limit is the whole gateway's: each proxy pod runs its share.
  return { ports, backend: kubernetesProxyBackend(ollamaServiceName(GATEWAY_NAME, namespace, clusterDomain), dnsServer), replicas: get("proxyReplicas") };
}

/**
 * The proxy's validated settings, or its problems worded by config key: the schema is the one
 * check of every field it holds, those the deployment sets from keys included. `ports` (the
 * listen and metrics ports) and `backends` (the pool) are apart so the caller lists them with
 * the other problems of those keys; `errors` has the rest.
 */
export function proxyConfig(
  settings: ProxySettings,
  get: Get,
  facts: { backends: OllamaBackendsSettings; backendSources: readonly BackendSource[]; metricsPort?: number; namespace: string; scopeSources: ScopeValueSources },
): { settings?: ProxyGatewaySettings; errors: string[]; ports: string[]; backends: string[] } {
  const result = parseProxySettings(settings, deployment(get, facts.backends, facts.metricsPort, facts.namespace));
  if (result.ok) return { settings: result.settings, errors: [], ports: [], backends: [] };
  const word = (issues: typeof result.issues) =>
    formatIssues(issues.map((issue) => ({ ...issue, path: specPathToKey(issue.path, facts.scopeSources) }))).map(sectionWording).map(withPeriod);
  const among = (fields: string[]) => (issue: (typeof result.issues)[number]) => fields.includes(String(issue.path[0]));
  const upstreams = dockerBackendList(facts.backends);
  return {
    errors: word(result.issues.filter((issue) => !among(["listen", "metrics", "upstreams"])(issue))),
    ports: word(result.issues.filter(among(["listen", "metrics"]))),
    backends: result.issues.filter(among(["upstreams"])).map((issue) => backendProblem(issue, facts.backendSources, upstreams)),
  };
}
