/**
 * Which bundle flavour suits the nginx on this host, for `npm run render` without `--flavor`.
 * A wrong guess is worse than none (Debian's nginx refuses the openresty flavour's config with
 * `unknown directive "lua_package_path"`), so when nothing fits render asks for `--flavor`.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import type { Flavor } from "../bundle/spec";

/** Where Debian's libnginx-mod-http-lua puts the module the debian flavour loads. */
export const DEBIAN_LUA_MODULE = "/usr/lib/nginx/modules/ngx_http_lua_module.so";

export interface HostNginx {
  /** `openresty -V` succeeded (OpenResty's own binary is on PATH). */
  openresty: boolean;
  /** What `nginx -V` printed, or undefined when there is no nginx on PATH. */
  nginxV?: string;
  /** Debian's Lua module file exists. */
  debianLuaModule: boolean;
}

export type FlavorChoice = { flavor: Flavor; reason: string } | { error: string };

/** Pure: the flavour for what was found on the host. */
export function chooseFlavor(host: HostNginx): FlavorChoice {
  if (host.openresty) return { flavor: "openresty", reason: "OpenResty found (`openresty -V`)" };
  if (host.nginxV !== undefined && /openresty|lua-nginx-module/i.test(host.nginxV)) {
    return { flavor: "openresty", reason: "`nginx -V` shows the Lua module built in" };
  }
  if (host.nginxV !== undefined && host.debianLuaModule) {
    return { flavor: "debian", reason: `Debian's nginx with ${DEBIAN_LUA_MODULE}` };
  }
  const found = host.nginxV === undefined ? "no nginx on PATH" : `nginx without the Lua module (${DEBIAN_LUA_MODULE} is missing)`;
  return {
    error:
      `\`--flavor\` not given and none could be detected: ${found}. Install Debian's nginx and Lua module ` +
      "(`sudo apt-get install -y nginx libnginx-mod-http-lua`) or OpenResty, or pass `--flavor debian` or `--flavor openresty` " +
      "for the host that will run the bundle",
  };
}

/** Reads the host: the binaries on PATH and Debian's module file. */
export function detectHostNginx(): HostNginx {
  const version = (command: string) => {
    const run = spawnSync(command, ["-V"], { encoding: "utf8", timeout: 10_000 });
    return run.error || run.status !== 0 ? undefined : `${run.stdout}${run.stderr}`;
  };
  return { openresty: version("openresty") !== undefined, nginxV: version("nginx"), debianLuaModule: existsSync(DEBIAN_LUA_MODULE) };
}
