/**
 * npm run docs [-- --check]
 *
 * Writes the stack config table of docs/configuration.md from the key registry
 * (`CONFIG_KEYS`, `CONFIG_DEFAULTS` in config/stackConfig.ts), between its BEGIN/END markers;
 * the prose around it is edited by hand. `--check` writes nothing and exits 1 when the file
 * is out of date (test/docs.test.ts checks the same).
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { CONFIG_DEFAULTS, CONFIG_KEYS } from "../config/stackConfig";

export const CONFIG_DOC = path.join(__dirname, "..", "docs", "configuration.md");
const BEGIN = "<!-- BEGIN GENERATED: config keys (npm run docs) -->";
const END = "<!-- END GENERATED: config keys -->";

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

/** The document with its generated part replaced; throws when the markers are missing. */
export function withConfigTable(document: string): string {
  const start = document.indexOf(BEGIN);
  const end = document.indexOf(END);
  if (start < 0 || end < start) throw new Error(`${CONFIG_DOC}: the markers ${BEGIN} and ${END} are missing; put them back around the table`);
  return `${document.slice(0, start + BEGIN.length)}\n${configTable()}\n${document.slice(end)}`;
}

function main(argv: string[]): void {
  const current = readFileSync(CONFIG_DOC, "utf8");
  const wanted = withConfigTable(current);
  if (argv.includes("--check")) {
    if (current !== wanted) {
      process.stderr.write(`docs: ${path.relative(process.cwd(), CONFIG_DOC)} is out of date; run npm run docs\n`);
      process.exit(1);
    }
    return;
  }
  if (current !== wanted) writeFileSync(CONFIG_DOC, wanted);
  process.stdout.write(`docs: ${path.relative(process.cwd(), CONFIG_DOC)} ${current === wanted ? "unchanged" : "written"}\n`);
}

if (typeof require !== "undefined" && typeof module !== "undefined" && require.main === module) main(process.argv.slice(2));
