/**
 * Writes a bundle into a directory. Every file is written to a temporary name in the same
 * directory and renamed into place, so a running proxy never reads a half-written file.
 *
 * Credential files (`credentials/`) are readable by the nginx workers only: mode 0600 and, when
 * the writer runs as root (nginx's master then runs its workers as the spec's `user`, default
 * `nobody`), owned by that user and its primary group.
 */
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { BundleFiles } from "./render";

/** Mode of credential files: the workers' user alone reads them. */
export const CREDENTIAL_FILE_MODE = 0o600;
const CONFIG_FILE_MODE = 0o644;

/** Whether a bundle path is a credential file (secret, live-updated). */
export const isCredentialPath = (relative: string): boolean => relative.startsWith("credentials/");

/** The credential files' owner cannot be had; thrown before anything is written. */
export class OwnerError extends Error {}

export interface FileOwner {
  uid: number;
  gid: number;
}

/** A user's uid and primary gid from a passwd file; undefined when there is no such user. */
export function lookupUser(name: string, passwdFile = "/etc/passwd"): FileOwner | undefined {
  if (!existsSync(passwdFile)) return undefined;
  for (const line of readFileSync(passwdFile, "utf8").split("\n")) {
    const [user, , uid, gid] = line.split(":");
    if (user === name && uid !== undefined && gid !== undefined) return { uid: Number(uid), gid: Number(gid) };
  }
  return undefined;
}

/**
 * The owner credential files get: the workers' user when this process runs as root, otherwise
 * none (the files stay with the current user, whom nginx's workers then run as too).
 */
export function credentialOwner(workerUser: string): FileOwner | undefined {
  if (typeof process.getuid !== "function" || process.getuid() !== 0) return undefined;
  const owner = lookupUser(workerUser);
  if (!owner) {
    throw new OwnerError(`\`user\` is "${workerUser}", which is not a user on this host; nginx's workers could not read the credential files. Create it or set \`user\` to an existing one.`);
  }
  return owner;
}

/** `owner` when this process may give files to it (root, or `owner` is this process's own user). */
function ownerAsRoot(owner: FileOwner): FileOwner | undefined {
  const uid = typeof process.getuid === "function" ? process.getuid() : undefined;
  if (uid === 0) return owner;
  if (uid === owner.uid) return undefined;
  throw new OwnerError(`the credential files' owner is ${owner.uid}:${owner.gid}, and only root can give files to another user; render as root, or leave the owner out.`);
}

export function writeFileAtomically(target: string, content: string, mode = CONFIG_FILE_MODE, owner?: FileOwner): void {
  mkdirSync(path.dirname(target), { recursive: true, mode: 0o755 });
  const temporary = path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.tmp`);
  writeFileSync(temporary, content, { mode });
  if (owner) chownSync(temporary, owner.uid, owner.gid);
  chmodSync(temporary, mode);
  renameSync(temporary, target);
}

export interface WriteOptions {
  /** The user nginx's workers run as (spec `user`). Default `nobody`, nginx's own default. */
  workerUser?: string;
  /**
   * The credential files' owner by number, instead of `workerUser`'s: a bundle served by the
   * proxy image, whose workers are 10001:10001, a user this host need not have.
   */
  owner?: FileOwner;
}

/**
 * Writes only files whose content changed (unchanged files keep their inode and mtime); an
 * unchanged credential file with another mode or owner is fixed in place.
 */
export function writeBundle(directory: string, files: BundleFiles, options: WriteOptions = {}): string[] {
  const owner = options.owner ? ownerAsRoot(options.owner) : credentialOwner(options.workerUser ?? "nobody");
  const written: string[] = [];
  for (const [relative, content] of Object.entries(files)) {
    const target = path.join(directory, relative);
    const secret = isCredentialPath(relative);
    const mode = secret ? CREDENTIAL_FILE_MODE : CONFIG_FILE_MODE;
    const fileOwner = secret ? owner : undefined;
    if (existsSync(target) && readFileSync(target, "utf8") === content) {
      if (secret) {
        const stat = statSync(target);
        if (fileOwner && (stat.uid !== fileOwner.uid || stat.gid !== fileOwner.gid)) chownSync(target, fileOwner.uid, fileOwner.gid);
        if ((stat.mode & 0o777) !== mode) chmodSync(target, mode);
      }
      continue;
    }
    writeFileAtomically(target, content, mode, fileOwner);
    written.push(relative);
  }
  return written;
}
