/**
 * npm run docs [-- --check]
 *
 * Writes the generated parts of the docs, between their BEGIN/END markers: the stack config
 * table of docs/configuration.md from the key registry (`CONFIG_KEYS`, `CONFIG_DEFAULTS` in
 * config/stackConfig.ts), and the client environment of docs/clients.md from
 * bundle/clientEnv.ts. The prose around them is edited by hand. `--check` writes nothing and
 * exits 1 when a file is out of date (test/docs.test.ts checks the same).
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { clientEnvScript, clientEnvVariables } from "../bundle/clientEnv";
import { CONFIG_DEFAULTS, CONFIG_KEYS } from "../config/stackConfig";

export const CONFIG_DOC = path.join(__dirname, "..", "docs", "configuration.md");
export const CLIENTS_DOC = path.join(__dirname, "..", "docs", "clients.md");
const BEGIN = "<!-- BEGIN GENERATED: config keys (npm run docs) -->";
const END = "<!-- END GENERATED: config keys -->";
const CLIENT_BEGIN = "<!-- BEGIN GENERATED: client environment (npm run docs) -->";
const CLIENT_END = "<!-- END GENERATED: client environment -->";

const TYPE_NAMES = { string: "string", integer: "integer", boolean: "boolean", array: "list of strings" } as const;

/** A key's default as Pulumi.yaml declares it: a real default, or the value that means "unset". */
export function declaredDefault(key: string): unknown {
  const declared = CONFIG_KEYS[key];
  if (key in CONFIG_DEFAULTS) return CONFIG_DEFAULTS[key as keyof typeof CONFIG_DEFAULTS];
  return declared.unset === "0" ? 0 : "";
}

const cell = (text: string) => text.replace(/\|/g, "\\|").replace(/\n/g, " ");
const code = (value: unknown) => `\`${typeof value === "string" ? (value === "" ? '""' : value) : JSON.stringify(value)}\``;

/** The generated table, one row per key in registry order. */
export function configTable(): string {
  const rows = Object.entries(CONFIG_KEYS).map(
    ([key, declared]) =>
      `| \`${key}\` | ${cell(declared.description)} | ${TYPE_NAMES[declared.type]} | ${cell(code(declaredDefault(key)))} | ${declared.secret ? "yes" : "no"} |`,
  );
  return ["| Key | Description | Type | Default | Secret |", "|---|---|---|---|---|", ...rows].join("\n");
}

/** `document` with the text between `begin` and `end` replaced; throws when the markers are missing. */
function replaceBetween(file: string, document: string, begin: string, end: string, content: string): string {
  const start = document.indexOf(begin);
  const stop = document.indexOf(end);
  if (start < 0 || stop < start) throw new Error(`${file}: the markers ${begin} and ${end} are missing; put them back around the generated part`);
  return `${document.slice(0, start + begin.length)}\n${content}\n${document.slice(stop)}`;
}

/** The document with its generated part replaced; throws when the markers are missing. */
export function withConfigTable(document: string): string {
  return replaceBetween(CONFIG_DOC, document, BEGIN, END, configTable());
}

/** What the `clientEnv` lines export and who reads each variable, and the lines themselves for an example gateway. */
export function clientEnvSection(): string {
  const example = { endpoint: "https://gateway.example.com:8443", apiKey: "<the key>", caPem: "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n" };
  const rows = clientEnvVariables(example).map((v) => `| \`${v.name}\` | \`${v.value}\` | ${cell(v.readBy)} |`);
  return [
    "| Variable | Value | Read by |",
    "|---|---|---|",
    ...rows,
    "",
    "The lines for a gateway at `https://gateway.example.com:8443` with a private CA:",
    "",
    "```sh",
    clientEnvScript(example).trimEnd(),
    "```",
  ].join("\n");
}

/** docs/clients.md with its generated part replaced. */
export function withClientEnvSection(document: string): string {
  return replaceBetween(CLIENTS_DOC, document, CLIENT_BEGIN, CLIENT_END, clientEnvSection());
}

function main(argv: string[]): void {
  let stale = false;
  for (const [file, update] of [[CONFIG_DOC, withConfigTable], [CLIENTS_DOC, withClientEnvSection]] as const) {
    const current = readFileSync(file, "utf8");
    const wanted = update(current);
    const name = path.relative(process.cwd(), file);
    if (argv.includes("--check")) {
      if (current !== wanted) process.stderr.write(`docs: ${name} is out of date; run npm run docs\n`);
      stale ||= current !== wanted;
      continue;
    }
    if (current !== wanted) writeFileSync(file, wanted);
    process.stdout.write(`docs: ${name} ${current === wanted ? "unchanged" : "written"}\n`);
  }
  if (stale) process.exit(1);
}

if (typeof require !== "undefined" && typeof module !== "undefined" && require.main === module) main(process.argv.slice(2));
