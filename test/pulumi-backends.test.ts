/**
 * The Docker target's Ollama backends (docs/backends.md) under mocks: one container per GPU
 * group, Ollama on other Docker hosts over SSH, existing servers by URL. What each form declares
 * (containers, GPU device requests, providers, published addresses, model pulls) and the pool the
 * proxy is given (spec `upstreams`). SSH hosts cannot be reached here: this is all the proof they
 * get; the local GPU form is also replayed on a real engine (test/containers.test.ts).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { DEBIAN_USAGE_MODULE, renderConfigFiles } from "../bundle/render";
import { validateSettings } from "../bundle/spec";
import { CONFIG_DEFAULTS, parseStackConfig } from "../config/stackConfig";
import {
  configUploads,
  devStackConfig,
  evaluateProgram,
  expectProgramRefuses,
  findResource,
  installMocks,
  type RecordedResource,
  resourcesOfType,
  TYPES,
} from "../harness/pulumi-mocks";

installMocks();

const MODELS = ["gemma3:1b", "qwen3:0.6b"];
const DOCKER_PROVIDER = "pulumi:providers:docker";
const SERVER = "ollama-gateway:index:OllamaServer";

/** The dev stack's proxy settings with a pool instead of the single `ollama`. */
const devSpecWith = (upstreams: { name: string; url: string; maxConcurrent?: number }[]) =>
  validateSettings({
    upstreams,
    listen: { address: "0.0.0.0", http: 8080, https: 8443 },
    serverName: "localhost",
    tls: true,
    accessLog: "/dev/stdout",
    errorLog: "/dev/stderr",
    // The stacks' default metrics port (metricsPort), inside the container on every address.
    metrics: { listen: { address: "0.0.0.0", port: CONFIG_DEFAULTS.metricsPort } },
  });

const servers = (resources: RecordedResource[]) => resources.filter((r) => r.type === SERVER).map((r) => r.name);
const pulls = (resources: RecordedResource[]) =>
  resources.filter((r) => r.type === TYPES.container && r.inputs.command?.[0] === "pull").map((r) => `${r.name} ${r.inputs.envs[0]} ${r.inputs.command[1]}`).sort();
/** Every custom resource under a component, at any depth. */
const under = (resources: RecordedResource[], component: string) => {
  const root = resources.find((r) => r.name === component)!;
  const urns = new Set([root.urn]);
  for (let grown = true; grown; ) {
    grown = false;
    for (const r of resources) if (urns.has(r.parent) && !urns.has(r.urn)) (urns.add(r.urn), (grown = true));
  }
  return resources.filter((r) => r.custom && urns.has(r.parent));
};

describe("one Ollama container per GPU group on this host", () => {
  let resources: RecordedResource[];
  beforeAll(async () => {
    ({ resources } = await evaluateProgram({ ...devStackConfig(), models: MODELS, ollamaGpuDevices: ["0", "1,2"] }));
  });

  it("creates one server per group instead of the single one, each given its GPUs only", () => {
    expect(servers(resources)).toEqual(["gateway-ollama-gpu0", "gateway-ollama-gpu1"]);
    const gpu0 = findResource(TYPES.container, "gateway-ollama-gpu0-server");
    const gpu1 = findResource(TYPES.container, "gateway-ollama-gpu1-server");
    expect(gpu0.inputs.deviceRequests).toEqual([{ driver: "nvidia", deviceIds: ["0"], capabilities: ["gpu"] }]);
    expect(gpu1.inputs.deviceRequests).toEqual([{ driver: "nvidia", deviceIds: ["1", "2"], capabilities: ["gpu"] }]);
    for (const c of [gpu0, gpu1]) {
      expect(c.inputs.gpus).toBeUndefined();
      expect(c.inputs.ports).toBeUndefined();
      expect(c.provider).toBe("");
    }
  });

  it("puts them on the private network under their own aliases, each with its own model volume", () => {
    const gpu0 = findResource(TYPES.container, "gateway-ollama-gpu0-server");
    const gpu1 = findResource(TYPES.container, "gateway-ollama-gpu1-server");
    expect(gpu0.inputs.networksAdvanced).toEqual([{ name: expect.stringMatching(/^gateway-private-/), aliases: ["ollama-gpu0"] }]);
    expect(gpu1.inputs.networksAdvanced).toEqual([{ name: gpu0.inputs.networksAdvanced[0].name, aliases: ["ollama-gpu1"] }]);
    const volume = (c: RecordedResource) => c.inputs.volumes[0].volumeName;
    expect(volume(gpu0)).toMatch(/^gateway-ollama-gpu0-models-/);
    expect(volume(gpu1)).toMatch(/^gateway-ollama-gpu1-models-/);
  });

  it("pulls every model on every server, against that server", () => {
    expect(pulls(resources)).toEqual([
      "gateway-ollama-gpu0-pull-gemma3-1b OLLAMA_HOST=http://ollama-gpu0:11434 gemma3:1b",
      "gateway-ollama-gpu0-pull-qwen3-0.6b OLLAMA_HOST=http://ollama-gpu0:11434 qwen3:0.6b",
      "gateway-ollama-gpu1-pull-gemma3-1b OLLAMA_HOST=http://ollama-gpu1:11434 gemma3:1b",
      "gateway-ollama-gpu1-pull-qwen3-0.6b OLLAMA_HOST=http://ollama-gpu1:11434 qwen3:0.6b",
    ]);
  });

  it("gives the proxy the pool of both, by alias", () => {
    const upstreams = [
      { name: "gpu0", url: "http://ollama-gpu0:11434" },
      { name: "gpu1", url: "http://ollama-gpu1:11434" },
    ];
    expect(configUploads()).toEqual(renderConfigFiles(devSpecWith(upstreams), "debian", DEBIAN_USAGE_MODULE));
  });
});

describe("Ollama on other Docker hosts over SSH", () => {
  let resources: RecordedResource[];
  const hosts = ["box1=ssh://deploy@box1.example.com,10.0.0.11", "box2=ssh://deploy@box2.example.com:2222,fd00::12"];
  beforeAll(async () => {
    ({ resources } = await evaluateProgram({ ...devStackConfig(), models: MODELS, ollamaRemoteHosts: hosts }));
  });

  it("declares one Docker provider per host, over SSH, never prompting", () => {
    const providers = resourcesOfType(DOCKER_PROVIDER);
    expect(providers.map((p) => [p.name, p.inputs.host, p.inputs.sshOpts])).toEqual([
      ["gateway-host-box1", "ssh://deploy@box1.example.com", JSON.stringify(["-o", "BatchMode=yes"])],
      ["gateway-host-box2", "ssh://deploy@box2.example.com:2222", JSON.stringify(["-o", "BatchMode=yes"])],
    ]);
  });

  it("creates each host's network, image, volume, server and pulls through that host's provider", () => {
    expect(servers(resources)).toEqual(["gateway-ollama", "gateway-ollama-box1", "gateway-ollama-box2"]);
    for (const host of ["box1", "box2"]) {
      const provider = findResource(DOCKER_PROVIDER, `gateway-host-${host}`);
      const onHost = [...under(resources, `gateway-ollama-${host}`), findResource(TYPES.network, `gateway-host-${host}-network`)];
      expect(onHost.map((r) => r.type).sort()).toEqual([TYPES.container, TYPES.container, TYPES.container, TYPES.image, TYPES.network, TYPES.volume].sort());
      for (const r of onHost) expect(r.provider, r.name).toBe(`${provider.urn}::${provider.name}-id`);
      expect(findResource(TYPES.network, `gateway-host-${host}-network`).inputs.internal).toBeUndefined();
    }
    // The local server and the proxy stay on this host.
    for (const r of [...under(resources, "gateway-ollama"), ...under(resources, "gateway-proxy")]) expect(r.provider, r.name).toBe("");
  });

  it("publishes each remote Ollama on its private address only", () => {
    expect(findResource(TYPES.container, "gateway-ollama-box1-server").inputs.ports).toEqual([{ internal: 11434, external: 11434, ip: "10.0.0.11" }]);
    expect(findResource(TYPES.container, "gateway-ollama-box2-server").inputs.ports).toEqual([{ internal: 11434, external: 11434, ip: "fd00::12" }]);
    const published = resourcesOfType(TYPES.container).flatMap((c) => (c.inputs.ports ?? []).map((p: { ip: string }) => p.ip));
    expect(published).not.toContain("0.0.0.0");
  });

  it("pulls every model on every server, each puller beside its server", () => {
    expect(pulls(resources)).toEqual(
      ["gateway-ollama-box1", "gateway-ollama-box2", "gateway-ollama"].flatMap((s) => [
        `${s}-pull-gemma3-1b OLLAMA_HOST=http://ollama:11434 gemma3:1b`,
        `${s}-pull-qwen3-0.6b OLLAMA_HOST=http://ollama:11434 qwen3:0.6b`,
      ]),
    );
    const box1Net = findResource(TYPES.container, "gateway-ollama-box1-server").inputs.networksAdvanced[0].name;
    expect(findResource(TYPES.container, "gateway-ollama-box1-pull-gemma3-1b").inputs.networksAdvanced).toEqual([{ name: box1Net }]);
  });

  it("gives the proxy the local server and each host at its private address", () => {
    expect(configUploads()).toEqual(
      renderConfigFiles(
        devSpecWith([
          { name: "ollama", url: "http://ollama:11434" },
          { name: "box1", url: "http://10.0.0.11:11434" },
          { name: "box2", url: "http://[fd00::12]:11434" },
        ]),
        "debian",
        DEBIAN_USAGE_MODULE,
      ),
    );
  });
});

describe("existing Ollama servers by URL", () => {
  it("adds them to the pool beside the local server, pulling nothing on them", async () => {
    const { resources } = await evaluateProgram({ ...devStackConfig(), ollamaUrls: ["lab=http://10.0.0.5:11434"] });
    expect(servers(resources)).toEqual(["gateway-ollama"]);
    expect(pulls(resources)).toEqual(["gateway-ollama-pull-gemma3-1b OLLAMA_HOST=http://ollama:11434 gemma3:1b"]);
    expect(configUploads()).toEqual(
      renderConfigFiles(
        devSpecWith([
          { name: "ollama", url: "http://ollama:11434" },
          { name: "lab", url: "http://10.0.0.5:11434" },
        ]),
        "debian",
        DEBIAN_USAGE_MODULE,
      ),
    );
  });

  it("with ollamaLocal false, runs no Ollama here: the proxy serves the URLs alone", async () => {
    const urls = ["lab=http://10.0.0.5:11434", "lab2=http://10.0.0.6:11434"];
    const { resources } = await evaluateProgram({ ...devStackConfig(), models: [], ollamaLocal: false, ollamaUrls: urls });
    expect(servers(resources)).toEqual([]);
    expect(resourcesOfType(TYPES.image)).toEqual([]);
    expect(configUploads()).toEqual(
      renderConfigFiles(
        devSpecWith([
          { name: "lab", url: "http://10.0.0.5:11434" },
          { name: "lab2", url: "http://10.0.0.6:11434" },
        ]),
        "debian",
        DEBIAN_USAGE_MODULE,
      ),
    );
  });
});

describe("a limit per backend (ollamaMaxConcurrent)", () => {
  it("becomes that backend's maxConcurrent in the pool", async () => {
    await evaluateProgram({ ...devStackConfig(), ollamaGpuDevices: ["0", "1"], ollamaMaxConcurrent: ["gpu1=4"] });
    expect(configUploads()).toEqual(
      renderConfigFiles(
        devSpecWith([
          { name: "gpu0", url: "http://ollama-gpu0:11434" },
          { name: "gpu1", url: "http://ollama-gpu1:11434", maxConcurrent: 4 },
        ]),
        "debian",
        DEBIAN_USAGE_MODULE,
      ),
    );
  });

  it("on the single local server makes it a pool of one, since only a pool counts requests", async () => {
    await evaluateProgram({ ...devStackConfig(), ollamaMaxConcurrent: ["ollama=2"] });
    expect(configUploads()).toEqual(renderConfigFiles(devSpecWith([{ name: "ollama", url: "http://ollama:11434", maxConcurrent: 2 }]), "debian", DEBIAN_USAGE_MODULE));
  });

  it("refuses an unknown backend, a second limit and a limit under 1", async () => {
    await expectProgramRefuses({ ...devStackConfig(), ollamaUrls: ["lab=http://10.0.0.5:11434"], ollamaMaxConcurrent: ["gpu0=4", "lab=0", "lab=2", "lab=3"] }, [
      "Invalid stack config (3 problems):",
      '- `ollama-gateway:ollamaMaxConcurrent[0]` is "gpu0=4" but no backend is named "gpu0"; use one of `ollama`, `lab`.',
      '- `ollama-gateway:ollamaMaxConcurrent[1]` is "lab=0"; use a whole number of requests, 1 or more, such as `lab=4`.',
      '- `ollama-gateway:ollamaMaxConcurrent[3]` is "lab=3" and sets "lab" again; give each backend one limit.',
    ]);
  });
});

describe("bad backend config", () => {
  it("is refused before anything is declared, every problem at once, naming key, value and fix", async () => {
    await expectProgramRefuses(
      {
        ...devStackConfig(),
        ollamaGpuDevices: ["0", "1,0", "x"],
        ollamaRemoteHosts: ["box1=ssh://deploy@box1.example.com", "gpu0=ssh://deploy@box2.example.com,10.0.0.12", "box3=http://box3,10.0.0.13", "box4=ssh://d@box4,0.0.0.0"],
        ollamaUrls: ["lab=10.0.0.5:11434", "bad name=http://10.0.0.7:11434", "tls=https://10.0.0.8:11434"],
      },
      [
        "Invalid stack config (9 problems):",
        '- `ollama-gateway:ollamaGpuDevices[1]` is "1,0" and shares GPU "0" with `ollamaGpuDevices[0]` ("0"); give each GPU to one container.',
        '- `ollama-gateway:ollamaGpuDevices[2]` is "x"; use GPU indexes or UUIDs as `nvidia-smi -L` lists them, one group per container, such as "0" or "0,1" or "GPU-3a9c...".',
        '- `ollama-gateway:ollamaRemoteHosts[0]` is "box1=ssh://deploy@box1.example.com" and has no private address; append `,<IP>`, the address of that host on the network the proxy\'s host reaches it by (Ollama is published there only), such as `gpubox1=ssh://deploy@gpubox1.example.com,10.0.0.11`.',
        '- `ollama-gateway:ollamaRemoteHosts[2]` has SSH URL "http://box3"; use `ssh://<user>@<host>[:<port>]` (keys from your SSH agent; no password, path or query), such as `gpubox1=ssh://deploy@gpubox1.example.com,10.0.0.11`.',
        '- `ollama-gateway:ollamaRemoteHosts[3]` has private address "0.0.0.0"; use that host\'s own IP address on your private network, such as 10.0.0.11 (not 0.0.0.0, not loopback: Ollama is published on it alone).',
        '- `ollama-gateway:ollamaUrls[0]` is "lab=10.0.0.5:11434": its url "10.0.0.5:11434" is refused; use an http(s) URL with host and optional port and no path, such as http://10.0.0.5:11434.',
        '- `ollama-gateway:ollamaUrls[1]` is "bad name=http://10.0.0.7:11434": its name "bad name" is refused; use 1-64 characters: letters, digits, `.`, `_`, `-`, starting with a letter or digit.',
        '- `ollama-gateway:ollamaRemoteHosts[1]` names its backend "gpu0", as `ollamaGpuDevices[0]` does; give every backend its own name.',
        '- `ollama-gateway:ollamaUrls[2]` is "tls=https://10.0.0.8:11434" and uses https but the other backends use http; use one scheme for every backend (put a TLS-ending proxy next to that server, or reach it over plain HTTP on a private network).',
      ],
    );
  });

  it("refuses duplicate names across forms, no backend at all, and remote hosts on an internal network", async () => {
    await expectProgramRefuses({ ...devStackConfig(), ollamaRemoteHosts: ["ollama=ssh://u@h,10.0.0.2"], ollamaUrls: ["ollama=http://10.0.0.3:11434"] }, [
      "Invalid stack config (2 problems):",
      '- `ollama-gateway:ollamaRemoteHosts[0]` names its backend "ollama", as the local Ollama (`ollamaLocal`) does; give every backend its own name.',
      '- `ollama-gateway:ollamaUrls[0]` names its backend "ollama", as the local Ollama (`ollamaLocal`) does; give every backend its own name.',
    ]);
    await expectProgramRefuses({ ...devStackConfig(), models: [], ollamaLocal: false }, [
      "Invalid stack config (1 problem):",
      "- `ollama-gateway:ollamaLocal` is false and neither `ollamaRemoteHosts` nor `ollamaUrls` lists a backend; set `ollamaLocal` to true or list at least one backend.",
    ]);
    await expectProgramRefuses({ ...devStackConfig(), ollamaUrls: ["here=http://127.0.0.1:11434"] }, [
      "Invalid stack config (1 problem):",
      '- `ollama-gateway:ollamaUrls[0]` is "here=http://127.0.0.1:11434", a loopback address, which inside the proxy\'s container is the proxy itself; use the server\'s address on your network (for Ollama on this host, leave `ollamaLocal` true instead).',
    ]);
    await expectProgramRefuses({ ...devStackConfig(), gpu: true, ollamaGpuDevices: ["0"] }, [
      "Invalid stack config (1 problem):",
      "- `ollama-gateway:gpu` is true but `ollamaGpuDevices` gives the local containers their GPUs and there is no remote host for `gpu` to apply to; set `gpu` to false.",
    ]);
    await expectProgramRefuses({ ...devStackConfig(), models: [], internalNetwork: true, ollamaRemoteHosts: ["b=ssh://u@h,10.0.0.2"] }, [
      "Invalid stack config (1 problem):",
      "- `ollama-gateway:ollamaRemoteHosts` is set but `internalNetwork` is true, and Docker publishes no port from an internal network; set `internalNetwork` to false or `ollamaRemoteHosts` to [].",
    ]);
  });
});

describe("on Kubernetes", () => {
  it("the Docker backend keys are refused as a whole, naming what to use there", () => {
    const result = parseStackConfig({ target: "kubernetes", proxyImage: "registry.example.com/p:1", ollamaGpuDevices: '["0"]', ollamaRemoteHosts: '["b=ssh://u@h"]', ollamaUrls: '["a=http://10.0.0.5:11434"]', ollamaLocal: "false" });
    expect(result).toEqual({
      ok: false,
      errors: [
        "`ollama-gateway:ollamaLocal` is false but means nothing with `target` `kubernetes` (Ollama runs as the StatefulSet); remove it.",
        '`ollama-gateway:ollamaGpuDevices` is ["0"] but means nothing with `target` `kubernetes` (use `ollamaGpus` (GPUs per Ollama pod) and `ollamaReplicas`); remove it.',
        '`ollama-gateway:ollamaRemoteHosts` is ["b=ssh://u@h"] but means nothing with `target` `kubernetes` (use `ollamaReplicas`: the cluster places the pods); remove it.',
        '`ollama-gateway:ollamaUrls` is ["a=http://10.0.0.5:11434"] but means nothing with `target` `kubernetes` (the proxy serves the StatefulSet\'s pods); remove it.',
      ],
    });
  });
});

describe("OllamaGateway used directly", () => {
  it("refuses a backend name used twice before declaring any server", async () => {
    const { OllamaGateway } = await import("../components/OllamaGateway.js");
    const before = resourcesOfType(SERVER).length;
    expect(() => new OllamaGateway("direct", { backends: { gpuDevices: [["0"], ["1"]], urls: [{ name: "gpu1", url: "http://10.0.0.5:11434" }] } })).toThrow(
      "`backends` names `gpu1` more than once; give every backend its own name.",
    );
    expect(resourcesOfType(SERVER).length).toBe(before);
  });
});
