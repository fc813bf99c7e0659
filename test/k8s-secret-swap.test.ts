/**
 * Credentials from a Kubernetes Secret volume, on the real nginx: the kubelet's atomic update
 * (a new timestamped directory, `..data` swapped by renaming a temporary symlink, the files
 * themselves symlinks through `..data`) reproduced exactly (harness/kubelet-volume.ts),
 * under concurrent streaming load. The proxy takes up each new version with zero failed requests.
 */
import { lstatSync, readlinkSync, readdirSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bcryptHash } from "../bundle/credentials";
import { renderCredentialFiles, workerUser } from "../bundle/render";
import { type GatewaySpecInput, validateSpec } from "../bundle/spec";
import { credentialOwner } from "../bundle/write";
import { type FakeOllama, startFakeOllama } from "../harness/fake-ollama";
import { runLoad } from "../harness/load";
import { basic, bearer, request, streamChat } from "../harness/http";
import { KubeletVolume } from "../harness/kubelet-volume";
import { everyWorkerCaughtUp, nginxTestsEnabled, type RunningGateway, startGateway, waitUntil } from "../harness/nginx";

const STEADY_KEY = "steady-key-k8s-00000000000000000000";
const USER_PASSWORD = "steady-password-k8s";
const rotatingKey = (generation: number) => `rotating-key-g${generation}-0000000000000000000000`;

const specWith = (generation: number): GatewaySpecInput => ({
  apiKeys: [
    { name: "steady", key: STEADY_KEY, scope: "inference" },
    { name: "rotating", key: rotatingKey(generation), scope: "inference" },
  ],
  basicUsers: [{ name: "steady-user", password: USER_PASSWORD, scope: "inference" }],
  rateLimit: { requestsPerSecond: 100_000, burst: 100_000 },
  // Every version checks that the old key is refused, over a hundred times in all: this suite is
  // about when it is refused, not the per-address failure limit (test/abuse-auth.test.ts).
  failedAuth: { token: 100_000 },
});

/** Streaming chats with the steady key, and Basic-authenticated tags, until stopped. */
function streamingLoad(url: string, concurrency = 6) {
  return runLoad(concurrency, async (loop) => {
    if (loop > 0) {
      await streamChat(url, undefined, bearer(STEADY_KEY));
      return;
    }
    const response = await request(`${url}/api/tags`, { headers: basic("steady-user", USER_PASSWORD) });
    if (response.status !== 200) throw new Error(`/api/tags answered ${response.status}: ${response.body}`);
  });
}

describe.runIf(nginxTestsEnabled)("credentials from a Kubernetes Secret volume", () => {
  let fake: FakeOllama;
  let gateway: RunningGateway;
  let volume: KubeletVolume;
  // One bcrypt hash for the steady user across versions: the Secret changes only where a key does.
  const hashes = new Map<string, string>();
  const hash = (_name: string, password: string) => hashes.get(password) ?? (hashes.set(password, bcryptHash(password, 6)), hashes.get(password)!);
  const secretData = (generation: number) =>
    Object.fromEntries(
      Object.entries(renderCredentialFiles(validateSpec({ ...specWith(generation), upstream: gateway.spec.upstream, listen: gateway.spec.listen }), hash)).map(
        ([file, content]) => [path.basename(file), content],
      ),
    );
  const statusWith = async (key: string) => (await request(`${gateway.url}/api/version`, { headers: bearer(key) })).status;
  const consistently = async (key: string, status: number, count = 8) => {
    for (let i = 0; i < count; i++) if ((await statusWith(key)) !== status) return false;
    return true;
  };

  beforeAll(async () => {
    fake = await startFakeOllama({ chunks: 6, chunkIntervalMs: 30 });
    gateway = await startGateway({ upstreamUrl: fake.url, spec: specWith(0) });
    const spec = validateSpec({ ...specWith(0), upstream: gateway.spec.upstream, listen: gateway.spec.listen });
    // The Secret volume replaces the files startGateway wrote, name by name (each by a rename).
    volume = new KubeletVolume(path.join(gateway.dir, "credentials"), 0o440, credentialOwner(workerUser(spec)));
    volume.write(secretData(0));
    await everyWorkerCaughtUp();
  });
  afterAll(async () => {
    await gateway?.stop();
    await fake?.close();
  });

  it("lays the files out as the kubelet does", () => {
    const dir = volume.dir;
    const current = readlinkSync(path.join(dir, "..data"));
    expect(current).toMatch(/^\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\w+$/);
    for (const name of ["api-keys", "htpasswd"]) {
      expect(lstatSync(path.join(dir, name)).isSymbolicLink()).toBe(true);
      expect(readlinkSync(path.join(dir, name))).toBe(`..data/${name}`);
      expect(lstatSync(path.join(dir, current, name)).mode & 0o777).toBe(0o440);
    }
    expect(readdirSync(dir).filter((n) => n.startsWith("..2"))).toEqual([current]);
  });

  it("takes up every new version under streaming load within 2 s, with zero failed requests", async () => {
    expect(await consistently(rotatingKey(0), 200)).toBe(true);
    const load = streamingLoad(gateway.url);
    await waitUntil(() => load.stats.ok >= 10, 10_000);
    const pickUpMs: number[] = [];
    for (let generation = 1; generation <= 4; generation++) {
      volume.write(secretData(generation));
      pickUpMs.push(await waitUntil(() => consistently(rotatingKey(generation), 200), 2000));
      await everyWorkerCaughtUp();
      expect(await consistently(rotatingKey(generation - 1), 401)).toBe(true);
      // The kubelet removed the old version: only the current directory is left.
      expect(readdirSync(volume.dir).filter((n) => n.startsWith("..2"))).toEqual([volume.versions.at(-1)]);
    }
    const stats = await load.stop();
    expect(stats.failed).toEqual([]);
    expect(stats.ok).toBeGreaterThan(40);
    expect(gateway.errorLog()).not.toMatch(/credential file .* (is missing|is invalid|could not be loaded)/);
    console.log(`Secret swap picked up in ${pickUpMs.join(", ")} ms; ${stats.ok} requests, 0 failed`);
  });

  it("refuses a key the Secret no longer has even when file sizes and times match", async () => {
    // Same length keys, written within the same second: only the inode tells the versions apart.
    volume.write(secretData(10));
    volume.write(secretData(11));
    await waitUntil(() => consistently(rotatingKey(11), 200), 2000);
    await everyWorkerCaughtUp();
    expect(await consistently(rotatingKey(10), 401)).toBe(true);
  });
});
