import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { DEPLOYMENT_DEFAULTS } from "../bundle/defaults";
import { pullResourceSuffix } from "../bundle/models";

/** The alias under which the proxy (and the model pullers) reach Ollama on the private network. */
export const OLLAMA_ALIAS = "ollama";
export const OLLAMA_PORT = 11434;

export interface OllamaServerArgs {
  /** Name of the private Docker network. The server joins only this network and publishes no port. */
  network: pulumi.Input<string>;
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
  /** `OLLAMA_ORIGINS`. Default unset: browsers talk to the proxy, which handles CORS. */
  origins?: string[];
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
  public readonly container: docker.Container;

  constructor(name: string, args: OllamaServerArgs, opts?: pulumi.ComponentResourceOptions) {
    super("ollama-gateway:index:OllamaServer", name, {}, opts);
    const a = { ...DEFAULTS, ...args };

    const image = new docker.RemoteImage(`${name}-image`, { name: a.image, keepLocally: true }, { parent: this });
    const models = new docker.Volume(`${name}-models`, {}, { parent: this });

    const envs = [
      `OLLAMA_KEEP_ALIVE=${a.keepAlive}`,
      ...(a.numParallel !== undefined ? [`OLLAMA_NUM_PARALLEL=${a.numParallel}`] : []),
      ...(a.maxLoadedModels !== undefined ? [`OLLAMA_MAX_LOADED_MODELS=${a.maxLoadedModels}`] : []),
      ...(a.maxQueue !== undefined ? [`OLLAMA_MAX_QUEUE=${a.maxQueue}`] : []),
      ...(a.origins && a.origins.length > 0 ? [`OLLAMA_ORIGINS=${a.origins.join(",")}`] : []),
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
        networksAdvanced: [{ name: args.network, aliases: [OLLAMA_ALIAS] }],
        volumes: [{ volumeName: models.name, containerPath: "/root/.ollama" }],
        ...(a.gpu ? { gpus: "all" } : {}),
        restart: "unless-stopped",
        // The image has no curl; `ollama list` asks the local server and fails until it answers.
        healthcheck: { tests: ["CMD", "ollama", "list"], interval: "10s", timeout: "5s", retries: 3, startPeriod: "10s" },
        wait: true,
        waitTimeout: 120,
      },
      // Two servers must never share one model store, even for a moment.
      { parent: this, deleteBeforeReplace: true },
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
          envs: [`OLLAMA_HOST=http://${OLLAMA_ALIAS}:${OLLAMA_PORT}`],
          networksAdvanced: [{ name: args.network }],
          mustRun: false,
          restart: "no",
          attach: true,
        },
        { parent: this, dependsOn: [this.container], customTimeouts: { create: "60m" } },
      );
    }

    this.internalUrl = pulumi.output(`http://${OLLAMA_ALIAS}:${OLLAMA_PORT}`);
    this.registerOutputs({ internalUrl: this.internalUrl });
  }
}
