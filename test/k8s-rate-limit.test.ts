/**
 * Per-caller rate limits with N proxy pods, on the real nginx: the Kubernetes target renders each
 * pod's share of the limit (bundle/proxySettings.ts `perProxyRateLimit`), and N nginx
 * instances running that bundle together admit one caller's configured rate, not N times it.
 */
import path from "node:path";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { configMapKey } from "../components/KubernetesGateway";
import { type FakeOllama, startFakeOllama } from "../harness/fake-ollama";
import { bearer, request } from "../harness/http";
import { nginxTestsEnabled, type RunningGateway, startGateway } from "../harness/nginx";
import { evaluateProgram, findResource, installMocks, stackFileConfig, TYPES, unwrap } from "../harness/pulumi-mocks";

installMocks();

const KEY = "k8s-rate-key-0000000000000000000000";
const REPLICAS = 3;
const CONFIGURED = { requestsPerSecond: 12, burst: 6 };
const PHASE_MS = 3000;
const RATE_LINE = /^ {2}rate = \{ rps = ([0-9.]+), burst = ([0-9]+) \},$/m;

/** The rate line of a bundle's config.lua. */
const rateOf = (configLua: string) => {
  const match = RATE_LINE.exec(configLua);
  if (!match) throw new Error(`no rate line in config.lua:\n${configLua}`);
  return { line: match[0], requestsPerSecond: Number(match[1]), burst: Number(match[2]) };
};

/** Requests from one caller, one sequential loop per target, for `ms`; counts 200 and 429. */
async function hammer(urls: string[], ms: number) {
  const counts = { ok: 0, limited: 0, other: [] as string[] };
  const start = Date.now();
  await Promise.all(
    urls.map(async (url) => {
      while (Date.now() - start < ms) {
        const response = await request(`${url}/api/version`, { headers: bearer(KEY) });
        if (response.status === 200) counts.ok++;
        else if (response.status === 429) counts.limited++;
        else counts.other.push(`${response.status} ${response.body}`);
      }
    }),
  );
  return { ...counts, seconds: (Date.now() - start) / 1000 };
}

describe.runIf(nginxTestsEnabled)("a caller's rate limit across Kubernetes proxy replicas", () => {
  let fake: FakeOllama;
  let k8sConfigLua: string;
  const gateways: RunningGateway[] = [];

  beforeAll(async () => {
    await evaluateProgram({
      ...stackFileConfig("k8s"),
      rateLimit: `${CONFIGURED.requestsPerSecond}/${CONFIGURED.burst}`,
      proxyReplicas: String(REPLICAS),
    });
    k8sConfigLua = unwrap(findResource(TYPES.configMap, "gateway-proxy-config").inputs).data[configMapKey("lua/gateway/config.lua")];
    const perProxy = rateOf(k8sConfigLua);
    fake = await startFakeOllama();
    for (let i = 0; i < REPLICAS; i++)
      gateways.push(
        await startGateway({
          upstreamUrl: fake.url,
          spec: { apiKeys: [{ name: "app", key: KEY, scope: "inference" }], rateLimit: { requestsPerSecond: perProxy.requestsPerSecond, burst: perProxy.burst } },
        }),
      );
  });
  afterAll(async () => {
    await Promise.all(gateways.map((g) => g.stop()));
    await fake?.close();
  });

  it("renders each proxy's share: the per-proxy limit times the replicas is the configured limit", () => {
    const perProxy = rateOf(k8sConfigLua);
    expect(perProxy.requestsPerSecond * REPLICAS).toBeCloseTo(CONFIGURED.requestsPerSecond, 9);
    expect(perProxy.burst).toBe(Math.floor(CONFIGURED.burst / REPLICAS));
    // The nginx instances here run exactly that limit.
    for (const g of gateways) expect(rateOf(readFileSync(path.join(g.dir, "lua/gateway/config.lua"), "utf8")).line).toBe(perProxy.line);
  });

  it("admits the configured rate across all replicas when requests are spread over them", async () => {
    const run = await hammer(
      gateways.map((g) => g.url),
      PHASE_MS,
    );
    expect(run.other).toEqual([]);
    expect(run.limited).toBeGreaterThan(run.ok); // the caller asked far more than the limit
    const { requestsPerSecond: rate, burst } = CONFIGURED;
    // GCRA: rate × time, plus each proxy's burst allowance (at most burst + replicas in all), plus
    // one request per proxy for the edges of the window. Without the split: about 3× this.
    expect(run.ok).toBeLessThanOrEqual(rate * run.seconds + burst + REPLICAS + REPLICAS);
    expect(run.ok).toBeGreaterThanOrEqual(rate * run.seconds * 0.8);
    console.log(`${REPLICAS} proxies, configured ${rate}/s burst ${burst}: ${run.ok} admitted, ${run.limited} refused in ${run.seconds.toFixed(2)} s (${(run.ok / run.seconds).toFixed(1)}/s)`);
  });

  it("admits only one proxy's share when every request reaches the same replica (documented)", async () => {
    await new Promise((r) => setTimeout(r, 1000)); // let the previous phase's allowance refill
    const run = await hammer([gateways[0].url], PHASE_MS);
    const perProxy = rateOf(k8sConfigLua);
    expect(run.ok).toBeLessThanOrEqual(perProxy.requestsPerSecond * run.seconds + perProxy.burst + 2);
    expect(run.ok).toBeLessThan(CONFIGURED.requestsPerSecond * run.seconds * 0.5);
  });
});
