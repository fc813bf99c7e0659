import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { bcryptHashWithSalt, sha256Hex } from "../bundle/credentials";
import type { Scope } from "../bundle/spec";

export interface ApiKeyArgs {
  /** Unique across API keys and Basic users; appears in logs, never the key. */
  name: string;
  scope: Scope;
  /** The key itself (secret). Default: generated, 40 letters and digits. */
  key?: pulumi.Input<string>;
}

export interface BasicUserArgs {
  name: string;
  scope: Scope;
  /** The password (secret). Default: generated, 24 letters and digits. */
  password?: pulumi.Input<string>;
}

export interface CredentialsArgs {
  /** Default none. */
  apiKeys?: ApiKeyArgs[];
  /** Default none. */
  basicUsers?: BasicUserArgs[];
  /** bcrypt cost for Basic passwords. Default 10 (the proxy caches verified passwords). */
  bcryptCost?: number;
}

/** Entries in the gateway spec's shape: only digests and hashes reach the proxy. */
export interface SpecCredentials {
  apiKeys: { name: string; keySha256: string; scope: Scope }[];
  basicUsers: { name: string; passwordHash: string; scope: Scope }[];
}

/**
 * Every credential's secret, generated where none is given, and its digest for the proxy.
 *
 * Deterministic: random values live in resources keyed by credential name and slot, and the
 * bcrypt salt comes from one of them, so an unchanged credential yields identical files and
 * no container changes. Rotation (a `current` and a `previous` slot per credential) will add
 * `-previous` resources and a generation to `keepers`; the `-current` names stay as they are.
 */
export class Credentials extends pulumi.ComponentResource {
  /** name -> key; secret. */
  public readonly apiKeys: pulumi.Output<Record<string, string>>;
  /** user -> password; secret. */
  public readonly basicPasswords: pulumi.Output<Record<string, string>>;
  /** Digests and bcrypt hashes in the gateway spec's entry shape; secret. */
  public readonly specCredentials: pulumi.Output<SpecCredentials>;

  constructor(name: string, args: CredentialsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("ollama-gateway:index:Credentials", name, {}, opts);
    const a = { apiKeys: [], basicUsers: [], bcryptCost: 10, ...args };
    const slot = "current";

    const keys = a.apiKeys.map((entry) => {
      const key =
        entry.key !== undefined
          ? pulumi.secret(entry.key)
          : new random.RandomPassword(
              `${name}-key-${entry.name}-${slot}`,
              { length: 40, special: false, keepers: { name: entry.name, slot } },
              { parent: this },
            ).result;
      return { entry, key: pulumi.secret(key) };
    });

    const users = a.basicUsers.map((entry) => {
      const password =
        entry.password !== undefined
          ? pulumi.secret(entry.password)
          : new random.RandomPassword(
              `${name}-password-${entry.name}-${slot}`,
              { length: 24, special: false, keepers: { name: entry.name, slot } },
              { parent: this },
            ).result;
      // A stable salt makes the hash repeatable: same password, same htpasswd line, no diff.
      const salt = new random.RandomString(
        `${name}-salt-${entry.name}-${slot}`,
        { length: 22, special: true, overrideSpecial: "./", lower: true, upper: true, numeric: true, keepers: { name: entry.name, slot } },
        { parent: this },
      );
      const passwordHash = pulumi.all([password, salt.result]).apply(([p, s]) => bcryptHashWithSalt(p, s, a.bcryptCost));
      return { entry, password: pulumi.secret(password), passwordHash };
    });

    this.apiKeys = pulumi.secret(pulumi.all(Object.fromEntries(keys.map(({ entry, key }) => [entry.name, key]))));
    this.basicPasswords = pulumi.secret(pulumi.all(Object.fromEntries(users.map(({ entry, password }) => [entry.name, password]))));
    this.specCredentials = pulumi.secret(
      pulumi
        .all([
          pulumi.all(keys.map(({ entry, key }) => key.apply((k) => ({ name: entry.name, keySha256: sha256Hex(k), scope: entry.scope })))),
          pulumi.all(users.map(({ entry, passwordHash }) => passwordHash.apply((h) => ({ name: entry.name, passwordHash: h, scope: entry.scope })))),
        ])
        .apply(([apiKeys, basicUsers]) => ({ apiKeys, basicUsers })),
    );

    this.registerOutputs({ apiKeys: this.apiKeys, basicPasswords: this.basicPasswords, specCredentials: this.specCredentials });
  }
}
