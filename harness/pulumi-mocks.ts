/**
 * Pulumi mocks for the program and components: records every resource registration and
 * supplies provider-computed outputs, derived from the resource name so runs are repeatable.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { expect, vi } from "vitest";
import { CONFIG_KEYS } from "../config/stackConfig";

export const PROJECT = "ollama-gateway";
export const STACK = "dev";

// js-yaml ships with @pulumi/pulumi; the tests only read the project's own YAML files with it.
const yaml: { load(text: string): any } = createRequire(__filename)("js-yaml");
export const ROOT = path.join(__dirname, "..");

/** A YAML file of the project, parsed. */
export function readYaml(file: string): any {
  return yaml.load(readFileSync(path.join(ROOT, file), "utf8"));
}

/** A stack file's config as the CLI hands it to the program: prefix stripped, lists as JSON. */
export function stackFileConfig(stack: string): Record<string, string> {
  const config: Record<string, unknown> = readYaml(`Pulumi.${stack}.yaml`).config ?? {};
  return Object.fromEntries(
    Object.entries(config).map(([key, value]) => [key.replace(`${PROJECT}:`, ""), typeof value === "string" ? value : JSON.stringify(value)]),
  );
}

export const devStackConfig = () => stackFileConfig("dev");


export interface RecordedResource {
  type: string;
  name: string;
  /** Inputs as the provider would get them; secret values stay wrapped (see `unwrap`). */
  inputs: Record<string, any>;
  urn: string;
  /** URN of the parent ("" for none). */
  parent: string;
  custom: boolean;
  /** Names (or URNs) this resource had before, from its `aliases` option. */
  aliases: string[];
  /** The `deleteBeforeReplace` option. */
  deleteBeforeReplace: boolean;
  /** The explicit provider, as `<provider URN>::<id>` ("" for the default provider). */
  provider: string;
}

export const recorded: RecordedResource[] = [];

const SECRET_SIG = pulumi.runtime.specialSecretSig;
const SIG_KEY = pulumi.runtime.specialSigKey;

/** A value the mock returns as secret, as the real provider does through additionalSecretOutputs. */
const secret = (value: unknown) => ({ [SIG_KEY]: SECRET_SIG, value });

export function isSecretValue(value: unknown): boolean {
  return typeof value === "object" && value !== null && (value as Record<string, unknown>)[SIG_KEY] === SECRET_SIG;
}

/** Removes secret envelopes, deeply. */
export function unwrap(value: any): any {
  if (isSecretValue(value)) return unwrap(value.value);
  if (Array.isArray(value)) return value.map(unwrap);
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unwrap(v)]));
  return value;
}

/** Repeatable "random" text from a seed. */
export function fakeRandom(seed: string, length: number, alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"): string {
  let out = "";
  for (let counter = 0; out.length < length; counter++) {
    for (const byte of createHash("sha256").update(`${seed}/${counter}`).digest()) {
      if (out.length < length) out += alphabet[byte % alphabet.length];
    }
  }
  return out;
}

const pem = (label: string, seed: string) => `-----BEGIN ${label}-----\n${fakeRandom(seed, 64)}\n-----END ${label}-----\n`;

/** Keepers as part of a seed; "" without keepers. */
const keeperSeed = (inputs: Record<string, any>) => (inputs.keepers ? `/${JSON.stringify(unwrap(inputs.keepers))}` : "");

/** The physical name Pulumi gives a resource without a `name` input: its name and a suffix. */
export const autoName = (name: string) => `${name}-${fakeRandom(`suffix/${name}`, 7).toLowerCase()}`;

type ProviderOverride = (type: string, name: string, inputs: Record<string, any>) => Record<string, string> | undefined;
let providerOverride: ProviderOverride | undefined;

/**
 * Outputs that a suite computes for real instead (the container replay makes real certificates
 * with harness/real-tls.ts); secret ones are wrapped as the provider does.
 */
export function overrideProviderOutputs(override: ProviderOverride | undefined): void {
  providerOverride = override;
}

const SECRET_OUTPUTS = new Set(["privateKeyPem", "result"]);

/** What each provider computes, per resource type (the mocks' stand-in values, or a suite's override). */
export function computed(type: string, name: string, inputs: Record<string, any>): Record<string, unknown> {
  const real = providerOverride?.(type, name, unwrap(inputs));
  if (real) return Object.fromEntries(Object.entries(real).map(([k, v]) => [k, SECRET_OUTPUTS.has(k) ? secret(v) : v]));
  switch (type) {
    case "random:index/randomPassword:RandomPassword":
      // Keepers in the seed: like the provider, a replaced password (new keepers) gets a new value.
      return { result: secret(fakeRandom(`password/${name}${keeperSeed(inputs)}`, inputs.length)) };
    case "random:index/randomString:RandomString": {
      const alphabet =
        (inputs.lower === false ? "" : "abcdefghijklmnopqrstuvwxyz") +
        (inputs.upper === false ? "" : "ABCDEFGHIJKLMNOPQRSTUVWXYZ") +
        (inputs.numeric === false ? "" : "0123456789") +
        (inputs.special === false ? "" : (inputs.overrideSpecial ?? "!@#$%&*()-_=+[]{}<>:?"));
      return { result: fakeRandom(`string/${name}${keeperSeed(inputs)}`, inputs.length, alphabet) };
    }
    case "tls:index/privateKey:PrivateKey":
      return { privateKeyPem: secret(pem("PRIVATE KEY", `key/${name}`)), publicKeyPem: pem("PUBLIC KEY", `pub/${name}`) };
    case "tls:index/selfSignedCert:SelfSignedCert":
    case "tls:index/locallySignedCert:LocallySignedCert":
      return { certPem: pem("CERTIFICATE", `cert/${name}`) };
    case "tls:index/certRequest:CertRequest":
      return { certRequestPem: pem("CERTIFICATE REQUEST", `csr/${name}`) };
    case "docker:index/image:Image":
      // A local build's repoDigest is its image ID: here a digest of what it is built from.
      return { repoDigest: `sha256:${createHash("sha256").update(JSON.stringify(unwrap(inputs))).digest("hex")}` };
    case "docker:index/remoteImage:RemoteImage":
      return { imageId: `sha256:${createHash("sha256").update(`image/${inputs.name}`).digest("hex")}`, repoDigest: `${inputs.name}@sha256:0` };
    case "docker:index/network:Network":
    case "docker:index/volume:Volume":
    case "docker:index/container:Container":
      return { name: inputs.name ?? autoName(name) };
    default:
      // Kubernetes objects without `metadata.name` get the provider's auto-name (name and a suffix).
      if (type.startsWith("kubernetes:") && inputs.metadata && inputs.metadata.name === undefined)
        return { metadata: { ...inputs.metadata, name: autoName(name) } };
      return {};
  }
}

let lastRegistration: Pick<RecordedResource, "parent" | "urn" | "aliases" | "deleteBeforeReplace" | "provider"> = {
  parent: "",
  urn: "",
  aliases: [],
  deleteBeforeReplace: false,
  provider: "",
};

/** Installs the mocks once per test file; call before importing the program. */
export function installMocks(): void {
  pulumi.runtime.setMocks(
    {
      newResource(args: pulumi.runtime.MockResourceArgs): { id: string; state: Record<string, unknown> } {
        recorded.push({ type: args.type, name: args.name, inputs: args.inputs, custom: args.custom ?? true, ...lastRegistration });
        return { id: `${args.name}-id`, state: { ...args.inputs, ...computed(args.type, args.name, args.inputs) } };
      },
      call(args: pulumi.runtime.MockCallArgs): Record<string, unknown> {
        throw new Error(`unexpected call to ${args.token} (the program should invoke no provider functions)`);
      },
    },
    PROJECT,
    STACK,
    false,
  );
  // The mock API gives newResource neither parent nor URN; the monitor request has both.
  const monitor = pulumi.runtime.getMonitor() as any;
  const register = monitor.registerResource.bind(monitor);
  monitor.registerResource = (request: any, callback: any) => {
    lastRegistration = {
      parent: request.getParent(),
      urn: monitor.newUrn(request.getParent(), request.getType(), request.getName()),
      // The SDK sends alias specs when the monitor supports them, else URNs.
      aliases: [
        ...request.getAliasesList().map((alias: any) => alias.getSpec()?.getName() || alias.getUrn()),
        ...request.getAliasurnsList(),
      ],
      deleteBeforeReplace: request.getDeletebeforereplace(),
      provider: request.getProvider(),
    };
    return register(request, callback);
  };
}

/**
 * Sets stack config (keys without the project prefix); lists and objects as JSON, like the CLI.
 * Secret keys count as set with `--secret`, except those listed in `plainText`.
 */
export function setStackConfig(values: Record<string, unknown>, plainText: string[] = []): void {
  const config = Object.fromEntries(
    Object.entries(values).map(([key, value]) => [`${PROJECT}:${key}`, typeof value === "string" ? value : JSON.stringify(value)]),
  );
  const secretKeys = Object.keys(values)
    .filter((key) => CONFIG_KEYS[key]?.secret && !plainText.includes(key))
    .map((key) => `${PROJECT}:${key}`);
  process.env.PULUMI_CONFIG = JSON.stringify(config);
  pulumi.runtime.setAllConfig(config, secretKeys);
}

/** Waits until every resource registration has been answered. */
export async function settle(): Promise<void> {
  await (pulumi.runtime as any).waitForRPCs();
}

export function resetRecorded(): void {
  recorded.length = 0;
}

export type Program = typeof import("../index");

/**
 * Evaluates index.ts afresh with the given stack config, as one `pulumi up` would (mocks
 * installed first); returns its exports, every output resolved, and what it declared.
 */
export async function evaluateProgram(
  config: Record<string, unknown>,
  plainText: string[] = [],
): Promise<{ program: Program; resources: RecordedResource[] }> {
  resetRecorded();
  setStackConfig(config, plainText);
  vi.resetModules();
  const program: Program = await import("../index.js");
  await Promise.all(Object.values(program).map((output) => valueOf(output as pulumi.Output<unknown>)));
  await settle();
  return { program, resources: [...recorded] };
}

/** Evaluates index.ts with config it must refuse: it fails with `lines` and declares nothing. */
export async function expectProgramRefuses(config: Record<string, unknown>, lines: string[]): Promise<void> {
  resetRecorded();
  setStackConfig(config);
  vi.resetModules();
  await expect(import("../index.js")).rejects.toThrow(lines.join("\n"));
  await settle();
  expect(recorded).toEqual([]);
}

export function findResource(type: string, name: string): RecordedResource {
  const matches = recorded.filter((r) => r.type === type && r.name === name);
  if (matches.length !== 1) {
    const names = recorded.filter((r) => r.type === type).map((r) => r.name);
    throw new Error(`expected one ${type} named ${name}, found ${matches.length} (have: ${names.join(", ") || "none"})`);
  }
  return matches[0];
}

/** The config files the config writer puts in the proxy's prefix (bundle path -> content), from the last evaluation. */
export function configUploads(): Record<string, string> {
  const uploads = findResource(TYPES.container, "gateway-proxy-config-writer").inputs.uploads as { file: string; content: string }[];
  return Object.fromEntries(uploads.map((u) => [u.file.replace(/^\/staging\//, ""), u.content]));
}

export function resourcesOfType(type: string): RecordedResource[] {
  return recorded.filter((r) => r.type === type);
}

/** Resolves an Output's value (undefined when unknown). */
export function valueOf<T>(output: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => output.apply((value) => resolve(value)));
}

/** Whether an Output is secret (the SDK's own flag, not a mock convention). */
export function outputIsSecret(output: pulumi.Output<unknown>): Promise<boolean> {
  return pulumi.isSecret(output);
}

export const TYPES = {
  container: "docker:index/container:Container",
  image: "docker:index/remoteImage:RemoteImage",
  build: "docker:index/image:Image",
  network: "docker:index/network:Network",
  volume: "docker:index/volume:Volume",
  password: "random:index/randomPassword:RandomPassword",
  string: "random:index/randomString:RandomString",
  privateKey: "tls:index/privateKey:PrivateKey",
  selfSignedCert: "tls:index/selfSignedCert:SelfSignedCert",
  certRequest: "tls:index/certRequest:CertRequest",
  locallySignedCert: "tls:index/locallySignedCert:LocallySignedCert",
  k8sProvider: "pulumi:providers:kubernetes",
  namespace: "kubernetes:core/v1:Namespace",
  service: "kubernetes:core/v1:Service",
  configMap: "kubernetes:core/v1:ConfigMap",
  secret: "kubernetes:core/v1:Secret",
  statefulSet: "kubernetes:apps/v1:StatefulSet",
  deployment: "kubernetes:apps/v1:Deployment",
  pdb: "kubernetes:policy/v1:PodDisruptionBudget",
  networkPolicy: "kubernetes:networking.k8s.io/v1:NetworkPolicy",
  ingress: "kubernetes:networking.k8s.io/v1:Ingress",
} as const;
