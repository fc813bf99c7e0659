/**
 * The `target: kubernetes` keys: which combinations make sense (problems go to `errors`), and
 * the settings they become. Called by parseStackConfig with values already coerced and typed.
 */
import { CONFIG_DEFAULTS, DOCKER_ONLY_KEYS, KUBERNETES_KEYS } from "./keys";
import { key, show } from "./messages";
import type { KubernetesSettings } from "./settings";

type Get = <K extends keyof typeof CONFIG_DEFAULTS>(name: K) => (typeof CONFIG_DEFAULTS)[K];

/** Keys set for the wrong target, an Ingress with TLS in the proxy, a cluster without a pushed image. */
export function checkTarget(get: Get, coerced: Record<string, unknown>, isSet: (name: string) => boolean, errors: string[]): void {
  const tlsMode = get("tlsMode");
  // An unknown target was reported by the schema; its keys are judged once it is known.
  if (get("target") === "docker") {
    for (const name of KUBERNETES_KEYS.filter(isSet))
      errors.push(`${key(name)} is set but \`target\` is ${show(get("target"))}; set \`target\` to \`kubernetes\` or remove ${key(name)}.`);
    return;
  }
  if (get("target") !== "kubernetes") return;
  for (const [name, why] of Object.entries(DOCKER_ONLY_KEYS))
    if (isSet(name)) errors.push(`${key(name)} is ${show(coerced[name])} but means nothing with \`target\` \`kubernetes\` (${why}); remove it.`);
  if (get("proxyImage") === "")
    errors.push(
      `${key("proxyImage")} is missing; a cluster cannot build the proxy image: build image/proxy/Dockerfile (\`npm run image:proxy\`), push it to a registry the cluster pulls from, and set \`proxyImage\` to it pinned (tag or digest) when \`target\` is \`kubernetes\`.`,
    );
  if (coerced.k8sIngressHost !== undefined && tlsMode !== "none")
    errors.push(
      `${key("k8sIngressHost")} is ${show(coerced.k8sIngressHost)} but \`tlsMode\` is ${show(tlsMode)}; the Ingress reaches the proxy over plain HTTP and ends TLS itself: set \`tlsMode\` to \`none\` (and \`k8sIngressTlsSecret\`), or remove ${key("k8sIngressHost")}.`,
    );
  for (const name of ["k8sIngressClass", "k8sIngressTlsSecret"])
    if (coerced[name] !== undefined && coerced.k8sIngressHost === undefined)
      errors.push(`${key(name)} is ${show(coerced[name])} but \`k8sIngressHost\` is empty, so there is no Ingress; set \`k8sIngressHost\` or remove ${key(name)}.`);
}

/** The cluster settings, when `target` is `kubernetes`. */
export function kubernetesSettings(get: Get, coerced: Record<string, unknown>): KubernetesSettings | undefined {
  if (get("target") !== "kubernetes") return undefined;
  const optional = (name: string) => coerced[name] as string | undefined;
  const ingressHost = optional("k8sIngressHost");
  return {
    namespace: get("k8sNamespace"),
    createNamespace: get("k8sCreateNamespace"),
    ollamaReplicas: get("ollamaReplicas"),
    ollamaGpus: get("ollamaGpus"),
    ollamaStorageSize: get("ollamaStorageSize"),
    ...(optional("ollamaStorageClass") !== undefined ? { ollamaStorageClass: optional("ollamaStorageClass") } : {}),
    proxyReplicas: get("proxyReplicas"),
    serviceType: get("k8sServiceType"),
    ...(ingressHost !== undefined
      ? {
          ingress: {
            host: ingressHost,
            ...(optional("k8sIngressClass") !== undefined ? { className: optional("k8sIngressClass") } : {}),
            ...(optional("k8sIngressTlsSecret") !== undefined ? { tlsSecret: optional("k8sIngressTlsSecret") } : {}),
          },
        }
      : {}),
  };
}
