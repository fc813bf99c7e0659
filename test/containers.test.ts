/**
 * The containers `pulumi up` creates, on a real Docker engine (scripts/docker-engine.sh starts
 * the project's own): the program is evaluated under mocks on the committed dev and staging
 * stack files, and every Docker resource it declares is created with exactly its inputs
 * (harness/docker-replay.ts). The proxy image is built from image/proxy/Dockerfile; Ollama's
 * is a stand-in image built here. Traffic goes only to ports published on 127.0.0.1.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import tls from "node:tls";
import type Docker from "dockerode";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROXY_IMAGE_TAG, PROXY_USER } from "../components/AuthProxy";
import { ROTATION_NOW_VARIABLE } from "../config/rotation";
import {
  buildImage,
  buildStandInOllama,
  type DockerEngine,
  DOCKER_HOST_VARIABLE,
  dockerTestsEnabled,
  STANDIN_OLLAMA_IMAGE,
  startDockerEngine,
} from "../harness/docker-engine";
import { containerLogs, demux, DockerReplay, type ReplayPlan, REPLAY_LABEL } from "../harness/docker-replay";
import { basic, bearer, httpsRequest, streamChat } from "../harness/http";
import { freePort } from "../harness/ports";
import { evaluateProgram, installMocks, overrideProviderOutputs, ROOT, stackFileConfig, type Program, type RecordedResource } from "../harness/pulumi-mocks";
import { realTlsOutputs, renewCertificates } from "../harness/real-tls";

installMocks();
overrideProviderOutputs(realTlsOutputs);
// One rotation period for every evaluation in this file.
process.env[ROTATION_NOW_VARIABLE] = "2026-11-23T12:00:00Z";

const OLLAMA_IMAGE = stackFileConfig("dev").ollamaImage ?? "ollama/ollama:0.12.6";
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Docker resource names the plan touched, for assertions. */
const touched = (plan: ReplayPlan) => ({ created: plan.created.sort(), replaced: plan.replaced.sort(), deleted: plan.deleted.sort() });

/** Runs a one-off command in a running container; resolves with its exit code and output. */
async function exec(docker: Docker, container: string, cmd: string[], user?: string): Promise<{ code: number; output: string }> {
  const execution = await docker.getContainer(container).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true, User: user });
  const stream = await execution.start({});
  const chunks: Buffer[] = [];
  await new Promise((resolve) => {
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", resolve);
  });
  return { code: (await execution.inspect()).ExitCode ?? -1, output: demux(Buffer.concat(chunks)) };
}

/** The certificate the server presents on a fresh handshake (its SHA-256 fingerprint). */
function presentedFingerprint(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, ca, servername: "localhost" }, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.end();
    });
    socket.on("error", reject);
  });
}

/** Streams /api/chat back to back until `stop()`, counting every failure. */
function chatLoop(baseUrl: string, ca: string, headers: Record<string, string>) {
  let running = true;
  const stats = { ok: 0, failed: [] as string[] };
  const done = (async () => {
    while (running)
      await streamChat(baseUrl, ca, headers).then(
        () => void stats.ok++,
        (error: Error) => void stats.failed.push(error.message),
      );
  })();
  return {
    stats,
    stop: async () => {
      running = false;
      await done;
      return stats;
    },
  };
}

let engine: DockerEngine;

// One engine for the file: started (or reused) before the suites, stopped by pid after them.
beforeAll(async () => {
  if (!dockerTestsEnabled) return;
  engine = await startDockerEngine();
  await buildStandInOllama(engine.docker);
}, 600_000);
afterAll(() => engine?.stop(), 120_000);

describe.runIf(dockerTestsEnabled)("the program's containers on a real Docker engine", () => {
  let replay: DockerReplay;
  const log: string[] = [];

  beforeAll(() => {
    replay = new DockerReplay(engine.docker, { standIns: { [OLLAMA_IMAGE]: STANDIN_OLLAMA_IMAGE }, log: (line) => log.push(line) });
  });

  afterAll(async () => {
    await replay?.destroy();
  }, 120_000);

  it("builds the proxy image from image/proxy with the nginx the data-plane suites run", async () => {
    const started = performance.now();
    await buildImage(engine.docker, path.join(ROOT, "image", "proxy"), PROXY_IMAGE_TAG);
    console.log(`[measure] proxy image build (cached layers allowed): ${Math.round(performance.now() - started)} ms`);
    // Same packages, same Debian revisions, as the nginx the other suites start on this host.
    const packages = ["nginx", "libnginx-mod-http-lua", "lua-cjson"];
    const query = ["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", ...packages];
    const host = execFileSync(query[0], query.slice(1), { encoding: "utf8" });
    const container = await engine.docker.createContainer({ Image: PROXY_IMAGE_TAG, Cmd: query });
    await container.start();
    await container.wait();
    const inImage = await containerLogs(container);
    await container.remove();
    expect(inImage.trim().split("\n").sort(), "image and host run different nginx builds: rebuild the image or apt-get upgrade the host").toEqual(
      host.trim().split("\n").sort(),
    );
    expect((await engine.docker.getImage(PROXY_IMAGE_TAG).inspect()).Config.User).toBe(PROXY_USER);
  }, 600_000);

  describe("the dev stack as committed", () => {
    let program: Program;
    let resources: RecordedResource[];
    let base: string;
    let ca: string;
    let keys: Record<string, string>;
    let httpsPort: number;
    let httpPort: number;
    const config = () => ({ ...stackFileConfig("dev"), httpPort: String(httpPort), httpsPort: String(httpsPort) });

    beforeAll(async () => {
      // The stack's own ports (8080/8443) may be taken on a developer's machine: free ones instead.
      httpPort = await freePort();
      httpsPort = await freePort();
      ({ program, resources } = await evaluateProgram(config()));
      const started = performance.now();
      const plan = await replay.apply(resources);
      console.log(`[measure] dev stack replay, nothing cached but images: ${Math.round(performance.now() - started)} ms (${plan.created.length} Docker resources)`);
      base = `https://127.0.0.1:${httpsPort}`;
      ca = (await new Promise<string | undefined>((resolve) => program.caCertPem.apply(resolve)))!;
      keys = await new Promise((resolve) => program.apiKeys.apply(resolve));
    }, 300_000);

    it("creates every Docker resource the program declares, and the proxy becomes healthy", async () => {
      const declared = resources.filter((r) => r.type.startsWith("docker:")).map((r) => r.name);
      expect(declared).toContain("gateway-proxy-server");
      const proxy = await replay.inspect("gateway-proxy-server");
      expect(proxy.State.Health?.Status).toBe("healthy");
      expect((await replay.inspect("gateway-ollama-server")).State.Health?.Status).toBe("healthy");
      // The writers and the model pull ran to completion.
      for (const name of ["gateway-proxy-config-writer", "gateway-proxy-credentials-writer", "gateway-ollama-pull-gemma3-1b"])
        expect((await replay.inspect(name)).State.ExitCode, name).toBe(0);
    });

    it("runs the proxy unprivileged on a read-only root, with credential files only its user can read", async () => {
      const proxy = await replay.inspect("gateway-proxy-server");
      expect(proxy.HostConfig.ReadonlyRootfs).toBe(true);
      expect(proxy.HostConfig.CapDrop).toEqual(["ALL"]);
      const name = replay.containerName("gateway-proxy-server");
      const ps = await exec(engine.docker, name, ["sh", "-c", "ps -o user=,comm= -e 2>/dev/null || for p in /proc/[0-9]*; do echo $(stat -c %u $p) $(cat $p/comm); done"]);
      const nginxUsers = ps.output.split("\n").filter((l) => l.includes("nginx")).map((l) => l.trim().split(/\s+/)[0]);
      expect(nginxUsers.length).toBeGreaterThanOrEqual(2);
      expect(nginxUsers.every((u) => u === "10001" || u === "gateway"), ps.output).toBe(true);
      const files = await exec(engine.docker, name, ["sh", "-c", "stat -c '%a %u %n' /gateway/credentials/*"]);
      expect(files.output).toMatch(/tls\.pem/);
      for (const line of files.output.trim().split("\n")) expect(line, files.output).toMatch(/^600 10001 /);
      expect((await exec(engine.docker, name, ["sh", "-c", "touch /gateway/conf/x || touch /etc/x || touch /gateway/credentials/x"])).code).not.toBe(0);
      // Workers got the open-file limit nginx asked for (the container's nofile ulimit allows it).
      const limits = await exec(engine.docker, name, ["sh", "-c", "for p in /proc/[0-9]*; do [ \"$(cat $p/comm)\" = nginx ] && grep 'Max open files' $p/limits; done"]);
      expect(limits.output.trim().split("\n").length, limits.output).toBeGreaterThanOrEqual(2);
      for (const line of limits.output.trim().split("\n")) expect(line).toMatch(/Max open files\s+8320\s+8320/);
      // Another user in the container cannot read a key.
      expect((await exec(engine.docker, name, ["cat", "/gateway/credentials/api-keys"], "65534:65534")).code).not.toBe(0);
    });

    it("authenticates, scopes and streams through the container chain over TLS", async () => {
      const health = await httpsRequest(`http://127.0.0.1:${httpPort}/healthz`, undefined);
      expect(health.status).toBe(200);
      expect((await httpsRequest(`${base}/api/tags`, ca)).status).toBe(401);
      expect((await httpsRequest(`${base}/api/tags`, ca, { headers: bearer("wrong-key-0000000000000000000000") })).status).toBe(401);
      expect((await httpsRequest(`${base}/api/tags`, ca, { headers: bearer(keys.app) })).status).toBe(200);
      expect((await httpsRequest(`${base}/v1/models`, ca, { headers: { "X-API-Key": keys.app } })).status).toBe(200);
      // app is inference: model management is admin's.
      const pull = { method: "POST", body: JSON.stringify({ model: "gemma3:1b", stream: false }) };
      expect((await httpsRequest(`${base}/api/pull`, ca, { ...pull, headers: bearer(keys.app) })).status).toBe(403);
      expect((await httpsRequest(`${base}/api/pull`, ca, { ...pull, headers: bearer(keys.ops) })).status).toBe(200);
      const passwords: Record<string, string> = await new Promise((resolve) => program.basicAuth.apply(resolve));
      expect((await httpsRequest(`${base}/api/version`, ca, { headers: basic("alice", passwords.alice) })).status).toBe(200);
      expect((await httpsRequest(`${base}/api/version`, ca, { headers: basic("alice", "not-her-password") })).status).toBe(401);
      // Unbuffered: the first NDJSON line arrives long before the last.
      const { lines, times } = await streamChat(base, ca, bearer(keys.app));
      expect(lines.length).toBeGreaterThan(5);
      // The stand-in streams 12 words 50 ms apart: a buffering proxy would deliver them together.
      expect(times[times.length - 1] - times[0]).toBeGreaterThan(400);
      console.log(`[measure] container chain: first chat line ${Math.round(times[0])} ms, last ${Math.round(times[times.length - 1])} ms`);
    });

    it("keeps Ollama off the host and off the edge network: only the proxy reaches it", async () => {
      const ollama = await replay.inspect("gateway-ollama-server");
      expect(Object.values(ollama.HostConfig.PortBindings ?? {}).flat()).toEqual([]);
      expect(Object.values(ollama.NetworkSettings.Ports ?? {}).flat().filter(Boolean)).toEqual([]);
      const networks = Object.keys(ollama.NetworkSettings.Networks);
      expect(networks).toHaveLength(1);
      expect(networks[0]).toMatch(/^gateway-private-/);
      const ollamaAddress = ollama.NetworkSettings.Networks[networks[0]].IPAddress;
      const edge = Object.keys((await replay.inspect("gateway-proxy-server")).NetworkSettings.Networks).find((n) => n.startsWith("gateway-edge-"))!;
      // A probe container on each network: by name and by address, 3 s at most each.
      const probe = async (network: string) => {
        const script = `const a=${JSON.stringify(`http://ollama:11434/api/version`)},b=${JSON.stringify(`http://${ollamaAddress}:11434/api/version`)};
          const t=(u)=>fetch(u,{signal:AbortSignal.timeout(3000)}).then(r=>r.status,e=>'unreachable');
          Promise.all([t(a),t(b)]).then(r=>console.log(JSON.stringify(r)))`;
        const container = await engine.docker.createContainer({
          Image: STANDIN_OLLAMA_IMAGE,
          Entrypoint: ["node", "-e", script],
          Labels: { [REPLAY_LABEL]: replay.runId },
          HostConfig: { NetworkMode: network },
        });
        await container.start();
        await container.wait();
        const output = (await containerLogs(container)).trim();
        await container.remove();
        return JSON.parse(output) as (number | string)[];
      };
      expect(await probe(edge)).toEqual(["unreachable", "unreachable"]);
      // The same probe on the private network reaches it: the probe itself works.
      expect(await probe(networks[0])).toEqual([200, 200]);
    });

    it("a changed key replaces only the credential writer: the new key works within 2 s, the removed one stops, streams never fail", async () => {
      const proxyId = (await replay.inspect("gateway-proxy-server")).Id;
      const ollamaId = (await replay.inspect("gateway-ollama-server")).Id;
      const loop = chatLoop(base, ca, bearer(keys.app));
      await sleep(500);
      // `ops` goes, `ci` (read) comes.
      const changed = { ...config(), apiKeys: JSON.stringify(["app:inference", "ci:read"]) };
      const next = await evaluateProgram(changed);
      const newKeys: Record<string, string> = await new Promise((resolve) => next.program.apiKeys.apply(resolve));
      const plan = await replay.apply(next.resources);
      // From the moment the deployment is done, as `pulumi up` returning.
      const started = performance.now();
      expect(touched(plan)).toEqual({ created: [], replaced: ["gateway-proxy-credentials-writer"], deleted: [] });
      let newKeyMs = -1;
      let oldKeyMs = -1;
      while (performance.now() - started < 5000 && (newKeyMs < 0 || oldKeyMs < 0)) {
        if (newKeyMs < 0 && (await httpsRequest(`${base}/api/tags`, ca, { headers: bearer(newKeys.ci) })).status === 200) newKeyMs = performance.now() - started;
        if (oldKeyMs < 0 && (await httpsRequest(`${base}/api/tags`, ca, { headers: bearer(keys.ops) })).status === 401) oldKeyMs = performance.now() - started;
        await sleep(50);
      }
      await sleep(1000);
      const stats = await loop.stop();
      console.log(`[measure] key change in containers: new key works ${Math.round(newKeyMs)} ms, removed key refused ${Math.round(oldKeyMs)} ms after the replay; ${stats.ok} streamed chats, ${stats.failed.length} failed`);
      expect(newKeyMs).toBeGreaterThanOrEqual(0);
      expect(newKeyMs).toBeLessThan(2000);
      expect(oldKeyMs).toBeGreaterThanOrEqual(0);
      expect(oldKeyMs).toBeLessThan(2000);
      expect(stats.failed).toEqual([]);
      expect(stats.ok).toBeGreaterThan(0);
      expect((await replay.inspect("gateway-proxy-server")).Id).toBe(proxyId);
      expect((await replay.inspect("gateway-ollama-server")).Id).toBe(ollamaId);
      keys = newKeys;
      resources = next.resources;
    }, 60_000);

    it("a renewed certificate is presented by the running proxy on the next handshake", async () => {
      const before = await presentedFingerprint(httpsPort, ca);
      renewCertificates();
      const next = await evaluateProgram({ ...config(), apiKeys: JSON.stringify(["app:inference", "ci:read"]) });
      const renewed = (next.resources.find((r) => r.name === "gateway-tls-server") as RecordedResource | undefined) !== undefined;
      expect(renewed).toBe(true);
      const proxyId = (await replay.inspect("gateway-proxy-server")).Id;
      const plan = await replay.apply(next.resources);
      expect(touched(plan)).toEqual({ created: [], replaced: ["gateway-proxy-credentials-writer"], deleted: [] });
      const after = await presentedFingerprint(httpsPort, ca);
      expect(after).not.toBe(before);
      expect((await replay.inspect("gateway-proxy-server")).Id).toBe(proxyId);
      resources = next.resources;
    }, 60_000);

    it("replaying unchanged config changes no container", async () => {
      const next = await evaluateProgram({ ...config(), apiKeys: JSON.stringify(["app:inference", "ci:read"]) });
      const before = (await engine.docker.listContainers({ all: true, filters: { label: [`${REPLAY_LABEL}=${replay.runId}`] } })).map((c) => c.Id).sort();
      const plan = await replay.apply(next.resources);
      expect(touched(plan)).toEqual({ created: [], replaced: [], deleted: [] });
      const after = (await engine.docker.listContainers({ all: true, filters: { label: [`${REPLAY_LABEL}=${replay.runId}`] } })).map((c) => c.Id).sort();
      expect(after).toEqual(before);
    }, 60_000);

    it("tearing down leaves no container, network or volume of ours", async () => {
      await replay.destroy();
      const filters = { label: [`${REPLAY_LABEL}=${replay.runId}`] };
      expect(await engine.docker.listContainers({ all: true, filters })).toEqual([]);
      expect(await engine.docker.listNetworks({ filters })).toEqual([]);
      expect((await engine.docker.listVolumes({ filters })).Volumes ?? []).toEqual([]);
      // Anonymous volumes included: nothing dangling was left by our containers.
      expect(((await engine.docker.listVolumes({ filters: { dangling: ["true"] } })).Volumes ?? []).length).toBe(0);
    }, 120_000);
  });

  describe("the staging stack as committed", () => {
    it("deploys, serves the allowed networks, and tears down clean", async () => {
      const httpPort = await freePort();
      const httpsPort = await freePort();
      const staging = new DockerReplay(engine.docker, { standIns: { [OLLAMA_IMAGE]: STANDIN_OLLAMA_IMAGE } });
      try {
        const { program, resources } = await evaluateProgram({ ...stackFileConfig("staging"), httpPort: String(httpPort), httpsPort: String(httpsPort) });
        await staging.apply(resources);
        const ca = (await new Promise<string | undefined>((resolve) => program.caCertPem.apply(resolve)))!;
        const keys: Record<string, string> = await new Promise((resolve) => program.apiKeys.apply(resolve));
        const name = Object.keys(keys)[0];
        // Published on every interface; the test talks to 127.0.0.1 only. Requests arrive from
        // the engine's 10.214.x gateway, inside staging's allowed 10.0.0.0/8.
        const proxy = await staging.inspect("gateway-proxy-server");
        expect(proxy.HostConfig.PortBindings[`${httpsPort}/tcp`]).toEqual([{ HostIp: "0.0.0.0", HostPort: String(httpsPort) }]);
        // The certificate names staging's host, not 127.0.0.1: verify it as a client of that name would.
        const servername = stackFileConfig("staging").hostname;
        expect((await httpsRequest(`https://127.0.0.1:${httpsPort}/api/version`, ca, { headers: bearer(keys[name]), servername })).status).toBe(200);
      } finally {
        await staging.destroy();
      }
      expect(await engine.docker.listContainers({ all: true, filters: { label: [`${REPLAY_LABEL}=${staging.runId}`] } })).toEqual([]);
    }, 300_000);
  });

  describe("a stack with one Ollama per GPU (ollamaGpuDevices)", () => {
    // Two stand-in Ollama containers; GPU device requests cannot be honoured here (no GPU, no
    // NVIDIA runtime): the replay leaves them out and lists them (harness/docker-replay.ts).
    let replay: DockerReplay;
    let program: Program;
    let base: string;
    let ca: string;
    let keys: Record<string, string>;
    const proxyLog = async () => {
      const container = engine.docker.getContainer(replay.containerName("gateway-proxy-server"));
      const text = demux((await container.logs({ stdout: true, stderr: false, tail: 1000 })) as unknown as Buffer);
      return text.split("\n").filter((line) => line.startsWith("{")).map((line) => JSON.parse(line) as { path: string; model: string; backend: string; status: number });
    };
    const chat = (model: string) =>
      httpsRequest(`${base}/api/chat`, ca, { method: "POST", headers: bearer(keys.app), body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }], stream: false }) });

    beforeAll(async () => {
      const httpPort = await freePort();
      const httpsPort = await freePort();
      replay = new DockerReplay(engine.docker, { standIns: { [OLLAMA_IMAGE]: STANDIN_OLLAMA_IMAGE } });
      let resources: RecordedResource[];
      ({ program, resources } = await evaluateProgram({ ...stackFileConfig("dev"), httpPort: String(httpPort), httpsPort: String(httpsPort), ollamaGpuDevices: JSON.stringify(["0", "1"]) }));
      const started = performance.now();
      await replay.apply(resources);
      console.log(`[measure] two-GPU stack replay: ${Math.round(performance.now() - started)} ms`);
      base = `https://127.0.0.1:${httpsPort}`;
      ca = (await new Promise<string | undefined>((resolve) => program.caCertPem.apply(resolve)))!;
      keys = await new Promise((resolve) => program.apiKeys.apply(resolve));
    }, 300_000);

    afterAll(async () => {
      await replay?.destroy();
    }, 120_000);

    it("creates both servers, each with its own volume, its alias and the model pulled, and says which GPU requests it left out", async () => {
      expect(replay.unhonoured).toEqual([
        { resource: "gateway-ollama-gpu0-server", input: "deviceRequests", value: [{ driver: "nvidia", deviceIds: ["0"], capabilities: ["gpu"] }] },
        { resource: "gateway-ollama-gpu1-server", input: "deviceRequests", value: [{ driver: "nvidia", deviceIds: ["1"], capabilities: ["gpu"] }] },
      ]);
      const gpu0 = await replay.inspect("gateway-ollama-gpu0-server");
      const gpu1 = await replay.inspect("gateway-ollama-gpu1-server");
      for (const server of [gpu0, gpu1]) expect(server.State.Health?.Status).toBe("healthy");
      expect(gpu0.Mounts[0].Name).not.toBe(gpu1.Mounts[0].Name);
      const aliases = (c: Docker.ContainerInspectInfo) => Object.values(c.NetworkSettings.Networks).flatMap((n) => n.Aliases ?? []);
      expect(aliases(gpu0)).toContain("ollama-gpu0");
      expect(aliases(gpu1)).toContain("ollama-gpu1");
      for (const name of ["gateway-ollama-gpu0-pull-gemma3-1b", "gateway-ollama-gpu1-pull-gemma3-1b"]) expect((await replay.inspect(name)).State.ExitCode, name).toBe(0);
    });

    it("pins model management to the backend named in X-Ollama-Backend, and each model reaches only the backend that has it", async () => {
      const pull = { method: "POST", body: JSON.stringify({ model: "qwen3:0.6b", stream: false }) };
      const unpinned = await httpsRequest(`${base}/api/pull`, ca, { ...pull, headers: bearer(keys.ops) });
      expect(unpinned.status).toBe(400);
      expect(unpinned.body).toContain("X-Ollama-Backend");
      expect((await httpsRequest(`${base}/api/pull`, ca, { ...pull, headers: { ...bearer(keys.ops), "X-Ollama-Backend": "gpu1" } })).status).toBe(200);
      // The proxy learns it from /api/tags at its next probe (every 2 s): the union lists it once.
      const deadline = Date.now() + 10_000;
      let names: string[] = [];
      while (!names.includes("qwen3:0.6b") && Date.now() < deadline) {
        await sleep(250);
        names = JSON.parse((await httpsRequest(`${base}/api/tags`, ca, { headers: bearer(keys.app) })).body).models.map((m: { name: string }) => m.name);
      }
      expect(names.sort()).toEqual(["gemma3:1b", "qwen3:0.6b"]);

      // Equally suited backends are picked at random: 20 requests reach both but for 2^-19.
      for (let i = 0; i < 20; i++) {
        expect((await chat("qwen3:0.6b")).status).toBe(200);
        expect((await chat("gemma3:1b")).status).toBe(200);
      }
      const missing = await chat("llama3.2:1b");
      expect(missing.status).toBe(404);
      expect(JSON.parse(missing.body)).toEqual({ error: "model 'llama3.2:1b' not found" });

      const served = (model: string) => (lines: Awaited<ReturnType<typeof proxyLog>>) =>
        lines.filter((l) => l.path === "/api/chat" && l.model === model).map((l) => `${l.status} ${l.backend}`);
      const lines = await proxyLog();
      expect(served("qwen3:0.6b")(lines)).toEqual(Array(20).fill("200 gpu1"));
      const gemma = served("gemma3:1b")(lines);
      expect(gemma).toHaveLength(20);
      expect(new Set(gemma)).toEqual(new Set(["200 gpu0", "200 gpu1"]));
      // gpu0 never saw the model it does not have: its own list still lacks it.
      const list = await exec(engine.docker, replay.containerName("gateway-ollama-gpu0-server"), ["ollama", "list"]);
      expect(list.output.trim().split("\n")).toEqual(["gemma3:1b"]);
    }, 60_000);
  });

  describe("what goes wrong is reported with what to do, never as a hang", () => {
    it("an engine that is not there", async () => {
      const saved = process.env[DOCKER_HOST_VARIABLE];
      process.env[DOCKER_HOST_VARIABLE] = "unix:///nonexistent/docker.sock";
      try {
        await expect(startDockerEngine()).rejects.toThrow(/No Docker engine answers at unix:\/\/\/nonexistent\/docker\.sock.*Start one with: sudo bash scripts\/docker-engine\.sh start/s);
      } finally {
        if (saved === undefined) delete process.env[DOCKER_HOST_VARIABLE];
        else process.env[DOCKER_HOST_VARIABLE] = saved;
      }
    });

    it("a broken Dockerfile path", () => {
      const run = () => execFileSync("bash", [path.join(ROOT, "scripts", "image-proxy.sh"), "--context", "/nonexistent"], { encoding: "utf8", stdio: "pipe" });
      expect(run).toThrow(/no Dockerfile in \/nonexistent; give --context the folder that holds this package's image\/proxy\/Dockerfile/);
    });

    it("an image that fails its healthcheck", async () => {
      const failing = new DockerReplay(engine.docker, { standIns: {} });
      const started = performance.now();
      const resource: RecordedResource = {
        type: "docker:index/container:Container",
        name: "unhealthy-proxy",
        urn: "urn:test::unhealthy-proxy",
        parent: "",
        custom: true,
        aliases: [],
        deleteBeforeReplace: false,
        provider: "",
        // nginx never starts (no bundle), so the image's healthcheck command fails.
        inputs: {
          image: PROXY_IMAGE_TAG,
          command: ["sleep", "60"],
          healthcheck: { tests: ["CMD", "curl", "-fsS", "http://127.0.0.1:8080/healthz"], interval: "1s", timeout: "1s", retries: 1 },
          wait: true,
          waitTimeout: 4,
        },
      };
      let failedAfter = Infinity;
      try {
        await expect(failing.apply([resource])).rejects.toThrow(/unhealthy-proxy is not healthy after 4 s \(waitTimeout\); last health checks:\n  exit 7: curl: \(7\) Failed to connect/);
        failedAfter = performance.now() - started;
      } finally {
        await failing.destroy();
      }
      // The failure comes once waitTimeout (4 s) has passed, not at the test's own limit: never a
      // hang. (The clean-up after it is not timed: on a loaded engine it alone can take seconds.)
      expect(failedAfter).toBeLessThan(15_000);
    }, 30_000);
  });
});

describe.runIf(dockerTestsEnabled)("a bundle rendered by the CLI, served by the proxy image", () => {
  let dir: string;
  let port: number;
  const containers: Docker.Container[] = [];
  let network: Docker.Network;
  const KEY_A = "container-bundle-key-a-7Hq2Lm9Xc4Vb";
  const KEY_B = "container-bundle-key-b-3Rt8Yp1Wn6Zk";
  const render = (keys: { name: string; key: string }[]) => {
    writeFileSync(
      path.join(dir, "spec.json"),
      JSON.stringify({
        upstream: "http://ollama:11434",
        listen: { address: "0.0.0.0", http: 8080 },
        apiKeys: keys.map((k) => ({ ...k, scope: "inference" })),
        basicUsers: [{ name: "bob", password: "bob-container-password-1", scope: "read" }],
        accessLog: "/dev/stdout",
        errorLog: "/dev/stderr",
      }),
    );
    // As docs/architecture.md says for a bundle served by the image: its credential files are
    // written owned by the image's user (a chown after the render would leave a moment in which
    // the workers cannot read a re-rendered file).
    execFileSync("npx", ["tsx", "scripts/render.ts", "--config", path.join(dir, "spec.json"), "--out", path.join(dir, "bundle"), "--flavor", "debian", "--bcrypt-cost", "6", "--owner", PROXY_USER], {
      cwd: ROOT,
      stdio: "pipe",
    });
  };

  beforeAll(async () => {
    await buildImage(engine.docker, path.join(ROOT, "image", "proxy"), PROXY_IMAGE_TAG);
    dir = mkdtempSync(path.join(tmpdir(), "bundle-in-container-"));
    chmodSync(dir, 0o755);
    render([{ name: "a", key: KEY_A }]);
    port = await freePort();
    network = await engine.docker.createNetwork({ Name: `bundle-test-${process.pid}`, Labels: { [REPLAY_LABEL]: "bundle" } });
    const ollama = await engine.docker.createContainer({
      name: `bundle-test-ollama-${process.pid}`,
      Image: STANDIN_OLLAMA_IMAGE,
      HostConfig: { NetworkMode: network.id },
      NetworkingConfig: { EndpointsConfig: { [network.id]: { Aliases: ["ollama"] } } },
    });
    containers.push(ollama);
    await ollama.start();
    // Like Ollama on a fresh volume, the stand-in holds no model until one is pulled.
    for (let tries = 0; (await exec(engine.docker, ollama.id, ["ollama", "pull", "gemma3:1b"])).code !== 0; tries++) {
      if (tries > 50) throw new Error(`the stand-in Ollama did not take a pull:\n${await containerLogs(ollama)}`);
      await sleep(200);
    }
    // The image's own user; the documented `docker run` line.
    const proxy = await engine.docker.createContainer({
      name: `bundle-test-proxy-${process.pid}`,
      Image: PROXY_IMAGE_TAG,
      ExposedPorts: { "8080/tcp": {} },
      HostConfig: {
        ReadonlyRootfs: true,
        Binds: [`${path.join(dir, "bundle")}:/gateway`],
        Tmpfs: { "/gateway/tmp": "uid=10001,gid=10001", "/gateway/logs": "uid=10001,gid=10001" },
        PortBindings: { "8080/tcp": [{ HostIp: "127.0.0.1", HostPort: String(port) }] },
        NetworkMode: network.id,
        CapDrop: ["ALL"],
      },
    });
    containers.push(proxy);
    await proxy.start();
    const deadline = Date.now() + 20_000;
    while ((await httpsRequest(`http://127.0.0.1:${port}/healthz`, undefined).catch(() => ({ status: 0 }))).status !== 200) {
      if (Date.now() > deadline) throw new Error(`the bundle's proxy did not become healthy:\n${await containerLogs(proxy)}`);
      await sleep(200);
    }
  }, 600_000);

  afterAll(async () => {
    for (const c of containers) await c.remove({ force: true, v: true }).catch(() => undefined);
    await network?.remove().catch(() => undefined);
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it("serves the auth matrix", async () => {
    const url = `http://127.0.0.1:${port}`;
    expect((await httpsRequest(`${url}/api/tags`, undefined)).status).toBe(401);
    expect((await httpsRequest(`${url}/api/tags`, undefined, { headers: bearer(KEY_A) })).status).toBe(200);
    expect((await httpsRequest(`${url}/api/tags`, undefined, { headers: basic("bob", "bob-container-password-1") })).status).toBe(200);
    // bob is read: no inference.
    const chat = { method: "POST", body: JSON.stringify({ model: "gemma3:1b", messages: [], stream: false }) };
    expect((await httpsRequest(`${url}/api/chat`, undefined, { ...chat, headers: basic("bob", "bob-container-password-1") })).status).toBe(403);
    expect((await httpsRequest(`${url}/api/tags`, undefined, { headers: bearer(KEY_B) })).status).toBe(401);
  });

  it("takes a live credential update from a re-render with zero failed requests", async () => {
    const url = `http://127.0.0.1:${port}`;
    const loop = chatLoop(url, "", bearer(KEY_A));
    await sleep(300);
    render([
      { name: "a", key: KEY_A },
      { name: "b", key: KEY_B },
    ]);
    const started = performance.now();
    while ((await httpsRequest(`${url}/api/tags`, undefined, { headers: bearer(KEY_B) })).status !== 200) {
      expect(performance.now() - started).toBeLessThan(3000);
      await sleep(50);
    }
    console.log(`[measure] bundle in a container: new key served ${Math.round(performance.now() - started)} ms after the render`);
    await sleep(500);
    const stats = await loop.stop();
    expect(stats.failed).toEqual([]);
    expect(stats.ok).toBeGreaterThan(0);
  }, 30_000);
});
