/**
 * Unit tests of the data plane's pure Lua parts (credential parsing, caller records, scope ranking,
 * error envelopes, the external-auth fallback decision), run by plain LuaJIT without nginx:
 * test/lua/units.lua, against a gateway/config.lua rendered here from the default spec (so the
 * scope order is bundle/routes.ts's). The through-nginx suites prove the same behaviour end to end.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { renderConfigLua } from "../bundle/render";
import { validateSettings } from "../bundle/spec";

const ROOT = path.join(__dirname, "..");
// Debian's `luajit2` package: the OpenResty LuaJIT branch nginx's Lua module links (Debian's
// `luajit` package would replace that library and remove the module).
const LUAJIT = "luajit";

describe("Lua units without nginx", () => {
  const configDir = mkdtempSync(path.join(tmpdir(), "gw-lua-units-"));
  afterAll(() => rmSync(configDir, { recursive: true, force: true }));

  it("test/lua/units.lua passes", () => {
    mkdirSync(path.join(configDir, "gateway"));
    writeFileSync(path.join(configDir, "gateway", "config.lua"), renderConfigLua(validateSettings({})));
    const run = spawnSync(LUAJIT, [path.join(ROOT, "test/lua/units.lua"), configDir, path.join(ROOT, "nginx/lua")], {
      encoding: "utf8",
      timeout: 20_000,
    });
    if (run.error) {
      throw new Error(`cannot run ${LUAJIT} (${run.error.message}): sudo apt-get install -y --no-install-recommends luajit2`);
    }
    const output = `${run.stdout}${run.stderr}`;
    expect(run.status, output).toBe(0);
    expect(output).toMatch(/^\d+ tests, 0 failed$/m);
  });
});
