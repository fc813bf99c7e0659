import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Builds the token-accounting nginx module once, before the data-plane suites load it.
    globalSetup: ["harness/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // One file at a time: the data-plane suites run real nginx instances and measure timings
    // and latencies, which other suites' load (the hostile battery's floods) would distort.
    fileParallelism: false,
  },
});
