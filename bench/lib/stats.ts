/** Statistics, number formatting and the machine description for benchmark reports. */
import { execFileSync, execSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";

export const median = (values: number[]) => quantile(values, 0.5);
export function quantile(values: number[], q: number): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const index = (sorted.length - 1) * q;
  const low = Math.floor(index);
  const high = Math.ceil(index);
  return sorted[low] + (sorted[high] - sorted[low]) * (index - low);
}
export const round = (value: number, digits = 2) => (Number.isFinite(value) ? Number(value.toFixed(digits)) : Number.NaN);
export const fmt = (value: number, digits = 2) => (Number.isFinite(value) ? value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 }) : "n/a");
export const pct = (share: number) => (Number.isFinite(share) ? `${Math.round(share * 100)}%` : "n/a");
export const log = (message: string) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}`);

export function machine() {
  const cpuModel = /model name\s*:\s*(.*)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "unknown";
  const nginxVersion = spawnSync("nginx", ["-v"], { encoding: "utf8" }).stderr.trim();
  const luaModule = (() => {
    try {
      return execSync("dpkg-query -W -f='${Version}' libnginx-mod-http-lua", { encoding: "utf8" }).trim();
    } catch {
      return "unknown";
    }
  })();
  const wrkVersion = (() => {
    const out = spawnSync("wrk", ["-v"], { encoding: "utf8" });
    return (out.stdout + out.stderr).split("\n")[0].trim();
  })();
  return {
    nproc: Number(execFileSync("nproc", { encoding: "utf8" }).trim()),
    cpuModel,
    memoryGiB: round(os.totalmem() / 2 ** 30, 1),
    kernel: os.release(),
    nginx: nginxVersion,
    luaModule: `libnginx-mod-http-lua ${luaModule}`,
    wrk: wrkVersion,
    node: process.version,
    date: new Date().toISOString(),
    loadAverageAtStart: os.loadavg().map((v) => round(v, 2)),
  };
}
