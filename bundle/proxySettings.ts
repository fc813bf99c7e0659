/**
 * The settings a deployed proxy (Docker container or Kubernetes pod) runs: the caller's settings
 * plus the deployment's facts (listen inside the container, upstream(s), TLS on or off, metrics,
 * logs, and the healthcheck's 127.0.0.1 in `network.allow`), validated once. The stack program
 * does it in config/; programs that use the components directly call `proxySettingsFor` or let
 * the component call it. Components render from the result without validating again.
 */
import type { z } from "zod";
import { coversProxyLoopback, PROXY_HEALTHCHECK_SOURCE } from "./addresses";
import { formatIssues, type GatewaySettings, type GatewaySettingsInput, gatewaySettingsSchema, SpecError } from "./spec";

/**
 * Proxy settings the caller chooses; the deployment sets upstream(s), listen, whether TLS is on,
 * logs and metrics. `apiKeys` and `basicUsers` are each credential's settings (name, scope,
 * governance: `models`, `maxConcurrent`, `limits`, `tokenBudget`; docs/governance.md); their
 * secrets travel separately, as credentials.
 */
export type ProxySettings = Omit<GatewaySettingsInput, "upstream" | "upstreams" | "listen" | "tls" | "accessLog" | "errorLog" | "metrics">;

/** Where the proxy finds Ollama: one server (on Kubernetes a name it resolves while it runs), or a pool. */
export type ProxyBackend =
  | { upstream: string; resolver?: GatewaySettingsInput["upstreamResolver"] }
  | { upstreams: NonNullable<GatewaySettingsInput["upstreams"]> };

/** The proxy's ports inside its container or pod (the same numbers are published on the host); `https` only with TLS. */
export interface ProxyPorts {
  http: number;
  https?: number;
  metrics?: number;
}

/** What the deployment decides about the proxy, apart from the caller's settings. */
export interface ProxyDeployment {
  ports: ProxyPorts;
  backend: ProxyBackend;
  /**
   * Proxies that share the gateway's `rateLimit` without sharing state (Kubernetes replicas):
   * each runs its share (`perProxyRateLimit`). Default 1.
   */
  replicas?: number;
}

declare const validated: unique symbol;
/** Settings `proxySettingsFor` (or `parseProxySettings`) derived and validated: what components render from. */
export type ProxyGatewaySettings = GatewaySettings & { readonly [validated]: true };

/** Inside the container 127.0.0.1 is only the proxy itself, so denying it only breaks the healthcheck. */
const LOOPBACK_DENIED = `covers ${PROXY_HEALTHCHECK_SOURCE}, where the proxy's own healthcheck comes from; remove it (inside the container ${PROXY_HEALTHCHECK_SOURCE} is only the proxy itself)`;

/** The settings as the proxy runs them, before validation. */
export function proxySettingsInput(settings: ProxySettings, { ports, backend }: ProxyDeployment): GatewaySettingsInput {
  const { network, ...rest } = settings;
  const allow = network?.allow ?? [];
  return {
    ...rest,
    // With an allow list, the container's own healthcheck (from 127.0.0.1) must still get through.
    network: {
      ...network,
      deny: network?.deny ?? [],
      allow: allow.length > 0 && !allow.includes(PROXY_HEALTHCHECK_SOURCE) ? [...allow, PROXY_HEALTHCHECK_SOURCE] : allow,
    },
    ...("upstreams" in backend ? { upstreams: backend.upstreams } : { upstream: backend.upstream, ...(backend.resolver ? { upstreamResolver: backend.resolver } : {}) }),
    // Inside the container; the host side is the published port's bind address. Same port
    // numbers on both sides, so the HTTP -> HTTPS redirect names the port clients use.
    listen: { address: "0.0.0.0", http: ports.http, ...(ports.https !== undefined ? { https: ports.https } : {}) },
    tls: ports.https !== undefined,
    // Every address inside the container; the host publishes it on loopback only.
    ...(ports.metrics !== undefined ? { metrics: { listen: { address: "0.0.0.0", port: ports.metrics } } } : {}),
    accessLog: "/dev/stdout",
    errorLog: "/dev/stderr",
  };
}

/**
 * Derives and validates the proxy's settings; never throws on bad input. The issues (spec paths,
 * the loopback rule's first) let config/ name its own keys.
 */
export function parseProxySettings(
  settings: ProxySettings,
  deployment: ProxyDeployment,
): { ok: true; settings: ProxyGatewaySettings } | { ok: false; issues: z.core.$ZodIssue[] } {
  const loopback: z.core.$ZodIssue[] = (settings.network?.deny ?? []).flatMap((block, i) =>
    coversProxyLoopback(block) ? [{ code: "custom", path: ["network", "deny", i], input: undefined, message: `is ${JSON.stringify(block)}, which ${LOOPBACK_DENIED}` }] : [],
  );
  const result = gatewaySettingsSchema.safeParse(proxySettingsInput(settings, deployment), { reportInput: true });
  if (!result.success || loopback.length > 0) return { ok: false, issues: [...loopback, ...(result.success ? [] : result.error.issues)] };
  // The limit is checked as configured, for the whole gateway; a valid limit's share is valid too.
  const rateLimit = perProxyRateLimit(result.data.rateLimit, deployment.replicas ?? 1);
  return { ok: true, settings: { ...result.data, rateLimit } as ProxyGatewaySettings };
}

/** `parseProxySettings`, throwing one `SpecError` that lists every problem. */
export function proxySettingsFor(settings: ProxySettings, deployment: ProxyDeployment): ProxyGatewaySettings {
  const result = parseProxySettings(settings, deployment);
  if (!result.ok) throw new SpecError(formatIssues(result.issues));
  return result.settings;
}

/**
 * A per-caller limit split over `replicas` proxies that do not share state: each enforces
 * `requestsPerSecond / replicas`, so with requests spread evenly the sum is the configured rate.
 * Bursts are floored; N proxies then admit at most `burst + N` at once, where one admits `burst + 1`.
 */
export function perProxyRateLimit(rate: GatewaySettings["rateLimit"], replicas: number): GatewaySettings["rateLimit"] {
  return { requestsPerSecond: rate.requestsPerSecond / replicas, burst: Math.floor(rate.burst / replicas) };
}
