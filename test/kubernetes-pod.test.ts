/**
 * The proxy pod as the kubelet would assemble it, run by the real nginx: the Deployment, ConfigMap
 * and Secret the KubernetesGateway declares (under Pulumi mocks) are laid out as their volumes
 * mount them (ConfigMap items under /gateway/conf and /gateway/lua, the Secret at
 * /gateway/credentials in the kubelet's `..data` layout, emptyDirs for tmp and logs), the
 * container's own command starts nginx, its probes and preStop hook run as declared, and Ollama is
 * found through the headless Service's name on a DNS stand-in. Only `/gateway` is moved to a
 * temporary directory.
 */
import { spawn } from "node:child_process";
import { chmodSync, closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { credentialOwner } from "../bundle/write";
import { KubernetesGateway } from "../components/KubernetesGateway";
import { type DnsStandIn, startDnsStandIn } from "../harness/dns-server";
import { type FakeOllama, startFakeOllama } from "../harness/fake-ollama";
import { bearer, request, streamChat } from "../harness/http";
import { KubeletVolume } from "../harness/kubelet-volume";
import { DEBIAN_USAGE_MODULE } from "../bundle/render";
import { freePort, nginxTestsEnabled, requireNginxWithLua, usageModulePath, waitUntil } from "../harness/nginx";
import { waitForPort } from "../harness/ports";
import { findResource, installMocks, resetRecorded, settle, TYPES, unwrap, valueOf } from "../harness/pulumi-mocks";

installMocks();

const OLLAMA_POD = "127.0.0.9";

/** Runs a command as the kubelet runs an exec probe or hook; its exit code. Async: the DNS stand-in lives in this process. */
function exitCode(command: string[]): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn(command[0], command.slice(1), { stdio: "ignore" });
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

describe.runIf(nginxTestsEnabled)("the proxy pod, assembled as the kubelet mounts it, in the real nginx", () => {
  let dns: DnsStandIn;
  let ollama: FakeOllama;
  let dir: string;
  let nginx: ReturnType<typeof spawn>;
  let logFile: string;
  /** What nginx wrote to its stdout and stderr (the container's log). */
  const output = () => readFileSync(logFile, "utf8");
  let url: string;
  let key: string;
  let container: any;
  /** A command of the pod spec, with /gateway moved to the test's directory. */
  const here = (command: string[]) => command.map((part) => part.replaceAll("/gateway", dir));

  beforeAll(async () => {
    const nginxPath = requireNginxWithLua();
    dns = await startDnsStandIn(1);
    ollama = await startFakeOllama({ host: OLLAMA_POD, port: 11434 });
    const httpPort = await freePort("0.0.0.0");
    resetRecorded();
    const gateway = new KubernetesGateway("gateway", {
      proxyImage: "registry.example.com/ollama-gateway-proxy:0.1.0",
      httpPort,
      apiKeys: [{ name: "app", scope: "inference" }],
      dnsServer: dns.address,
    });
    key = (await valueOf(gateway.apiKeys)).app;
    await settle();
    dns.setRecords(gateway.ollamaServiceName, [OLLAMA_POD]);

    const deployment = unwrap(findResource(TYPES.deployment, "gateway-proxy").inputs);
    const configMap = unwrap(findResource(TYPES.configMap, "gateway-proxy-config").inputs);
    const secret = unwrap(findResource(TYPES.secret, "gateway-proxy-credentials").inputs);
    const pod = deployment.spec.template.spec;
    [container] = pod.containers;
    dir = mkdtempSync(path.join(tmpdir(), "k8s-pod-"));
    chmodSync(dir, 0o755);
    const volumes = Object.fromEntries(pod.volumes.map((v: any) => [v.name, v]));
    for (const mount of container.volumeMounts) {
      const target = here([mount.mountPath])[0];
      mkdirSync(target, { recursive: true, mode: 0o755 });
      const volume = volumes[mount.name];
      if (volume.configMap) {
        for (const item of volume.configMap.items) {
          mkdirSync(path.dirname(path.join(target, item.path)), { recursive: true, mode: 0o755 });
          // The image ships the token-accounting module at DEBIAN_USAGE_MODULE; this host's build stands in.
          const content = (configMap.data[item.key] as string).replaceAll(DEBIAN_USAGE_MODULE, usageModulePath());
          writeFileSync(path.join(target, item.path), content, { mode: 0o644 });
        }
      } else if (volume.secret) {
        // fsGroup makes the files the workers' group's; here the workers are nginx's `nobody`.
        new KubeletVolume(target, volume.secret.defaultMode, credentialOwner("nobody")).write(secret.stringData);
      } else {
        chmodSync(target, 0o777); // an emptyDir
      }
    }
    // A file, as a container runtime gives: nginx opens /dev/stderr and /dev/stdout, which fails on Node's socket pipes.
    logFile = path.join(dir, "..", `${path.basename(dir)}.log`);
    const log = openSync(logFile, "w");
    nginx = spawn(nginxPath, here(container.command).slice(1), { stdio: ["ignore", log, log] });
    closeSync(log);
    await waitForPort(httpPort, "127.0.0.1", nginx, output, 10_000);
    url = `http://127.0.0.1:${httpPort}`;
  });
  afterAll(async () => {
    if (nginx && nginx.exitCode === null) nginx.kill("SIGKILL");
    await ollama?.close();
    await dns?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (logFile) rmSync(logFile, { force: true });
  });

  it("serves Ollama's pods through the Service name with the Secret's key, and refuses others", async () => {
    const tags = await request(`${url}/api/tags`, { headers: bearer(key) });
    expect(tags.status).toBe(200);
    expect(ollama.requests.some((r) => r.path === "/api/tags")).toBe(true);
    expect((await request(`${url}/api/tags`)).status).toBe(401);
    expect((await request(`${url}/api/tags`, { headers: bearer(`${key}x`) })).status).toBe(401);
  });

  it("passes its readiness and liveness probes as declared, and only readiness fails while Ollama is gone", async () => {
    const probe = (kind: "readinessProbe" | "livenessProbe") => exitCode(container[kind].exec.command);
    expect(await probe("readinessProbe")).toBe(0);
    expect(await probe("livenessProbe")).toBe(0);
    dns.setRecords("gateway-ollama.ollama-gateway.svc.cluster.local", []);
    await waitUntil(async () => (await probe("readinessProbe")) !== 0, 8000, 200);
    expect(await probe("livenessProbe")).toBe(0);
    dns.setRecords("gateway-ollama.ollama-gateway.svc.cluster.local", [OLLAMA_POD]);
    await waitUntil(async () => (await probe("readinessProbe")) === 0, 8000, 200);
  });

  it("stops gracefully with its preStop hook: a stream in progress finishes, then nginx exits on its own", async () => {
    ollama.setOptions({ chunks: 16, chunkIntervalMs: 500 });
    const stream = streamChat(url, undefined, bearer(key));
    await waitUntil(() => ollama.activeStreams === 1, 5000);
    const started = Date.now();
    expect(await exitCode(here(container.lifecycle.preStop.exec.command))).toBe(0);
    const { lines } = await stream; // rejects unless 200 and the last line says done
    expect(lines).toHaveLength(17);
    expect(Date.now() - started).toBeGreaterThanOrEqual(5000); // out of the Service first
    await waitUntil(() => nginx.exitCode !== null, 5000);
    expect(nginx.exitCode).toBe(0);
    expect(output()).not.toMatch(/\[(emerg|alert|crit)\]/);
  }, 40_000);
});
