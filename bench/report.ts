/** The benchmark report: targets met or missed, and results.md. */
import { BASIC_USERS } from "./lib/credentials";
import { fmt, type machine, pct } from "./lib/stats";
import type { AbuseResult } from "./suites/abuse";
import type { DeployResult } from "./suites/deployment";
import { KEY_COUNTS, LEGIT, LOAD, NAIVE_SLOW_FROM, P, STREAM } from "./suites/params";
import type { StreamStats } from "./suites/streaming";
import type { Aggregate } from "./suites/throughput";

export interface Target {
  name: string;
  target: string;
  measured: string;
  met: boolean;
}

export function targets(agg: Aggregate[], ab: AbuseResult, st: StreamStats[]): Target[] {
  const get = (id: string) => agg.find((a) => a.id === id)!;
  const big = get(`ours-bearer-${Math.max(...KEY_COUNTS)}`);
  const basic = get("ours-basic");
  const list: Target[] = [
    { name: `Bearer throughput, ${Math.max(...KEY_COUNTS).toLocaleString("en-US")} keys`, target: "≥ 0.9 × plain proxy", measured: `${fmt(big.ratioToPlain, 3)} × plain`, met: big.ratioToPlain >= 0.9 },
    { name: "Basic (bcrypt cost 10) throughput, repeat caller", target: "≥ 0.9 × plain proxy", measured: `${fmt(basic.ratioToPlain, 3)} × plain`, met: basic.ratioToPlain >= 0.9 },
    { name: "legit p99 under the wrk flood (wrong keys + wrong passwords, one client address)", target: "≤ 2 × p99 without flood", measured: `${fmt(ab.p99Ratio.wrkFlood, 2)} × (${fmt(ab.median.wrkFlood.p99)} ms vs ${fmt(ab.median.alone.p99)} ms)`, met: ab.p99Ratio.wrkFlood <= 2 },
    { name: "legit p99 under the distributed bcrypt flood (256 client addresses; beyond the brief)", target: "≤ 2 × p99 without flood", measured: `${fmt(ab.p99Ratio.distributedFlood, 2)} × (${fmt(ab.median.distributedFlood.p99)} ms vs ${fmt(ab.median.alone.p99)} ms)`, met: ab.p99Ratio.distributedFlood <= 2 },
  ];
  for (const s of st) {
    list.push({ name: `${s.kind === "ndjson" ? "first NDJSON line" : "first SSE event"}, median`, target: "proxy − direct ≤ 5 ms", measured: `${fmt(s.firstMedianDelta)} ms`, met: s.firstMedianDelta <= 5 });
    list.push({ name: `${s.kind === "ndjson" ? "first NDJSON line" : "first SSE event"}, p99`, target: "proxy − direct ≤ 5 ms", measured: `${fmt(s.firstP99Delta)} ms`, met: s.firstP99Delta <= 5 });
    list.push({ name: `${s.kind === "ndjson" ? "NDJSON" : "SSE"} inter-chunk gap, median / p99`, target: "proxy − direct ≤ 5 ms", measured: `${fmt(s.gapMedianDelta)} / ${fmt(s.gapP99Delta)} ms`, met: s.gapMedianDelta <= 5 && s.gapP99Delta <= 5 });
  }
  return list;
}

export function markdown(data: {
  machine: ReturnType<typeof machine>;
  command: string;
  quick: boolean;
  wallSeconds: number;
  agg: Aggregate[];
  ab: AbuseResult;
  st: StreamStats[];
  dep: DeployResult;
  targets: Target[];
}): string {
  const { machine: m, agg, ab, st, dep } = data;
  const yes = (met: boolean) => (met ? "**met**" : "**missed**");
  const row = (cells: (string | number)[]) => `| ${cells.join(" | ")} |`;
  const lines: string[] = [];
  lines.push("# ollama-gateway benchmark results", "");
  if (data.quick) lines.push("> **BENCH_QUICK=1 smoke run**: one round of short runs; numbers are indicative only.", "");
  lines.push(
    `Command: \`${data.command}\`, run ${m.date}, took ${fmt(data.wallSeconds, 0)} s.`,
    "",
    `Machine: ${m.nproc} CPUs (\`nproc\`), ${m.cpuModel}, ${m.memoryGiB} GiB, Linux ${m.kernel}; ${m.nginx}, ${m.luaModule}; ${m.wrk}; Node ${m.node}. Load average at start: ${m.loadAverageAtStart.join(", ")}.`,
    "",
    "Everything (wrk, nginx, the Node stand-in for Ollama) shares these CPUs, so absolute numbers are",
    "low and noisy; the **ratios** are the result. Each nginx has `worker_processes 1`. Configurations run",
    `in alternation, ${P.rounds} round(s), order rotated every round; numbers are medians over rounds, and each ratio`,
    "is the median of per-round ratios against the plain proxy measured in the same round.",
    "",
    "## Targets",
    "",
    row(["What", "Target", "Measured", "Result"]),
    row(["---", "---", "---", "---"]),
    ...data.targets.map((t) => row([t.name, t.target, t.measured, yes(t.met)])),
    "",
  );

  const table = (rows: Aggregate[]) => [
    row(["Configuration", "req/s", "× plain", "p50 ms", "p75 ms", "p90 ms", "p99 ms", "p50 × plain", "p99 × plain", "non-2xx", "run"]),
    row(["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---"]),
    ...rows.map((a) =>
      row([
        a.label,
        fmt(a.median.requestsPerSecond, 0),
        fmt(a.ratioToPlain, 3),
        fmt(a.median.p50),
        fmt(a.median.p75),
        fmt(a.median.p90),
        fmt(a.median.p99),
        fmt(a.p50RatioToPlain, 2),
        fmt(a.p99RatioToPlain, 2),
        String(a.non2xx),
        `${a.seconds} s × ${a.rounds.length}`,
      ]),
    ),
  ];

  lines.push(
    "## 1. Overhead: `GET /api/version`",
    "",
    `wrk \`-t${LOAD.threads} -c${LOAD.connections} --latency\`, every caller valid. Basic is one user among ${BASIC_USERS.toLocaleString("en-US")}, bcrypt cost 10,`,
    "the same caller repeating (its verified password is cached in a shared dict after the first bcrypt).",
    "",
    ...table(agg.filter((a) => a.section === "overhead")),
    "",
    "![latency](latency.png)",
    "",
    "## 2. Scaling with the number of credentials (Bearer)",
    "",
    "The naive proxy is the plain proxy plus an `access_by_lua_block` that opens the plain key file and",
    "compares the token with each line on every request (`bench/conf/naive-access.lua`). The caller's key is",
    `the middle line (a wrong key scans the whole file: twice the cost). Naive runs with ${NAIVE_SLOW_FROM.toLocaleString("en-US")}+ keys last`,
    `${P.naiveSlowSeconds} s. The gateway instances also hold ${BASIC_USERS.toLocaleString("en-US")} Basic users.`,
    "",
    ...table(
      agg
        .filter((a) => a.series !== undefined || a.id === "plain")
        .sort((x, y) => (x.series ?? "").localeCompare(y.series ?? "") || (x.credentials ?? 0) - (y.credentials ?? 0)),
    ),
    "",
    "![throughput vs credentials](throughput-vs-credentials.png)",
    "",
  );

  lines.push(
    "## 3. Abuse: a legitimate caller during a wrong-credential flood",
    "",
    `Legitimate caller: \`${ab.legitCommand}\` (valid Bearer key; each connection pauses ${LEGIT.delayMs} ms between requests, which wrk does not count as latency).`,
    "Three conditions, alternating every round (order rotated), each flood started 1 s before the caller:",
    "",
    "- **alone**: no flood;",
    `- **wrk flood** (the brief's test): \`${ab.floodCommand}\` with \`BENCH_FLOOD_USER=<an existing user>\`, alternating wrong Bearer keys`,
    "  and wrong Basic passwords, every one different. It connects from 127.0.0.1 only, so after 20 failed Basic attempts in a minute",
    "  the gateway answers its Basic attempts 429 without bcrypt: the flood is cheap for the gateway.",
    `- **distributed bcrypt flood** (added, the worst case): ${ab.distributedFlood}. Each address gets its 20`,
    "  bcrypt verifications a minute, enough to keep the bcrypt thread pool busy the whole run.",
    "",
    row(["Condition", "legit p50 ms", "legit p90 ms", "legit p99 ms", "p99 × alone", "legit req/s", "flood req/s", "worker event loop CPU", "bcrypt pool CPU"]),
    row(["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:"]),
    row(["alone", fmt(ab.median.alone.p50), fmt(ab.median.alone.p90), fmt(ab.median.alone.p99), "1", fmt(ab.median.alone.requestsPerSecond, 0), "–", pct(ab.median.alone.workerEventLoopCpu), pct(ab.median.alone.workerThreadPoolCpu)]),
    row(["wrk flood", fmt(ab.median.wrkFlood.p50), fmt(ab.median.wrkFlood.p90), fmt(ab.median.wrkFlood.p99), `**${fmt(ab.p99Ratio.wrkFlood, 2)}**`, fmt(ab.median.wrkFlood.requestsPerSecond, 0), fmt(ab.wrkFloodRequestsPerSecond, 0), pct(ab.median.wrkFlood.workerEventLoopCpu), pct(ab.median.wrkFlood.workerThreadPoolCpu)]),
    row(["distributed bcrypt flood", fmt(ab.median.distributedFlood.p50), fmt(ab.median.distributedFlood.p90), fmt(ab.median.distributedFlood.p99), `**${fmt(ab.p99Ratio.distributedFlood, 2)}**`, fmt(ab.median.distributedFlood.requestsPerSecond, 0), fmt(ab.distributedFloodRequestsPerSecond, 0), pct(ab.median.distributedFlood.workerEventLoopCpu), pct(ab.median.distributedFlood.workerThreadPoolCpu)]),
    "",
    "Values are medians over rounds; \"p99 × alone\" is the median of per-round ratios. CPU columns: the gateway worker's CPU time",
    `during the legitimate caller's run, as a share of one CPU (100% = one of the machine's ${data.machine.nproc} CPUs fully used), split into nginx's event-loop`,
    "thread and the bcrypt thread pool (from /proc/<worker>/task/*/stat).",
    `The wrk flood got ${ab.wrkFloodNon2xx.toLocaleString("en-US")} non-2xx of ${ab.wrkFloodRequests.toLocaleString("en-US")} responses (all should be). Distributed flood answers: ${Object.entries(ab.distributedFloodStatuses).map(([k, v]) => `${k} × ${v.toLocaleString("en-US")}`).join(", ")}.`,
    `The gateway's access log for this section, by status: ${Object.entries(ab.accessLogStatuses).map(([k, v]) => `${k} × ${v.toLocaleString("en-US")}`).join(", ")} (401: wrong key or password; 429: address over 20 failed Basic attempts a minute, no bcrypt; 503: bcrypt queue full).`,
    `The legitimate caller got ${ab.legitNon2xx} non-2xx responses.`,
    "",
    "Per round:",
    "",
    row(["round", "p99 alone ms", "p99 wrk flood ms", "p99 distributed ms", "wrk flood req/s", "distributed req/s"]),
    row(["---", "---:", "---:", "---:", "---:", "---:"]),
    ...ab.rounds.map((r, i) => row([i + 1, fmt(r.legit.alone.p99), fmt(r.legit.wrkFlood.p99), fmt(r.legit.distributedFlood.p99), fmt(r.wrkFlood.requestsPerSecond, 0), fmt(r.distributedFlood.requests / r.distributedFlood.seconds, 0)])),
    "",
  );

  lines.push(
    "## 4. Streaming: time to first line/event and inter-chunk gaps",
    "",
    `Node client (keep-alive), ${st[0]?.repetitions ?? 0} streams per path and route, direct and via the gateway alternating. The stand-in`,
    `sends ${STREAM.chunks} content chunks ${STREAM.chunkIntervalMs} ms apart plus a final one, with no model-load delay, so the direct first event is`,
    "almost immediate and any buffering in the proxy would show as tens of ms.",
    "",
    row(["Stream", "first event direct p50 / p99 ms", "via gateway p50 / p99 ms", "Δ p50 / Δ p99 ms", "gap direct p50 / p99 ms", "gap via gateway p50 / p99 ms", "Δ gap p50 / p99 ms"]),
    row(["---", "---:", "---:", "---:", "---:", "---:", "---:"]),
    ...st.map((s) =>
      row([
        s.path,
        `${fmt(s.direct.firstMedian)} / ${fmt(s.direct.firstP99)}`,
        `${fmt(s.proxy.firstMedian)} / ${fmt(s.proxy.firstP99)}`,
        `${fmt(s.firstMedianDelta)} / ${fmt(s.firstP99Delta)}`,
        `${fmt(s.direct.gapMedian)} / ${fmt(s.direct.gapP99)}`,
        `${fmt(s.proxy.gapMedian)} / ${fmt(s.proxy.gapP99)}`,
        `${fmt(s.gapMedianDelta)} / ${fmt(s.gapP99Delta)}`,
      ]),
    ),
    "",
  );

  const pulumi = dep.pulumi;
  lines.push(
    "## 5. Deployment side",
    "",
    row(["Step", "ms (median)", "notes"]),
    row(["---", "---:", "---"]),
    row([`\`validateSpec\` with ${dep.render.keys.toLocaleString("en-US")} \`keySha256\` keys`, fmt(dep.render.validateMs, 0), `${dep.render.repetitions} repetition(s)`]),
    row([`\`renderCredentialFiles\` (${dep.render.keys.toLocaleString("en-US")} keys)`, fmt(dep.render.renderCredentialFilesMs, 0), `api-keys file ${fmt(dep.render.apiKeysFileBytes / 2 ** 20, 1)} MiB`]),
    row(["validate + `renderBundle` + `writeBundle` into a fresh directory", fmt(dep.render.renderBundleAndWriteMs, 0), "what `npm run render` does, minus reading the JSON"]),
    "skipped" in pulumi
      ? row(["Pulumi program under mocks", "skipped", pulumi.skipped.replaceAll("|", "\\|").replaceAll("\n", " ")])
      : row([
          `Pulumi program (\`index.ts\`) under mocks, ${pulumi.credentials.toLocaleString("en-US")} API keys`,
          fmt(pulumi.evaluateMs, 0),
          `${pulumi.resources} resources registered; loading the libraries first took ${fmt(pulumi.moduleLoadMs, 0)} ms (not included)`,
        ]),
    "",
    ...(dep.render.error ? [`**The render step failed in this run:** ${dep.render.error}`, ""] : []),
    "## Files",
    "",
    "`results.json` (every round's numbers), `throughput-vs-credentials.png`/`.svg`, `latency.png`/`.svg`.",
    "",
  );
  return lines.join("\n");
}
