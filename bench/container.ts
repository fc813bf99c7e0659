/**
 * npm run bench:container [-- --no-write]
 *
 * The proxy image on a real Docker engine (the project's own, scripts/docker-engine.sh, unless
 * OLLAMA_GATEWAY_DOCKER_HOST names one): image size, build time cold (no cache: every package
 * fetched from Debian's mirror) and cached, and container start to first healthy answer, for a
 * bundle rendered with `--flavor debian` in front of the stand-in Ollama. Writes
 * bench/results/container.md.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { PROXY_IMAGE_TAG, PROXY_USER } from "../components/AuthProxy";
import { renderBundle } from "../bundle/render";
import { validateSpec } from "../bundle/spec";
import { writeBundle } from "../bundle/write";
import { buildImage, buildStandInOllama, startDockerEngine, STANDIN_OLLAMA_IMAGE } from "../harness/docker-engine";
import { freePort } from "../harness/ports";

const ROOT = path.join(__dirname, "..");
const RUNS = 7;
const write = !process.argv.includes("--no-write");
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(): Promise<void> {
  const engine = await startDockerEngine();
  const { docker } = engine;
  const dir = mkdtempSync(path.join(tmpdir(), "bench-container-"));
  try {
    const context = path.join(ROOT, "image", "proxy");
    let started = performance.now();
    const stream = await docker.buildImage({ context, src: ["Dockerfile", "packages.txt"] }, { t: PROXY_IMAGE_TAG, nocache: true, rm: true });
    await new Promise((resolve, reject) => docker.modem.followProgress(stream, (error: Error | null) => (error ? reject(error) : resolve(null))));
    const coldMs = performance.now() - started;
    started = performance.now();
    await buildImage(docker, context, PROXY_IMAGE_TAG);
    const cachedMs = performance.now() - started;
    const image = await docker.getImage(PROXY_IMAGE_TAG).inspect();
    const base = await docker.getImage("debian:bookworm-slim").inspect();

    await buildStandInOllama(docker);
    const network = await docker.createNetwork({ Name: `bench-container-${process.pid}` });
    const ollama = await docker.createContainer({
      Image: STANDIN_OLLAMA_IMAGE,
      HostConfig: { NetworkMode: network.id },
      NetworkingConfig: { EndpointsConfig: { [network.id]: { Aliases: ["ollama"] } } },
    });
    await ollama.start();
    const spec = validateSpec({
      upstream: "http://ollama:11434",
      listen: { address: "0.0.0.0", http: 8080 },
      apiKeys: [{ name: "bench", key: "bench-container-key-9Xq2Lm7Vc4Rb", scope: "inference" }],
      accessLog: "/dev/stdout",
      errorLog: "/dev/stderr",
    });
    writeBundle(dir, renderBundle(spec, { flavor: "debian" }).files);
    execFileSync("chown", ["-R", PROXY_USER, dir]);

    const toHealthy: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const port = await freePort();
      const proxy = await docker.createContainer({
        Image: PROXY_IMAGE_TAG,
        HostConfig: {
          ReadonlyRootfs: true,
          CapDrop: ["ALL"],
          Binds: [`${dir}:/gateway`],
          Tmpfs: { "/gateway/tmp": "uid=10001,gid=10001", "/gateway/logs": "uid=10001,gid=10001" },
          PortBindings: { "8080/tcp": [{ HostIp: "127.0.0.1", HostPort: String(port) }] },
          NetworkMode: network.id,
        },
        ExposedPorts: { "8080/tcp": {} },
      });
      started = performance.now();
      await proxy.start();
      for (;;) {
        const ok = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1000) }).then(
          (r) => r.status === 200,
          () => false,
        );
        if (ok) break;
        if (performance.now() - started > 30_000) throw new Error("the proxy did not answer /healthz with 200 in 30 s");
        await sleep(10);
      }
      toHealthy.push(performance.now() - started);
      await proxy.remove({ force: true, v: true });
    }
    await ollama.remove({ force: true });
    await network.remove();

    const mb = (bytes: number) => (bytes / 1e6).toFixed(1);
    const lines = [
      "# Proxy image",
      "",
      `Measured ${new Date().toISOString().slice(0, 10)} with \`npm run bench:container\` (bench/container.ts) on the project's 2-CPU machine,`,
      "Docker 20.10 (the project's own engine, overlay2). The base image here is made with debootstrap (minbase), which is",
      "larger than Docker Hub's `debian:bookworm-slim`; the difference between the two rows is what the Dockerfile adds.",
      "",
      "| what | value |",
      "|---|---|",
      `| image size, \`${PROXY_IMAGE_TAG}\` | ${mb(image.Size)} MB |`,
      `| base image, \`debian:bookworm-slim\` (debootstrap here) | ${mb(base.Size)} MB |`,
      `| added by the Dockerfile | ${mb(image.Size - base.Size)} MB |`,
      `| build, cold (\`nocache\`: packages from Debian's mirror) | ${(coldMs / 1000).toFixed(1)} s |`,
      `| build, cached (nothing changed) | ${(cachedMs / 1000).toFixed(2)} s |`,
      `| container start to first \`/healthz\` 200, median of ${RUNS} | ${Math.round(median(toHealthy))} ms (min ${Math.round(Math.min(...toHealthy))}, max ${Math.round(Math.max(...toHealthy))}) |`,
      "",
      "Start to healthy is measured from the Engine API's start call to the first 200 on `/healthz` through the port",
      "published on 127.0.0.1 (read-only root, no capabilities, the bundle mounted at /gateway, the stand-in Ollama",
      "answering the upstream probe). Docker's own health status follows at the healthcheck `interval` (10 s in the",
      "Pulumi program), which `wait: true` then waits for.",
      "",
    ];
    process.stdout.write(lines.join("\n"));
    if (write) writeFileSync(path.join(ROOT, "bench", "results", "container.md"), lines.join("\n"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
    engine.stop();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
