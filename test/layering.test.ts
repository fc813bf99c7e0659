/**
 * The layering the code keeps: bundle/ (pure spec and renderer) depends on nothing of ours above
 * it, config/ (stack config -> settings) on bundle/ only, components/ (Pulumi resources) on
 * bundle/ only; index.ts wires config/ to components/. Tests and benchmarks share their helpers
 * (stand-in Ollama, ports, mocks, nginx runner) through harness/, which neither bench/ nor
 * harness/ reaches past into test/. Read from the import lines.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = path.join(__dirname, "..");
const sources = (dir: string): { file: string; text: string }[] =>
  readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? sources(`${dir}/${entry.name}`)
      : entry.name.endsWith(".ts")
        ? [{ file: `${dir}/${entry.name}`, text: readFileSync(path.join(ROOT, dir, entry.name), "utf8") }]
        : [],
  );
const importsOf = (text: string) => [...text.matchAll(/^import[^;]*? from "([^"]+)";/gm)].map((m) => m[1]);

describe("layering", () => {
  it.each([
    ["bundle", ["../components/", "../config/", "../index"]],
    ["config", ["../components/", "../index"]],
    ["components", ["../config/", "../index"]],
    ["harness", ["../test/", "../bench/"]],
    ["bench", ["../test/", "../../test/"]],
  ])("%s/ imports nothing from the layers above it", (dir, forbidden) => {
    const offending = sources(dir).flatMap(({ file, text }) =>
      importsOf(text).filter((source) => forbidden.some((f) => source.startsWith(f))).map((source) => `${file} imports ${source}`),
    );
    expect(offending).toEqual([]);
  });

  it("config/ has no file over 300 lines", () => {
    const long = sources("config").filter(({ text }) => text.split("\n").length > 300).map(({ file }) => file);
    expect(long).toEqual([]);
  });
});
