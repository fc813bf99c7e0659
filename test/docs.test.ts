/** The docs agree with the code they describe: the config table with the key registry, links with the tree. No nginx. */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { CONFIG_KEYS } from "../config/stackConfig";
import { CLIENTS_DOC, CONFIG_DOC, configTable, withClientEnvSection, withConfigTable } from "../scripts/docs";

const ROOT = path.join(__dirname, "..");
const read = (file: string) => readFileSync(path.join(ROOT, file), "utf8");
const MARKDOWN = ["README.md", "CHANGELOG.md", "bench/README.md", ...readdirSync(path.join(ROOT, "docs")).map((f) => `docs/${f}`)].filter((f) => f.endsWith(".md"));

describe("docs/configuration.md", () => {
  const doc = readFileSync(CONFIG_DOC, "utf8");

  it("has the config table generated from the key registry (run `npm run docs` after changing CONFIG_KEYS)", () => {
    expect(doc).toBe(withConfigTable(doc));
  });

  it("has one row per registry key, with its type, default and secrecy", () => {
    const rows = configTable().split("\n").slice(2);
    expect(rows.map((row) => row.split("`")[1])).toEqual(Object.keys(CONFIG_KEYS));
    expect(rows.every((row) => row.split(" | ").length === 5)).toBe(true);
    expect(rows).toContain(`| \`ipAddresses\` | ${CONFIG_KEYS.ipAddresses.description} | list of strings | \`["127.0.0.1"]\` | no |`);
    expect(rows.find((row) => row.startsWith("| `suppliedSecrets`"))).toMatch(/ \| string \| `""` \| yes \|$/);
  });

  it("lists every stack output index.ts exports", () => {
    const outputs = [...read("index.ts").matchAll(/^export const (\w+)/gm)].map((m) => m[1]);
    expect(outputs.length).toBeGreaterThan(5);
    for (const name of outputs) expect(doc, name).toMatch(new RegExp(`^\\| \`${name}\` \\|`, "m"));
  });
});

describe("docs/clients.md", () => {
  it("has the client environment generated from bundle/clientEnv.ts (run `npm run docs` after changing it)", () => {
    const doc = readFileSync(CLIENTS_DOC, "utf8");
    expect(doc).toBe(withClientEnvSection(doc));
  });

  it("names, for every client row, the test that verifies it or says it was read from source", () => {
    const doc = readFileSync(CLIENTS_DOC, "utf8");
    const table = doc.slice(doc.indexOf("| Client |"), doc.indexOf("\n\n", doc.indexOf("| Client |")));
    const rows = table.split("\n").slice(2);
    expect(rows.length).toBeGreaterThan(8);
    for (const row of rows) expect(row, row).toMatch(/test\/[\w.-]+\.test\.ts|read from source/);
  });
});

describe("markdown links", () => {
  it.each(MARKDOWN)("%s links only to files that exist", (file) => {
    const text = read(file).replace(/```[\s\S]*?```/g, "");
    const targets = [...text.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]).filter((t) => !/^(https?:|mailto:|#)/.test(t));
    const missing = targets.filter((t) => !existsSync(path.join(ROOT, path.dirname(file), t.split("#")[0])));
    expect(missing).toEqual([]);
  });
});
