/**
 * Live credential updates and fail-closed credential files, on the real nginx: credentials
 * change under concurrent load with no reload and no failed request, and broken files never
 * open the gateway.
 */
import { chmodSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GatewaySpecInput } from "../bundle/spec";
import { type FakeOllama, startFakeOllama } from "../harness/fake-ollama";
import { basic, bearer, request } from "../harness/http";
import { runLoad } from "../harness/load";
import { everyWorkerCaughtUp, nginxTestsEnabled, type RunningGateway, startGateway, waitUntil } from "../harness/nginx";

const STEADY_KEY = "steady-key-00000000000000000000000";
const ADDED_KEY = "added-key-0123456789abcdef000000";
const REMOVED_KEY = "removed-key-00000000000000000000000";
const USER_PASSWORD = "steady-password-1";

const baseSpec = (apiKeys: { name: string; key: string }[]): GatewaySpecInput => ({
  apiKeys: apiKeys.map((k) => ({ ...k, scope: "inference" as const })),
  basicUsers: [{ name: "steady-user", password: USER_PASSWORD, scope: "inference" }],
  rateLimit: { requestsPerSecond: 100_000, burst: 100_000 },
});

/** Sends requests from `concurrency` loops until stopped; counts anything but 200. */
function steadyLoad(url: string, headers: Record<string, string>, concurrency = 8) {
  return runLoad(concurrency, async () => {
    const response = await request(`${url}/api/version`, { headers });
    if (response.status !== 200) throw new Error(`${response.status} ${response.body}`);
  });
}

describe.runIf(nginxTestsEnabled)("live credential updates", () => {
  let fake: FakeOllama;
  let gateway: RunningGateway;
  const statusWith = async (headers: Record<string, string>) => (await request(`${gateway.url}/api/version`, { headers })).status;
  /** True when `count` requests in a row (spread over the workers) all get `status`. */
  const consistently = async (headers: Record<string, string>, status: number, count = 8) => {
    for (let i = 0; i < count; i++) if ((await statusWith(headers)) !== status) return false;
    return true;
  };

  beforeAll(async () => {
    fake = await startFakeOllama();
    gateway = await startGateway({
      upstreamUrl: fake.url,
      spec: baseSpec([
        { name: "steady", key: STEADY_KEY },
        { name: "removed", key: REMOVED_KEY },
      ]),
    });
  });
  afterAll(async () => {
    await gateway?.stop();
    await fake?.close();
  });

  it("accepts added keys and refuses removed ones within 2 s, with zero failed requests and no reload", async () => {
    const masterBefore = gateway.pid;
    const keyLoad = steadyLoad(gateway.url, bearer(STEADY_KEY));
    const userLoad = steadyLoad(gateway.url, basic("steady-user", USER_PASSWORD), 2);
    await new Promise((r) => setTimeout(r, 300));
    expect(await statusWith(bearer(ADDED_KEY))).toBe(401);
    expect(await statusWith(bearer(REMOVED_KEY))).toBe(200);

    gateway.updateCredentials(
      baseSpec([
        { name: "steady", key: STEADY_KEY },
        { name: "added", key: ADDED_KEY },
      ]),
    );
    const addedAfter = await waitUntil(() => consistently(bearer(ADDED_KEY), 200), 2000);
    const removedAfter = await waitUntil(() => consistently(bearer(REMOVED_KEY), 401), 2000);
    await new Promise((r) => setTimeout(r, 300));
    const keyStats = await keyLoad.stop();
    const userStats = await userLoad.stop();

    expect(keyStats.failed).toEqual([]);
    expect(userStats.failed).toEqual([]);
    expect(keyStats.ok).toBeGreaterThan(50);
    expect(addedAfter).toBeLessThan(2000);
    expect(removedAfter).toBeLessThan(2000);
    expect(gateway.pid).toBe(masterBefore);
    expect(gateway.errorLog()).not.toMatch(/signal process|reconfiguring/);
  });

  describe("broken credential files fail closed and recover", () => {
    const keysFile = () => path.join(gateway.dir, "credentials", "api-keys");
    const healthy = baseSpec([{ name: "steady", key: STEADY_KEY }]);
    const expectRecovery = async () => {
      gateway.updateCredentials({ ...healthy, apiKeys: [...healthy.apiKeys!, { name: "nudge", key: `nudge-${Date.now()}-000000000000000`, scope: "read" }] });
      await waitUntil(async () => (await consistently(bearer(STEADY_KEY), 200)), 3000);
    };
    const breakWith = async (damage: () => void, expectedLog: RegExp) => {
      damage();
      // Each worker notices on its own check, so wait until every answer is 503.
      await waitUntil(async () => (await consistently(bearer(STEADY_KEY), 503)), 3000);
      await everyWorkerCaughtUp();
      const response = await request(`${gateway.url}/api/version`, { headers: bearer(STEADY_KEY) });
      expect(response.json().error).toMatch(/credential store/);
      expect(await statusWith({})).toBe(401);
      // Basic users live in their own file and keep working.
      expect(await statusWith(basic("steady-user", USER_PASSWORD))).toBe(200);
      await waitUntil(() => expectedLog.test(gateway.errorLog()), 2000);
      await expectRecovery();
    };

    it("when the file is missing", () => breakWith(() => rmSync(keysFile()), /api-keys is missing/));
    it("when the file is empty", () => breakWith(() => writeFileSync(keysFile(), ""), /api-keys is invalid: file is empty/));
    it("when the file is truncated", async () => {
      const content = readFileSync(keysFile(), "utf8");
      await breakWith(() => writeFileSync(keysFile(), content.slice(0, content.length - 12)), /api-keys is invalid/);
    });
    it("when the file has duplicate names", async () => {
      const lines = readFileSync(keysFile(), "utf8").trim().split("\n");
      const entry = lines.find((l) => l.startsWith("steady\t"))!;
      const duplicated = [lines[0], lines[1], entry, entry.replace(/[0-9a-f]{64}$/, "f".repeat(64)), "# end 2", ""].join("\n");
      await breakWith(() => writeFileSync(keysFile(), duplicated), /repeats the name steady/);
    });
    it("when the file is garbage", () =>
      breakWith(() => {
        writeFileSync(`${keysFile()}.new`, "# ollama-gateway api-keys v1\nthis is not a key line\n# end 1\n");
        renameSync(`${keysFile()}.new`, keysFile());
      }, /entry 1 is malformed/));
    // As root the workers run as nobody; otherwise as the owner: mode 000 locks out both.
    it("when the file is unreadable", () => breakWith(() => chmodSync(keysFile(), 0o000), /api-keys is unreadable/));
    // A mode or owner fixed after the write changes neither size nor mtime: the file's ctime tells.
    it("when the file was unreadable and only its mode is fixed, with the same content", async () => {
      const mode = statSync(keysFile()).mode & 0o777;
      chmodSync(keysFile(), 0o000);
      await waitUntil(async () => (await consistently(bearer(STEADY_KEY), 503)), 3000);
      await everyWorkerCaughtUp();
      chmodSync(keysFile(), mode);
      await waitUntil(async () => (await consistently(bearer(STEADY_KEY), 200)), 3000);
    });
  });
});
