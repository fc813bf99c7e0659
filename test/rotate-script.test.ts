/**
 * `npm run rotate` on temporary copies of a stack file: it changes exactly the on-demand
 * generation of the named credential, keeps comments and layout, and refuses unknown stacks,
 * names and credentials without a policy (exit 2, nothing written).
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseStackConfig } from "../config/stackConfig";
import { editStackText, runRotate } from "../scripts/rotate";
import { ROOT, readYaml } from "../harness/pulumi-mocks";

const NOW = new Date("2026-11-05T10:00:00.250Z");
const POLICIES = "  # Rotation: keys monthly with two days of overlap; alice on demand.\n  ollama-gateway:rotation:\n    - app:30d:48h\n    - alice:manual:24h\n";

describe("npm run rotate", () => {
  let dir: string;
  let file: string;
  let original: string;
  const load = () => readYaml(path.relative(ROOT, file)).config as Record<string, unknown>;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), "rotate-"));
    file = path.join(dir, "Pulumi.dev.yaml");
    copyFileSync(path.join(ROOT, "Pulumi.dev.yaml"), file);
    writeFileSync(file, readFileSync(file, "utf8") + POLICIES);
    original = readFileSync(file, "utf8");
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("bumps one key's generation and changes nothing else in the file", () => {
    const result = runRotate(["--stack", "dev", "--key", "app"], { cwd: dir, now: NOW });
    expect(result).toMatchObject({ code: 0, stderr: "" });
    const edited = readFileSync(file, "utf8");
    expect(edited).toBe(`${original}  ollama-gateway:rotationGenerations: '{"app":{"generation":1,"at":"2026-11-05T10:00:00Z"}}'\n`);
    expect(edited).toContain("# Development stack");
    expect(load()["ollama-gateway:rotationGenerations"]).toBe('{"app":{"generation":1,"at":"2026-11-05T10:00:00Z"}}');

    // Again, and for a user: the same line is rewritten in place.
    runRotate(["--stack", "dev", "--key", "app"], { cwd: dir, now: new Date("2026-11-06T00:00:00Z") });
    runRotate(["--stack", "dev", "--user", "alice"], { cwd: dir, now: new Date("2026-11-06T00:00:00Z") });
    const generations = JSON.parse(load()["ollama-gateway:rotationGenerations"] as string);
    expect(generations).toEqual({ app: { generation: 2, at: "2026-11-06T00:00:00Z" }, alice: { generation: 1, at: "2026-11-06T00:00:00Z" } });
    const lines = readFileSync(file, "utf8").split("\n");
    expect(lines.filter((l) => l.includes("rotationGenerations"))).toHaveLength(1);
    // The program accepts what the script wrote.
    const config = Object.fromEntries(
      Object.entries(load()).map(([k, v]) => [k.replace("ollama-gateway:", ""), typeof v === "string" ? v : JSON.stringify(v)]),
    );
    expect(parseStackConfig(config).ok).toBe(true);
  });

  it("rotates every credential with a policy with --all", () => {
    expect(runRotate(["--stack", "dev", "--all"], { cwd: dir, now: NOW }).code).toBe(0);
    expect(Object.keys(JSON.parse(load()["ollama-gateway:rotationGenerations"] as string)).sort()).toEqual(["alice", "app"]);
  });

  it("rotates the generated HS256 secret with --jwt-hs256, and includes it in --all", () => {
    const jwt = [
      "  ollama-gateway:jwtIssuer: https://login.example.com/",
      "  ollama-gateway:jwtAudience: ollama-gateway",
      "  ollama-gateway:jwtAlgorithms: [HS256]",
      "",
    ].join("\n");
    writeFileSync(file, original.replace("    - alice:manual:24h\n", "    - alice:manual:24h\n    - jwtHs256Secret:90d:7d\n") + jwt);
    expect(runRotate(["--stack", "dev", "--jwt-hs256"], { cwd: dir, now: NOW })).toMatchObject({ code: 0, stderr: "" });
    expect(JSON.parse(load()["ollama-gateway:rotationGenerations"] as string)).toEqual({ jwtHs256Secret: { generation: 1, at: "2026-11-05T10:00:00Z" } });
    expect(runRotate(["--stack", "dev", "--all"], { cwd: dir, now: NOW }).code).toBe(0);
    expect(Object.keys(JSON.parse(load()["ollama-gateway:rotationGenerations"] as string)).sort()).toEqual(["alice", "app", "jwtHs256Secret"]);

    // A secret set in the stack config (encrypted or not) cannot rotate: refused, value never read.
    writeFileSync(file, `${readFileSync(file, "utf8")}  ollama-gateway:jwtHs256Secret:\n    secure: AAABAHunter2\n`);
    const before = readFileSync(file, "utf8");
    const refused = runRotate(["--stack", "dev", "--jwt-hs256"], { cwd: dir, now: NOW });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("names `jwtHs256Secret`, which is set in the stack config");
    expect(refused.stderr).not.toContain("Hunter2");
    expect(readFileSync(file, "utf8")).toBe(before);
  });

  it.each([
    [["--stack", "prod", "--all"], "no stack `prod`"],
    [["--stack", "dev", "--key", "ghost"], "stack `dev` has no API key `ghost`; its API keys: app, ops (Basic users rotate with --user)."],
    [["--stack", "dev", "--user", "app"], "stack `dev` has no Basic user `app`; its Basic users: alice (API keys rotate with --key)."],
    [["--stack", "dev", "--key", "ops"], "API key `ops` has no `rotation` policy in stack `dev`; add one, such as `ops:manual:24h` to `rotation`, then run again."],
    [["--stack", "dev", "--key", "app", "--all"], "give --stack and exactly one of --key, --user, --jwt-hs256, --all."],
    [["--stack", "dev", "--jwt-hs256"], "stack `dev` has no `rotation` policy for the HS256 secret; add `jwtHs256Secret:manual:24h`"],
    [["--stack", "../dev", "--all"], "no stack `../dev`"],
  ])("refuses %j with exit 2 and writes nothing", (argv, message) => {
    const result = runRotate(argv, { cwd: dir, now: NOW });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("rotate: nothing written: ");
    expect(result.stderr).toContain(message);
    expect(readFileSync(file, "utf8")).toBe(original);
  });

  it("refuses a stack whose rotation config is invalid", () => {
    writeFileSync(file, `${original}  ollama-gateway:rotationGenerations: '{"ghost": 1}'\n`);
    const before = readFileSync(file, "utf8");
    const result = runRotate(["--stack", "dev", "--key", "app"], { cwd: dir, now: NOW });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("`ollama-gateway:rotationGenerations.ghost` names no credential with a `rotation` policy");
    expect(readFileSync(file, "utf8")).toBe(before);
  });

  it("exits 2 from the command line, as CI runs it", () => {
    let status = 0;
    let stderr = "";
    try {
      execFileSync(path.join(ROOT, "node_modules", ".bin", "tsx"), [path.join(ROOT, "scripts", "rotate.ts"), "--stack", "dev", "--key", "ghost", "--dir", dir], {
        encoding: "utf8",
        stdio: "pipe",
      });
    } catch (error) {
      status = (error as { status: number }).status;
      stderr = (error as { stderr: string }).stderr;
    }
    expect(status).toBe(2);
    expect(stderr).toContain("has no API key `ghost`");
    expect(readFileSync(file, "utf8")).toBe(original);
  });
});

describe("editStackText", () => {
  it("adds the key at the end of the config block, before later top-level keys, with the block's indentation", () => {
    const text = "config:\n    a:b: 1\n    # note\n\nencryptionsalt: xyz\n";
    expect(editStackText(text, "{}")).toBe("config:\n    a:b: 1\n    ollama-gateway:rotationGenerations: '{}'\n    # note\n\nencryptionsalt: xyz\n");
  });
  it("creates the config block when there is none", () => {
    expect(editStackText("encryptionsalt: xyz\n", "{}")).toBe("encryptionsalt: xyz\nconfig:\n  ollama-gateway:rotationGenerations: '{}'\n");
  });
  it("refuses a multi-line value", () => {
    expect(() => editStackText("config:\n  ollama-gateway:rotationGenerations: >\n    {}\n", "{}")).toThrow(/spans several lines/);
  });
});
