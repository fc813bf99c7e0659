import type { CredentialGovernance } from "../bundle/governance";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { bcryptHashWithSalt, sha256Hex } from "../bundle/credentials";
import type { Scope } from "../bundle/spec";

/**
 * Where a generated credential's rotation stands; computed by the caller from a policy and a
 * date (see `config/rotation.ts`), so the component itself never reads the clock.
 */
export interface CredentialRotationArgs {
  /** Generation of the current secret; 0 before the first rotation. Each generation has its own resource (`-g<n>`). */
  generation: number;
  /** Until when the previous generation's secret works (ISO 8601). Omitted: the previous secret is not in the files. */
  previousNotAfter?: string;
}

export interface ApiKeyArgs extends CredentialGovernance {
  /** Unique across API keys and Basic users; appears in logs, never the key. */
  name: string;
  scope: Scope;
  /** The key itself (secret). Default: generated, 40 letters and digits. Refused together with `rotation`. */
  key?: pulumi.Input<string>;
  /** Rotate the generated key by generation (see `perGeneration`). Default: one fixed key (`-current`). */
  rotation?: CredentialRotationArgs;
}

export interface BasicUserArgs extends CredentialGovernance {
  name: string;
  scope: Scope;
  /** The password (secret). Default: generated, 24 letters and digits. Refused together with `rotation`. */
  password?: pulumi.Input<string>;
  /** Rotate the generated password by generation (see `perGeneration`). Default: one fixed password (`-current`). */
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
     * Rotate the generated secret by generation, like a key; refused with `secret`. The
     * current secret's kid is `<kid or "hs256">-<generation>`; the previous one stays in
     * `credentials/jwt-keys`, with its kid, until `previousNotAfter`.
     */
    rotation?: CredentialRotationArgs;
  };
}

/**
 * The gateway's credentials (bundle/spec.ts `gatewayCredentialsSchema`) but TLS: only digests and
 * hashes reach the proxy, each by its credential's name.
 */
export interface SpecCredentials {
  apiKeys: { name: string; keySha256: string; previous?: { keySha256: string; notAfter: string } }[];
  basicUsers: { name: string; passwordHash: string; previous?: { passwordHash: string; notAfter: string } }[];
  /** The `jwt` section's HS256 secrets; only `credentials/jwt-keys` carries them. */
  hs256Secrets?: { kid?: string; secret: string; notAfter?: string }[];
}

/** The current generation's secret and, while its overlap lasts, the previous one's. */
interface Generations<T> {
  current: T;
  previous?: T;
}

/**
 * The random resources behind one generated secret. Without rotation: one, named `original`.
 * With rotation: one per live generation, `<base>-g<n>`: the current generation's and,
 * while the overlap lasts (`previousNotAfter`), the previous one's. A rotation creates the next
 * generation's resource and leaves the previous one as it was; a generation that falls out of
 * the overlap is no longer declared, so Pulumi deletes it.
 *
 * Every generation keeps the keepers of the original resource, and the current one carries an
 * alias to it: adopting a policy renames the existing secret instead of replacing it, so its
 * clients keep working, and the first scheduled rotation has the usual overlap.
 */
function perGeneration<T>(
  names: { base: string; original: string },
  rotation: CredentialRotationArgs | undefined,
  declare: (resourceName: string, opts: pulumi.CustomResourceOptions) => T,
): Generations<T> {
  if (!rotation) return { current: declare(names.original, {}) };
  const { generation, previousNotAfter } = rotation;
  return {
    current: declare(`${names.base}-g${generation}`, { aliases: [{ name: names.original }] }),
    ...(previousNotAfter !== undefined && generation > 0 ? { previous: declare(`${names.base}-g${generation - 1}`, {}) } : {}),
  };
}

/** A credential's resource names: `<base>-current` before any rotation policy, `<base>-g<n>` with one. */
const credentialNames = (base: string) => ({ base, original: `${base}-current` });

/**
 * Every credential's secret, generated where none is given, and its digest for the proxy.
 *
 * Deterministic: random values live in resources keyed by credential name and generation, and the
 * bcrypt salt comes from one of them, so an unchanged credential yields identical files and
 * no container changes.
 *
 * Rotation: a credential with `rotation` has one resource per live generation (see
 * `perGeneration`): a rotation adds the next generation's secret and keeps the previous one, in
 * the files until its `notAfter`, then drops it.
 */
export class Credentials extends pulumi.ComponentResource {
  /** name -> key; secret. */
  public readonly apiKeys: pulumi.Output<Record<string, string>>;
  /** user -> password; secret. */
  public readonly basicPasswords: pulumi.Output<Record<string, string>>;
  /** Digests, bcrypt hashes and HS256 secrets, the gateway's credentials; secret. */
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

    const keys = a.apiKeys.map((entry) => {
      if (entry.key !== undefined) return { entry, key: pulumi.secret(entry.key) };
      const generated = perGeneration(credentialNames(`${name}-key-${entry.name}`), entry.rotation, (resourceName, opts) =>
        pulumi.secret(
          new random.RandomPassword(resourceName, { length: 40, special: false, keepers: { name: entry.name, slot: "current" } }, { parent: this, ...opts })
            .result,
        ),
      );
      return { entry, key: generated.current, previousKey: generated.previous };
    });

    const users = a.basicUsers.map((entry) => {
      // A stable salt makes the hash repeatable: same password, same htpasswd line, no diff.
      const salt = (resourceName: string, opts: pulumi.CustomResourceOptions) =>
        new random.RandomString(
          resourceName,
          {
            length: 22,
            special: true,
            overrideSpecial: "./",
            lower: true,
            upper: true,
            numeric: true,
            keepers: { name: entry.name, slot: "current" },
          },
          { parent: this, ...opts },
        ).result;
      const hashed = (password: pulumi.Input<string>, saltValue: pulumi.Output<string>) => ({
        password: pulumi.secret(password),
        passwordHash: pulumi.secret(pulumi.all([password, saltValue]).apply(([p, s]) => bcryptHashWithSalt(p, s, a.bcryptCost))),
      });
      const saltNames = credentialNames(`${name}-salt-${entry.name}`);
      if (entry.password !== undefined) return { entry, ...hashed(entry.password, salt(saltNames.original, {})), previousHash: undefined };
      const passwords = perGeneration(credentialNames(`${name}-password-${entry.name}`), entry.rotation, (resourceName, opts) =>
        new random.RandomPassword(resourceName, { length: 24, special: false, keepers: { name: entry.name, slot: "current" } }, { parent: this, ...opts })
          .result,
      );
      const salts = perGeneration(saltNames, entry.rotation, salt);
      const current = hashed(passwords.current, salts.current);
      return { entry, ...current, previousHash: passwords.previous && salts.previous ? hashed(passwords.previous, salts.previous).passwordHash : undefined };
    });

    // The HS256 secret: supplied, or generated (rotating like a key, with kids by generation).
    const jwtHs256 = a.jwtHs256;
    const hs256Secrets: { kid?: string; secret: pulumi.Output<string>; notAfter?: string }[] = [];
    if (jwtHs256?.secret !== undefined) {
      hs256Secrets.push({ kid: jwtHs256.kid, secret: pulumi.output(jwtHs256.secret) });
    } else if (jwtHs256) {
      const generated = perGeneration({ base: `${name}-jwt-hs256`, original: `${name}-jwt-hs256` }, jwtHs256.rotation, (resourceName, opts) =>
        new random.RandomPassword(resourceName, { length: 64, special: false, keepers: { use: "jwt-hs256" } }, { parent: this, ...opts }).result,
      );
      const rotation = jwtHs256.rotation;
      const kid = (generation: number) => `${jwtHs256.kid ?? "hs256"}-${generation}`;
      hs256Secrets.push({ kid: rotation ? kid(rotation.generation) : jwtHs256.kid, secret: generated.current });
      if (rotation && generated.previous)
        hs256Secrets.push({ kid: kid(rotation.generation - 1), secret: generated.previous, notAfter: rotation.previousNotAfter });
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
        .apply(([apiKeys, basicUsers, hs256Secrets]) => ({
          apiKeys,
          basicUsers,
          ...(hs256Secrets.length > 0 ? { hs256Secrets } : {}),
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
