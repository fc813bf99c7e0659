export * from "./AuthProxy";
export * from "./Certificates";
export * from "./Credentials";
export * from "./OllamaGateway";
export * from "./OllamaServer";
export * from "./KubernetesGateway";
