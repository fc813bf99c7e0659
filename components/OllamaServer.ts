import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { OLLAMA_PORT as PORT, ollamaUrlAt } from "../bundle/backends";
import { DEPLOYMENT_DEFAULTS } from "../bundle/defaults";
import { pullResourceSuffix } from "../bundle/models";

/** The alias under which the proxy (and the model pullers) reach Ollama on the private network. */
export const OLLAMA_ALIAS = "ollama";
export const OLLAMA_PORT = PORT;

export interface OllamaServerArgs {
  /** Name of the private Docker network. The server joins only this network and publishes no port unless `publish` says so. */
  network: pulumi.Input<string>;
  /** Its name on `network` (the proxy's and the pullers' way to it). Default `ollama`; unique per network. */
  alias?: string;
  /**
   * These GPUs only (`--gpus device=0,1`: indexes or UUIDs as `nvidia-smi -L` lists them), for
   * one server per GPU. Default: as `gpu` says. Not together with `gpu`.
   */
  gpuDevices?: string[];
  /** Publish Ollama's port on this host address only (a remote host's private address); never 0.0.0.0. Default: no port. */
  publish?: { address: string; port?: number };
  /** The Docker host (a provider with an `ssh://` host). Default: the program's default provider. */
  provider?: docker.Provider;
  /** Pinned image. Default `ollama/ollama:0.12.6`. */
  image?: string;
  /** Models to pull once the server is healthy, such as `gemma3:1b`. Default none. */
  models?: string[];
  /** Give the container every GPU (`--gpus all`; needs the NVIDIA container toolkit). Default `false`. */
  gpu?: boolean;
  /** `OLLAMA_KEEP_ALIVE`: how long a model stays loaded after a request. Default `5m`. */
  keepAlive?: string;
  /** `OLLAMA_NUM_PARALLEL`: parallel requests per model. Default: Ollama's own choice. */
  numParallel?: number;
  /** `OLLAMA_MAX_LOADED_MODELS`. Default: Ollama's own choice. */
  maxLoadedModels?: number;
  /** `OLLAMA_MAX_QUEUE`: queued requests before Ollama answers 503. Default: Ollama's own (512). */
  maxQueue?: number;
  /** Allow Ollama's cloud models and ollama.com account features. Default `false`. */
  cloud?: boolean;
}

const DEFAULTS = { image: DEPLOYMENT_DEFAULTS.ollamaImage as string, models: [] as string[], gpu: DEPLOYMENT_DEFAULTS.gpu as boolean, keepAlive: DEPLOYMENT_DEFAULTS.ollamaKeepAlive as string, cloud: false };

/**
 * Ollama in a container on a private network, with its model store on a volume. No host
 * port: the only way in is the authenticating proxy.
 */
export class OllamaServer extends pulumi.ComponentResource {
  /** Base URL on the private network, `http://ollama:11434`. */
  public readonly internalUrl: pulumi.Output<string>;
  /** Where the proxy reaches it: the published address (`http://10.0.0.11:11434`), else `internalUrl`. */
  public readonly url: string;
  public readonly container: docker.Container;

  constructor(name: string, args: OllamaServerArgs, opts?: pulumi.ComponentResourceOptions) {
    super("ollama-gateway:index:OllamaServer", name, {}, opts);
    const a = { ...DEFAULTS, alias: OLLAMA_ALIAS, ...args };
    if (a.gpu && a.gpuDevices) throw new pulumi.ResourceError("`gpu` and `gpuDevices` are both set; give every GPU (`gpu`) or a list (`gpuDevices`), not both.", this);
    if (a.publish && /^(0\.0\.0\.0|::)$/.test(a.publish.address))
      throw new pulumi.ResourceError(`\`publish.address\` is ${a.publish.address}, every interface; use the host's private address.`, this);
    // Every Docker resource on the server's own host.
    const on = { parent: this, ...(a.provider ? { provider: a.provider } : {}) };

    const image = new docker.RemoteImage(`${name}-image`, { name: a.image, keepLocally: true }, on);
    // Its own model store: Ollama does not lock its store across processes, so two servers
    // pulling into one volume race (docs/backends.md).
    const models = new docker.Volume(`${name}-models`, {}, on);

    const envs = [
      `OLLAMA_KEEP_ALIVE=${a.keepAlive}`,
      ...(a.numParallel !== undefined ? [`OLLAMA_NUM_PARALLEL=${a.numParallel}`] : []),
      ...(a.maxLoadedModels !== undefined ? [`OLLAMA_MAX_LOADED_MODELS=${a.maxLoadedModels}`] : []),
      ...(a.maxQueue !== undefined ? [`OLLAMA_MAX_QUEUE=${a.maxQueue}`] : []),
      // Cloud models and account features act with the server's ollama.com identity, not the
      // caller's. Releases that honour OLLAMA_NO_CLOUD turn them off here; the proxy blocks
      // their routes for everyone either way (bundle/routes.ts).
      ...(a.cloud ? [] : ["OLLAMA_NO_CLOUD=1"]),
    ];

    this.container = new docker.Container(
      `${name}-server`,
      {
        image: image.imageId,
        envs,
        // Only the private network (the provider detaches the default bridge when
        // networksAdvanced is set), and no `ports`: nothing on the host reaches Ollama directly.
        networksAdvanced: [{ name: args.network, aliases: [a.alias] }],
        volumes: [{ volumeName: models.name, containerPath: "/root/.ollama" }],
        ...(a.gpu ? { gpus: "all" } : {}),
        // `--gpus device=...`: the NVIDIA runtime gives the container these GPUs only.
        ...(a.gpuDevices ? { deviceRequests: [{ driver: "nvidia", deviceIds: a.gpuDevices, capabilities: ["gpu"] }] } : {}),
        // Bound to one address: on a remote host, only its private network reaches Ollama.
        ...(a.publish ? { ports: [{ internal: OLLAMA_PORT, external: a.publish.port ?? OLLAMA_PORT, ip: a.publish.address }] } : {}),
        restart: "unless-stopped",
        // The image has no curl; `ollama list` asks the local server and fails until it answers.
        healthcheck: { tests: ["CMD", "ollama", "list"], interval: "10s", timeout: "5s", retries: 3, startPeriod: "10s" },
        wait: true,
        waitTimeout: 120,
      },
      // Two servers must never share one model store, even for a moment.
      { ...on, deleteBeforeReplace: true },
    );

    // One short-lived client per model: `ollama pull` against the server over the network.
    // The download lands in the server's volume; `attach` makes the deployment wait for it
    // and fail if the pull fails.
    for (const model of a.models) {
      new docker.Container(
        `${name}-pull-${pullResourceSuffix(model)}`,
        {
          image: image.imageId,
          command: ["pull", model],
          envs: [`OLLAMA_HOST=http://${a.alias}:${OLLAMA_PORT}`],
          networksAdvanced: [{ name: args.network }],
          mustRun: false,
          restart: "no",
          attach: true,
        },
        { ...on, dependsOn: [this.container], customTimeouts: { create: "60m" } },
      );
    }

    this.internalUrl = pulumi.output(`http://${a.alias}:${OLLAMA_PORT}`);
    this.url = a.publish ? ollamaUrlAt(a.publish.address, a.publish.port) : `http://${a.alias}:${OLLAMA_PORT}`;
    this.registerOutputs({ internalUrl: this.internalUrl, url: this.url });
  }
}
