/**
 * JWT verification keys: from the spec's `jwt` section (HS256 secrets, PEM public keys, a JWKS
 * document) to `credentials/jwt-keys`, the file the proxy verifies tokens with.
 *
 * Public keys are converted here, at render time, with node:crypto: PEM and JWK alike become
 * the DER SubjectPublicKeyInfo the proxy hands to libcrypto's d2i_PUBKEY. Each key is bound to
 * exactly one algorithm (an RSA key to RS256, a P-256 key to ES256, a secret to HS256), so the
 * proxy never tries an RSA public key as an HMAC secret.
 */
import { createPublicKey, type JsonWebKey, type KeyObject } from "node:crypto";
import { credentialFile } from "./credentialFile";

export const JWT_KEYS_FILE = "credentials/jwt-keys";
export const JWT_ALGORITHMS = ["HS256", "RS256", "ES256"] as const;
export type JwtAlgorithm = (typeof JWT_ALGORITHMS)[number];

export interface JwtKeyRecord {
  alg: JwtAlgorithm;
  kid?: string;
  /** HS256: the secret's bytes; RS256/ES256: DER SubjectPublicKeyInfo. Base64. */
  keyBase64: string;
  /** Unix seconds after which the proxy no longer verifies with this key. */
  notAfter?: number;
}

/** The public key's algorithm, or an error message. */
function algorithmOf(key: KeyObject): JwtAlgorithm | string {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === "rsa") {
    if ((details.modulusLength ?? 0) < 2048) return `is an RSA key of ${details.modulusLength} bits; use at least 2048`;
    return "RS256";
  }
  if (key.asymmetricKeyType === "ec") {
    if (details.namedCurve !== "prime256v1") return `is an EC key on ${details.namedCurve}; ES256 needs P-256 (prime256v1)`;
    return "ES256";
  }
  return `is a ${key.asymmetricKeyType} key; use an RSA (RS256) or P-256 EC (ES256) public key`;
}

function spkiBase64(key: KeyObject): string {
  return key.export({ type: "spki", format: "der" }).toString("base64");
}

/** A PEM public key (or certificate) as a record, or an error message. */
export function publicKeyFromPem(pem: string, kid?: string): JwtKeyRecord | string {
  if (pem.includes("PRIVATE KEY")) return "is a private key; give only the public key (openssl pkey -pubout)";
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch {
    return "is not a PEM public key (-----BEGIN PUBLIC KEY----- ...)";
  }
  const alg = algorithmOf(key);
  if (!JWT_ALGORITHMS.includes(alg as JwtAlgorithm)) return alg;
  return { alg: alg as JwtAlgorithm, kid, keyBase64: spkiBase64(key) };
}

/**
 * One JWK from a JWKS document: a record, `undefined` for a key the gateway does not use
 * (`use: enc`, an algorithm other than RS256/ES256, OKP or symmetric keys), or an error message.
 */
export function publicKeyFromJwk(jwk: Record<string, unknown>): JwtKeyRecord | undefined | string {
  if (jwk.use !== undefined && jwk.use !== "sig") return undefined;
  if (jwk.kty !== "RSA" && jwk.kty !== "EC") return undefined;
  if (jwk.alg !== undefined && jwk.alg !== "RS256" && jwk.alg !== "ES256") return undefined;
  if (jwk.kid !== undefined && typeof jwk.kid !== "string") return "has a `kid` that is not a string";
  let key: KeyObject;
  try {
    // Only the public members: a JWKS that (wrongly) carries private parts never yields a private key.
    const { kty, n, e, crv, x, y } = jwk as Record<string, string>;
    const publicJwk = (kty === "RSA" ? { kty, n, e } : { kty, crv, x, y }) as JsonWebKey;
    key = createPublicKey({ key: publicJwk, format: "jwk" });
  } catch {
    return `is not a valid ${String(jwk.kty)} public JWK`;
  }
  const alg = algorithmOf(key);
  if (!JWT_ALGORITHMS.includes(alg as JwtAlgorithm)) return alg;
  if (jwk.alg !== undefined && jwk.alg !== alg) return `says \`alg: ${String(jwk.alg)}\` but is a key for ${alg}`;
  return { alg: alg as JwtAlgorithm, kid: jwk.kid as string | undefined, keyBase64: spkiBase64(key) };
}

/** An HS256 secret's bytes. */
export function secretBytes(entry: { secret?: string; secretBase64?: string }): Buffer {
  return entry.secret !== undefined ? Buffer.from(entry.secret, "utf8") : Buffer.from(entry.secretBase64!, "base64");
}

export interface JwtKeySources {
  hs256Secrets: { kid?: string; secret?: string; secretBase64?: string; notAfter?: string }[];
  publicKeys: { kid?: string; pem: string }[];
  jwks?: { keys: Record<string, unknown>[] };
}

/** Every verification key of a validated `jwt` section, in spec order. */
export function jwtKeyRecords(jwt: JwtKeySources): JwtKeyRecord[] {
  const records: JwtKeyRecord[] = jwt.hs256Secrets.map((s) => ({
    alg: "HS256",
    kid: s.kid,
    keyBase64: secretBytes(s).toString("base64"),
    ...(s.notAfter !== undefined ? { notAfter: Math.floor(Date.parse(s.notAfter) / 1000) } : {}),
  }));
  for (const entry of jwt.publicKeys) {
    const record = publicKeyFromPem(entry.pem, entry.kid);
    if (typeof record === "string") throw new Error(`jwt.publicKeys: ${record}`);
    records.push(record);
  }
  for (const jwk of jwt.jwks?.keys ?? []) {
    const record = publicKeyFromJwk(jwk);
    if (typeof record === "string") throw new Error(`jwt.jwks: ${record}`);
    if (record) records.push(record);
  }
  return records;
}

/**
 * `credentials/jwt-keys`: one key per line, tab-separated: alg, kid (or -), base64 key, and for a
 * key with an end, its notAfter in unix seconds. Same header and `# end N` trailer as the other
 * credential files, so a truncated file fails closed.
 */
export function renderJwtKeysFile(records: readonly JwtKeyRecord[]): string {
  const lines = records.map((r) => [r.alg, r.kid ?? "-", r.keyBase64, ...(r.notAfter !== undefined ? [String(r.notAfter)] : [])].join("\t"));
  return credentialFile("jwt-keys", "alg\tkid\tkey (HS256: base64 of the secret; RS256/ES256: base64 of the DER public key)\t[notAfter, unix seconds]", lines);
}
