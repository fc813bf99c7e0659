/**
 * Replays what the Pulumi program declares on a real Docker engine. There is no Pulumi CLI here,
 * so the program runs under mocks (harness/pulumi-mocks.ts); this takes every `docker:`
 * resource it declared and creates it through the Docker Engine API (dockerode) with exactly
 * those inputs, the way @pulumi/docker's provider does (uploads as one tar per file extracted at
 * `/`, `wait` for healthy, `attach` until exit, first network at create and the rest connected).
 *
 * A second `apply` with the next evaluation behaves like `pulumi up`: unchanged resources are
 * left alone, changed ones replaced (after deleting the old one first where the program set
 * `deleteBeforeReplace`), gone ones deleted. Every input the program uses is translated; an input
 * it does not know is refused rather than ignored. What has no faithful equivalent here:
 * - images: `RemoteImage` pulls nothing (no registry is reachable): a stand-in local image is
 *   used; `Image` builds with the engine's classic builder, where the provider uses BuildKit;
 * - `gpus`: no GPU on these machines, refused;
 * - `deviceRequests` (`--gpus device=N`, one Ollama per GPU): no GPU and no NVIDIA runtime here, so
 *   the engine would refuse to start the container; they are not passed to it but listed in
 *   `unhonoured` (resource name and the requests as declared) for the test to assert;
 * - resources on another provider (an `ssh://` Docker host): no such host is reachable, refused;
 * - the provider's own diff: here any input change replaces a resource (for containers, networks
 *   and volumes the provider does the same for nearly every input).
 */
import { createHash } from "node:crypto";
import Docker from "dockerode";
import tar from "tar-stream";
import { computed, type RecordedResource, unwrap } from "./pulumi-mocks";
import { buildImage } from "./docker-engine";

export const REPLAY_LABEL = "ollama-gateway.replay";

const TYPES = {
  network: "docker:index/network:Network",
  volume: "docker:index/volume:Volume",
  remoteImage: "docker:index/remoteImage:RemoteImage",
  image: "docker:index/image:Image",
  container: "docker:index/container:Container",
};

/** Inputs translated below; anything else a container declares is refused. */
const CONTAINER_INPUTS = new Set([
  "image", "name", "command", "entrypoints", "envs", "user", "workingDir", "labels", "ports", "volumes", "networksAdvanced", "networkMode",
  "uploads", "healthcheck", "restart", "mustRun", "attach", "logs", "wait", "waitTimeout", "readOnly", "tmpfs", "ulimits", "capabilities",
  "securityOpts", "gpus", "deviceRequests",
]);

interface Applied {
  urn: string;
  type: string;
  name: string;
  key: string;
  /** Docker's name (containers, networks, volumes) or image ID. */
  physical: string;
  generation: number;
}

export interface ReplayPlan {
  created: string[];
  replaced: string[];
  deleted: string[];
  unchanged: string[];
}

export interface ReplayOptions {
  /** Pinned images that cannot be pulled here -> local images that stand in for them. */
  standIns: Record<string, string>;
  /** Progress lines (what is being created, waited for). */
  log?: (line: string) => void;
}

/** Go durations as the provider takes them ("10s", "1m30s", "500ms") -> nanoseconds. */
export function durationNs(text: string): number {
  const units: Record<string, number> = { ns: 1, us: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };
  let total = 0;
  const rest = text.replace(/(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)/g, (_, n: string, unit: string) => {
    total += Number(n) * units[unit];
    return "";
  });
  if (rest !== "" || text === "") throw new Error(`replay: ${JSON.stringify(text)} is not a Go duration`);
  return Math.round(total);
}

export class DockerReplay {
  private readonly state = new Map<string, Applied>();
  /** A value the mocks returned (an image ID, a repoDigest) -> the real one on this engine. */
  private readonly values = new Map<string, string>();
  /** Inputs declared but not given to the engine (see the header): resource name -> what it asked for. */
  readonly unhonoured: { resource: string; input: string; value: unknown }[] = [];
  readonly runId = createHash("sha256").update(`${process.pid}/${Date.now()}`).digest("hex").slice(0, 8);

  constructor(
    readonly docker: Docker,
    private readonly options: ReplayOptions,
  ) {}

  private log(line: string): void {
    this.options.log?.(line);
  }

  /** Creates, replaces and deletes so that the engine holds what `resources` declares. */
  async apply(resources: RecordedResource[]): Promise<ReplayPlan> {
    const declared = resources.filter((r) => r.type.startsWith("docker:"));
    const plan: ReplayPlan = { created: [], replaced: [], deleted: [], unchanged: [] };
    const deleteLater: Applied[] = [];
    for (const resource of declared) {
      const key = JSON.stringify(unwrap(resource.inputs));
      const previous = this.state.get(resource.urn);
      if (previous && previous.key === key) {
        plan.unchanged.push(resource.name);
        // An image is rebuilt from its context each run, as the provider does, to map its ID.
        if (resource.type === TYPES.image || resource.type === TYPES.remoteImage) await this.create(resource, key, previous.generation);
        continue;
      }
      if (previous) {
        plan.replaced.push(resource.name);
        if (resource.deleteBeforeReplace) await this.remove(previous);
        else deleteLater.push(previous);
      } else {
        plan.created.push(resource.name);
      }
      this.state.set(resource.urn, await this.create(resource, key, (previous?.generation ?? 0) + 1));
    }
    const urns = new Set(declared.map((r) => r.urn));
    for (const [urn, applied] of this.state)
      if (!urns.has(urn)) {
        plan.deleted.push(applied.name);
        deleteLater.push(applied);
        this.state.delete(urn);
      }
    // Containers before the volumes and networks they use.
    const order = [TYPES.container, TYPES.volume, TYPES.network, TYPES.image, TYPES.remoteImage];
    for (const applied of deleteLater.sort((a, b) => order.indexOf(a.type) - order.indexOf(b.type))) await this.remove(applied);
    return plan;
  }

  /**
   * Deletes everything this replay created, by its label, including what a failed `apply` left
   * half made (images stay, as with `keepLocally`).
   */
  async destroy(): Promise<void> {
    const filters = { label: [`${REPLAY_LABEL}=${this.runId}`] };
    const remove = (type: string, physical: string) => this.remove({ urn: "", type, name: physical, key: "", physical, generation: 0 });
    for (const c of await this.docker.listContainers({ all: true, filters })) await remove(TYPES.container, c.Id);
    for (const v of (await this.docker.listVolumes({ filters })).Volumes ?? []) await remove(TYPES.volume, v.Name);
    for (const n of await this.docker.listNetworks({ filters })) await remove(TYPES.network, n.Id);
    this.state.clear();
  }

  /** Docker's name for the container a resource is now. */
  containerName(resourceName: string): string {
    const applied = [...this.state.values()].find((a) => a.type === TYPES.container && a.name === resourceName);
    if (!applied) throw new Error(`replay: no container for ${resourceName}`);
    return applied.physical;
  }

  inspect(resourceName: string): Promise<Docker.ContainerInspectInfo> {
    return this.docker.getContainer(this.containerName(resourceName)).inspect();
  }

  async logs(resourceName: string): Promise<string> {
    return containerLogs(this.docker.getContainer(this.containerName(resourceName)));
  }

  private physicalName(resource: RecordedResource, generation: number): string {
    const name = (unwrap(resource.inputs).name as string | undefined) ?? (computed(resource.type, resource.name, resource.inputs).name as string);
    // Pulumi auto-names a replacement afresh; a suffix does the same here.
    return generation > 1 ? `${name}-r${generation}` : name;
  }

  private async create(resource: RecordedResource, key: string, generation: number): Promise<Applied> {
    const inputs = unwrap(resource.inputs) as Record<string, any>;
    if (resource.provider !== "")
      throw new Error(`replay: ${resource.name} is on provider ${resource.provider} (another Docker host, over SSH); only this engine is reachable here`);
    const applied = { urn: resource.urn, type: resource.type, name: resource.name, key, generation };
    const labels = { [REPLAY_LABEL]: this.runId };
    switch (resource.type) {
      case TYPES.network: {
        const physical = this.physicalName(resource, generation);
        refuseUnknown(resource, inputs, ["name", "driver", "internal"]);
        this.log(`network ${physical}${inputs.internal ? " (internal)" : ""}`);
        await this.docker.createNetwork({ Name: physical, Driver: inputs.driver ?? "bridge", Internal: inputs.internal ?? false, CheckDuplicate: true, Labels: labels });
        return { ...applied, physical };
      }
      case TYPES.volume: {
        const physical = this.physicalName(resource, generation);
        refuseUnknown(resource, inputs, ["name"]);
        this.log(`volume ${physical}`);
        await this.docker.createVolume({ Name: physical, Labels: labels });
        return { ...applied, physical };
      }
      case TYPES.remoteImage: {
        refuseUnknown(resource, inputs, ["name", "keepLocally"]);
        const standIn = this.options.standIns[inputs.name];
        if (!standIn) throw new Error(`replay: ${resource.name} pulls ${inputs.name}; no registry is reachable here and no stand-in image was given for it`);
        const id = (await this.docker.getImage(standIn).inspect()).Id;
        this.values.set(computed(resource.type, resource.name, resource.inputs).imageId as string, id);
        return { ...applied, physical: id };
      }
      case TYPES.image: {
        refuseUnknown(resource, inputs, ["imageName", "build", "skipPush", "buildOnPreview"]);
        refuseUnknown(resource, inputs.build, ["context", "dockerfile"], "build.");
        if (inputs.skipPush !== true) throw new Error(`replay: ${resource.name} would push ${inputs.imageName}; no registry is reachable here`);
        const context: string = inputs.build.context;
        const dockerfile = inputs.build.dockerfile ? (inputs.build.dockerfile as string).replace(`${context}/`, "") : "Dockerfile";
        this.log(`build ${inputs.imageName} from ${context}`);
        const id = await buildImage(this.docker, context, inputs.imageName, dockerfile);
        this.values.set(computed(resource.type, resource.name, resource.inputs).repoDigest as string, id);
        return { ...applied, physical: id };
      }
      case TYPES.container:
        return { ...applied, physical: await this.createContainer(resource, inputs, generation, labels) };
      default:
        throw new Error(`replay: ${resource.type} (${resource.name}) is not a Docker resource this replay knows`);
    }
  }

  private async createContainer(resource: RecordedResource, inputs: Record<string, any>, generation: number, replayLabels: Record<string, string>): Promise<string> {
    refuseUnknown(resource, inputs, [...CONTAINER_INPUTS]);
    if (inputs.gpus !== undefined) throw new Error(`replay: ${resource.name} asks for gpus=${inputs.gpus}; these machines have no GPU (only a real \`pulumi up\` on a GPU host proves it)`);
    if (inputs.deviceRequests !== undefined) {
      this.unhonoured.push({ resource: resource.name, input: "deviceRequests", value: inputs.deviceRequests });
      this.log(`container ${resource.name}: deviceRequests ${JSON.stringify(inputs.deviceRequests)} not honoured (no GPU here)`);
    }
    const physical = this.physicalName(resource, generation);
    const image = this.values.get(inputs.image) ?? inputs.image;
    const networks: { name: string; aliases?: string[] }[] = inputs.networksAdvanced ?? [];
    const ports: { internal: number; external: number; ip?: string; protocol?: string }[] = inputs.ports ?? [];
    const volumes: { volumeName?: string; containerPath: string; readOnly?: boolean }[] = inputs.volumes ?? [];
    const portKey = (p: (typeof ports)[number]) => `${p.internal}/${p.protocol ?? "tcp"}`;
    const health = inputs.healthcheck;
    this.log(`container ${physical}`);
    const container = await this.docker.createContainer({
      name: physical,
      Image: image,
      Cmd: inputs.command,
      Entrypoint: inputs.entrypoints,
      Env: inputs.envs,
      User: inputs.user,
      WorkingDir: inputs.workingDir,
      Labels: { ...Object.fromEntries((inputs.labels ?? []).map((l: { label: string; value: string }) => [l.label, l.value])), ...replayLabels },
      ExposedPorts: Object.fromEntries(ports.map((p) => [portKey(p), {}])),
      Volumes: Object.fromEntries(volumes.filter((v) => !v.volumeName).map((v) => [v.containerPath, {}])),
      Healthcheck: health
        ? {
            Test: health.tests,
            Interval: durationNs(health.interval ?? "0s"),
            Timeout: durationNs(health.timeout ?? "0s"),
            Retries: health.retries ?? 0,
            StartPeriod: durationNs(health.startPeriod ?? "0s"),
          }
        : undefined,
      HostConfig: {
        PortBindings: Object.fromEntries(ports.map((p) => [portKey(p), [{ HostIp: p.ip ?? "0.0.0.0", HostPort: String(p.external) }]])),
        Binds: volumes.filter((v) => v.volumeName).map((v) => `${v.volumeName}:${v.containerPath}${v.readOnly ? ":ro" : ""}`),
        Tmpfs: inputs.tmpfs,
        ReadonlyRootfs: inputs.readOnly ?? false,
        Ulimits: (inputs.ulimits ?? []).map((u: { name: string; soft: number; hard: number }) => ({ Name: u.name, Soft: u.soft, Hard: u.hard })),
        CapAdd: inputs.capabilities?.adds,
        CapDrop: inputs.capabilities?.drops,
        SecurityOpt: inputs.securityOpts,
        RestartPolicy: { Name: inputs.restart ?? "no" },
        NetworkMode: networks[0]?.name ?? inputs.networkMode ?? "default",
      },
      NetworkingConfig: networks[0] ? { EndpointsConfig: { [networks[0].name]: { Aliases: networks[0].aliases } } } : undefined,
    });
    for (const network of networks.slice(1))
      await this.docker.getNetwork(network.name).connect({ Container: container.id, EndpointConfig: { Aliases: network.aliases } });
    // As the provider does: one tar per file, the file's whole path as the entry name, extracted
    // at "/" (so Docker refuses it on a read-only root filesystem, as it would for the provider).
    for (const upload of inputs.uploads ?? []) {
      const pack = tar.pack();
      pack.entry({ name: upload.file, mode: upload.executable ? 0o744 : 0o644 }, upload.content);
      pack.finalize();
      await container.putArchive(pack as unknown as NodeJS.ReadableStream, { path: "/" });
    }
    await container.start();
    if (inputs.attach) {
      // The provider waits for the container to exit and fails on a non-zero status.
      const result = (await container.wait()) as { StatusCode: number };
      if (result.StatusCode !== 0) throw new Error(`replay: ${resource.name} exited with ${result.StatusCode}:\n${await containerLogs(container)}`);
    }
    if (inputs.wait) await this.waitHealthy(resource.name, container, (inputs.waitTimeout ?? 60) * 1000);
    return physical;
  }

  /** `wait`: healthy within `waitTimeout`, or an error with the health log and the container's output; never a hang. */
  private async waitHealthy(name: string, container: Docker.Container, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const state = (await container.inspect()).State;
      if (state.Health?.Status === "healthy") return;
      const probes = (state.Health?.Log ?? []).slice(-3).map((p) => `  exit ${p.ExitCode}: ${p.Output.trim()}`).join("\n");
      if (!state.Running || Date.now() > deadline)
        throw new Error(
          `replay: ${name} ${state.Running ? `is not healthy after ${timeoutMs / 1000} s (waitTimeout)` : `exited with ${state.ExitCode}`}; last health checks:\n${probes || "  none"}\noutput:\n${await containerLogs(container)}`,
        );
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  private async remove(applied: Applied): Promise<void> {
    try {
      if (applied.type === TYPES.container) {
        const container = this.docker.getContainer(applied.physical);
        // nginx's graceful stop is SIGQUIT (the image's STOPSIGNAL); streams in flight finish first.
        await container.stop({ t: 10 }).catch(() => undefined);
        await container.remove({ v: true, force: true });
      } else if (applied.type === TYPES.volume) await this.docker.getVolume(applied.physical).remove();
      else if (applied.type === TYPES.network) await this.docker.getNetwork(applied.physical).remove();
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode !== 404) throw error;
    }
  }
}

function refuseUnknown(resource: RecordedResource, inputs: Record<string, unknown>, known: string[], prefix = ""): void {
  const unknown = Object.keys(inputs).filter((k) => inputs[k] !== undefined && !known.includes(k));
  if (unknown.length > 0)
    throw new Error(`replay: ${resource.name} sets ${unknown.map((k) => `\`${prefix}${k}\``).join(", ")}, which this replay does not translate; add it to harness/docker-replay.ts`);
}

export async function containerLogs(container: Docker.Container): Promise<string> {
  return demux((await container.logs({ stdout: true, stderr: true, tail: 40 })) as unknown as Buffer);
}

/** stdout and stderr of a non-TTY container, as text: Docker frames each chunk with an 8-byte header. */
export function demux(buffer: Buffer): string {
  let out = "";
  for (let i = 0; i + 8 <= buffer.length; ) {
    const size = buffer.readUInt32BE(i + 4);
    out += buffer.subarray(i + 8, i + 8 + size).toString("utf8");
    i += 8 + size;
  }
  return out;
}
