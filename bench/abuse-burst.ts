/**
 * npm run bench:burst [-- --label <name>] [-- --no-write]
 *
 * Issue 13, item 1: 300 concurrent wrong Basic passwords from one address against the rendered
 * bundle in a real nginx (two workers, two bcrypt threads each, bcrypt cost 10), in three rounds
 * from three addresses. Counts the answers (401 / 429 / 5xx) and times, from another address,
 * a user's first Basic login and API-key requests during the burst. `connectionsPerAddress` is
 * raised to 1,000 so the burst reaches the password check instead of nginx's connection limit.
 *
 * Results are kept per label in bench/results/abuse-burst.json (run once with `--label before`
 * on the old code to compare) and tabulated in bench/results/abuse-burst.md.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { basicBurst, type BurstResult } from "../harness/burst";
import { startFakeOllama } from "../harness/fake-ollama";
import { startGateway } from "../harness/nginx";

const RESULTS = path.join(__dirname, "results");
const ROUNDS = [
  { attacker: "127.0.0.1", user: "bob-1" },
  { attacker: "127.0.0.3", user: "bob-2" },
  { attacker: "127.0.0.4", user: "bob-3" },
];
const REQUESTS = 300;
const OTHER = "127.0.0.2";
const KEY = "burst-bench-key-7Hq3Zp9Lw2Xc5Vn8";
const PASSWORD = "legitimate-password-42";

const args = process.argv.slice(2);
const label = args.includes("--label") ? args[args.indexOf("--label") + 1] : "current";
const write = !args.includes("--no-write");

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

type Run = { at: string; commit: string; load?: number; rounds: BurstResult[] };

async function main(): Promise<void> {
  // The machine's 1-minute load average when the run started: other work on the cores shows in the times.
  const loadAtStart = Math.round(os.loadavg()[0] * 10) / 10;
  const fake = await startFakeOllama();
  const gateway = await startGateway({
    upstreamUrl: fake.url,
    bcryptCost: 10,
    spec: {
      workerProcesses: 2,
      bcryptThreads: 2,
      connectionsPerAddress: 1000,
      rateLimit: { requestsPerSecond: 10_000, burst: 10_000 },
      apiKeys: [{ name: "bench", key: KEY, scope: "read" }],
      basicUsers: [{ name: "victim", password: "victim-password-42", scope: "read" }, ...ROUNDS.map((r) => ({ name: r.user, password: PASSWORD, scope: "read" as const }))],
    },
  });
  const rounds: BurstResult[] = [];
  try {
    for (const round of ROUNDS) {
      const result = await basicBurst({
        url: gateway.url,
        attacker: round.attacker,
        victim: "victim",
        requests: REQUESTS,
        other: OTHER,
        login: { user: round.user, password: PASSWORD },
        apiKey: KEY,
      });
      rounds.push(result);
      console.info(
        `${round.attacker}: 401 ${result.counts["401"]}, 429 ${result.counts["429"]}, 5xx ${result.counts["5xx"]}, other ${result.counts.other}; ` +
          `burst ${result.burstMs} ms; other-address first login ${result.login.status} in ${result.login.ms} ms; ` +
          `API keys median ${median(result.apiKeyMs)} ms, max ${Math.max(...result.apiKeyMs)} ms (${result.apiKeyMs.length} requests)`,
      );
      await new Promise((r) => setTimeout(r, 1000));
    }
  } finally {
    await gateway.stop();
    await fake.close();
  }
  if (!write) return;
  const jsonPath = path.join(RESULTS, "abuse-burst.json");
  const all: Record<string, Run> = existsSync(jsonPath) ? JSON.parse(readFileSync(jsonPath, "utf8")) : {};
  all[label] = { at: new Date().toISOString(), commit: process.env.BENCH_COMMIT ?? "", load: loadAtStart, rounds };
  writeFileSync(jsonPath, `${JSON.stringify(all, null, 2)}\n`);
  writeFileSync(path.join(RESULTS, "abuse-burst.md"), markdown(all));
}

function markdown(all: Record<string, Run>): string {
  const rows = Object.entries(all).flatMap(([name, run]) =>
    run.rounds.map((r, i) => {
      const cells = [
        `${name}${run.commit ? ` (${run.commit})` : ""}`,
        run.load === undefined ? "—" : String(run.load),
        String(i + 1),
        String(r.counts["401"]),
        String(r.counts["429"]),
        String(r.counts["5xx"]),
        String(r.counts.other),
        String(r.burstMs),
        `${r.login.status} in ${r.login.ms}`,
        `${median(r.apiKeyMs)} / ${Math.max(...r.apiKeyMs)}`,
      ];
      return `| ${cells.join(" | ")} |`;
    }),
  );
  return [
    "# Concurrent wrong Basic passwords from one address (`npm run bench:burst`)",
    "",
    `${REQUESTS} concurrent requests with distinct wrong passwords for one Basic user, from one loopback address,`,
    "against the rendered bundle in a real nginx: 2 workers, `bcryptThreads` 2, bcrypt cost 10, `connectionsPerAddress`",
    "1,000 (so the burst reaches the password check), three rounds from three addresses. Meanwhile, from another",
    "address: a first Basic login (a user never verified before) and API-key requests one after another.",
    "Times in milliseconds, measured by the client. Load: the machine's 1-minute load average when the run",
    "started (2 cores; other jobs were running), which shows in the times.",
    "",
    "| Code | Load | Round | 401 | 429 | 5xx | other | burst | other address: first login | other address: API key median / max |",
    "|---|---|---|---|---|---|---|---|---|---|",
    ...rows,
    "",
    `Machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? "?"}, shared with other work; ${os.platform()} ${os.release()}.`,
    "",
  ].join("\n");
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
