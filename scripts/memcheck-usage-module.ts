/**
 * `npm run memcheck:usage-module`: the token-accounting C filter (image/proxy/usage-module/) under
 * valgrind's memcheck. One nginx (`-g "daemon off; master_process off;"`, so the one process
 * valgrind watches is the one that filters) with the module, in front of the scripted upstream of
 * harness/usage-answers.ts, gets the same generated answers as test/usage-filter-fuzz.test.ts
 * (fast-check, fixed seed), each checked for the client's bytes. Then nginx stops and memcheck's
 * errors are read from its XML: every error, and those with a frame in the module.
 *
 * The rest of the process runs under memcheck too (nginx, LuaJIT for the access and log phases):
 * errors are listed with their top frames, those with a frame in the module apart. Leak records
 * come from nginx run as one process, which frees neither its cycle's pools nor its connections'
 * at exit. The exit status is 1 when an error has a module frame, a response differed or the
 * error log tells of a crash.
 *
 * Options: --runs N (default 200), --seed S (default the test's), --out FILE (a markdown summary).
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import fc from "fast-check";
import { renderBundle, workerUser } from "../bundle/render";
import { validateSpec } from "../bundle/spec";
import { writeBundle } from "../bundle/write";
import { bearer } from "../harness/http";
import { freePort, usageModulePath } from "../harness/nginx";
import { fetchBytes, piecesOf, readLoggedCounts, requestBody, startScriptedUpstream, troubleIn, usageAnswer } from "../harness/usage-answers";

const { values } = parseArgs({ options: { runs: { type: "string", default: "200" }, seed: { type: "string", default: "20261202" }, out: { type: "string" } } });
const RUNS = Number(values.runs);
const SEED = Number(values.seed);
const KEY = "memcheck-key-000000000000000000000000";
const log = (message: string) => console.log(`[memcheck ${new Date().toISOString().slice(11, 19)}] ${message}`);

interface MemcheckError {
  kind: string;
  what: string;
  frames: string[];
}

/** Errors from valgrind's XML output (one <error> per distinct error). */
function parseErrors(xml: string): MemcheckError[] {
  return [...xml.matchAll(/<error>([\s\S]*?)<\/error>/g)].map(([, body]) => ({
    kind: /<kind>([^<]*)<\/kind>/.exec(body)?.[1] ?? "?",
    what: (/<what>([^<]*)<\/what>/.exec(body) ?? /<text>([^<]*)<\/text>/.exec(body))?.[1] ?? "",
    frames: [...body.matchAll(/<frame>([\s\S]*?)<\/frame>/g)].map(([, f]) => {
      const fn = /<fn>([^<]*)<\/fn>/.exec(f)?.[1] ?? "?";
      const obj = /<obj>([^<]*)<\/obj>/.exec(f)?.[1] ?? "";
      const line = /<line>([^<]*)<\/line>/.exec(f)?.[1];
      return `${fn} (${path.basename(obj)}${line ? `:${line}` : ""})`;
    }),
  }));
}

async function main(): Promise<void> {
  const module = usageModulePath();
  const upstream = await startScriptedUpstream(2);
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), "usage-memcheck-"));
  const spec = validateSpec({
    upstream: upstream.url,
    workerProcesses: 1,
    apiKeys: [{ name: "app", key: KEY, scope: "admin" }],
    rateLimit: { requestsPerSecond: 100_000, burst: 100_000 },
    listen: { address: "127.0.0.1", http: port },
  });
  writeBundle(dir, renderBundle(spec, { flavor: "debian", usageModule: module }).files, { workerUser: workerUser(spec) });
  for (const sub of ["logs", "tmp"]) mkdirSync(path.join(dir, sub), { recursive: true });
  const xmlFile = path.join(dir, "memcheck.xml");
  const args = [
    "--tool=memcheck",
    "--error-exitcode=99",
    "--xml=yes",
    `--xml-file=${xmlFile}`,
    "--num-callers=30",
    "--leak-check=full",
    // Modules are unloaded at exit: without this their frames in leak records have no names.
    "--keep-debuginfo=yes",
    "nginx",
    ...["-p", `${dir}/`, "-c", "conf/nginx.conf", "-e", "logs/error.log", "-g", "daemon off; master_process off;"],
  ];
  log(`valgrind ${args.join(" ")}`);
  const child = spawn("valgrind", args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (d) => (output = (output + d).slice(-20_000)));
  child.stderr!.on("data", (d) => (output = (output + d).slice(-20_000)));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const url = `http://127.0.0.1:${port}`;
  const errorLog = () => (existsSync(path.join(dir, "logs", "error.log")) ? readFileSync(path.join(dir, "logs", "error.log"), "utf8") : "") + output;

  // nginx under memcheck takes seconds to start.
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`valgrind/nginx exited (${child.exitCode}):\n${errorLog()}`);
    const ok = await fetchBytes(`${url}/api/version`, bearer(KEY), "", 30_000).then(() => true, () => false);
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`nginx under memcheck did not answer within 120 s:\n${errorLog()}`);
    await new Promise((r) => setTimeout(r, 500));
  }

  const started = Date.now();
  let sent = 0;
  let pieces = 0;
  const wrong: string[] = [];
  await fc.assert(
    fc.asyncProperty(usageAnswer, async (answer) => {
      const id = upstream.add(answer);
      try {
        const response = await fetchBytes(url + answer.route, { ...bearer(KEY), "X-Fuzz-Answer": id }, requestBody(answer.route), 60_000);
        sent++;
        pieces += piecesOf(answer).length;
        if (response.status !== 200 || !response.body.equals(answer.body)) wrong.push(`${answer.route}: status ${response.status}, ${response.body.length} of ${answer.body.length} bytes`);
      } finally {
        upstream.remove(id);
      }
    }),
    { seed: SEED, numRuns: RUNS, endOnFailure: true },
  );
  const seconds = Math.round((Date.now() - started) / 1000);
  log(`${sent} answers (${pieces} pieces) in ${seconds} s; stopping nginx`);
  const logged = readLoggedCounts(path.join(dir, "logs", "access.log")).filter((l) => l.counts[0] !== null && l.counts[0] !== "null").length;
  // nginx run as one process exits at SIGQUIT at once, without waiting for requests in progress:
  // let the last one be logged and freed first.
  await new Promise((resolve) => setTimeout(resolve, 2000));
  process.kill(child.pid!, "SIGQUIT");
  const code = await exited;
  await upstream.close();

  const errors = parseErrors(readFileSync(xmlFile, "utf8"));
  const inModule = errors.filter((e) => e.frames.some((f) => /ngx_http_gateway_usage_filter_module|gw_|ngx_http_gw_usage/.test(f)));
  const leaks = errors.filter((e) => e.kind.startsWith("Leak_"));
  const memoryErrors = errors.filter((e) => !e.kind.startsWith("Leak_"));
  const trouble = troubleIn(errorLog());
  const summary = [
    "# The token-accounting C filter under valgrind memcheck",
    "",
    `Command: \`npm run memcheck:usage-module -- --runs ${RUNS} --seed ${SEED}\` (scripts/memcheck-usage-module.ts), run ${new Date().toISOString().slice(0, 10)}.`,
    "",
    `One nginx (\`-g "daemon off; master_process off;"\`) with the module, under \`valgrind --tool=memcheck --error-exitcode=99 --xml=yes\`, got ${sent} generated answers`,
    `(harness/usage-answers.ts, seed ${SEED}: the generator of test/usage-filter-fuzz.test.ts), ${pieces} pieces in all, in ${seconds} s; ${logged} of them logged counts.`,
    `Every response reached the client byte for byte: ${wrong.length === 0 ? "yes" : `no (${wrong.length}: ${wrong.slice(0, 3).join("; ")})`}.`,
    `nginx's error log: ${trouble.length ? trouble.join(" | ") : "no crash, alert or filter failure"}. valgrind's exit status: ${code}${code === 99 ? " (--error-exitcode: it found errors, leak records included)" : ""}.`,
    "nginx stopped (SIGQUIT) 2 s after the last response: run as one process it exits at once, and a request not yet freed",
    "then (its connection still closing) shows its filter's buffer as possibly lost.",
    "What memcheck can see: reads and writes outside malloc'd blocks. The module's own buffers (the split final line, a",
    "chain's bytes joined) are malloc'd; the bytes it reads in place lie in nginx's proxy buffer (one malloc'd block of",
    "proxy_buffer_size), so a read past a chunk's end but inside that buffer would go unseen.",
    "",
    `ERROR SUMMARY: ${memoryErrors.length} memory errors (invalid reads or writes, uninitialised values, bad frees) and ${leaks.length} leak records`,
    `in the process; **${inModule.length} with a frame in the module** (\`--leak-check=full\`; nginx run as one process frees neither its cycle's`,
    "pools nor its connections' at exit, and memcheck lists those blocks as lost or possibly lost).",
    "",
    ...(errors.length
      ? ["| kind | what | top frames | in the module |", "| --- | --- | --- | --- |", ...errors.slice(0, 30).map((e) => `| ${e.kind} | ${e.what.replace(/\|/g, "\\|")} | ${e.frames.slice(0, 4).join(" < ")} | ${inModule.includes(e) ? "yes" : "no"} |`)]
      : []),
  ].join("\n");
  console.log(summary);
  if (values.out) writeFileSync(values.out, `${summary}\n`);
  rmSync(dir, { recursive: true, force: true });
  if (inModule.length || wrong.length || trouble.length) process.exitCode = 1;
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
