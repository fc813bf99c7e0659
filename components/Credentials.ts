import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { bcryptHashWithSalt, sha256Hex } from "../bundle/credentials";
import type { Scope } from "../bundle/spec";

/**
 * Where a generated credential's rotation stands; computed by the caller from a policy and a
 * date (see `config/rotation.ts`), so the component itself never reads the clock.
 */
export interface CredentialRotationArgs {
  /** Generation of the current secret; 0 before the first rotation. Slot `a` holds even generations, `b` odd ones. */
  generation: number;
  /** Until when the previous generation's secret works (ISO 8601). Omitted: the previous secret is not in the files. */
  previousNotAfter?: string;
}

export interface ApiKeyArgs {
  /** Unique across API keys and Basic users; appears in logs, never the key. */
  name: string;
  scope: Scope;
  /** The key itself (secret). Default: generated, 40 letters and digits. Refused together with `rotation`. */
  key?: pulumi.Input<string>;
  /** Rotate the generated key through two slots. Default: one fixed key (`-current`). */
  rotation?: CredentialRotationArgs;
}

export interface BasicUserArgs {
  name: string;
  scope: Scope;
  /** The password (secret). Default: generated, 24 letters and digits. Refused together with `rotation`. */
  password?: pulumi.Input<string>;
  /** Rotate the generated password through two slots. Default: one fixed password (`-current`). */
  rotation?: CredentialRotationArgs;
}

export interface CredentialsArgs {
  /** Default none. */
  apiKeys?: ApiKeyArgs[];
  /** Default none. */
  basicUsers?: BasicUserArgs[];
  /** bcrypt cost for Basic passwords. Default 10 (the proxy caches verified passwords). */
  bcryptCost?: number;
  /**
   * The HS256 secret JWT issuers sign with; give it only when `jwt.algorithms` lists `HS256`.
   * `secret` (at least 32 characters) default: generated, 64 letters and digits, stable across
   * runs. Default: none (no HS256).
   */
  jwtHs256?: {
    secret?: pulumi.Input<string>;
    kid?: string;
    /**
     * Rotate the generated secret through two slots, like a key; refused with `secret`. The
     * current secret's kid is `<kid or "hs256">-<generation>`; the previous one stays in
     * `credentials/jwt-keys`, with its kid, until `previousNotAfter`.
     */
    rotation?: CredentialRotationArgs;
  };
}

/** Entries in the gateway spec's shape: only digests and hashes reach the proxy. */
export interface SpecCredentials {
  apiKeys: { name: string; keySha256: string; scope: Scope; previous?: { keySha256: string; notAfter: string } }[];
  basicUsers: { name: string; passwordHash: string; scope: Scope; previous?: { passwordHash: string; notAfter: string } }[];
  /** HS256 secrets for the spec's `jwt.hs256Secrets`; only `credentials/jwt-keys` carries them. */
  jwtHs256Secrets?: { kid?: string; secret: string; notAfter?: string }[];
}

type SlotName = "a" | "b";
/** The slot that holds a generation: even in `a`, odd in `b`. */
const slotOf = (generation: number): SlotName => (generation % 2 === 0 ? "a" : "b");
/** The latest generation of the slot's parity, at most `generation` (-1: the slot holds none yet). */
const slotGeneration = (slot: SlotName, generation: number) => (slotOf(generation) === slot ? generation : generation - 1);

/**
 * Every credential's secret, generated where none is given, and its digest for the proxy.
 *
 * Deterministic: random values live in resources keyed by credential name and slot, and the
 * bcrypt salt comes from one of them, so an unchanged credential yields identical files and
 * no container changes.
 *
 * Rotation: a credential with `rotation` has two slots, `a` (even generations) and `b` (odd),
 * whose `keepers` hold the generation they carry. Moving to the next generation changes the
 * keepers of the older slot only, so one rotation replaces one slot's resources while the other
 * slot, now the previous secret, keeps its value until its `notAfter`.
 */
export class Credentials extends pulumi.ComponentResource {
  /** name -> key; secret. */
  public readonly apiKeys: pulumi.Output<Record<string, string>>;
  /** user -> password; secret. */
  public readonly basicPasswords: pulumi.Output<Record<string, string>>;
  /** Digests and bcrypt hashes in the gateway spec's entry shape; secret. */
  public readonly specCredentials: pulumi.Output<SpecCredentials>;
  /** The HS256 secret for token issuers; secret; undefined without `jwtHs256`. */
  public readonly jwtHs256Secret: pulumi.Output<string | undefined>;
  /** The kid of that secret, for tokens that name their key; undefined when it has none. */
  public readonly jwtHs256Kid: pulumi.Output<string | undefined>;

  constructor(name: string, args: CredentialsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("ollama-gateway:index:Credentials", name, {}, opts);
    const a = { apiKeys: [], basicUsers: [], bcryptCost: 10, ...args };
    const checkRotation = (label: string, rotation: CredentialRotationArgs | undefined, supplied: boolean) => {
      if (rotation && supplied)
        throw new pulumi.ResourceError(`\`${label}\` has both a supplied secret and \`rotation\`; only generated secrets rotate.`, this);
      if (rotation && !(Number.isInteger(rotation.generation) && rotation.generation >= 0))
        throw new pulumi.ResourceError(`\`${label}.rotation.generation\` is ${rotation.generation}; use a whole number, 0 or more.`, this);
    };
    for (const entry of a.apiKeys) checkRotation(entry.name, entry.rotation, entry.key !== undefined);
    for (const entry of a.basicUsers) checkRotation(entry.name, entry.rotation, entry.password !== undefined);
    if (a.jwtHs256) checkRotation("jwtHs256", a.jwtHs256.rotation, a.jwtHs256.secret !== undefined);

    /** Keepers of a slot: the slot's generation is in them, so only a new generation replaces it. */
    const keepers = (credential: string, slot: string, rotation?: CredentialRotationArgs): Record<string, string> =>
      rotation ? { name: credential, slot, generation: String(slotGeneration(slot as SlotName, rotation.generation)) } : { name: credential, slot };
    /** `current` for a credential without rotation (its resource names predate rotation); `a`/`b` with it. */
    const slotsOf = (rotation?: CredentialRotationArgs) =>
      rotation ? { current: slotOf(rotation.generation), previous: slotOf(rotation.generation + 1) } : { current: "current" };

    const keys = a.apiKeys.map((entry) => {
      const generated = (slot: string) =>
        new random.RandomPassword(
          `${name}-key-${entry.name}-${slot}`,
          { length: 40, special: false, keepers: keepers(entry.name, slot, entry.rotation) },
          { parent: this },
        ).result;
      if (entry.key !== undefined) return { entry, key: pulumi.secret(entry.key) };
      if (!entry.rotation) return { entry, key: pulumi.secret(generated("current")) };
      const bySlot = { a: generated("a"), b: generated("b") };
      const slots = slotsOf(entry.rotation);
      return { entry, key: pulumi.secret(bySlot[slots.current as SlotName]), previousKey: pulumi.secret(bySlot[slots.previous as SlotName]) };
    });

    const users = a.basicUsers.map((entry) => {
      const generated = (slot: string) => {
        const password = new random.RandomPassword(
          `${name}-password-${entry.name}-${slot}`,
          { length: 24, special: false, keepers: keepers(entry.name, slot, entry.rotation) },
          { parent: this },
        ).result;
        return { password, salt: salt(slot) };
      };
      // A stable salt makes the hash repeatable: same password, same htpasswd line, no diff.
      const salt = (slot: string) =>
        new random.RandomString(
          `${name}-salt-${entry.name}-${slot}`,
          {
            length: 22,
            special: true,
            overrideSpecial: "./",
            lower: true,
            upper: true,
            numeric: true,
            keepers: keepers(entry.name, slot, entry.rotation),
          },
          { parent: this },
        ).result;
      const hashed = (secret: { password: pulumi.Input<string>; salt: pulumi.Output<string> }) => ({
        password: pulumi.secret(secret.password),
        passwordHash: pulumi.secret(pulumi.all([secret.password, secret.salt]).apply(([p, s]) => bcryptHashWithSalt(p, s, a.bcryptCost))),
      });
      const none = { previousHash: undefined as pulumi.Output<string> | undefined };
      if (entry.password !== undefined) return { entry, ...none, ...hashed({ password: entry.password, salt: salt("current") }) };
      if (!entry.rotation) return { entry, ...none, ...hashed(generated("current")) };
      const bySlot = { a: hashed(generated("a")), b: hashed(generated("b")) };
      const slots = slotsOf(entry.rotation);
      return { entry, ...bySlot[slots.current as SlotName], previousHash: bySlot[slots.previous as SlotName].passwordHash };
    });

    // The HS256 secret: supplied, generated once (`-jwt-hs256`), or rotating through slots a/b.
    const jwtHs256 = a.jwtHs256;
    const hs256Secrets: { kid?: string; secret: pulumi.Output<string>; notAfter?: string }[] = [];
    if (jwtHs256?.rotation) {
      const { generation, previousNotAfter } = jwtHs256.rotation;
      const slot = (s: SlotName) =>
        new random.RandomPassword(
          `${name}-jwt-hs256-${s}`,
          { length: 64, special: false, keepers: { use: "jwt-hs256", slot: s, generation: String(slotGeneration(s, generation)) } },
          { parent: this },
        ).result;
      const bySlot = { a: slot("a"), b: slot("b") };
      const kid = (g: number) => `${jwtHs256.kid ?? "hs256"}-${g}`;
      hs256Secrets.push({ kid: kid(generation), secret: bySlot[slotOf(generation)] });
      if (previousNotAfter !== undefined && generation > 0)
        hs256Secrets.push({ kid: kid(generation - 1), secret: bySlot[slotOf(generation + 1)], notAfter: previousNotAfter });
    } else if (jwtHs256) {
      const secret =
        jwtHs256.secret ??
        new random.RandomPassword(`${name}-jwt-hs256`, { length: 64, special: false, keepers: { use: "jwt-hs256" } }, { parent: this }).result;
      hs256Secrets.push({ kid: jwtHs256.kid, secret: pulumi.output(secret) });
    }
    this.jwtHs256Secret = hs256Secrets.length > 0 ? pulumi.secret(hs256Secrets[0].secret) : pulumi.output(undefined);
    this.jwtHs256Kid = pulumi.output(hs256Secrets[0]?.kid);

    this.apiKeys = pulumi.secret(pulumi.all(Object.fromEntries(keys.map(({ entry, key }) => [entry.name, key]))));
    this.basicPasswords = pulumi.secret(pulumi.all(Object.fromEntries(users.map(({ entry, password }) => [entry.name, password]))));
    this.specCredentials = pulumi.secret(
      pulumi
        .all([
          pulumi.all(
            keys.map(({ entry, key, previousKey }) => {
              const notAfter = entry.rotation?.previousNotAfter;
              const previous = previousKey && notAfter !== undefined ? previousKey : pulumi.output(undefined);
              return pulumi.all([key, previous]).apply(([k, p]) => ({
                name: entry.name,
                keySha256: sha256Hex(k),
                scope: entry.scope,
                ...(p !== undefined ? { previous: { keySha256: sha256Hex(p), notAfter: notAfter! } } : {}),
              }));
            }),
          ),
          pulumi.all(
            users.map(({ entry, passwordHash, previousHash }) => {
              const notAfter = entry.rotation?.previousNotAfter;
              const previous = previousHash && notAfter !== undefined ? previousHash : pulumi.output(undefined);
              return pulumi.all([passwordHash, previous]).apply(([h, p]) => ({
                name: entry.name,
                passwordHash: h,
                scope: entry.scope,
                ...(p !== undefined ? { previous: { passwordHash: p, notAfter: notAfter! } } : {}),
              }));
            }),
          ),
          pulumi.all(
            hs256Secrets.map(({ kid, secret, notAfter }) =>
              secret.apply((value) => ({ ...(kid !== undefined ? { kid } : {}), secret: value, ...(notAfter !== undefined ? { notAfter } : {}) })),
            ),
          ),
        ])
        .apply(([apiKeys, basicUsers, jwtHs256Secrets]) => ({
          apiKeys,
          basicUsers,
          ...(jwtHs256Secrets.length > 0 ? { jwtHs256Secrets } : {}),
        })),
    );

    this.registerOutputs({
      apiKeys: this.apiKeys,
      basicPasswords: this.basicPasswords,
      specCredentials: this.specCredentials,
      jwtHs256Secret: this.jwtHs256Secret,
    });
  }
}
