/**
 * Rotation under mocks: the schedule is pure (config + date), a rotation adds exactly the next
 * generation of the rotated credential and re-runs the credential writer, never touches a
 * long-running container, and the credential files carry the previous secret until its
 * notAfter. Adopting a policy renames the existing secret rather than replacing it.
 */
import { afterAll, describe, expect, it } from "vitest";
import { bcryptVerify, sha256Hex, toUnixSeconds } from "../bundle/credentials";
import { DAY_MS, HOUR_MS, ROTATION_NOW_VARIABLE, rotationState } from "../config/rotation";
import { parseStackConfig } from "../config/stackConfig";
import {
  devStackConfig,
  evaluateProgram,
  installMocks,
  outputIsSecret,
  TYPES,
  unwrap,
  valueOf,
  type Program,
  type RecordedResource,
} from "../harness/pulumi-mocks";

installMocks();

interface Evaluation {
  program: Program;
  resources: RecordedResource[];
  /** URN -> inputs as JSON, secrets unwrapped. */
  inputs: Map<string, string>;
  files: Record<string, string>;
  apiKeys: Record<string, string>;
  basicAuth: Record<string, string>;
}

async function evaluate(config: Record<string, unknown>, now: string): Promise<Evaluation> {
  process.env[ROTATION_NOW_VARIABLE] = now;
  const { program, resources } = await evaluateProgram(config);
  const writer = resources.find((r) => r.name === "gateway-proxy-credentials-writer")!;
  const files = Object.fromEntries(
    (unwrap(writer.inputs.uploads) as { file: string; content: string }[]).map((u) => [u.file.replace("/staging/", ""), u.content]),
  );
  return {
    program,
    resources,
    inputs: new Map(resources.map((r) => [r.urn, JSON.stringify(unwrap(r.inputs))])),
    files,
    apiKeys: await valueOf(program.apiKeys),
    basicAuth: await valueOf(program.basicAuth),
  };
}
afterAll(() => {
  delete process.env[ROTATION_NOW_VARIABLE];
});

/** Names of the resources whose inputs differ between two evaluations (or that exist in one only). */
function changed(before: Evaluation, after: Evaluation): string[] {
  const urns = new Set([...before.inputs.keys(), ...after.inputs.keys()]);
  return [...urns]
    .filter((urn) => before.inputs.get(urn) !== after.inputs.get(urn))
    .map((urn) => urn.slice(urn.lastIndexOf("::") + 2))
    .sort();
}

const iso = (ms: number) => new Date(ms).toISOString().replace(".000Z", "Z");
const PERIOD = 30 * DAY_MS;
/** Ten days into a 30-day period (periods count from the Unix epoch). */
const periodStart = Math.floor(Date.parse("2026-11-20T00:00:00Z") / PERIOD) * PERIOD;
const T0 = periodStart + 10 * DAY_MS;
const period = Math.floor(T0 / PERIOD);

const config = (generations?: Record<string, { generation: number; at: string }>) => ({
  ...devStackConfig(),
  rotation: JSON.stringify(["app:30d:48h", "alice:manual:24h"]),
  ...(generations ? { rotationGenerations: JSON.stringify(generations) } : {}),
});

const keyLines = (files: Record<string, string>, name: string) => files["credentials/api-keys"].split("\n").filter((l) => l.startsWith(`${name}\t`));
const userLines = (files: Record<string, string>, name: string) => files["credentials/htpasswd"].split("\n").filter((l) => l.startsWith(`${name}:`));

describe("rotation under mocks", () => {
  let base: Evaluation;
  let rotated: Evaluation;
  const key = (generation: number) => `gateway-credentials-key-app-g${generation}`;
  const resource = (evaluation: Evaluation, name: string) => evaluation.resources.find((r) => r.name === name)!;

  it("declares one resource per live generation of a rotating credential and leaves the others as they were", async () => {
    base = await evaluate(config(), iso(T0));
    const names = (type: string) => base.resources.filter((r) => r.type === type).map((r) => r.name).sort();
    // Generation = periods since the epoch (app) or on-demand requests (alice, manual). Ten days
    // into the period, the 48 h overlap is over: only the current generation is declared.
    expect(names(TYPES.password)).toEqual([key(period), "gateway-credentials-key-ops-current", "gateway-credentials-password-alice-g0"]);
    expect(names(TYPES.string)).toEqual(["gateway-credentials-salt-alice-g0"]);
    expect(resource(base, key(period)).aliases).toEqual(["gateway-credentials-key-app-current"]);
    expect(resource(base, "gateway-credentials-key-ops-current").aliases).toEqual([]);
    expect(keyLines(base.files, "app")).toEqual([`app\tinference\tcurrent\t-\t-\t${sha256Hex(base.apiKeys.app)}`]);
    expect(userLines(base.files, "alice")).toHaveLength(1);
  });

  it("adopts a policy by renaming the existing secret (alias, identical inputs), so it is not replaced", async () => {
    // The same stack before `rotation` was added: app and alice had their `-current` resources.
    const before = await evaluate(devStackConfig(), iso(T0));
    for (const [old, adopted] of [
      ["gateway-credentials-key-app-current", key(period)],
      ["gateway-credentials-password-alice-current", "gateway-credentials-password-alice-g0"],
      ["gateway-credentials-salt-alice-current", "gateway-credentials-salt-alice-g0"],
    ]) {
      const renamed = resource(base, adopted);
      // Pulumi moves the state of `old` to `adopted` and diffs the inputs: equal inputs (keepers
      // included) mean no replacement, so the secret clients have stays current. (The mocks
      // derive values from names, so they cannot show the kept value itself.)
      expect(renamed.aliases, adopted).toEqual([old]);
      expect(renamed.type).toBe(resource(before, old).type);
      expect(JSON.stringify(unwrap(renamed.inputs)), adopted).toBe(JSON.stringify(unwrap(resource(before, old).inputs)));
    }
  });

  it("reports the schedule in a non-secret `rotation` output", async () => {
    expect(await outputIsSecret(base.program.rotation)).toBe(false);
    expect(await valueOf(base.program.rotation)).toEqual({
      app: {
        generation: period,
        rotatedAt: iso(periodStart),
        previousNotAfter: iso(periodStart + 48 * HOUR_MS),
        previousValid: false,
        nextRotation: iso(periodStart + PERIOD),
      },
      alice: { generation: 0, rotatedAt: null, previousNotAfter: null, previousValid: false, nextRotation: null },
    });
  });

  it("changes nothing when evaluated again with the same config, later in the same period", async () => {
    const again = await evaluate(config(), iso(T0 + 5 * DAY_MS));
    expect(changed(base, again)).toEqual([]);
    expect(again.apiKeys).toEqual(base.apiKeys);
  });

  it("rotates one key on demand: the next generation is added, the writer re-runs, nothing else changes", async () => {
    rotated = await evaluate(config({ app: { generation: 1, at: iso(T0) } }), iso(T0));
    expect(changed(base, rotated)).toEqual([key(period + 1), "gateway-proxy-credentials-writer"]);
    expect(rotated.apiKeys.app).not.toBe(base.apiKeys.app);
    expect(rotated.apiKeys.ops).toBe(base.apiKeys.ops);
    expect(rotated.basicAuth).toEqual(base.basicAuth);
  });

  it("puts the new key and the previous one (until the end of the overlap) in the credential file", () => {
    const notAfter = toUnixSeconds(iso(T0 + 48 * HOUR_MS));
    expect(keyLines(rotated.files, "app")).toEqual([
      `app\tinference\tcurrent\t-\t-\t${sha256Hex(rotated.apiKeys.app)}`,
      `app\tinference\tprevious\t${notAfter}\t-\t${sha256Hex(base.apiKeys.app)}`,
    ]);
    expect(rotated.files["credentials/api-keys"]).not.toContain(rotated.apiKeys.app);
    expect(rotated.files["credentials/api-keys"]).not.toContain(base.apiKeys.app);
    // Everything else in the files is as it was.
    const others = (files: Record<string, string>) => ({ ...files, "credentials/api-keys": files["credentials/api-keys"].replace(/^app\t.*\n/gm, "").replace(/^# end \d+$/m, "") });
    expect(others(rotated.files)).toEqual(others(base.files));
  });

  it("drops the previous generation once the overlap is over: its resource goes, the writer re-runs", async () => {
    const later = await evaluate(config({ app: { generation: 1, at: iso(T0) } }), iso(T0 + 49 * HOUR_MS));
    expect(changed(rotated, later)).toEqual([key(period), "gateway-proxy-credentials-writer"]);
    expect(later.resources.some((r) => r.name === key(period))).toBe(false);
    expect(later.apiKeys.app).toBe(rotated.apiKeys.app);
    expect(keyLines(later.files, "app")).toEqual([`app\tinference\tcurrent\t-\t-\t${sha256Hex(rotated.apiKeys.app)}`]);
  });

  it("rotates by schedule when a period passes: one resource added, previous valid for 48 h from the period start", async () => {
    const nextStart = periodStart + PERIOD;
    const next = await evaluate(config(), iso(nextStart + HOUR_MS));
    expect(changed(base, next)).toEqual([key(period + 1), "gateway-proxy-credentials-writer"]);
    expect(keyLines(next.files, "app")).toEqual([
      `app\tinference\tcurrent\t-\t-\t${sha256Hex(next.apiKeys.app)}`,
      `app\tinference\tprevious\t${toUnixSeconds(iso(nextStart + 48 * HOUR_MS))}\t-\t${sha256Hex(base.apiKeys.app)}`,
    ]);
    // The next period: its generation is added and the one before the previous goes.
    const twoLater = await evaluate(config(), iso(nextStart + PERIOD + HOUR_MS));
    expect(changed(next, twoLater)).toEqual([key(period), key(period + 2), "gateway-proxy-credentials-writer"].sort());
    expect(twoLater.files["credentials/api-keys"]).toContain(sha256Hex(next.apiKeys.app));
    expect(twoLater.files["credentials/api-keys"]).not.toContain(sha256Hex(base.apiKeys.app));
  });

  it("rotates a Basic user: a new password and salt, the previous hash kept", async () => {
    const user = await evaluate(config({ alice: { generation: 1, at: iso(T0) } }), iso(T0 + HOUR_MS));
    expect(changed(base, user)).toEqual([
      "gateway-credentials-password-alice-g1",
      "gateway-credentials-salt-alice-g1",
      "gateway-proxy-credentials-writer",
    ]);
    const lines = userLines(user.files, "alice");
    expect(lines).toHaveLength(2);
    const [current, previous] = lines.map((l) => l.split(":"));
    expect(current[2]).toBe("inference current - -");
    expect(previous[2]).toBe(`inference previous ${toUnixSeconds(iso(T0 + 24 * HOUR_MS))} -`);
    expect(bcryptVerify(user.basicAuth.alice, current[1])).toBe(true);
    expect(bcryptVerify(base.basicAuth.alice, previous[1])).toBe(true);
    expect(user.basicAuth.alice).not.toBe(base.basicAuth.alice);
    // The previous hash is the very line the proxy had before: its verification cache stays warm.
    expect(previous[1]).toBe(userLines(base.files, "alice")[0].split(":")[1]);
  });

  it("never replaces a long-running container or touches their inputs", async () => {
    const after = await evaluate(config({ app: { generation: 3, at: iso(T0) }, alice: { generation: 2, at: iso(T0) } }), iso(T0));
    const diff = changed(base, after);
    const containers = base.resources.filter((r) => r.type === TYPES.container).map((r) => r.name);
    expect(diff.filter((name) => containers.includes(name))).toEqual(["gateway-proxy-credentials-writer"]);
    expect(diff.every((name) => name.startsWith("gateway-credentials-") || name === "gateway-proxy-credentials-writer")).toBe(true);
    // Current secrets stay secret outputs.
    expect(await outputIsSecret(after.program.apiKeys)).toBe(true);
    expect(await outputIsSecret(after.program.basicAuth)).toBe(true);
  });
});

describe("certificate renewal under mocks", () => {
  it("a new certificate changes the writer's uploads only", async () => {
    const provided = (serial: string) => ({
      ...devStackConfig(),
      tlsMode: "provided",
      tlsCertPem: `-----BEGIN CERTIFICATE-----\n${serial}\n-----END CERTIFICATE-----`,
      tlsKeyPem: `-----BEGIN PRIVATE KEY-----\n${serial}\n-----END PRIVATE KEY-----`,
    });
    const first = await evaluate(provided("first"), iso(T0));
    const renewed = await evaluate(provided("renewed"), iso(T0));
    expect(changed(first, renewed)).toEqual(["gateway-proxy-credentials-writer"]);
    expect(renewed.files["credentials/tls.pem"]).toContain("renewed");
  });
});

describe("rotation schedule (pure)", () => {
  const policy = { name: "app", everyMs: PERIOD, overlapMs: 48 * HOUR_MS };

  it("is a function of config and date only", () => {
    expect(rotationState(policy, undefined, T0)).toEqual(rotationState(policy, undefined, T0 + DAY_MS));
    expect(rotationState(policy, undefined, T0).generation).toBe(period);
    expect(rotationState(policy, undefined, periodStart + PERIOD).generation).toBe(period + 1);
  });

  it("counts the overlap from the later of the period start and the on-demand request", () => {
    const requested = rotationState(policy, { generation: 2, at: iso(T0) }, T0 + HOUR_MS);
    expect(requested).toMatchObject({ generation: period + 2, rotatedAt: iso(T0), previousNotAfter: iso(T0 + 48 * HOUR_MS), previousLive: true });
    const nextPeriod = rotationState(policy, { generation: 2, at: iso(T0) }, periodStart + PERIOD + HOUR_MS);
    expect(nextPeriod).toMatchObject({ generation: period + 3, rotatedAt: iso(periodStart + PERIOD) });
  });

  it("has no previous secret for a manual policy that never rotated, or with a zero overlap", () => {
    expect(rotationState({ name: "x", overlapMs: DAY_MS }, undefined, T0)).toMatchObject({ generation: 0, previousLive: false });
    expect(rotationState({ name: "x", overlapMs: 0 }, { generation: 1, at: iso(T0) }, T0)).toMatchObject({ generation: 1, previousLive: false });
  });
});

describe("rotation config validation", () => {
  const errorsOf = (raw: Record<string, string>) => {
    const result = parseStackConfig({ apiKeys: '["app:inference"]', basicUsers: '["alice:read"]', ...raw });
    if (result.ok) throw new Error("expected problems");
    return result.errors;
  };

  it("accepts policies and on-demand generations", () => {
    const result = parseStackConfig({
      apiKeys: '["app:inference"]',
      basicUsers: '["alice:read"]',
      rotation: '["app:30d:48h", "alice:manual:0"]',
      rotationGenerations: '{"alice": {"generation": 2, "at": "2026-11-05T10:00:00Z"}}',
    });
    expect(result).toMatchObject({
      ok: true,
      settings: {
        apiKeys: [{ name: "app", rotation: { policy: { name: "app", everyMs: PERIOD, overlapMs: 48 * HOUR_MS } } }],
        basicUsers: [{ name: "alice", rotation: { policy: { everyMs: undefined, overlapMs: 0 }, onDemand: { generation: 2 } } }],
      },
    });
  });

  it("reports every problem at once, each with the field, the value and the fix", () => {
    expect(
      errorsOf({
        rotation: '["app:30d", "ghost:30d:1h", "app:monthly:48h", "alice:1d:2d", "app:1d:1h"]',
        rotationGenerations: '{"bob": {"generation": 1, "at": "2026-11-05T10:00:00Z"}}',
      }),
    ).toEqual([
      '`ollama-gateway:rotation[0]` is "app:30d"; use `<name>:<every>:<overlap>`, such as `app:30d:48h` (every: `<n>d`, `<n>h` or `manual`; overlap: `<n>h`, `<n>d` or `0`).',
      '`ollama-gateway:rotation[1]` names "ghost", which is in neither `apiKeys` nor `basicUsers`; add `ghost:<scope>` to one of them or remove the policy.',
      '`ollama-gateway:rotation[2].every` is "monthly"; use a period such as `30d` or `12h` (1 to 99999), or `manual` for on-demand rotation only.',
      '`ollama-gateway:rotation[3].overlap` is "2d", not shorter than the period "1d"; use an overlap shorter than the period, so at most two secrets are valid at once.',
      "`ollama-gateway:rotationGenerations.bob` names no credential with a `rotation` policy; add `bob:manual:24h` (or a period) to `rotation`, or remove \"bob\".",
    ]);
  });

  it("refuses a second policy, a supplied secret and malformed generations", () => {
    expect(
      errorsOf({
        rotation: '["app:30d:48h", "app:1d:1h"]',
        rotationGenerations: '{"app": 3}',
      }),
    ).toEqual([
      '`ollama-gateway:rotation[1]` is a second policy for "app"; give each credential one policy.',
      '`ollama-gateway:rotationGenerations.app` is 3; use {"generation": <whole number, 0 or more>, "at": "<ISO 8601 time>"}, such as {"generation": 1, "at": "2026-11-05T10:00:00Z"}.',
    ]);
    expect(errorsOf({ rotation: '["app:30d:48h"]', suppliedSecrets: JSON.stringify({ apiKeys: { app: "supplied-key-3e9a7c1f5b2d8e4a" } }) })).toEqual([
      '`ollama-gateway:rotation[0]` names "app", whose secret is given in `suppliedSecrets`; the program can only rotate secrets it generates: remove it from `suppliedSecrets` or remove the policy.',
    ]);
    expect(errorsOf({ rotation: '["app:30d:48h"]', rotationGenerations: "app=1" })).toEqual([
      '`ollama-gateway:rotationGenerations` is "app=1"; use a JSON object such as {"app": {"generation": 1, "at": "2026-11-05T10:00:00Z"}} (`npm run rotate` writes it).',
    ]);
  });
});

describe("HS256 secret rotation", () => {
  const jwtConfig = (extra: Record<string, string> = {}) => ({
    ...devStackConfig(),
    jwtIssuer: "https://login.example.com/",
    jwtAudience: "ollama-gateway",
    jwtAlgorithms: '["HS256"]',
    rotation: JSON.stringify(["jwtHs256Secret:90d:7d"]),
    ...extra,
  });
  const PERIOD_90 = 90 * DAY_MS;
  const start90 = Math.floor(T0 / PERIOD_90) * PERIOD_90;
  const generation = Math.floor(T0 / PERIOD_90);
  /** 20 days into the 90-day period: this period's 7-day overlap is over. */
  const B0 = start90 + 20 * DAY_MS;
  /** jwt-keys lines as [alg, kid, secret (decoded), notAfter?]. */
  const jwtKeys = (files: Record<string, string>) =>
    files["credentials/jwt-keys"]
      .split("\n")
      .filter((line) => line.startsWith("HS256\t"))
      .map((line) => line.split("\t"))
      .map(([alg, kid, key, notAfter]) => [alg, kid, Buffer.from(key, "base64").toString("utf8"), ...(notAfter ? [notAfter] : [])]);

  it("parses a `jwtHs256Secret` policy only while the secret is generated and HS256 is in use", () => {
    const result = parseStackConfig(jwtConfig());
    expect(result).toMatchObject({ ok: true, settings: { jwt: { hs256Rotation: { policy: { name: "jwtHs256Secret", everyMs: PERIOD_90, overlapMs: 7 * DAY_MS } } } } });
    const errorsOf = (raw: Record<string, string>) => {
      const parsed = parseStackConfig(raw);
      return parsed.ok ? [] : parsed.errors;
    };
    expect(errorsOf(jwtConfig({ jwtAlgorithms: '["RS256"]', jwtPublicKeysPem: "[]" })).filter((e) => e.includes("rotation"))).toEqual([
      "`ollama-gateway:rotation[0]` names `jwtHs256Secret`, but no HS256 secret is in use (`jwtIssuer` empty or `HS256` not in `jwtAlgorithms`); add `HS256` to `jwtAlgorithms` or remove the policy.",
    ]);
    expect(errorsOf(jwtConfig({ jwtHs256Secret: "s".repeat(40) }))).toEqual([
      "`ollama-gateway:rotation[0]` names `jwtHs256Secret`, which is set in the stack config; the program can only rotate secrets it generates: remove it (`pulumi config rm jwtHs256Secret`) or remove the policy.",
    ]);
    expect(errorsOf(jwtConfig({ apiKeys: '["jwtHs256Secret:read"]' }))).toEqual([
      "`ollama-gateway:apiKeys[0]` is named `jwtHs256Secret`, which `rotation` keeps for the HS256 secret; choose another name.",
    ]);
  });

  const secretResource = (g: number) => `gateway-credentials-jwt-hs256-g${g}`;

  it("rotates the secret like a key: the next generation added, the previous kept with its kid until the overlap ends", async () => {
    const base = await evaluate(jwtConfig(), iso(B0));
    const declared = base.resources.filter((r) => r.name.startsWith("gateway-credentials-jwt-hs256"));
    expect(declared.map((r) => r.name)).toEqual([secretResource(generation)]);
    // Adopting the policy renames the stack's one HS256 secret, with the same inputs.
    expect(declared[0].aliases).toEqual(["gateway-credentials-jwt-hs256"]);
    expect(declared[0].inputs.keepers).toEqual({ use: "jwt-hs256" });
    const secret = await valueOf(base.program.jwtHs256Secret);
    expect(await outputIsSecret(base.program.jwtHs256Secret)).toBe(true);
    expect((await valueOf(base.program.jwtSettings))?.hs256Kid).toBe(`hs256-${generation}`);
    expect(jwtKeys(base.files)).toEqual([["HS256", `hs256-${generation}`, secret]]);

    const nextStart = start90 + PERIOD_90;
    const next = await evaluate(jwtConfig(), iso(nextStart + HOUR_MS));
    expect(changed(base, next)).toEqual([secretResource(generation + 1), "gateway-proxy-credentials-writer"]);
    const nextSecret = await valueOf(next.program.jwtHs256Secret);
    expect(nextSecret).not.toBe(secret);
    expect((await valueOf(next.program.jwtSettings))?.hs256Kid).toBe(`hs256-${generation + 1}`);
    expect(jwtKeys(next.files)).toEqual([
      ["HS256", `hs256-${generation + 1}`, nextSecret],
      ["HS256", `hs256-${generation}`, secret, String(toUnixSeconds(iso(nextStart + 7 * DAY_MS)))],
    ]);
    expect(await valueOf(next.program.rotation)).toMatchObject({ jwtHs256Secret: { generation: generation + 1, previousValid: true } });

    // After the overlap the previous secret leaves the file, and its resource goes.
    const later = await evaluate(jwtConfig(), iso(nextStart + 8 * DAY_MS));
    expect(changed(next, later)).toEqual([secretResource(generation), "gateway-proxy-credentials-writer"]);
    expect(jwtKeys(later.files)).toEqual([["HS256", `hs256-${generation + 1}`, nextSecret]]);
  });

  it("rotates on demand through rotationGenerations, like a key", async () => {
    const base = await evaluate(jwtConfig(), iso(B0));
    const requested = await evaluate(
      jwtConfig({ rotationGenerations: JSON.stringify({ jwtHs256Secret: { generation: 1, at: iso(B0) } }) }),
      iso(B0 + HOUR_MS),
    );
    expect(changed(base, requested)).toEqual([secretResource(generation + 1), "gateway-proxy-credentials-writer"]);
    expect(jwtKeys(requested.files).map(([, kid, , notAfter]) => [kid, notAfter])).toEqual([
      [`hs256-${generation + 1}`, undefined],
      [`hs256-${generation}`, String(toUnixSeconds(iso(B0 + 7 * DAY_MS)))],
    ]);
  });
});
