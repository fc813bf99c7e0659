import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { DEPLOYMENT_DEFAULTS, endpointDefaults } from "../bundle/defaults";
import { AuthProxy } from "./AuthProxy";
import type { ApiKeyArgs, BasicUserArgs } from "./Credentials";
import { gatewayAccess, type GatewayCommonArgs, GatewayComponent, type GatewayTlsArgs } from "./gatewayAccess";
import { OllamaServer, type OllamaServerArgs } from "./OllamaServer";

export { type GatewayCommonArgs, type GatewayJwtArgs, type GatewayTlsArgs, type JwtIssuerSettings } from "./gatewayAccess";

export interface OllamaGatewayArgs extends GatewayCommonArgs {
  /** Host address the proxy's ports are published on. Default `127.0.0.1` (this host only). */
  bindAddress?: string;
  /** Ollama settings and models to pull. */
  ollama?: Omit<OllamaServerArgs, "network">;
  /**
   * A pinned proxy image built from image/proxy/Dockerfile (pushed to your registry). Default:
   * build that Dockerfile on the target Docker host.
   */
  proxyImage?: string;
  /**
   * Make the private network `internal` (no route out). Ollama can then pull no model, so
   * `ollama.models` must be empty. Default `false`: Ollama can reach the registry, but no
   * host port leads to it either way.
   */
  internalNetwork?: boolean;
}

const DEFAULTS = {
  ...endpointDefaults(),
  tls: { mode: "selfSigned" } as GatewayTlsArgs,
  apiKeys: [] as ApiKeyArgs[],
  basicUsers: [] as BasicUserArgs[],
  internalNetwork: DEPLOYMENT_DEFAULTS.internalNetwork as boolean,
};

/**
 * Ollama behind an authenticating nginx proxy, on one Docker host.
 *
 * Two networks: a private one with Ollama (no published port), and an edge one on which the
 * proxy publishes its ports. The proxy is the only container on both.
 */
export class OllamaGateway extends GatewayComponent {
  constructor(name: string, args: OllamaGatewayArgs = {}, opts?: pulumi.ComponentResourceOptions) {
    super("ollama-gateway:index:OllamaGateway", name, {}, opts);
    const a = { ...DEFAULTS, ...args };
    if (a.internalNetwork && (a.ollama?.models?.length ?? 0) > 0)
      throw new pulumi.ResourceError("`ollama.models` is not empty but `internalNetwork` is true; an internal network cannot pull models.", this);

    const privateNetwork = new docker.Network(`${name}-private`, { driver: "bridge", internal: a.internalNetwork }, { parent: this });
    const edgeNetwork = new docker.Network(`${name}-edge`, { driver: "bridge" }, { parent: this });

    const ollama = new OllamaServer(`${name}-ollama`, { ...a.ollama, network: privateNetwork.name }, { parent: this });

    const access = gatewayAccess(this, name, a);
    const { certificates, credentials, jwt } = access;

    new AuthProxy(
      `${name}-proxy`,
      {
        settings: {
          ...a.proxy,
          serverName: a.hostname,
          ...(jwt ? { jwt } : {}),
          ...(a.externalAuth ? { externalAuth: a.externalAuth } : {}),
          network: { allow: [], deny: [], trustedProxies: [], ...a.network },
        },
        credentials: credentials.specCredentials,
        tls: certificates ? { certPem: certificates.certPem, keyPem: certificates.keyPem } : undefined,
        edgeNetwork: edgeNetwork.name,
        privateNetwork: privateNetwork.name,
        bindAddress: a.bindAddress,
        httpPort: a.httpPort,
        httpsPort: a.httpsPort,
        ...(a.proxyImage !== undefined ? { image: a.proxyImage } : {}),
        dependsOn: [ollama],
      },
      { parent: this },
    );

    this.exportOutputs(certificates ? `https://${a.hostname}:${a.httpsPort}` : `http://${a.hostname}:${a.httpPort}`, access);
  }
}
