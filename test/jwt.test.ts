/**
 * JWT bearer tokens through the real nginx: HS256, RS256 (PEM) and ES256 (JWKS), minted with
 * `jose`; claims, scope mapping, key selection, the strict JSON decoder, and the attacks
 * (alg none, HS/RS confusion, tampering, oversized and garbage tokens).
 */
import { createHmac, createPrivateKey, generateKeyPairSync, type KeyObject, sign as nodeSign } from "node:crypto";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { exportJWK, exportSPKI, generateKeyPair, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JWT_KEYS_FILE } from "../bundle/jwt";
import { parseSpec } from "../bundle/spec";
import { type FakeOllama, startFakeOllama } from "../harness/fake-ollama";
import { bearer, rawRequest, request } from "../harness/http";
import { everyWorkerCaughtUp, nginxTestsEnabled, type RunningGateway, startGateway, waitUntil } from "../harness/nginx";

const ISSUER = "https://idp.example.test/";
const AUDIENCE = "ollama-gateway";
// Test-only secrets, made up for this file.
const HS_SECRET = "test-hs256-secret-0123456789abcdef-0001";
const HS_SECRET_2 = "test-hs256-secret-rotated-0123456789abcd";
const WRONG_SECRET = "test-hs256-secret-nobody-knows-0123456789";
const DOTTED_KEY = "dotted.apikey0000000000.looks-like-a-jwt";
const SCOPE_VALUES = { read: ["ollama:read"], inference: ["ollama:inference"], admin: ["ollama:admin"] };

const b64url = (data: string | Buffer) => Buffer.from(data).toString("base64url");
const now = () => Math.floor(Date.now() / 1000);

/** Signs arbitrary header and payload *text* (so malformed JSON can carry a valid signature). */
function rawToken(headerText: string, payloadText: string, key: string | KeyObject): string {
  const input = `${b64url(headerText)}.${b64url(payloadText)}`;
  const alg = (JSON.parse(headerText) as { alg: string }).alg;
  let signature: Buffer;
  if (alg === "HS256") signature = createHmac("sha256", key as string).update(input).digest();
  else if (alg === "RS256") signature = nodeSign("sha256", Buffer.from(input), key as KeyObject);
  else signature = nodeSign("sha256", Buffer.from(input), { key: key as KeyObject, dsaEncoding: "ieee-p1363" });
  return `${input}.${b64url(signature)}`;
}

const baseClaims = (extra: Record<string, unknown> = {}) => ({
  iss: ISSUER,
  aud: AUDIENCE,
  sub: "alice",
  scope: "ollama:inference",
  exp: now() + 300,
  iat: now(),
  ...extra,
});

describe("jwt spec validation", () => {
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const rsaPem = rsa.publicKey.export({ type: "spki", format: "pem" }) as string;
  it("accepts a complete jwt section and fills in defaults", () => {
    const result = parseSpec({ jwt: { issuer: ISSUER, audience: AUDIENCE, algorithms: ["RS256"], publicKeys: [{ pem: rsaPem }] } });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.spec.jwt).toMatchObject({ scopeClaim: "scope", nameClaim: "sub", clockSkewSeconds: 60, maxTokenBytes: 8192 });
    expect(result.spec.jwt!.scopeValues).toEqual({ read: ["read"], inference: ["inference"], admin: ["admin"] });
  });

  it("reports bad keys, algorithms without keys, duplicate kids and ambiguous scope values", () => {
    const small = generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey.export({ type: "spki", format: "pem" }) as string;
    const p384 = generateKeyPairSync("ec", { namedCurve: "secp384r1" }).publicKey.export({ type: "spki", format: "pem" }) as string;
    const privatePem = rsa.privateKey.export({ type: "pkcs8", format: "pem" }) as string;
    const result = parseSpec({
      jwt: {
        issuer: ISSUER,
        audience: AUDIENCE,
        algorithms: ["HS256", "ES256", "none"],
        hs256Secrets: [{ kid: "a", secret: "too-short" }, { kid: "b", secretBase64: "c2hvcnQ=" }],
        publicKeys: [{ pem: small }, { pem: p384 }, { pem: privatePem }, { pem: "garbage" }],
        jwks: { keys: [{ kty: "RSA", n: "AQAB", e: "AQAB", kid: "tiny" }] },
      },
    });
    // Cross-field checks run once every field is valid on its own.
    const crossField = parseSpec({
      jwt: {
        issuer: ISSUER,
        audience: AUDIENCE,
        algorithms: ["HS256", "ES256"],
        hs256Secrets: [{ kid: "a", secret: HS_SECRET }],
        publicKeys: [{ kid: "a", pem: rsaPem }],
        scopeValues: { read: ["x"], admin: ["x"] },
      },
    });
    expect(result.ok || crossField.ok).toBe(false);
    if (result.ok || crossField.ok) return;
    const text = [...result.errors, ...crossField.errors].join("\n");
    expect(text).toContain("`jwt.jwks.keys[0]` is an RSA key of 17 bits; use at least 2048");
    expect(text).toContain("`jwt.algorithms[2]` is \"none\"; use `HS256`, `RS256` or `ES256`");
    expect(text).toContain("`jwt.hs256Secrets[0].secret` is a secret of 9 characters (not shown); use at least 32 characters");
    expect(text).not.toContain("too-short");
    expect(text).toContain("`jwt.hs256Secrets[1].secretBase64` decodes to fewer than 32 bytes");
    expect(text).toContain("`jwt.publicKeys[0].pem` is an RSA key of 1024 bits; use at least 2048");
    expect(text).toContain("`jwt.publicKeys[1].pem` is an EC key on secp384r1; ES256 needs P-256");
    expect(text).toContain("`jwt.publicKeys[2].pem` is a private key; give only the public key");
    expect(text).toContain("`jwt.publicKeys[3].pem` is not a PEM public key");
    expect(text).toContain("`jwt.publicKeys[0].kid` (\"a\") is already the kid of `jwt.hs256Secrets[0].kid`");
    expect(text).toContain("`jwt.algorithms` (\"ES256\") has no key");
    expect(text).toContain("`jwt.algorithms` (\"RS256\") is not listed but 1 key(s) are for it");
    expect(text).toContain("`jwt.scopeValues.admin[0]` (\"x\") already grants `read`");
  });
});

describe.runIf(nginxTestsEnabled)("JWT bearer tokens through the real nginx", () => {
  let fake: FakeOllama;
  let gateway: RunningGateway;
  let rsaPrivate: CryptoKey;
  let rsaOtherPrivate: CryptoKey;
  let ecPrivate: CryptoKey;
  let rsaPem: string;
  let rsaNodePrivate: KeyObject;
  let ecNodePrivate: KeyObject;
  let spec: Parameters<typeof startGateway>[0]["spec"];

  const hs = (claims: Record<string, unknown>, header: Record<string, unknown> = { kid: "hs-1" }, secret = HS_SECRET) =>
    new SignJWT(claims).setProtectedHeader({ alg: "HS256", ...header }).sign(new TextEncoder().encode(secret));
  const rs = (claims: Record<string, unknown>, header: Record<string, unknown> = { kid: "rs-1" }, key = rsaPrivate) =>
    new SignJWT(claims).setProtectedHeader({ alg: "RS256", ...header }).sign(key);
  const es = (claims: Record<string, unknown>, header: Record<string, unknown> = { kid: "es-1" }) =>
    new SignJWT(claims).setProtectedHeader({ alg: "ES256", ...header }).sign(ecPrivate);
  const call = (token: string, route = "/api/tags", method = "GET") =>
    request(`${gateway.url}${route}`, {
      method,
      headers: { ...bearer(token), "Content-Type": "application/json" },
      body: method === "POST" ? JSON.stringify({ model: "gemma3:1b", prompt: "hi", stream: false }) : undefined,
    });

  beforeAll(async () => {
    const rsaPair = await generateKeyPair("RS256", { extractable: true });
    const rsaOther = await generateKeyPair("RS256", { extractable: true });
    const ecPair = await generateKeyPair("ES256", { extractable: true });
    rsaPrivate = rsaPair.privateKey as CryptoKey;
    rsaOtherPrivate = rsaOther.privateKey as CryptoKey;
    ecPrivate = ecPair.privateKey as CryptoKey;
    rsaPem = await exportSPKI(rsaPair.publicKey);
    rsaNodePrivate = createPrivateKey({ key: (await exportJWK(rsaPair.privateKey)) as never, format: "jwk" });
    ecNodePrivate = createPrivateKey({ key: (await exportJWK(ecPair.privateKey)) as never, format: "jwk" });
    const ecJwk = await exportJWK(ecPair.publicKey);
    fake = await startFakeOllama({ chunks: 2, chunkIntervalMs: 1 });
    spec = {
      apiKeys: [{ name: "dotted-key", key: DOTTED_KEY, scope: "read" }],
      rateLimit: { requestsPerSecond: 10_000, burst: 10_000 },
      // Hundreds of forged tokens from one address: the failure limit is test/abuse-auth.test.ts's.
      failedAuth: { token: 100_000 },
      jwt: {
        issuer: ISSUER,
        audience: AUDIENCE,
        algorithms: ["HS256", "RS256", "ES256"],
        hs256Secrets: [{ kid: "hs-1", secret: HS_SECRET }],
        publicKeys: [{ kid: "rs-1", pem: rsaPem }],
        // A JWKS as an identity provider publishes it: an encryption key the gateway skips.
        jwks: { keys: [{ ...ecJwk, kty: "EC", kid: "es-1", alg: "ES256", use: "sig" }, { ...ecJwk, kty: "EC", kid: "enc-1", use: "enc" }] },
        scopeValues: SCOPE_VALUES,
      },
    };
    gateway = await startGateway({ upstreamUrl: fake.url, spec });
  });
  afterAll(async () => {
    await gateway?.stop();
    await fake?.close();
  });

  it("accepts valid HS256, RS256 and ES256 tokens and logs the caller from `sub`", async () => {
    for (const [alg, token] of [
      ["HS256", await hs(baseClaims({ sub: "hs-user" }))],
      ["RS256", await rs(baseClaims({ sub: "rs-user" }))],
      ["ES256", await es(baseClaims({ sub: "es-user" }))],
    ] as const) {
      const response = await call(token);
      expect(response.status, `${alg}: ${response.body}`).toBe(200);
    }
    await new Promise((r) => setTimeout(r, 200));
    const entries = await gateway.settledAccessLog();
    for (const sub of ["hs-user", "rs-user", "es-user"])
      expect(entries.some((e) => e.caller === sub && e.auth === "jwt" && e.scope === "inference" && e.status === 200)).toBe(true);
  });

  it("verifies tokens without a kid against every key of their algorithm", async () => {
    expect((await call(await hs(baseClaims(), {}))).status).toBe(200);
    expect((await call(await rs(baseClaims(), {}))).status).toBe(200);
    expect((await call(await es(baseClaims(), {}))).status).toBe(200);
  });

  it("maps the scope claim to gateway scopes (highest wins) and refuses a token granting none with 403", async () => {
    const read = await hs(baseClaims({ scope: "openid ollama:read" }));
    expect((await call(read, "/api/tags")).status).toBe(200);
    expect((await call(read, "/api/generate", "POST")).status).toBe(403);
    const inference = await hs(baseClaims({ scope: "ollama:inference" }));
    expect((await call(inference, "/api/generate", "POST")).status).toBe(200);
    expect((await call(inference, "/api/pull", "POST")).status).toBe(403);
    const both = await hs(baseClaims({ scope: "ollama:read ollama:admin" }));
    expect((await call(both, "/api/pull", "POST")).status).toBe(200);
    const asArray = await hs(baseClaims({ scope: ["email", "ollama:admin"] }));
    expect((await call(asArray, "/api/pull", "POST")).status).toBe(200);
    for (const scope of ["openid email", "", "OLLAMA:ADMIN", ["read"], 3, { admin: true }]) {
      const response = await call(await hs(baseClaims({ scope })));
      expect(response.status, JSON.stringify(scope)).toBe(403);
      expect(response.json().error).toMatch(/grants no gateway scope/);
    }
    const none = await hs(baseClaims({ scope: undefined }));
    expect((await call(none)).status).toBe(403);
  });

  it("checks exp, nbf and iat with 60 s of clock skew", async () => {
    const cases: [Record<string, unknown>, number][] = [
      [{ exp: now() - 120 }, 401],
      [{ exp: now() - 30 }, 200],
      [{ exp: undefined }, 401],
      [{ exp: "9999999999" }, 401],
      [{ nbf: now() + 300 }, 401],
      [{ nbf: now() + 30 }, 200],
      [{ nbf: "0" }, 401],
      [{ iat: now() + 300 }, 401],
      [{ iat: now() + 30 }, 200],
    ];
    for (const [claims, expected] of cases) {
      const response = await call(await hs(baseClaims(claims)));
      expect.soft(response.status, JSON.stringify(claims)).toBe(expected);
      if (expected === 401) expect.soft(response.json().error).toMatch(/token/);
    }
    const expired = await call(await rs(baseClaims({ exp: now() - 120 })));
    expect(expired.json().error).toBe("token expired");
    expect(expired.headers.get("www-authenticate")).toMatch(/Bearer realm="ollama-gateway", error="invalid_token"/);
  });

  it("checks iss and aud (a string or an array containing the audience)", async () => {
    const cases: [Record<string, unknown>, number][] = [
      [{ iss: "https://evil.example.test/" }, 401],
      [{ iss: undefined }, 401],
      [{ iss: [ISSUER] }, 401],
      [{ aud: "someone-else" }, 401],
      [{ aud: undefined }, 401],
      [{ aud: ["someone-else", AUDIENCE] }, 200],
      [{ aud: ["someone-else"] }, 401],
      [{ aud: [] }, 401],
    ];
    for (const [claims, expected] of cases) {
      const response = await call(await es(baseClaims(claims)));
      expect.soft(response.status, JSON.stringify(claims)).toBe(expected);
    }
  });

  it("refuses wrong keys, tampered payloads and unknown kids", async () => {
    expect((await call(await hs(baseClaims(), { kid: "hs-1" }, WRONG_SECRET))).json().error).toBe("invalid token signature");
    expect((await call(await hs(baseClaims(), {}, WRONG_SECRET))).status).toBe(401);
    expect((await call(await rs(baseClaims(), { kid: "rs-1" }, rsaOtherPrivate))).status).toBe(401);
    expect((await call(await rs(baseClaims(), {}, rsaOtherPrivate))).status).toBe(401);
    const unknownKid = await call(await hs(baseClaims(), { kid: "hs-2" }));
    expect(unknownKid.status).toBe(401);
    expect(unknownKid.json().error).toBe("unknown key id");
    // The kid of an RSA key on an HS256 token, and an encryption-only JWKS key: never used.
    expect((await call(await hs(baseClaims(), { kid: "rs-1" }))).json().error).toBe("unknown key id");
    expect((await call(await es(baseClaims(), { kid: "enc-1" }))).json().error).toBe("unknown key id");

    // Tampering: an admin scope spliced into a valid inference token.
    const [h, , s] = (await rs(baseClaims())).split(".");
    const tampered = `${h}.${b64url(JSON.stringify(baseClaims({ scope: "ollama:admin" })))}.${s}`;
    expect((await call(tampered, "/api/pull", "POST")).status).toBe(401);
    // The signature of another token, and a truncated signature.
    const other = (await rs(baseClaims({ sub: "bob" }))).split(".")[2];
    expect((await call(`${h}.${(await rs(baseClaims())).split(".")[1]}.${other}`)).status).toBe(401);
    expect((await call(`${h}.${(await rs(baseClaims())).split(".")[1]}.${s.slice(0, -4)}`)).status).toBe(401);
    // ES256 signatures are raw r||s; a DER signature is refused.
    const esHeader = JSON.stringify({ alg: "ES256", kid: "es-1" });
    const esInput = `${b64url(esHeader)}.${b64url(JSON.stringify(baseClaims()))}`;
    const der = nodeSign("sha256", Buffer.from(esInput), ecNodePrivate);
    expect((await call(`${esInput}.${b64url(der)}`)).status).toBe(401);
    const p1363 = nodeSign("sha256", Buffer.from(esInput), { key: ecNodePrivate, dsaEncoding: "ieee-p1363" });
    expect((await call(`${esInput}.${b64url(p1363)}`)).status).toBe(200);
  });

  it("refuses alg none and HS/RS confusion (HS256 signed with the RSA public key)", async () => {
    const claims = JSON.stringify(baseClaims({ scope: "ollama:admin" }));
    for (const alg of ["none", "None", "NONE", "HS384", "RS512", "PS256", "EdDSA", ""]) {
      const header = b64url(JSON.stringify({ alg, kid: "rs-1" }));
      // With an empty signature (not JWT-shaped: checked as an API key) and with a fake one.
      for (const token of [`${header}.${b64url(claims)}.`, `${header}.${b64url(claims)}.${b64url("sig")}`]) {
        const response = await call(token);
        expect.soft(response.status, `${alg}: ${token.slice(-8)}`).toBe(401);
      }
    }
    expect((await call(`${b64url('{"alg":"none"}')}.${b64url(claims)}.${b64url("sig")}`)).json().error).toBe("token algorithm not accepted");
    // The attacker knows the public key: HMAC over the token with the PEM (and its DER) as secret.
    const der = Buffer.from(rsaPem.replace(/-----[^-]+-----|\s/g, ""), "base64");
    for (const secret of [rsaPem, rsaPem.trim(), der.toString("latin1")]) {
      for (const header of [{ alg: "HS256", kid: "rs-1" }, { alg: "HS256" }]) {
        const token = rawToken(JSON.stringify(header), claims, secret);
        expect.soft((await call(token)).status, JSON.stringify(header)).toBe(401);
      }
    }
    // And an RS256 header with a valid RS256 signature but the HS256 key's kid.
    expect((await call(rawToken(JSON.stringify({ alg: "RS256", kid: "hs-1" }), claims, rsaNodePrivate))).status).toBe(401);
    expect((await call(rawToken(JSON.stringify({ alg: "RS256", kid: "rs-1" }), claims, rsaNodePrivate))).status).toBe(200);
  });

  it("refuses garbage, non-canonical base64url, crit headers and oversized tokens", async () => {
    const good = await hs(baseClaims());
    const [h, p, s] = good.split(".");
    const garbage = [
      "abc.def.ghi",
      "e30.e30.e30",
      `${h}.${p}.${s}=`,
      `${h}=.${p}.${s}`,
      `${h}.${p}.${s}.${s}`,
      `.${p}.${s}`,
      `${h}..${s}`,
      `${h}.${p}.${s.slice(0, -1)}${s.endsWith("A") ? "B" : "A"}`,
      `${h}.${p}!.${s}`,
      `${Buffer.from(JSON.stringify({ alg: "HS256", kid: "hs-1" })).toString("base64")}.${p}.${s}`,
    ];
    for (const token of garbage) {
      const response = await call(token);
      expect.soft(response.status, token.slice(0, 40)).toBe(401);
    }
    // Non-canonical base64url: the same bytes with different trailing bits in the last character.
    const last = p[p.length - 1];
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    if (p.length % 4 !== 0) {
      const sibling = alphabet[alphabet.indexOf(last) ^ 1];
      expect(Buffer.from(p.slice(0, -1) + sibling, "base64url")).toEqual(Buffer.from(p, "base64url"));
      expect((await call(`${h}.${p.slice(0, -1)}${sibling}.${s}`)).status).toBe(401);
    }
    const crit = await call(rawToken(JSON.stringify({ alg: "HS256", kid: "hs-1", crit: ["exp"] }), JSON.stringify(baseClaims()), HS_SECRET));
    expect(crit.json().error).toMatch(/critical extensions/);
    expect((await call(rawToken('{"alg":"HS256","kid":7}', JSON.stringify(baseClaims()), HS_SECRET))).status).toBe(401);
    const arrayHeader = `${b64url('["HS256"]')}.${p}`;
    expect((await call(`${arrayHeader}.${b64url(createHmac("sha256", HS_SECRET).update(arrayHeader).digest())}`)).json().error).toBe(
      "malformed token header",
    );

    // Over maxTokenBytes (8192): 401 before any parsing; over nginx's 16k header buffers: 400.
    const big = await hs(baseClaims({ padding: "x".repeat(9000) }));
    const bigResponse = await call(big);
    expect(bigResponse.status).toBe(401);
    expect(bigResponse.json().error).toBe("token too large");
    const huge = await hs(baseClaims({ padding: "x".repeat(20_000) }));
    expect((await call(huge)).status).toBe(400);
  });

  it("parses claims with a strict JSON decoder", async () => {
    const claims = baseClaims();
    const body = JSON.stringify(claims).slice(1, -1); // the members, for splicing
    const header = JSON.stringify({ alg: "HS256", kid: "hs-1" });
    const malformed = [
      `{${body},}`,
      `{${body},"sub":"mallory"}`, // duplicate key: two readers could see two different callers
      `{${body}} `.replace("} ", "}x"),
      `{${body}}{}`,
      `{${body},"n":01}`,
      `{${body},"n":1.}`,
      `{${body},"n":.5}`,
      `{${body},"n":1e}`,
      `{${body},"n":+1}`,
      `{${body},"n":NaN}`,
      `{${body},"n":Infinity}`,
      `{${body},"n":1e999}`,
      `{${body},"s":'x'}`,
      `{${body},/*c*/"s":1}`,
      `{${body},"s":"\\x41"}`,
      `{${body},"s":"\\ud800"}`,
      `{${body},"s":"\\udc00\\ud800"}`,
      `{${body},"s":"\\u12"}`,
      `{${body},"s":"tab\there"}`,
      `{${body},"s":"unterminated}`,
      `{${body},"s":tru}`,
      `{${body},"s":nul}`,
      `{${body},"a":[1,2,]}`,
      `{${body},"a":[1 2]}`,
      `{${body},"d":${"[".repeat(40)}${"]".repeat(40)}}`,
      `{${body},"o":{"a" 1}}`,
      `{${body},1:2}`,
      `[${JSON.stringify(claims)}]`,
      `"${"x".repeat(10)}"`,
      " ",
      "null",
    ];
    for (const payload of malformed) {
      const response = await call(rawToken(header, payload, HS_SECRET));
      expect.soft(response.status, payload.slice(-40)).toBe(401);
      if (response.status === 401) expect.soft(response.json().error, payload.slice(-40)).toBe("malformed token claims");
    }
    // Invalid UTF-8 inside a string (an overlong "/"), and a raw NUL.
    for (const bad of [Buffer.from([0xc0, 0xaf]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0xff]), Buffer.from([0])]) {
      const payload = Buffer.concat([Buffer.from(`{${body},"s":"`), bad, Buffer.from('"}')]);
      const input = `${b64url(header)}.${b64url(payload)}`;
      const token = `${input}.${b64url(createHmac("sha256", HS_SECRET).update(input).digest())}`;
      expect.soft((await call(token)).status, bad.toString("hex")).toBe(401);
    }
    // Well-formed JSON the decoder must accept: escapes, surrogate pairs, nesting, numbers.
    const valid = [
      `{${body},"s":"\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00","e":1.5e+3,"f":-0.25,"g":0,"h":[],"i":{},"j":[null,true,false,{"k":[1,[2]]}]}`,
      ` \n\t{ ${body.replace(/,/g, " ,\n ")} } \r\n`,
      `{${body},"d":${"[".repeat(6)}${"]".repeat(6)}}`,
    ];
    for (const payload of valid) {
      const response = await call(rawToken(header, payload, HS_SECRET));
      expect.soft(response.status, payload.slice(-60)).toBe(200);
    }
  });

  it("cleans the caller name for the log, marking a changed one with a digest, and never logs a token", async () => {
    const header = JSON.stringify({ alg: "HS256", kid: "hs-1" });
    const body = JSON.stringify(baseClaims()).slice(1, -1).replace('"sub":"alice"', '"sub":"Zo\\u00eb \\"x\\"\\n{evil}"');
    const token = rawToken(header, `{${body}}`, HS_SECRET);
    expect((await call(token)).status).toBe(200);
    const numeric = await hs(baseClaims({ sub: 12345 }));
    expect((await call(numeric)).status).toBe(200);
    const long = await hs(baseClaims({ sub: "a".repeat(300) }));
    expect((await call(long)).status).toBe(200);
    for (const sub of [undefined, "", ["alice"], true]) {
      const response = await call(await hs(baseClaims({ sub })));
      expect.soft(response.status, JSON.stringify(sub)).toBe(401);
    }
    await new Promise((r) => setTimeout(r, 200));
    const callers = (await gateway.settledAccessLog()).map((e) => e.caller);
    expect(callers.some((c) => /^Zo____x___evil_~[0-9a-f]{8}$/.test(c))).toBe(true);
    expect(callers).toContain("12345");
    expect(callers.some((c) => new RegExp(`^${"a".repeat(55)}~[0-9a-f]{8}$`).test(c))).toBe(true);
    const logs = gateway.accessLogText() + gateway.errorLog();
    expect(logs).not.toContain(token.split(".")[2]);
    expect(logs).not.toContain(numeric.split(".")[1]);
  });

  it("checks the API key table first, so a key shaped like a JWT still works", async () => {
    expect((await call(DOTTED_KEY)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 200));
    expect((await gateway.settledAccessLog()).some((e) => e.caller === "dotted-key" && e.auth === "bearer")).toBe(true);
    // X-API-Key never takes JWTs.
    const viaApiKeyHeader = await request(`${gateway.url}/api/tags`, { headers: { "X-API-Key": await hs(baseClaims()) } });
    expect(viaApiKeyHeader.status).toBe(401);
  });

  it("rotates HS256 secrets through credentials/jwt-keys without a reload, and fails closed on a bad file", async () => {
    const oldToken = await hs(baseClaims(), { kid: "hs-1" });
    const newToken = await hs(baseClaims(), { kid: "hs-2" }, HS_SECRET_2);
    expect((await call(oldToken)).status).toBe(200);
    expect((await call(newToken)).status).toBe(401);
    const jwt = spec.jwt!;
    gateway.updateCredentials({ ...spec, jwt: { ...jwt, hs256Secrets: [{ kid: "hs-2", secret: HS_SECRET_2 }] } });
    await waitUntil(async () => (await call(newToken)).status === 200, 5000);
    await everyWorkerCaughtUp();
    expect((await call(oldToken)).status).toBe(401);

    const file = path.join(gateway.dir, JWT_KEYS_FILE);
    const good = readFileSync(file, "utf8");
    writeFileSync(`${file}.tmp`, good.replace(/# end \d+\n$/, ""));
    renameSync(`${file}.tmp`, file);
    await waitUntil(async () => (await call(newToken)).status === 503, 5000);
    await everyWorkerCaughtUp();
    expect((await call(newToken)).json().error).toMatch(/JWT verification keys are unavailable/);
    expect((await request(`${gateway.url}/healthz`)).status).toBe(503);
    expect(gateway.errorLog()).toMatch(/credentials\/jwt-keys is invalid: no '# end N' trailer/);
    // API keys keep working meanwhile.
    expect((await call(DOTTED_KEY)).status).toBe(200);
    writeFileSync(`${file}.tmp`, good);
    renameSync(`${file}.tmp`, file);
    await waitUntil(async () => (await call(newToken)).status === 200, 5000);
    await everyWorkerCaughtUp();
    expect((await request(`${gateway.url}/healthz`)).status).toBe(200);
    gateway.updateCredentials(spec);
    await waitUntil(async () => (await call(oldToken)).status === 200, 5000);
  });

  it("keeps a rotated-out HS256 secret until its notAfter, with or without a kid, then refuses it", async () => {
    const jwt = spec.jwt!;
    const notAfter = new Date(Math.ceil(Date.now() / 1000) * 1000 + 5000);
    gateway.updateCredentials({
      ...spec,
      jwt: { ...jwt, hs256Secrets: [{ kid: "hs-2", secret: HS_SECRET_2 }, { kid: "hs-1", secret: HS_SECRET, notAfter: notAfter.toISOString() }] },
    });
    const current = await hs(baseClaims(), { kid: "hs-2" }, HS_SECRET_2);
    const previous = await hs(baseClaims(), { kid: "hs-1" });
    const previousWithoutKid = await hs(baseClaims(), {});
    await waitUntil(async () => (await call(current)).status === 200, 5000);
    expect(Date.now()).toBeLessThan(notAfter.getTime() - 500);
    expect((await call(previous)).status).toBe(200);
    expect((await call(previousWithoutKid)).status).toBe(200);
    // No deployment in between: the proxy's own clock ends the overlap.
    await new Promise((r) => setTimeout(r, notAfter.getTime() - Date.now() + 1100));
    for (const token of [previous, previousWithoutKid]) {
      const refused = await call(token);
      expect(refused.status).toBe(401);
      expect(refused.json().error).toMatch(/invalid token signature/);
    }
    expect((await call(current)).status).toBe(200);
    expect(readFileSync(path.join(gateway.dir, JWT_KEYS_FILE), "utf8")).toContain(`\t${notAfter.getTime() / 1000}\n`);
    gateway.updateCredentials(spec);
    await waitUntil(async () => (await call(previous)).status === 200, 5000);
  });

  it("never hits a Lua runtime error", () => {
    expect(gateway.errorLog()).not.toMatch(/runtime error|entry thread aborted|attempt to/);
  });

  it("keeps the raw Authorization header off the upstream", async () => {
    const before = fake.requests.length;
    const token = await rs(baseClaims());
    expect((await call(token)).status).toBe(200);
    const forwarded = fake.requests.slice(before)[0];
    expect(forwarded.rawHeaders.join(" ")).not.toContain(token.split(".")[2]);
    const port = Number(new URL(gateway.url).port);
    const two = await rawRequest(port, `GET /api/tags HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`);
    expect(two.status).toBe(400);
  });
});
