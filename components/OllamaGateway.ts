import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { dockerBackendList, dockerProxyBackend, gpuBackendName, localBackendAlias } from "../bundle/backends";
import { DEPLOYMENT_DEFAULTS, endpointDefaults } from "../bundle/defaults";
import { AuthProxy, proxySettingsOn } from "./AuthProxy";
import type { ApiKeyArgs, BasicUserArgs } from "./Credentials";
import { callerProxySettings, gatewayAccess, type GatewayCommonArgs, GatewayComponent, type GatewayTlsArgs } from "./gatewayAccess";
import { OllamaServer, type OllamaServerArgs } from "./OllamaServer";

export { type GatewayCommonArgs, type GatewayJwtArgs, type GatewayTlsArgs, type JwtIssuerSettings } from "./gatewayAccess";

export interface OllamaGatewayArgs extends GatewayCommonArgs {
  /** Host address the proxy's ports are published on. Default `127.0.0.1` (this host only). */
  bindAddress?: string;
  /** Prometheus metrics on the host's 127.0.0.1 at this port (docs/governance.md). Default: off. */
  metricsPort?: number;
  /** Ollama settings and models to pull, for every server this component creates. */
  ollama?: Omit<OllamaServerArgs, "network" | "alias" | "gpuDevices" | "publish" | "provider">;
  /**
   * Which Ollama servers the proxy spreads requests over (docs/backends.md). Default: one
   * container on this host, as `ollama.gpu` says. Two or more make the proxy a pool
   * (model-aware routing, health, failover).
   */
  backends?: OllamaBackends;
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

export interface OllamaBackends {
  /** Ollama on this Docker host. Default `true`. */
  local?: boolean;
  /** One local container per group, given those GPUs only (`ollama-gpu0`, ...); no GPU in two groups. Default: one container. */
  gpuDevices?: string[][];
  /**
   * Ollama on other Docker hosts, one container each through a Docker provider over SSH (keys
   * from your SSH agent), published on `privateAddress` only; the proxy reaches it there through
   * the edge network's route out. `ollama.gpu` gives it every GPU of its host.
   */
  remoteHosts?: { name: string; sshUrl: string; privateAddress: string }[];
  /** Existing Ollama servers, served as they are (nothing pulled on them). */
  urls?: { name: string; url: string }[];
  /** Backend name -> requests in progress at once; beyond it another backend with the model, or 503. Default: no limit. */
  maxConcurrent?: Record<string, number>;
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

    const given = a.backends ?? {};
    const b = { local: given.local ?? true, gpuDevices: given.gpuDevices ?? [], remoteHosts: given.remoteHosts ?? [], urls: given.urls ?? [], maxConcurrent: given.maxConcurrent ?? {} };
    const names = dockerBackendList(b).map((backend) => backend.name);
    // Before any server exists (the proxy's spec would refuse it only after they were declared).
    const twice = names.filter((n, i) => names.indexOf(n) !== i);
    if (twice.length > 0) throw new pulumi.ResourceError(`\`backends\` names ${twice.map((n) => `\`${n}\``).join(", ")} more than once; give every backend its own name.`, this);
    if (names.length === 0) throw new pulumi.ResourceError("`backends` has no server: `local` is false and neither `remoteHosts` nor `urls` lists one.", this);
    const unknown = Object.keys(b.maxConcurrent).filter((n) => !names.includes(n));
    if (unknown.length > 0) throw new pulumi.ResourceError(`\`backends.maxConcurrent\` names ${unknown.map((n) => `\`${n}\``).join(", ")}, which no backend is; use ${names.map((n) => `\`${n}\``).join(", ")}.`, this);

    const access = gatewayAccess(this, name, a);
    const { certificates, credentials, jwt } = access;
    const httpsPort = certificates ? a.httpsPort : undefined;
    const settings =
      args.settings ??
      proxySettingsOn(this, callerProxySettings(a, jwt), { ports: { http: a.httpPort, https: httpsPort, metrics: a.metricsPort }, backend: dockerProxyBackend(b) });

    // The servers, each at the URL the settings' backends name (bundle/backends.ts).
    const servers: OllamaServer[] = [];
    if (b.local && b.gpuDevices.length === 0) servers.push(new OllamaServer(`${name}-ollama`, { ...a.ollama, network: privateNetwork.name }, { parent: this }));
    if (b.local)
      b.gpuDevices.forEach((devices, i) => {
        const backend = gpuBackendName(i);
        servers.push(
          new OllamaServer(
            `${name}-ollama-${backend}`,
            { ...a.ollama, gpu: false, gpuDevices: devices, alias: localBackendAlias(backend), network: privateNetwork.name },
            { parent: this },
          ),
        );
      });
    for (const host of b.remoteHosts) {
      // BatchMode: a host whose key is not in the agent fails at once instead of prompting.
      const provider = new docker.Provider(`${name}-host-${host.name}`, { host: host.sshUrl, sshOpts: ["-o", "BatchMode=yes"] }, { parent: this });
      // Not internal: Docker publishes no port from an internal network.
      const network = new docker.Network(`${name}-host-${host.name}-network`, { driver: "bridge" }, { parent: this, provider });
      servers.push(new OllamaServer(`${name}-ollama-${host.name}`, { ...a.ollama, network: network.name, publish: { address: host.privateAddress }, provider }, { parent: this }));
    }

    new AuthProxy(
      `${name}-proxy`,
      {
        settings,
        credentials: credentials.specCredentials,
        tls: certificates ? { certPem: certificates.certPem, keyPem: certificates.keyPem } : undefined,
        edgeNetwork: edgeNetwork.name,
        privateNetwork: privateNetwork.name,
        bindAddress: a.bindAddress,
        ...(a.proxyImage !== undefined ? { image: a.proxyImage } : {}),
        dependsOn: servers,
      },
      { parent: this },
    );

    this.exportOutputs(certificates ? `https://${a.hostname}:${a.httpsPort}` : `http://${a.hostname}:${a.httpPort}`, access);
  }
}
