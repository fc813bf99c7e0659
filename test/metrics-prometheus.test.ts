/**
 * Prometheus metrics (issue 16, item 6), proven with a real Prometheus server (Debian's
 * `prometheus` package) that this test starts on loopback, with its own config and storage in a
 * temporary directory, scraping the gateway's metrics listener every second, and stops by pid.
 * PromQL through its HTTP API must return the counts this test produced; `promtool check metrics`
 * must accept the scraped text; every panel of docs/grafana-dashboard.json must return data.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { X509Certificate } from "node:crypto";
import { makeCertificates } from "../harness/certs";
import { FAKE_MODEL, type FakeOllama, startFakeOllama } from "../harness/fake-ollama";
import { bearer, request } from "../harness/http";
import { freePort, nginxTestsEnabled, type RunningGateway, startGateway, waitUntil } from "../harness/nginx";
import { waitForPort } from "../harness/ports";

// Test-only credentials, made up for this file.
const KEYS = {
  app: "metrics-app-key-00000000000000000000",
  batch: "metrics-batch-key-000000000000000000",
  slow: "metrics-slow-key-0000000000000000000",
};
const DASHBOARD = path.join(__dirname, "..", "docs", "grafana-dashboard.json");

function requirePrometheus(): void {
  try {
    execFileSync("sh", ["-c", "command -v prometheus && command -v promtool"], { encoding: "utf8" });
  } catch {
    throw new Error("The metrics test needs Prometheus: sudo apt-get install -y prometheus (or OLLAMA_GATEWAY_SKIP_NGINX=1)");
  }
}

describe.runIf(nginxTestsEnabled)("Prometheus metrics, scraped by a real Prometheus", () => {
  let fake: FakeOllama;
  let gateway: RunningGateway;
  let metricsUrl: string;
  let prometheus: ChildProcess | undefined;
  let promUrl: string;
  let promDir: string;
  let promOutput = "";
  /** Tokens the stand-in reported for each caller, read from the responses the clients got. */
  const reported = { app: { prompt: 0, completion: 0 }, batch: { prompt: 0, completion: 0 } };

  beforeAll(async () => {
    requirePrometheus();
    fake = await startFakeOllama({ chunks: 3, chunkIntervalMs: 1 });
    const metricsPort = await freePort();
    gateway = await startGateway({
      upstreamUrl: fake.url,
      spec: {
        apiKeys: [
          { name: "app", key: KEYS.app, scope: "inference" },
          { name: "batch", key: KEYS.batch, scope: "inference" },
          { name: "slow", key: KEYS.slow, scope: "inference", rateLimit: { requestsPerSecond: 0.01, burst: 0 } },
        ],
        rateLimit: { requestsPerSecond: 10_000, burst: 10_000 },
        metrics: { listen: { address: "127.0.0.1", port: metricsPort } },
      },
    });
    metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;

    promDir = mkdtempSync(path.join(tmpdir(), "ollama-gateway-prometheus-"));
    const promPort = await freePort();
    promUrl = `http://127.0.0.1:${promPort}`;
    writeFileSync(
      path.join(promDir, "prometheus.yml"),
      [
        "global:",
        "  scrape_interval: 1s",
        "  evaluation_interval: 1s",
        "scrape_configs:",
        "  - job_name: ollama-gateway",
        `    static_configs: [{ targets: ["127.0.0.1:${metricsPort}"] }]`,
        "",
      ].join("\n"),
    );
    prometheus = spawn(
      "prometheus",
      [
        `--config.file=${path.join(promDir, "prometheus.yml")}`,
        `--storage.tsdb.path=${path.join(promDir, "data")}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
        "--log.level=warn",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    prometheus.stdout!.on("data", (d) => (promOutput += d));
    prometheus.stderr!.on("data", (d) => (promOutput += d));
    await waitForPort(promPort, "127.0.0.1", prometheus, () => promOutput, 20_000);
  }, 60_000);

  afterAll(async () => {
    if (prometheus && prometheus.exitCode === null) {
      const exited = new Promise((resolve) => prometheus!.once("exit", resolve));
      prometheus.kill("SIGTERM");
      await exited;
    }
    if (promDir) rmSync(promDir, { recursive: true, force: true });
    await gateway?.stop();
    await fake?.close();
  });

  async function query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
    const response = await request(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
    const body = response.json();
    if (body.status !== "success") throw new Error(`${expr}: ${response.body}`);
    return body.data.result;
  }
  const scalar = async (expr: string) => Number((await query(expr))[0]?.value[1] ?? NaN);

  it("is served on its own listener only, never on the API port", async () => {
    const onApi = await request(`${gateway.url}/metrics`, { headers: bearer(KEYS.app) });
    expect(onApi.status).toBe(404);
    expect(onApi.body).not.toContain("ollama_gateway_");
    const scraped = await request(metricsUrl);
    expect(scraped.status).toBe(200);
    expect(scraped.headers.get("content-type")).toContain("text/plain; version=0.0.4");
    expect((await request(metricsUrl, { method: "POST" })).status).toBe(403);
    expect((await request(metricsUrl.replace("/metrics", "/other"))).status).toBe(404);
  });

  it("PromQL returns the counts this test produced", async () => {
    for (let i = 0; i < 5; i++) {
      const response = await request(`${gateway.url}/api/chat`, {
        method: "POST",
        headers: bearer(KEYS.app),
        body: JSON.stringify({ model: FAKE_MODEL, messages: [{ role: "user", content: `question number ${i} ${"x".repeat(i * 10)}` }], stream: i % 2 === 0 }),
      });
      expect(response.status).toBe(200);
      const final = JSON.parse(response.body.trim().split("\n").pop()!);
      reported.app.prompt += final.prompt_eval_count;
      reported.app.completion += final.eval_count;
    }
    for (let i = 0; i < 3; i++) {
      const response = await request(`${gateway.url}/v1/chat/completions`, {
        method: "POST",
        headers: bearer(KEYS.batch),
        body: JSON.stringify({ model: FAKE_MODEL, messages: [{ role: "user", content: "a batch job's prompt" }] }),
      });
      const usage = response.json().usage;
      reported.batch.prompt += usage.prompt_tokens;
      reported.batch.completion += usage.completion_tokens;
    }
    // Four authentication failures of two kinds, and two requests over a rate limit.
    const failing: Record<string, string>[] = [{}, {}, { Authorization: "Bearer not-a-known-key-00000000000000" }, { Authorization: "Bearer not-a-known-key-00000000000001" }];
    for (const headers of failing) {
      expect((await request(`${gateway.url}/api/tags`, { headers })).status).toBe(401);
    }
    expect((await request(`${gateway.url}/api/tags`, { headers: bearer(KEYS.slow) })).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await request(`${gateway.url}/api/tags`, { headers: bearer(KEYS.slow) })).status).toBe(429);

    const appTokens = reported.app.prompt + reported.app.completion;
    await waitUntil(async () => (await scalar('sum(ollama_gateway_tokens_total{caller="app"})')) === appTokens && (await scalar('sum(ollama_gateway_rate_limited_total{caller="slow"})')) === 2, 20_000, 500);
    expect(await scalar('ollama_gateway_tokens_total{caller="app",model="gemma3:1b",kind="prompt"}')).toBe(reported.app.prompt);
    expect(await scalar('ollama_gateway_tokens_total{caller="app",model="gemma3:1b",kind="completion"}')).toBe(reported.app.completion);
    expect(await scalar('sum by (kind) (ollama_gateway_tokens_total{caller="batch",kind="prompt"})')).toBe(reported.batch.prompt);
    expect(await scalar('sum(ollama_gateway_requests_total{caller="app",route_class="inference",status="200"})')).toBe(5);
    expect(await scalar('sum(ollama_gateway_requests_total{caller="batch",status="200"})')).toBe(3);
    expect(await scalar('ollama_gateway_auth_failures_total{reason="missing"}')).toBe(2);
    expect(await scalar('ollama_gateway_auth_failures_total{reason="api_key"}')).toBe(2);
    expect(await scalar('ollama_gateway_rate_limited_total{caller="slow",limit="rate"}')).toBe(2);
    expect(await scalar('sum(ollama_gateway_request_duration_seconds_count{route_class="inference"})')).toBe(8);
    expect(await scalar('sum(ollama_gateway_time_to_first_byte_seconds_count{route_class="inference"})')).toBe(8);
    expect(await scalar('min(ollama_gateway_credential_file_ok)')).toBe(1);
    expect(await scalar('max(ollama_gateway_credential_file_age_seconds)')).toBeGreaterThanOrEqual(0);
    expect(await scalar('sum(ollama_gateway_in_flight_requests)')).toBe(0);
  }, 60_000);

  it("creates no series for a model that was not served, and shows no secret", async () => {
    const response = await request(`${gateway.url}/api/chat`, {
      method: "POST", headers: bearer(KEYS.app), body: JSON.stringify({ model: "", messages: [] }),
    });
    expect(response.status).toBe(400);
    await request(`${gateway.url}/api/show`, { method: "POST", headers: bearer(KEYS.app), body: JSON.stringify({ model: "no-such-model:latest" }) });
    const text = (await request(metricsUrl)).body;
    expect(text).not.toContain("no-such-model");
    const models = new Set([...text.matchAll(/model="([^"]*)"/g)].map((m) => m[1]));
    expect([...models]).toEqual([FAKE_MODEL]);
    for (const key of Object.values(KEYS)) {
      expect(text).not.toContain(key);
      expect(gateway.accessLogText()).not.toContain(key);
    }
  });

  it("passes promtool check metrics", async () => {
    const text = (await request(metricsUrl)).body;
    const output = execFileSync("sh", ["-c", "promtool check metrics 2>&1; echo exit=$?"], { input: text, encoding: "utf8" });
    expect(output.trim()).toBe("exit=0");
  });

  it("every panel of docs/grafana-dashboard.json returns data", async () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8"));
    const exprs: { title: string; expr: string }[] = dashboard.panels.flatMap((panel: { title: string; targets?: { expr: string }[] }) =>
      (panel.targets ?? []).map((t) => ({ title: panel.title, expr: t.expr })),
    );
    expect(exprs.length).toBeGreaterThanOrEqual(8);
    // Grafana's variables, as Grafana would fill them in for a 5-minute view.
    const fill = (expr: string) => expr.replaceAll("$__rate_interval", "1m").replaceAll("$__range", "5m").replaceAll("$caller", ".*");
    // rate() needs two samples in its window.
    await new Promise((r) => setTimeout(r, 2500));
    const empty: string[] = [];
    for (const { title, expr } of exprs) {
      if ((await query(fill(expr))).length === 0) empty.push(`${title}: ${expr}`);
    }
    expect(empty).toEqual([]);
  });
});

describe.runIf(nginxTestsEnabled)("TLS certificate expiry metric", () => {
  it("reports when the served certificate expires, and passes promtool", async () => {
    const fake = await startFakeOllama();
    const certs = makeCertificates();
    const port = await freePort();
    const gateway = await startGateway({
      upstreamUrl: fake.url,
      spec: { tls: { certPem: certs.certPem, keyPem: certs.keyPem }, metrics: { listen: { address: "127.0.0.1", port } } },
    });
    try {
      const text = (await request(`http://127.0.0.1:${port}/metrics`)).body;
      const line = text.split("\n").find((l) => l.startsWith("ollama_gateway_tls_certificate_expiry_timestamp_seconds "));
      const notAfter = Math.floor(Date.parse(new X509Certificate(certs.certPem).validTo) / 1000);
      expect(Math.abs(Number(line?.split(" ")[1]) - notAfter)).toBeLessThanOrEqual(2);
      const output = execFileSync("sh", ["-c", "promtool check metrics 2>&1; echo exit=$?"], { input: text, encoding: "utf8" });
      expect(output.trim()).toBe("exit=0");
    } finally {
      await gateway.stop();
      await fake.close();
    }
  });
});
