/**
 * npm run render -- --config <spec.json> --out <dir> [--flavor openresty|debian] [--bcrypt-cost N]
 *
 * Renders the proxy bundle from a spec file. Rendering into an existing bundle rewrites only
 * the files that changed, each atomically, so a running proxy picks up new credentials
 * without a reload. A bad spec prints every problem and exits 2 without writing anything.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { bcryptHash, bcryptVerify, HTPASSWD_FILE } from "../bundle/credentials";
import { renderBundle } from "../bundle/render";
import { FLAVORS, type Flavor, parseSpec } from "../bundle/spec";
import { writeBundle } from "../bundle/write";

const USAGE = "usage: npm run render -- --config <spec.json> --out <dir> [--flavor openresty|debian] [--bcrypt-cost 4-31]";

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
        flavor: { type: "string", default: "openresty" },
        "bcrypt-cost": { type: "string", default: "10" },
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
  if (!args.config) problems.push("`--config` is missing; give the path of a spec JSON file");
  if (!args.out) problems.push("`--out` is missing; give the bundle directory to write");
  if (!FLAVORS.includes(args.flavor as Flavor)) problems.push(`\`--flavor\` is ${JSON.stringify(args.flavor)}; use \`openresty\` or \`debian\``);
  const cost = Number(args["bcrypt-cost"]);
  if (!Number.isInteger(cost) || cost < 4 || cost > 31) problems.push(`\`--bcrypt-cost\` is ${JSON.stringify(args["bcrypt-cost"])}; use a whole number from 4 to 31`);
  if (problems.length) fail([...problems, USAGE]);

  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(args.config!, "utf8"));
  } catch (error) {
    fail([`\`--config\` ${args.config}: ${(error as Error).message}`]);
  }
  const parsed = parseSpec(raw);
  if (!parsed.ok) fail(parsed.errors);

  const outDir = path.resolve(args.out!);
  const previous = existingHashes(outDir);
  const hashPassword = (name: string, password: string) =>
    previous.get(name)?.find((hash) => bcryptVerify(password, hash)) ?? bcryptHash(password, cost);
  const bundle = renderBundle(parsed.spec, { flavor: args.flavor as Flavor, hashPassword });
  const written = writeBundle(outDir, bundle.files);
  process.stdout.write(
    `render: ${outDir} (${args.flavor}): ${written.length} file(s) written, ${Object.keys(bundle.files).length - written.length} unchanged.\n` +
      `run it: nginx -p ${outDir}/ -c conf/nginx.conf\n`,
  );
}

main(process.argv.slice(2));
