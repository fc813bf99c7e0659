/**
 * npm run render -- --config <spec.json> --out <dir> [--flavor openresty|debian] [--usage-module <.so>|none] [--owner UID:GID] [--bcrypt-cost N] [--reload]
 *
 * Without `--flavor`, the flavour is detected from the nginx on this host (scripts/flavor.ts);
 * pass it when rendering for another host.
 *
 * `--usage-module <path>|none`: token accounting by the C body filter (image/proxy/usage-module/,
 * built by scripts/build-usage-module.sh) at that path on the host that runs the bundle, or by
 * the Lua one. Default: the proxy image's path on debian when it exists here; else the Lua one.
 *
 * `--owner UID:GID` (as root): the credential files' owner by number, for a bundle served by the
 * proxy image (`--owner 10001:10001`): each file is written already owned by the image's user,
 * so a re-render never leaves a file the workers cannot read. Default: the spec's `user` here.
 *
 * Renders the proxy bundle from a spec file. Rendering into an existing bundle rewrites only
 * the files that changed, each atomically, so a running proxy picks up new credentials
 * without a reload; credential files the spec no longer has are removed. Changed config files
 * (conf/, lua/) need a reload: render says so, and `--reload` sends SIGHUP to the nginx whose
 * pid is in the bundle's logs/nginx.pid. A bad spec prints every problem and exits 2 without
 * writing anything.
 *
 * npm run render -- --config <spec.json> --client-env <key name> [--endpoint <url>] [--ca <file>|none]
 *
 * Prints, and only prints, the shell lines that configure Ollama and OpenAI clients for one API
 * key of the spec (bundle/clientEnv.ts): `eval "$(npm run -s render -- ...)"`. They hold the key
 * when the spec has it in plain text (with only `keySha256`, the key variables are left out); the
 * CA they write is `--ca`'s file, or the spec's certificate chain (`none`: the system's CAs).
 */
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { clientEnvScript, specEndpoint } from "../bundle/clientEnv";
import { bcryptHash, bcryptVerify, HTPASSWD_FILE } from "../bundle/credentials";
import { DEBIAN_USAGE_MODULE, PID_FILE, renderBundle, workerUser } from "../bundle/render";
import { FLAVORS, type Flavor, type GatewaySpec, parseSpec } from "../bundle/spec";
import { isCredentialPath, OwnerError, writeBundle } from "../bundle/write";
import { chooseFlavor, detectHostNginx } from "./flavor";

const USAGE =
  "usage: npm run render -- --config <spec.json> --out <dir> [--flavor openresty|debian] [--usage-module <.so path>|none] [--owner UID:GID] [--bcrypt-cost 4-31] [--reload]\n" +
  "       npm run render -- --config <spec.json> --client-env <key name> [--endpoint <url>] [--ca <file>|none]";

function fail(problems: string[]): never {
  process.stderr.write(`render: nothing written.\n${problems.map((p) => `- ${p}`).join("\n")}\n`);
  process.exit(2);
}

/** Existing hashes by user, so an unchanged password keeps its hash (and its cached verification). */
function existingHashes(outDir: string): Map<string, string[]> {
  const file = path.join(outDir, HTPASSWD_FILE);
  const hashes = new Map<string, string[]>();
  if (!existsSync(file)) return hashes;
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const match = /^([^#:][^:]*):(\$2[aby]\$[^:]+):/.exec(line);
    if (match) hashes.set(match[1], [...(hashes.get(match[1]) ?? []), match[2]]);
  }
  return hashes;
}

function main(argv: string[]): void {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        config: { type: "string" },
        out: { type: "string" },
        flavor: { type: "string" },
        "bcrypt-cost": { type: "string", default: "10" },
        reload: { type: "boolean", default: false },
        "client-env": { type: "string" },
        "usage-module": { type: "string" },
        owner: { type: "string" },
        endpoint: { type: "string" },
        ca: { type: "string" },
        help: { type: "boolean", default: false },
      },
      strict: true,
    }).values;
  } catch (error) {
    fail([`${(error as Error).message}`, USAGE]);
  }
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const problems: string[] = [];
  const clientEnv = args["client-env"];
  if (!args.config) problems.push("`--config` is missing; give the path of a spec JSON file");
  if (clientEnv === undefined && !args.out) problems.push("`--out` is missing; give the bundle directory to write");
  if (clientEnv !== undefined && (args.out || args.reload)) problems.push("`--client-env` only prints; leave out `--out` and `--reload`");
  if (clientEnv === undefined && (args.endpoint !== undefined || args.ca !== undefined)) problems.push("`--endpoint` and `--ca` go with `--client-env`");
  let flavor = args.flavor as Flavor | undefined;
  let flavorNote = "";
  // Printing the client environment needs no flavour.
  if (clientEnv === undefined && flavor === undefined) {
    const choice = chooseFlavor(detectHostNginx());
    if ("error" in choice) problems.push(choice.error);
    else [flavor, flavorNote] = [choice.flavor, `, detected: ${choice.reason}`];
  } else if (flavor !== undefined && !FLAVORS.includes(flavor)) problems.push(`\`--flavor\` is ${JSON.stringify(args.flavor)}; use \`openresty\` or \`debian\``);
  const cost = Number(args["bcrypt-cost"]);
  if (!Number.isInteger(cost) || cost < 4 || cost > 31) problems.push(`\`--bcrypt-cost\` is ${JSON.stringify(args["bcrypt-cost"])}; use a whole number from 4 to 31`);
  const owner = args.owner === undefined ? undefined : /^([0-9]{1,10}):([0-9]{1,10})$/.exec(args.owner);
  if (owner === null) problems.push(`\`--owner\` is ${JSON.stringify(args.owner)}; use a numeric \`UID:GID\`, such as \`10001:10001\` for the proxy image`);
  if (clientEnv !== undefined && args.owner !== undefined) problems.push("`--owner` goes with `--out`");
  if (problems.length) fail([...problems, USAGE]);

  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(args.config!, "utf8"));
  } catch (error) {
    fail([`\`--config\` ${args.config}: ${(error as Error).message}`]);
  }
  const parsed = parseSpec(raw);
  if (!parsed.ok) fail(parsed.errors);
  if (clientEnv !== undefined) return printClientEnv(parsed.spec, clientEnv, args.endpoint, args.ca);

  const outDir = path.resolve(args.out!);
  const previous = existingHashes(outDir);
  const hashPassword = (name: string, password: string) =>
    previous.get(name)?.find((hash) => bcryptVerify(password, hash)) ?? bcryptHash(password, cost);
  // The C token-accounting filter where it is installed (debian: the proxy image's path), else Lua.
  const usageModule = args["usage-module"] ?? (flavor === "debian" && existsSync(DEBIAN_USAGE_MODULE) ? DEBIAN_USAGE_MODULE : "none");
  const bundle = renderBundle(parsed.spec, { flavor: flavor!, hashPassword, usageModule: usageModule === "none" ? undefined : usageModule });
  const fresh = !existsSync(path.join(outDir, "conf", "nginx.conf"));
  let written: string[];
  try {
    written = writeBundle(outDir, bundle.files, { workerUser: workerUser(parsed.spec), ...(owner ? { owner: { uid: Number(owner[1]), gid: Number(owner[2]) } } : {}) });
  } catch (error) {
    if (error instanceof OwnerError) fail([error.message]);
    throw error;
  }
  const removed = removeStaleCredentials(outDir, bundle.credentialPaths);
  const configChanged = written.filter((file) => !isCredentialPath(file) && !file.endsWith("/.keep"));
  process.stdout.write(
    `render: ${outDir} (${flavor}${flavorNote}): ${written.length} file(s) written, ${Object.keys(bundle.files).length - written.length} unchanged` +
      `${removed.length ? `, ${removed.length} removed (${removed.join(", ")})` : ""}.\n`,
  );
  process.stdout.write(`render: token accounting by ${usageModule === "none" ? "the Lua body filter" : `the C module ${usageModule}`} (\`--usage-module\`).\n`);
  const pidFile = path.join(outDir, PID_FILE);
  if (fresh) {
    process.stdout.write(`run it: nginx -p ${outDir}/ -c conf/nginx.conf\n`);
    return;
  }
  if (configChanged.length === 0) {
    process.stdout.write("render: no reload needed (credential changes take effect within a second).\n");
    if (!existsSync(pidFile)) process.stdout.write(`run it: nginx -p ${outDir}/ -c conf/nginx.conf\n`);
    return;
  }
  process.stdout.write(`render: reload needed: ${configChanged.join(", ")} changed; a running nginx uses them only after a reload.\n`);
  if (!args.reload) {
    process.stdout.write(`reload: npm run render -- ... --reload, or kill -HUP $(cat ${pidFile})\nor start it: nginx -p ${outDir}/ -c conf/nginx.conf\n`);
    return;
  }
  reload(pidFile);
}

/**
 * The `clientEnv` lines for one key, on stdout alone: they may hold the key, so nothing else is
 * printed there and nothing is written or logged.
 */
function printClientEnv(spec: GatewaySpec, keyName: string, endpoint: string | undefined, caOption: string | undefined): void {
  const problems: string[] = [];
  const entry = spec.apiKeys.find((key) => key.name === keyName);
  if (!entry)
    problems.push(`\`--client-env\` names ${JSON.stringify(keyName)}, which is not in the spec's apiKeys; use one of: ${spec.apiKeys.map((k) => k.name).join(", ") || "(none)"}`);
  if (endpoint !== undefined && !/^https?:\/\/[^/\s]+$/.test(endpoint))
    problems.push(`\`--endpoint\` is ${JSON.stringify(endpoint)}; use a base URL such as https://gateway.example.com:8443 (no path)`);
  let caPem: string | undefined = caOption === "none" ? undefined : spec.tls?.certPem;
  if (caOption !== undefined && caOption !== "none") {
    try {
      caPem = readFileSync(caOption, "utf8");
      if (!caPem.includes("-----BEGIN CERTIFICATE-----")) problems.push(`\`--ca\` ${caOption} holds no PEM certificate; give the CA file clients must trust, or \`none\``);
    } catch (error) {
      problems.push(`\`--ca\` ${caOption}: ${(error as Error).message}`);
    }
  }
  if (problems.length) fail(problems);
  if (entry!.key === undefined)
    process.stderr.write(`render: the spec holds only the SHA-256 of key ${JSON.stringify(keyName)}; set OLLAMA_API_KEY and OPENAI_API_KEY yourself.\n`);
  process.stdout.write(
    clientEnvScript({
      endpoint: endpoint ?? specEndpoint(spec),
      ...(entry!.key !== undefined ? { apiKey: entry!.key } : {}),
      ...(caPem !== undefined ? { caPem } : {}),
    }),
  );
}

/** Deletes files in credentials/ that the new bundle does not have (a removed `jwt` or `tls`). */
function removeStaleCredentials(outDir: string, credentialPaths: string[]): string[] {
  const dir = path.join(outDir, "credentials");
  if (!existsSync(dir)) return [];
  const keep = new Set(credentialPaths);
  const removed: string[] = [];
  for (const name of readdirSync(dir)) {
    const relative = `credentials/${name}`;
    if (keep.has(relative)) continue;
    rmSync(path.join(dir, name), { force: true });
    removed.push(relative);
  }
  return removed;
}

/** SIGHUP to the bundle's nginx master: it re-reads the configuration without dropping requests. */
function reload(pidFile: string): void {
  const text = existsSync(pidFile) ? readFileSync(pidFile, "utf8").trim() : "";
  const pid = Number(text);
  if (!/^[1-9][0-9]*$/.test(text)) {
    process.stderr.write(`render: --reload: no nginx pid in ${pidFile}; nginx is not running from this bundle. Start it: nginx -p ${path.dirname(path.dirname(pidFile))}/ -c conf/nginx.conf\n`);
    process.exit(1);
  }
  try {
    process.kill(pid, "SIGHUP");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    process.stderr.write(`render: --reload: ${pidFile} names pid ${pid}, which ${code === "ESRCH" ? "is not running (a stale pid file)" : `cannot be signalled (${code})`}; nothing reloaded.\n`);
    process.exit(1);
  }
  process.stdout.write(`render: sent SIGHUP to nginx (pid ${pid}); it reloads its configuration now.\n`);
}

main(process.argv.slice(2));
