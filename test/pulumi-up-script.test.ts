/** scripts/up.sh stops at once, naming what is missing and how to install it. */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const script = path.join(__dirname, "..", "scripts", "up.sh");
const bin = mkdtempSync(path.join(tmpdir(), "up-sh-"));
afterAll(() => rmSync(bin, { recursive: true, force: true }));

/** A PATH with only what the script needs before its checks, plus the given fake tools. */
function run(fakes: Record<string, string>) {
  for (const tool of ["dirname", "bash"]) {
    const found = spawnSync("bash", ["-c", `command -v ${tool}`], { encoding: "utf8" }).stdout.trim();
    rmSync(path.join(bin, tool), { force: true });
    symlinkSync(found, path.join(bin, tool));
  }
  for (const [tool, body] of Object.entries(fakes)) {
    writeFileSync(path.join(bin, tool), `#!/bin/sh\n${body}\n`);
    chmodSync(path.join(bin, tool), 0o755);
  }
  return spawnSync(path.join(bin, "bash"), [script], { encoding: "utf8", env: { PATH: bin, HOME: bin } });
}

describe("scripts/up.sh", () => {
  it("stops with exit code 1 and an install hint when pulumi is missing", () => {
    const result = run({ docker: "exit 0", npm: "exit 0" });
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(
      [
        "error: the Pulumi CLI (pulumi) is not on PATH.",
        "       Install it: curl -fsSL https://get.pulumi.com | sh   (or see https://www.pulumi.com/docs/install/)",
        "",
      ].join("\n"),
    );
    expect(result.stdout).toBe("");
  });

  it("also names an unreachable Docker engine", () => {
    rmSync(path.join(bin, "docker"), { force: true });
    const result = run({ docker: "exit 1", npm: "exit 0" });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("the Pulumi CLI (pulumi) is not on PATH");
    expect(result.stderr).toContain("error: no Docker engine answers (docker info failed).");
  });
});
