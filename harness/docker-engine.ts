/**
 * A real Docker engine for the container suite: the project's own dockerd (scripts/docker-engine.sh:
 * its own data root and socket, stopped by its pid), or the one OLLAMA_GATEWAY_DOCKER_HOST names.
 * It fails loudly, with the command that installs what is missing; OLLAMA_GATEWAY_SKIP_DOCKER=1
 * skips the suite for people without Docker (never in CI: .ci/run unsets it).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, copyFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import Docker from "dockerode";

/** The repository (no vitest import here: the benchmarks use this module too). */
const ROOT = path.join(__dirname, "..");

export const DOCKER_SKIP_VARIABLE = "OLLAMA_GATEWAY_SKIP_DOCKER";
export const DOCKER_HOST_VARIABLE = "OLLAMA_GATEWAY_DOCKER_HOST";
export const dockerTestsEnabled = process.env[DOCKER_SKIP_VARIABLE] !== "1";

const ENGINE_SCRIPT = path.join(ROOT, "scripts", "docker-engine.sh");
/** What the container suite runs in place of `ollama/ollama` (no registry is reachable here). */
export const STANDIN_OLLAMA_IMAGE = "ollama-gateway-standin-ollama:test";

export interface DockerEngine {
  docker: Docker;
  /** unix:///... for the docker CLI and DOCKER_HOST. */
  host: string;
  /** Stops the engine if this run started it. */
  stop(): void;
}

function engineScript(command: string): string {
  try {
    return execFileSync("bash", [ENGINE_SCRIPT, command], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 300_000 });
  } catch (error) {
    const e = error as { stderr?: string; stdout?: string; status?: number };
    throw new Error(
      `The container suite needs a Docker engine (scripts/docker-engine.sh ${command} exited ${e.status}):\n${e.stderr ?? ""}${e.stdout ?? ""}\n` +
        `Install one with: sudo apt-get install -y docker.io debootstrap\n` +
        `or point ${DOCKER_HOST_VARIABLE} at a running engine, or skip this suite with ${DOCKER_SKIP_VARIABLE}=1.`,
    );
  }
}

/** Starts (or reuses) the engine and makes sure the base image exists; throws with the fix otherwise. */
export async function startDockerEngine(): Promise<DockerEngine> {
  const given = process.env[DOCKER_HOST_VARIABLE];
  let host: string;
  let stop = () => {};
  if (given) {
    host = given;
  } else {
    const started = engineScript("start");
    host = /DOCKER_HOST=(\S+)/.exec(started)?.[1] ?? "";
    stop = () => void engineScript("stop");
  }
  const docker = new Docker({ socketPath: host.replace(/^unix:\/\//, "") });
  try {
    await docker.ping();
  } catch (error) {
    stop();
    throw new Error(`No Docker engine answers at ${host} (${(error as Error).message}). Start one with: sudo bash scripts/docker-engine.sh start`);
  }
  // The Dockerfiles start FROM debian:bookworm-slim; without a registry it is made from Debian's mirror.
  if (!(await imageExists(docker, "debian:bookworm-slim"))) execFileSync("bash", [ENGINE_SCRIPT, "base-image"], { env: { ...process.env, DOCKER_HOST: host }, stdio: "pipe" });
  return { docker, host, stop };
}

export async function imageExists(docker: Docker, name: string): Promise<boolean> {
  try {
    await docker.getImage(name).inspect();
    return true;
  } catch {
    return false;
  }
}

/** Follows a build's progress; throws with the build's own last lines when a step fails. */
export async function buildImage(docker: Docker, context: string, tag: string, dockerfile = "Dockerfile"): Promise<string> {
  const src = listFiles(context);
  const stream = await docker.buildImage({ context, src }, { t: tag, dockerfile, rm: true, forcerm: true });
  const output: string[] = [];
  const result = await new Promise<unknown[]>((resolve, reject) =>
    docker.modem.followProgress(stream, (error: Error | null, events: unknown[]) => (error ? reject(error) : resolve(events)), (event: { stream?: string }) => {
      if (event.stream) output.push(event.stream);
    }),
  );
  const failed = (result as { error?: string }[]).find((event) => event.error);
  if (failed) throw new Error(`docker build of ${tag} (context ${context}) failed: ${failed.error}\n${output.slice(-15).join("")}`);
  return (await docker.getImage(tag).inspect()).Id;
}

function listFiles(dir: string, prefix = ""): string[] {
  return readdirSync(path.join(dir, prefix), { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? listFiles(dir, path.join(prefix, entry.name)) : [path.join(prefix, entry.name)],
  );
}

/**
 * Builds the stand-in Ollama image: harness/fake-ollama.ts bundled for Node (esbuild, which
 * tsx already brings) behind the `ollama` commands the program runs.
 */
export async function buildStandInOllama(docker: Docker): Promise<string> {
  const context = mkdtempSync(path.join(tmpdir(), "standin-ollama-"));
  try {
    const source = path.join(ROOT, "harness", "standin-ollama");
    for (const file of readdirSync(source)) copyFileSync(path.join(source, file), path.join(context, file));
    const esbuild = require("esbuild") as typeof import("esbuild");
    const bundled = esbuild.buildSync({
      entryPoints: [path.join(ROOT, "harness", "fake-ollama.ts")],
      bundle: true,
      platform: "node",
      target: "node18",
      format: "cjs",
      write: false,
    });
    writeFileSync(path.join(context, "fake-ollama.js"), bundled.outputFiles[0].text);
    return await buildImage(docker, context, STANDIN_OLLAMA_IMAGE);
  } finally {
    rmSync(context, { recursive: true, force: true });
  }
}
