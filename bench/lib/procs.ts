/**
 * Processes the benchmark starts and stops itself, each by its pid: nginx instances (each its
 * own `-p` prefix in a temporary directory) and the stand-in Ollama (a separate Node process,
 * so it does not share an event loop with the measuring client).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort, waitForPort } from "../../harness/ports";

export { freePort };

export const ROOT = path.join(__dirname, "..", "..");
export const BENCH_DIR = path.join(__dirname, "..");



export interface Running {
  name: string;
  url: string;
  port: number;
  /** The master (nginx) or the only process (stand-in). */
  pid: number;
  dir?: string;
  /** Pids whose CPU time tells whether the instance is still busy (nginx workers). */
  busyPids(): number[];
  stop(): Promise<void>;
}

function stopper(child: ChildProcess, signal: NodeJS.Signals, cleanup: () => void): () => Promise<void> {
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
  return async () => {
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(child.pid!, signal);
      const timer = setTimeout(() => {
        if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, "SIGKILL");
      }, 5000);
      await exited;
      clearTimeout(timer);
    }
    cleanup();
  };
}

/** The stand-in Ollama as its own process (`tsx harness/fake-ollama.ts`). */
export async function startFakeOllamaProcess(options: {
  chunks: number;
  chunkIntervalMs: number;
  /** Models it holds (`--models`); default: answers for any model. */
  models?: string[];
  /** Listen here (to bring a stopped backend back on its address); default a free port. */
  port?: number;
}): Promise<Running> {
  const port = options.port ?? (await freePort());
  const tsx = path.join(ROOT, "node_modules", ".bin", "tsx");
  const child = spawn(
    tsx,
    [
      path.join(ROOT, "harness", "fake-ollama.ts"),
      "--port",
      String(port),
      "--chunks",
      String(options.chunks),
      "--chunk-interval-ms",
      String(options.chunkIntervalMs),
      ...(options.models ? ["--models", options.models.join(",")] : []),
    ],
    { stdio: ["ignore", "pipe", "pipe"], cwd: ROOT },
  );
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  await waitForPort(port, "127.0.0.1", child, () => output, 20_000);
  // tsx runs the script in a child node process: the pid that does the work is tsx's child.
  const nodePids = () => childPids(child.pid!);
  return {
    name: "stand-in",
    url: `http://127.0.0.1:${port}`,
    port,
    pid: child.pid!,
    busyPids: () => [child.pid!, ...nodePids()],
    stop: stopper(child, "SIGTERM", () => undefined),
  };
}

/** Direct children of a pid (read from /proc; used only to find nginx workers). */
export function childPids(parent: number): number[] {
  try {
    return execFileSync("ps", ["-o", "pid=", "--ppid", String(parent)], { encoding: "utf8" })
      .split("\n")
      .map((s) => Number(s.trim()))
      .filter((n) => n > 0);
  } catch {
    return [];
  }
}

/** CPU ticks (user + system) a process has used so far; 0 when it is gone. */
export function cpuTicks(pid: number, file = `/proc/${pid}/stat`): number {
  try {
    const stat = readFileSync(file, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

/**
 * Waits until the given processes stop using CPU (at most 1 tick per 200 ms), so that work left
 * over from one measurement (e.g. the naive proxy still reading its key file for requests
 * wrk already gave up on) does not run during the next one.
 */
export async function waitIdle(pids: number[], maxMs = 30_000): Promise<number> {
  const start = Date.now();
  let last = pids.reduce((sum, pid) => sum + cpuTicks(pid), 0);
  while (Date.now() - start < maxMs) {
    await new Promise((r) => setTimeout(r, 200));
    const now = pids.reduce((sum, pid) => sum + cpuTicks(pid), 0);
    if (now - last <= 1) return Date.now() - start;
    last = now;
  }
  return Date.now() - start;
}

/** Runs nginx on a prepared prefix directory (conf/nginx.conf inside it). */
export async function startNginx(name: string, dir: string, port: number): Promise<Running> {
  for (const sub of ["logs", "tmp"]) mkdirSync(path.join(dir, sub), { recursive: true });
  chmodSync(dir, 0o755);
  const child = spawn("nginx", ["-p", `${dir}/`, "-c", "conf/nginx.conf", "-e", "logs/error.log", "-g", "daemon off;"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  const errorLog = () => {
    const file = path.join(dir, "logs", "error.log");
    return (existsSync(file) ? readFileSync(file, "utf8").slice(-4000) : "") + output;
  };
  await waitForPort(port, "127.0.0.1", child, errorLog, 20_000);
  return {
    name,
    url: `http://127.0.0.1:${port}`,
    port,
    pid: child.pid!,
    dir,
    busyPids: () => childPids(child.pid!),
    stop: stopper(child, "SIGQUIT", () => rmSync(dir, { recursive: true, force: true })),
  };
}

/** The processes a benchmark starts, stopped together (the last started first), also on Ctrl-C. */
export function processGroup() {
  const running: Running[] = [];
  const stopAll = async () => {
    for (const p of running.reverse()) await p.stop().catch(() => undefined);
    running.length = 0;
  };
  process.once("SIGINT", () => void stopAll().then(() => process.exit(130)));
  /** Awaits a starting process and adds it to the group. */
  const start = async <T extends Running>(starting: Promise<T>): Promise<T> => {
    const started = await starting;
    running.push(started);
    return started;
  };
  return { running, start, stopAll };
}

export function makePrefix(name: string): string {
  const base = path.join(tmpdir(), "ollama-gateway-bench");
  mkdirSync(base, { recursive: true });
  const dir = mkdtempSync(path.join(base, `${name}-`));
  chmodSync(dir, 0o755);
  return dir;
}

export function writeFile(dir: string, relative: string, content: string): void {
  mkdirSync(path.dirname(path.join(dir, relative)), { recursive: true });
  writeFileSync(path.join(dir, relative), content, { mode: 0o644 });
}


/** CPU ticks of a process split into its main thread (nginx's event loop) and its other threads (the thread pool). */
export function threadTicks(pid: number): { main: number; others: number } {
  const out = { main: 0, others: 0 };
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    const ticks = cpuTicks(Number(tid), `/proc/${pid}/task/${tid}/stat`);
    if (Number(tid) === pid) out.main += ticks;
    else out.others += ticks;
  }
  return out;
}
