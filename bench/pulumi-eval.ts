/**
 * Times one evaluation of the Pulumi program (index.ts) under the project's mocks
 * (harness/pulumi-mocks.ts) with N API keys. Run by bench/run.ts in its own process:
 *   tsx bench/pulumi-eval.ts <N>
 * Prints one JSON line: {credentials, moduleLoadMs, evaluateMs, resources}.
 */
import * as pulumi from "@pulumi/pulumi";
import { devStackConfig, installMocks, recorded, setStackConfig, settle, valueOf } from "../harness/pulumi-mocks";

async function main(): Promise<void> {
  const count = Number(process.argv[2] ?? "1000");
  installMocks();
  const config: Record<string, unknown> = {
    ...devStackConfig(),
    apiKeys: Array.from({ length: count }, (_, i) => `bench-key-${i}:inference`),
  };
  setStackConfig(config);
  // Load the libraries first so the timing below is the program's own evaluation.
  const loadStart = performance.now();
  await import("../components/index.js");
  const moduleLoadMs = performance.now() - loadStart;
  const start = performance.now();
  const program = await import("../index.js");
  await Promise.all(Object.values(program).map((output) => valueOf(output as pulumi.Output<unknown>)));
  await settle();
  const evaluateMs = performance.now() - start;
  console.log(JSON.stringify({ credentials: count, moduleLoadMs, evaluateMs, resources: recorded.length }));
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
