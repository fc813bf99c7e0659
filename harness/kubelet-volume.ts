/**
 * The kubelet's atomic update of a Secret (or ConfigMap) volume, step for step as
 * kubernetes/pkg/volume/util/atomic_writer.go does it, so the proxy can be tested against the
 * very file layout and swap a pod sees:
 *
 *   credentials/..2026_12_02_09_53_00.123456789/api-keys   the files, in a timestamped directory
 *   credentials/..data -> ..2026_12_02_09_53_00.123456789  the current version
 *   credentials/api-keys -> ..data/api-keys                what the program opens
 *
 * An update writes a new timestamped directory, points a temporary `..data_tmp` symlink at it,
 * renames that over `..data` (the one atomic step), adds or removes the user-visible symlinks,
 * then deletes the old directory.
 */
import { chmodSync, chownSync, existsSync, lstatSync, mkdtempSync, readdirSync, readlinkSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { FileOwner } from "../bundle/write";

const DATA_DIR = "..data";
const DATA_DIR_TMP = "..data_tmp";

/** `..2006_01_02_15_04_05.`: the prefix Go's `time.Format` gives the kubelet's directory (TempDir adds digits). */
function timestampPrefix(now = new Date()): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  return `..${now.getUTCFullYear()}_${pad(now.getUTCMonth() + 1)}_${pad(now.getUTCDate())}_${pad(now.getUTCHours())}_${pad(now.getUTCMinutes())}_${pad(now.getUTCSeconds())}.`;
}

export class KubeletVolume {
  /** Timestamped directories created so far (the last is current). */
  readonly versions: string[] = [];

  /**
   * @param dir the volume's mount point
   * @param mode the Secret volume's `defaultMode` (the component sets 0440 with `fsGroup`)
   * @param owner who the kubelet makes the files readable for (`fsGroup`); undefined: unchanged
   */
  constructor(
    readonly dir: string,
    readonly mode = 0o440,
    readonly owner?: FileOwner,
  ) {}

  /** One update: the Secret's data after the change (file name -> content). */
  write(payload: Record<string, string>): void {
    const dataPath = path.join(this.dir, DATA_DIR);
    const oldTsDir = existsSync(dataPath) ? readlinkSync(dataPath) : undefined;

    // Write the new version in a fresh timestamped directory.
    const tsDir = mkdtempSync(path.join(this.dir, timestampPrefix()));
    chmodSync(tsDir, 0o755);
    for (const [name, content] of Object.entries(payload)) {
      const file = path.join(tsDir, name);
      writeFileSync(file, content, { mode: this.mode });
      if (this.owner) chownSync(file, this.owner.uid, this.owner.gid);
      chmodSync(file, this.mode);
    }
    this.versions.push(path.basename(tsDir));

    // ..data_tmp -> the new directory, renamed over ..data: readers see the old or the new set, whole.
    const tmpLink = path.join(this.dir, DATA_DIR_TMP);
    rmSync(tmpLink, { force: true });
    symlinkSync(path.basename(tsDir), tmpLink);
    renameSync(tmpLink, dataPath);

    // User-visible names: a symlink through ..data for each file, created once. A regular file of
    // that name (a volume filled by something else before) is replaced by a rename, never unlinked first.
    for (const name of Object.keys(payload)) {
      const visible = path.join(this.dir, name);
      const isLink = existsSync(visible) && lstatSync(visible).isSymbolicLink();
      if (isLink) continue;
      const temporary = path.join(this.dir, `.${name}.link.tmp`);
      symlinkSync(path.join(DATA_DIR, name), temporary);
      renameSync(temporary, visible);
    }
    // Names the new version no longer has.
    if (oldTsDir !== undefined) {
      for (const entry of this.listVisible()) if (!(entry in payload)) unlinkSync(path.join(this.dir, entry));
      rmSync(path.join(this.dir, oldTsDir), { recursive: true, force: true });
    }
  }

  /** The user-visible entries (not starting with `..`). */
  listVisible(): string[] {
    return readdirSync(this.dir).filter((name) => !name.startsWith(".."));
  }
}
