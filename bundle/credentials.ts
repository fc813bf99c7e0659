/**
 * Credential files as the proxy reads them. Pure functions: the same entries always give
 * the same bytes, so a deployment with unchanged credentials changes nothing.
 *
 * Both files carry a header line with the format version and a trailer with the number of
 * entries, so the proxy can tell a complete file from an empty or truncated one (it then
 * fails closed).
 */
import { createHash } from "node:crypto";
import bcrypt from "bcryptjs";
import { credentialFile } from "./credentialFile";
import type { Scope } from "./spec";

export const API_KEYS_FILE = "credentials/api-keys";
export const HTPASSWD_FILE = "credentials/htpasswd";
/** Certificate chain followed by its private key: one file, so one rename swaps both. */
export const TLS_PEM_FILE = "credentials/tls.pem";

/** A credential's current secret, or the previous one that stays valid until `notAfter`. */
export type Slot = "current" | "previous";

export interface ApiKeyRecord {
  name: string;
  scope: Scope;
  slot: Slot;
  keySha256: string;
  /** Unix seconds after which the proxy refuses the key. */
  notAfter?: number;
  rateLimit?: { requestsPerSecond: number; burst: number };
  /** Allowed to use Ollama's cloud features. */
  cloud?: boolean;
}

export interface BasicUserRecord {
  name: string;
  scope: Scope;
  slot: Slot;
  passwordHash: string;
  notAfter?: number;
  rateLimit?: { requestsPerSecond: number; burst: number };
  cloud?: boolean;
}

/** Lowercase hex SHA-256: the only form in which an API key reaches the proxy. */
export function sha256Hex(value: string): string {
  return createHash("sha256").update(value, "utf8").digest("hex");
}

/** bcrypt with a caller-chosen salt (22 characters of bcrypt's base64), so hashing is repeatable. */
export function bcryptHashWithSalt(password: string, salt22: string, cost = 10): string {
  if (!/^[./A-Za-z0-9]{22}$/.test(salt22)) throw new Error("bcrypt salt must be 22 characters of [./A-Za-z0-9]");
  return bcrypt.hashSync(password, `$2b$${String(cost).padStart(2, "0")}$${salt22}`);
}

export function bcryptHash(password: string, cost = 10): string {
  return bcrypt.hashSync(password, cost);
}

export function bcryptVerify(password: string, hash: string): boolean {
  return bcrypt.compareSync(password, hash);
}

export function toUnixSeconds(iso: string | undefined): number | undefined {
  return iso === undefined ? undefined : Math.floor(Date.parse(iso) / 1000);
}

function attributes(record: { scope: Scope; slot: Slot; notAfter?: number; rateLimit?: { requestsPerSecond: number; burst: number }; cloud?: boolean }) {
  const rate = record.rateLimit ? `${record.rateLimit.requestsPerSecond}/${record.rateLimit.burst}` : "-";
  // `scope+cloud`: a reader that predates the flag refuses the unknown scope (fails closed).
  return [record.cloud ? `${record.scope}+cloud` : record.scope, record.slot, record.notAfter === undefined ? "-" : String(record.notAfter), rate];
}

/**
 * `credentials/api-keys`: one key per line, tab-separated:
 * name, scope (`+cloud` when cloud features are allowed), slot, notAfter (unix seconds or -),
 * rate (rps/burst or -), sha256 of the key.
 */
export function renderApiKeysFile(records: readonly ApiKeyRecord[]): string {
  const lines = records.map((r) => [r.name, ...attributes(r), r.keySha256].join("\t"));
  return credentialFile("api-keys", "name\tscope\tslot\tnotAfter\trate\tsha256", lines);
}

/**
 * `credentials/htpasswd`: htpasswd lines (`name:bcrypt-hash`) whose third field, which nginx's
 * htpasswd format allows as a comment, carries: scope slot notAfter rate.
 */
export function renderHtpasswdFile(records: readonly BasicUserRecord[]): string {
  const lines = records.map((r) => `${r.name}:${r.passwordHash}:${attributes(r).join(" ")}`);
  return credentialFile("htpasswd", "name:bcrypt-hash:scope slot notAfter rate", lines);
}
