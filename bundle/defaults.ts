/**
 * Deployment defaults, in one place: the stack config (config/keys.ts, which Pulumi.yaml and
 * docs/configuration.md are held to) and the components (for programs that use them directly)
 * both start from these. The proxy spec's own defaults are in its schema (bundle/spec.ts).
 */
export const DEPLOYMENT_DEFAULTS = {
  hostname: "localhost",
  dnsNames: [] as string[],
  ipAddresses: ["127.0.0.1"],
  /** Loopback: nothing beyond this host reaches the proxy until you choose to publish it. */
  bindAddress: "127.0.0.1",
  httpPort: 8080,
  httpsPort: 8443,
  internalNetwork: false,
  /** Pinned: a second `pulumi up` must not pull a different Ollama. */
  ollamaImage: "ollama/ollama:0.12.6",
  ollamaKeepAlive: "5m",
  gpu: false,
  models: [] as string[],
} as const;

/** Where clients reach the gateway, as fresh (mutable) values for a defaults object. */
export function endpointDefaults() {
  const d = DEPLOYMENT_DEFAULTS;
  return {
    hostname: d.hostname as string,
    dnsNames: [...d.dnsNames] as string[],
    ipAddresses: [...d.ipAddresses] as string[],
    bindAddress: d.bindAddress as string,
    httpPort: d.httpPort as number,
    httpsPort: d.httpsPort as number,
  };
}
