/** Concurrent request loops for tests that change something under load and count failures. */
export interface Load {
  stats: { ok: number; failed: string[] };
  stop(): Promise<{ ok: number; failed: string[] }>;
}

/** Runs `step(loopIndex)` in `concurrency` loops until stopped; a throw counts as a failure, with its message. */
export function runLoad(concurrency: number, step: (loop: number) => Promise<void>): Load {
  let running = true;
  const stats = { ok: 0, failed: [] as string[] };
  const loops = Array.from({ length: concurrency }, async (_, i) => {
    while (running) {
      try {
        await step(i);
        stats.ok++;
      } catch (error) {
        stats.failed.push(String(error));
      }
    }
  });
  return {
    stats,
    async stop() {
      running = false;
      await Promise.all(loops);
      return stats;
    },
  };
}
