import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Each integration file starts its own nginx and stand-in Ollama on free ports.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
