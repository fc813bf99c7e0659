/**
 * Writes a bundle into a directory. Every file is written to a temporary name in the same
 * directory and renamed into place, so a running proxy never reads a half-written file.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { BundleFiles } from "./render";

export function writeFileAtomically(target: string, content: string, mode = 0o644): void {
  mkdirSync(path.dirname(target), { recursive: true, mode: 0o755 });
  const temporary = path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.tmp`);
  writeFileSync(temporary, content, { mode });
  chmodSync(temporary, mode);
  renameSync(temporary, target);
}

/** Writes only files whose content changed (unchanged files keep their inode and mtime). */
export function writeBundle(directory: string, files: BundleFiles): string[] {
  const written: string[] = [];
  for (const [relative, content] of Object.entries(files)) {
    const target = path.join(directory, relative);
    if (existsSync(target) && readFileSync(target, "utf8") === content) continue;
    writeFileAtomically(target, content);
    written.push(relative);
  }
  return written;
}
