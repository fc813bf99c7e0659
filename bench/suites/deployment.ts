/** Section 5: the deployment side: validating and rendering many keys, the Pulumi program under mocks. */
import { execFileSync, spawnSync } from "node:child_process";
import path from "node:path";
import { renderBundle, renderCredentialFiles } from "../../bundle/render";
import { validateSpec } from "../../bundle/spec";
import { writeBundle } from "../../bundle/write";
import type { BenchCredentials } from "../lib/credentials";
import { BENCH_DIR, makePrefix, ROOT } from "../lib/procs";
import { fmt, log, median } from "../lib/stats";
import { oursSpec } from "./instances";
import { KEY_COUNTS, P } from "./params";

export interface DeployResult {
  render: { keys: number; validateMs: number; renderCredentialFilesMs: number; renderBundleAndWriteMs: number; apiKeysFileBytes: number; repetitions: number; error?: string };
  pulumi: { credentials: number; moduleLoadMs: number; evaluateMs: number; resources: number } | { skipped: string };
}

export async function deployment(creds: BenchCredentials): Promise<DeployResult> {
  const count = Math.max(...KEY_COUNTS);
  const input = oursSpec("http://127.0.0.1:11434", 8080, { ...creds, basicUsers: [] }, count);
  const validate: number[] = [];
  const render: number[] = [];
  const whole: number[] = [];
  let bytes = 0;
  for (let i = 0; i < P.renderReps; i++) {
    let t = performance.now();
    const spec = validateSpec(input);
    validate.push(performance.now() - t);
    t = performance.now();
    const files = renderCredentialFiles(spec);
    render.push(performance.now() - t);
    bytes = Buffer.byteLength(files["credentials/api-keys"]);
    const dir = makePrefix("render");
    t = performance.now();
    writeBundle(dir, renderBundle(validateSpec(input), { flavor: "debian" }).files);
    whole.push(performance.now() - t);
    execFileSync("rm", ["-rf", dir]);
  }
  const result: DeployResult = {
    render: {
      keys: count,
      validateMs: median(validate),
      renderCredentialFilesMs: median(render),
      renderBundleAndWriteMs: median(whole),
      apiKeysFileBytes: bytes,
      repetitions: P.renderReps,
    },
    pulumi: { skipped: "not run" },
  };
  log(`render ${count} keys: validateSpec ${fmt(result.render.validateMs, 0)} ms, renderCredentialFiles ${fmt(result.render.renderCredentialFilesMs, 0)} ms, validate+render+write ${fmt(result.render.renderBundleAndWriteMs, 0)} ms`);
  const tsx = path.join(ROOT, "node_modules", ".bin", "tsx");
  const run = spawnSync(tsx, [path.join(BENCH_DIR, "pulumi-eval.ts"), String(P.pulumiCredentials)], { cwd: ROOT, encoding: "utf8", timeout: 240_000 });
  const line = run.stdout?.trim().split("\n").pop() ?? "";
  try {
    result.pulumi = JSON.parse(line);
    const p = result.pulumi as { evaluateMs: number; resources: number };
    log(`pulumi program under mocks with ${P.pulumiCredentials} API keys: ${fmt(p.evaluateMs, 0)} ms, ${p.resources} resources`);
  } catch {
    result.pulumi = { skipped: `bench/pulumi-eval.ts failed (status ${run.status}): ${(run.stderr || run.error?.message || "").slice(0, 500)}` };
    log(`pulumi evaluation skipped: ${(result.pulumi as { skipped: string }).skipped}`);
  }
  return result;
}
