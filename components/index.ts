export * from "./AuthProxy";
export * from "./Certificates";
export * from "./Credentials";
export * from "./OllamaGateway";
export * from "./OllamaServer";
export * from "./KubernetesGateway";
// Settings for the components' `settings` arg (bundle/proxySettings.ts), for programs that use them directly.
export { perProxyRateLimit, type ProxyBackend, type ProxyDeployment, type ProxyGatewaySettings, type ProxyPorts, type ProxySettings, proxySettingsFor } from "../bundle/proxySettings";
export { dockerProxyBackend, kubernetesProxyBackend } from "../bundle/backends";
