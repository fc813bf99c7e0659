/**
 * npm run rotate -- --stack <stack> (--key <name> | --user <name> | --jwt-hs256 | --all) [--dir <project dir>]
 *
 * Requests an on-demand rotation: bumps the credential's (or the HS256 secret's) generation in the one config key
 * `rotationGenerations` of `Pulumi.<stack>.yaml`, so the next `pulumi up` rotates it. Nothing
 * else in the file changes (comments and layout included): the key's line is replaced, or
 * added at the end of the `config:` block. Unknown stacks or names, or a credential without a
 * `rotation` policy, print the problem, exit 2 and write nothing.
 */
import { existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { parseArgs } from "node:util";
import { HS256_ROTATION_NAME, parseStackConfig, PROJECT } from "../config/stackConfig";

// js-yaml comes with @pulumi/pulumi; it only reads here (to check the edit), never writes.
const yaml: { load(text: string): unknown } = createRequire(__filename)("js-yaml");

const USAGE = "usage: npm run rotate -- --stack <stack> (--key <name> | --user <name> | --jwt-hs256 | --all) [--dir <project dir>]";
const KEY = `${PROJECT}:rotationGenerations`;

export interface RotateResult {
  code: 0 | 2;
  stdout: string;
  stderr: string;
  /** The stack file written, when one was. */
  file?: string;
}

type Generations = Record<string, { generation: number; at: string }>;

class Refusal extends Error {}
const refuse = (message: string): never => {
  throw new Refusal(message);
};

/** Stack names that have a `Pulumi.<stack>.yaml` in `dir`. */
function stacksIn(dir: string): string[] {
  return readdirSync(dir)
    .map((file) => /^Pulumi\.(.+)\.ya?ml$/.exec(file)?.[1])
    .filter((stack): stack is string => stack !== undefined)
    .sort();
}

/** A config value as the CLI hands it to the program: strings as they are, lists as JSON. */
function asRaw(value: unknown, key: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value === "string") return value;
  if (Array.isArray(value)) return JSON.stringify(value);
  return refuse(`\`${PROJECT}:${key}\` is ${JSON.stringify(value)} in the stack file; it must be a plain (not secret) value.`);
}

/** Replaces the `rotationGenerations` line, or adds it at the end of the `config:` block. */
export function editStackText(text: string, value: string): string {
  const line = `${KEY}: '${value}'`;
  const lines = text.split("\n");
  const at = lines.findIndex((l) => new RegExp(`^\\s+${KEY.replace(/[.:-]/g, "\\$&")}:`).test(l));
  if (at >= 0) {
    const indent = /^\s*/.exec(lines[at])![0];
    const next = lines[at + 1];
    // A value continued on the next lines (block scalar, folded text) is not ours to rewrite.
    if (next !== undefined && /^\s*/.exec(next)![0].length > indent.length && next.trim() !== "")
      refuse(`\`${KEY}\` spans several lines in the stack file; set it on one line (\`pulumi config set rotationGenerations '{}'\`) and run again.`);
    lines[at] = `${indent}${line}`;
    return lines.join("\n");
  }
  const configAt = lines.findIndex((l) => /^config:\s*(#.*)?$/.test(l));
  if (configAt < 0) {
    if (lines.some((l) => /^config:/.test(l))) refuse("the stack file's `config:` is not a block mapping; add the key with `pulumi config set` instead.");
    const body = text.endsWith("\n") || text === "" ? text : `${text}\n`;
    return `${body}config:\n  ${line}\n`;
  }
  // The block ends at the next top-level line; keep trailing blank lines and comments after it.
  let end = configAt + 1;
  for (let i = configAt + 1; i < lines.length; i++) {
    if (/^\S/.test(lines[i])) break;
    if (lines[i].trim() !== "" && !lines[i].trim().startsWith("#")) end = i + 1;
  }
  const firstKey = lines.slice(configAt + 1, end).find((l) => l.trim() !== "" && !l.trim().startsWith("#"));
  const indent = firstKey ? /^\s*/.exec(firstKey)![0] : "  ";
  lines.splice(end, 0, `${indent}${line}`);
  return lines.join("\n");
}

export function runRotate(argv: string[], options: { cwd?: string; now?: Date } = {}): RotateResult {
  let stdout = "";
  try {
    let args;
    try {
      args = parseArgs({
        args: argv,
        options: {
          stack: { type: "string" },
          key: { type: "string" },
          user: { type: "string" },
          "jwt-hs256": { type: "boolean" },
          all: { type: "boolean" },
          dir: { type: "string" },
          help: { type: "boolean" },
        },
        strict: true,
      }).values;
    } catch (error) {
      return refuse(`${(error as Error).message}\n${USAGE}`);
    }
    if (args.help) return { code: 0, stdout: `${USAGE}\n`, stderr: "" };
    const targets = [args.key !== undefined, args.user !== undefined, args["jwt-hs256"] === true, args.all === true].filter(Boolean).length;
    if (!args.stack || targets !== 1) refuse(`give --stack and exactly one of --key, --user, --jwt-hs256, --all.\n${USAGE}`);

    const dir = path.resolve(options.cwd ?? process.cwd(), args.dir ?? ".");
    const stack = args.stack!;
    const file = path.join(dir, `Pulumi.${stack}.yaml`);
    if (!/^[A-Za-z0-9._-]+$/.test(stack) || !existsSync(file)) {
      const known = existsSync(dir) ? stacksIn(dir) : [];
      refuse(`no stack \`${stack}\`: ${file} does not exist; stacks here: ${known.length ? known.join(", ") : "none"}.`);
    }

    const text = readFileSync(file, "utf8");
    let doc: unknown;
    try {
      doc = yaml.load(text) ?? {};
    } catch (error) {
      return refuse(`${file} is not valid YAML: ${(error as Error).message.split("\n")[0]}`);
    }
    const config = ((doc as { config?: Record<string, unknown> }).config ?? {}) as Record<string, unknown>;
    const raw: Record<string, string | undefined> = {};
    const read = ["apiKeys", "basicUsers", "rotation", "rotationGenerations", "jwtIssuer", "jwtAudience", "jwtAlgorithms", "jwtPublicKeysPem", "jwtJwks"];
    for (const key of read) raw[key] = asRaw(config[`${PROJECT}:${key}`], key);
    // Only whether the HS256 secret is set matters here (a set one cannot rotate): never its value.
    const parsed = parseStackConfig(raw, config[`${PROJECT}:${HS256_ROTATION_NAME}`] !== undefined ? [HS256_ROTATION_NAME] : []);
    if (!parsed.ok) return refuse(`the stack's rotation config has problems; fix them first:\n- ${parsed.errors.join("\n- ")}`);
    const settings = parsed.settings;
    const rotating = [...settings.apiKeys, ...settings.basicUsers].filter((entry) => entry.rotation).map((entry) => entry.name);
    if (settings.jwt?.hs256Rotation) rotating.push(HS256_ROTATION_NAME);

    let names: string[];
    if (args.all) {
      names = rotating;
      if (names.length === 0) refuse(`stack \`${stack}\` has no credential with a \`rotation\` policy; add one, such as \`pulumi config set --path 'rotation[0]' app:30d:48h\`.`);
    } else if (args["jwt-hs256"]) {
      if (!settings.jwt?.hs256Rotation)
        refuse(
          `stack \`${stack}\` has no \`rotation\` policy for the HS256 secret; add \`${HS256_ROTATION_NAME}:manual:24h\` (or a period) to \`rotation\` (HS256 must be in \`jwtAlgorithms\`, \`${HS256_ROTATION_NAME}\` unset), then run again.`,
        );
      names = [HS256_ROTATION_NAME];
    } else {
      const kind = args.key !== undefined ? "API key" : "Basic user";
      const name = (args.key ?? args.user)!;
      const list = args.key !== undefined ? settings.apiKeys : settings.basicUsers;
      const entry = list.find((e) => e.name === name);
      if (!entry)
        return refuse(
          `stack \`${stack}\` has no ${kind} \`${name}\`; its ${kind}s: ${list.map((e) => e.name).join(", ") || "none"}${
            args.key !== undefined ? " (Basic users rotate with --user)" : " (API keys rotate with --key)"
          }.`,
        );
      if (!entry.rotation)
        return refuse(`${kind} \`${name}\` has no \`rotation\` policy in stack \`${stack}\`; add one, such as \`${name}:manual:24h\` to \`rotation\`, then run again.`);
      names = [name];
    }

    const now = new Date(Math.floor((options.now ?? new Date()).getTime() / 1000) * 1000).toISOString().replace(".000Z", "Z");
    const generations: Generations = raw.rotationGenerations ? JSON.parse(raw.rotationGenerations) : {};
    for (const name of names) {
      const before = generations[name]?.generation ?? 0;
      generations[name] = { generation: before + 1, at: now };
      stdout += `${name}: on-demand generation ${before} -> ${before + 1} (requested ${now})\n`;
    }
    const edited = editStackText(text, JSON.stringify(generations));

    // The edit must change exactly one config value, to exactly what was intended.
    const after = ((yaml.load(edited) as { config?: Record<string, unknown> }).config ?? {}) as Record<string, unknown>;
    const expected = { ...config, [KEY]: JSON.stringify(generations) };
    if (JSON.stringify(Object.entries(after).sort()) !== JSON.stringify(Object.entries(expected).sort()))
      refuse(`could not edit ${file} safely (the result would change more than \`${KEY}\`); set it with \`pulumi config set\` instead.`);

    const temporary = path.join(dir, `.Pulumi.${stack}.yaml.tmp`);
    writeFileSync(temporary, edited);
    renameSync(temporary, file);
    stdout += `Wrote ${path.basename(file)}; the next \`pulumi up --stack ${stack}\` rotates ${names.join(", ")}.\n`;
    return { code: 0, stdout, stderr: "", file };
  } catch (error) {
    if (error instanceof Refusal) return { code: 2, stdout, stderr: `rotate: nothing written: ${error.message}\n` };
    throw error;
  }
}

if (require.main === module) {
  const result = runRotate(process.argv.slice(2));
  process.stdout.write(result.stdout);
  process.stderr.write(result.stderr);
  process.exitCode = result.code;
}
