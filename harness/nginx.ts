/**
 * Runs a rendered bundle in a real nginx with the Lua module (Debian's nginx and
 * libnginx-mod-http-lua) on 127.0.0.1, from its own temporary prefix, and stops it by pid.
 */
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { bcryptHash } from "../bundle/credentials";
import { renderBundle, renderCredentialFiles, workerUser } from "../bundle/render";
import { type GatewaySpec, type GatewaySpecInput, validateSpec } from "../bundle/spec";
import { writeBundle } from "../bundle/write";
import { freePort, waitForPort } from "./ports";

export { freePort };

const LUA_MODULE = "/usr/lib/nginx/modules/ngx_http_lua_module.so";
export const SKIP_VARIABLE = "OLLAMA_GATEWAY_SKIP_NGINX";

/** Whether integration suites run; they fail loudly (never skip silently) when nginx is missing. */
export const nginxTestsEnabled = process.env[SKIP_VARIABLE] !== "1";

/** Throws with install instructions when nginx or its Lua module is missing. */
export function requireNginxWithLua(): string {
  let nginx: string;
  try {
    nginx = execFileSync("sh", ["-c", "command -v nginx"], { encoding: "utf8" }).trim();
  } catch {
    nginx = "";
  }
  if (!nginx || !existsSync(LUA_MODULE)) {
    throw new Error(
      `The data-plane tests need a real nginx with the Lua module (${nginx ? `${LUA_MODULE} is missing` : "nginx is not installed"}).\n` +
        `Install it with: sudo apt-get install -y nginx libnginx-mod-http-lua\n` +
        `or run only the other tests with ${SKIP_VARIABLE}=1.`,
    );
  }
  return nginx;
}



/** One line of the JSON access log. */
export interface AccessLogEntry {
  time: string;
  /** The client's address: the peer's, or the one a trusted proxy named (`network.trustedProxies`). */
  client: string;
  /** The TCP peer's address. */
  peer: string;
  caller: string;
  scope: string;
  auth: string;
  method: string;
  path: string;
  model: string;
  status: number;
  request_time: number;
  upstream_time: string;
  bytes_sent: number;
  [field: string]: unknown;
}

export interface RunningGateway {
  /** http://127.0.0.1:<port> */
  url: string;
  /** https://127.0.0.1:<port> when the spec has TLS. */
  httpsUrl?: string;
  dir: string;
  spec: GatewaySpec;
  pid: number;
  /** Renders credentials for a new spec into the running bundle (atomic renames, no reload). */
  updateCredentials(spec: GatewaySpecInput): void;
  /** The access log as it is now; a request answered a moment ago may not be in it yet. */
  accessLog(): AccessLogEntry[];
  /**
   * The access log once nginx has stopped writing to it for 50 ms (at most 2 s). nginx logs a
   * request after the client already has the response, so assertions on the log use this.
   */
  settledAccessLog(): Promise<AccessLogEntry[]>;
  accessLogText(): string;
  errorLog(): string;
  /** Everything nginx wrote to stdout/stderr. */
  output(): string;
  reload(): void;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** The spec, without `listen` ports and `upstream` (filled in by the harness unless given). */
  spec: GatewaySpecInput;
  /** The one Ollama server; unused when the spec lists `upstreams`. */
  upstreamUrl?: string;
  /** bcrypt cost for passwords given in clear; low by default to keep tests fast. */
  bcryptCost?: number;
  keepDir?: boolean;
  /**
   * `openresty` renders the OpenResty flavour (no load_module lines) and loads Debian's Lua
   * module from the command line instead, to prove that bundle runs as rendered.
   */
  flavor?: "debian" | "openresty";
  /**
   * The C token-accounting filter (image/proxy/usage-module/, built once by scripts/build-usage-module.sh) on
   * the debian flavour, unless false: then the Lua body filter, as on OpenResty (which always
   * uses it here).
   */
  usageModule?: boolean;
  /** Soft open-file limit nginx starts with (as a container's default would give it), e.g. 1024. */
  openFileLimit?: number;
}

/** Set by harness/global-setup.ts to the module it built for the test files. */
export const USAGE_MODULE_VARIABLE = "OLLAMA_GATEWAY_USAGE_MODULE";

let builtUsageModule: string | undefined = process.env[USAGE_MODULE_VARIABLE];

/** The token-accounting module for this nginx: built on first use (minutes), then reused. */
export function usageModulePath(): string {
  builtUsageModule ??= execFileSync(path.join(__dirname, "..", "scripts", "build-usage-module.sh"), { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }).trim();
  return builtUsageModule;
}

const fastHash = (cost: number) => (_name: string, password: string) => bcryptHash(password, cost);

/** Renders `spec` (debian flavour by default), writes it to a fresh prefix and starts nginx on it. */
export async function startGateway(options: StartOptions): Promise<RunningGateway> {
  const nginx = requireNginxWithLua();
  // A spec may bind another loopback address (127.0.0.3...): ports are picked on it.
  const host = options.spec.listen?.address ?? "127.0.0.1";
  const httpPort = await freePort(host);
  const wantsTls = options.spec.tls !== undefined;
  const httpsPort = wantsTls ? await freePort(host) : undefined;
  const spec = validateSpec({
    // A pool (spec `upstreams`) names its own backends.
    ...(options.spec.upstreams ? {} : { upstream: options.upstreamUrl }),
    workerProcesses: 2,
    ...options.spec,
    listen: { address: "127.0.0.1", http: httpPort, ...(httpsPort ? { https: httpsPort } : {}), ...options.spec.listen },
  });
  const hashPassword = fastHash(options.bcryptCost ?? 6);
  const dir = mkdtempSync(path.join(tmpdir(), "ollama-gateway-"));
  // Workers run as `nobody` when the tests run as root: the prefix must be traversable.
  chmodSync(dir, 0o755);
  const flavor = options.flavor ?? "debian";
  const usageModule = flavor === "debian" && options.usageModule !== false ? usageModulePath() : undefined;
  writeBundle(dir, renderBundle(spec, { flavor, hashPassword, usageModule }).files, { workerUser: workerUser(spec) });
  // -g directives are parsed before the configuration file, so module loading can come from here.
  const loadLua = flavor === "openresty" ? `load_module ${path.dirname(LUA_MODULE)}/ndk_http_module.so; load_module ${LUA_MODULE}; ` : "";

  const args = ["-p", `${dir}/`, "-c", "conf/nginx.conf", "-e", "logs/error.log", "-g", `${loadLua}daemon off;`];
  // `exec` keeps the pid, so stop() still signals nginx itself.
  const child = options.openFileLimit
    ? spawn("sh", ["-c", `ulimit -Sn ${options.openFileLimit} && exec "$0" "$@"`, nginx, ...args], { stdio: ["ignore", "pipe", "pipe"] })
    : spawn(nginx, args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  const read = (file: string) => (existsSync(path.join(dir, file)) ? readFileSync(path.join(dir, file), "utf8") : "");
  const errorLog = () => read("logs/error.log") + output;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));

  const parseAccessLog = (text: string) =>
    text
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as AccessLogEntry);

  const gateway: RunningGateway = {
    url: `http://${host}:${spec.listen.http}`,
    httpsUrl: httpsPort ? `https://${host}:${httpsPort}` : undefined,
    dir,
    spec,
    pid: child.pid!,
    updateCredentials(next) {
      const nextSpec = validateSpec({ ...next, upstream: spec.upstream, upstreams: spec.upstreams, listen: spec.listen });
      writeBundle(dir, renderCredentialFiles(nextSpec, hashPassword), { workerUser: workerUser(spec) });
    },
    accessLogText: () => read("logs/access.log"),
    accessLog: () => parseAccessLog(read("logs/access.log")),
    async settledAccessLog() {
      const deadline = Date.now() + 2000;
      let text = read("logs/access.log");
      for (;;) {
        await new Promise((r) => setTimeout(r, 50));
        const now = read("logs/access.log");
        if (now === text || Date.now() > deadline) return parseAccessLog(now);
        text = now;
      }
    },
    errorLog,
    output: () => output,
    reload: () => process.kill(child.pid!, "SIGHUP"),
    async stop() {
      if (child.exitCode === null) {
        process.kill(child.pid!, "SIGQUIT");
        const timer = setTimeout(() => child.exitCode === null && process.kill(child.pid!, "SIGKILL"), 5000);
        await exited;
        clearTimeout(timer);
      }
      if (!options.keepDir) rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitForPort(spec.listen.http, host, child, errorLog, 10_000);
    if (httpsPort) await waitForPort(httpsPort, host, child, errorLog, 10_000);
  } catch (error) {
    await gateway.stop();
    throw error;
  }
  return gateway;
}

/** Polls `check` until it returns true or `timeoutMs` passes; returns the time it took. */
/**
 * Every nginx worker re-checks the credential files once a second, on its own timer. Once one
 * answer shows a change, waiting this long means every worker has it too, so a single request
 * afterwards cannot meet a worker that has not caught up.
 */
export const everyWorkerCaughtUp = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 1100));

export async function waitUntil(check: () => boolean | Promise<boolean>, timeoutMs = 5000, stepMs = 50): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    if (await check()) return Date.now() - start;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  throw new Error(`condition not met within ${timeoutMs} ms`);
}
