/**
 * The proxy's settings, derived from the stack's keys and the deployment they describe (ports,
 * TLS, metrics, backends, Kubernetes replicas) and validated once (bundle/proxySettings.ts):
 * index.ts hands the result to the gateway component, which renders from it as it is.
 */
import { dockerProxyBackend, KUBERNETES_DNS_DEFAULTS, kubernetesProxyBackend, ollamaServiceName } from "../bundle/backends";
import { DEPLOYMENT_FIELDS, parseProxySettings, type ProxyDeployment, type ProxyGatewaySettings, type ProxySettings } from "../bundle/proxySettings";
import { formatIssues } from "../bundle/spec";
import type { CONFIG_DEFAULTS } from "./keys";
import { type ScopeValueSources, sectionWording, specPathToKey, withPeriod } from "./messages";
import type { OllamaBackendsSettings } from "./settings";

/** The gateway's resource name in index.ts; on Kubernetes its Ollama Service's DNS name follows from it. */
export const GATEWAY_NAME = "gateway";

type Get = <K extends keyof typeof CONFIG_DEFAULTS>(name: K) => (typeof CONFIG_DEFAULTS)[K];

/** Where the proxy listens and which Ollama it reaches, as the keys say (index.ts passes the same to the component). */
function deployment(get: Get, backends: OllamaBackendsSettings, metricsPort: number | undefined): ProxyDeployment {
  const ports = { http: get("httpPort"), ...(get("tlsMode") !== "none" ? { https: get("httpsPort") } : {}), ...(metricsPort !== undefined ? { metrics: metricsPort } : {}) };
  if (get("target") !== "kubernetes") return { ports, backend: dockerProxyBackend(backends) };
  const { clusterDomain, dnsServer } = KUBERNETES_DNS_DEFAULTS;
  // The stack's rate limit is the whole gateway's: each proxy pod runs its share.
  return { ports, backend: kubernetesProxyBackend(ollamaServiceName(GATEWAY_NAME, get("k8sNamespace"), clusterDomain), dnsServer), replicas: get("proxyReplicas") };
}

/**
 * The proxy's validated settings, or its problems worded by config key: `errors` for the caller's
 * settings; `checkedByKeys` for fields whose keys parseStackConfig checks itself with its own
 * words (ports, backends, metrics, `hostname`), which it reports only when it found nothing else.
 */
export function proxyConfig(
  settings: ProxySettings,
  get: Get,
  facts: { backends: OllamaBackendsSettings; metricsPort?: number; scopeSources: ScopeValueSources },
): { settings?: ProxyGatewaySettings; errors: string[]; checkedByKeys: string[] } {
  const result = parseProxySettings(settings, deployment(get, facts.backends, facts.metricsPort));
  if (result.ok) return { settings: result.settings, errors: [], checkedByKeys: [] };
  const word = (issues: typeof result.issues) =>
    formatIssues(issues.map((issue) => ({ ...issue, path: specPathToKey(issue.path, facts.scopeSources) }))).map(sectionWording).map(withPeriod);
  // `serverName` is `hostname`, which has a stricter DNS rule of its own.
  const byKeys = (issue: (typeof result.issues)[number]) => [...DEPLOYMENT_FIELDS, "serverName"].includes(String(issue.path[0]));
  return { errors: word(result.issues.filter((issue) => !byKeys(issue))), checkedByKeys: word(result.issues.filter(byKeys)) };
}
