/** The credentials every benchmark uses: deterministic keys and 1,000 Basic users. */
import { bcryptHash, sha256Hex } from "../../bundle/credentials";

export const BASIC_USERS = 1_000;

/** Deterministic, token68, 40+ characters. */
export const keyFor = (i: number) => `bench-${String(i).padStart(6, "0")}-${sha256Hex(`bench-key/${i}`).slice(0, 32)}`;
export const basicHeader = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

export interface BenchCredentials {
  keys: string[];
  basicUser: string;
  basicPassword: string;
  basicUsers: { name: string; passwordHash: string; scope: "inference" }[];
}

/** The key a benchmark caller uses with N keys configured: the middle one (the naive recipe scans half the file). */
export const validKey = (creds: BenchCredentials, count: number) => creds.keys[Math.floor(count / 2)];

export function makeCredentials(maxKeys: number): BenchCredentials {
  const keys = Array.from({ length: maxKeys }, (_, i) => keyFor(i));
  const basicUser = `basic-${String(BASIC_USERS / 2).padStart(4, "0")}`;
  const basicPassword = "bench-password-correct-horse";
  // Cost 10 like a real deployment. Hashing 1,000 distinct cost-10 hashes would take ~1 min, so
  // the other users share one hash of another password; the measured user has its own.
  const ownHash = bcryptHash(basicPassword, 10);
  const fillerHash = bcryptHash("filler-password-not-used", 10);
  const basicUsers = Array.from({ length: BASIC_USERS }, (_, i) => {
    const name = `basic-${String(i).padStart(4, "0")}`;
    return { name, passwordHash: name === basicUser ? ownHash : fillerHash, scope: "inference" as const };
  });
  return { keys, basicUser, basicPassword, basicUsers };
}
