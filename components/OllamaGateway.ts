import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { governanceOf, hasGovernance } from "../bundle/governance";
import type { GatewaySpecInput } from "../bundle/spec";
import { AuthProxy, type JwtSettings, type ProxySettings } from "./AuthProxy";
import { Certificates, type ProvidedCertificatesArgs } from "./Certificates";
import { type ApiKeyArgs, type BasicUserArgs, type CredentialRotationArgs, Credentials } from "./Credentials";
import { OllamaServer, type OllamaServerArgs } from "./OllamaServer";

export type GatewayTlsArgs =
  | { mode: "none" }
  /** A private CA and a server certificate for `hostname`, `dnsNames` and `ipAddresses`. */
  | { mode: "selfSigned"; validityPeriodHours?: number; earlyRenewalHours?: number }
  | ProvidedCertificatesArgs;

/** JWT bearer tokens, as the spec's `jwt` section, with the HS256 secret as a secret input. */
export interface GatewayJwtArgs extends JwtSettings {
  /**
   * The HS256 secret (at least 32 characters; its UTF-8 bytes are the key). Only with `HS256` in
   * `algorithms`, refused otherwise. Default with `HS256`: generated, 64 letters and digits,
   * exported as the secret output `jwtHs256Secret`.
   */
  hs256Secret?: pulumi.Input<string>;
  /** `kid` of the HS256 secret, for tokens that name their key. Default none (every HS256 key is tried). */
  hs256Kid?: string;
  /**
   * Rotate the generated HS256 secret like a key (refused with `hs256Secret`): the current secret
   * has kid `<hs256Kid or "hs256">-<generation>`, the previous one works until `previousNotAfter`.
   * Default: one secret for the stack's life.
   */
  hs256Rotation?: CredentialRotationArgs;
}

/**
 * The `clientEnv` output: shell lines for OpenAI-compatible clients (the official SDKs read
 * `OPENAI_BASE_URL` and `OPENAI_API_KEY`) and, with a private CA, Node.js's extra trust store.
 * Pure, so the tests run exactly these lines against the real nginx.
 */
export function clientEnvScript(endpoint: string, apiKey: string | undefined, trustCaFile: boolean): string {
  return [
    `export OPENAI_BASE_URL='${endpoint}/v1'`,
    ...(apiKey !== undefined ? [`export OPENAI_API_KEY='${apiKey}'`] : []),
    ...(trustCaFile ? ['export NODE_EXTRA_CA_CERTS="$PWD/ca.pem"  # pulumi stack output caCertPem > ca.pem'] : []),
    "",
  ].join("\n");
}

/** What token issuers need to know (non-secret). */
export interface JwtIssuerSettings {
  issuer: string;
  audience: string;
  algorithms: string[];
  scopeClaim: string;
  scopeValues: Record<string, string[]>;
  nameClaim: string;
  /** The kid to put in HS256 tokens' header (optional for them: without it every HS256 secret is tried). */
  hs256Kid?: string;
}

export interface OllamaGatewayArgs {
  /** DNS name clients use: endpoint host, certificate name, nginx `server_name`. Default `localhost`. */
  hostname?: string;
  /** More DNS names for the certificate. Default none. */
  dnsNames?: string[];
  /** IP addresses for the certificate. Default `["127.0.0.1"]`. */
  ipAddresses?: string[];
  /** Host address the proxy's ports are published on. Default `127.0.0.1` (this host only). */
  bindAddress?: string;
  /** Default 8080. With TLS it only answers /healthz and redirects to HTTPS. */
  httpPort?: number;
  /** Default 8443; ignored when `tls.mode` is `none`. */
  httpsPort?: number;
  /** Prometheus metrics on the host's 127.0.0.1 at this port (docs/governance.md). Default: off. */
  metricsPort?: number;
  /** Default `{ mode: "selfSigned" }`. */
  tls?: GatewayTlsArgs;
  /** Default none; a gateway without credentials refuses every model route. */
  apiKeys?: ApiKeyArgs[];
  /** Default none. */
  basicUsers?: BasicUserArgs[];
  /** Proxy settings (rate limit, timeouts, body size, CORS). Default: the gateway spec's defaults. */
  proxy?: Omit<ProxySettings, "serverName" | "jwt" | "externalAuth" | "network" | "callerPolicies">;
  /** JWT bearer tokens checked in the proxy, next to API keys and Basic users. Default: off. */
  jwt?: GatewayJwtArgs;
  /**
   * An external authentication service (the spec's `externalAuth`: url, mode `fallback` or
   * `exclusive`, timeoutSeconds, nameHeader, scopeHeader, scopeValues). Its host must resolve
   * when the proxy starts. Default: off.
   */
  externalAuth?: GatewaySpecInput["externalAuth"];
  /**
   * Client address lists (CIDR blocks or addresses): `deny` first, then `allow`; with any
   * `allow`, other addresses get 403. `127.0.0.1` is added to `allow` for the container's own
   * healthcheck, and a `deny` entry covering it is refused. Default: no restriction.
   * `trustedProxies`: load balancers whose `clientAddressHeader` (default `X-Forwarded-For`)
   * names the client; default none.
   */
  network?: { allow?: string[]; deny?: string[]; trustedProxies?: string[]; clientAddressHeader?: string };
  /** Ollama settings and models to pull. */
  ollama?: Omit<OllamaServerArgs, "network">;
  /**
   * A pinned proxy image built from image/proxy/Dockerfile (pushed to your registry). Default:
   * build that Dockerfile on the target Docker host.
   */
  proxyImage?: string;
  /**
   * Make the private network `internal` (no route out). Ollama can then pull no model, so
   * `ollama.models` must be empty. Default `false`: Ollama can reach the registry, but no
   * host port leads to it either way.
   */
  internalNetwork?: boolean;
}

const DEFAULTS = {
  hostname: "localhost",
  dnsNames: [] as string[],
  ipAddresses: ["127.0.0.1"],
  bindAddress: "127.0.0.1",
  httpPort: 8080,
  httpsPort: 8443,
  tls: { mode: "selfSigned" } as GatewayTlsArgs,
  apiKeys: [] as ApiKeyArgs[],
  basicUsers: [] as BasicUserArgs[],
  internalNetwork: false,
};

/**
 * Ollama behind an authenticating nginx proxy, on one Docker host.
 *
 * Two networks: a private one with Ollama (no published port), and an edge one on which the
 * proxy publishes its ports. The proxy is the only container on both.
 */
export class OllamaGateway extends pulumi.ComponentResource {
  /** Base URL of the gateway, `https://<hostname>:<httpsPort>` (or http without TLS). */
  public readonly endpoint: pulumi.Output<string>;
  /** Unauthenticated health check URL. */
  public readonly healthUrl: pulumi.Output<string>;
  /** Base URL for OpenAI-compatible clients (`<endpoint>/v1`). */
  public readonly openaiBaseUrl: pulumi.Output<string>;
  /** name -> API key; secret. */
  public readonly apiKeys: pulumi.Output<Record<string, string>>;
  /** user -> password; secret. */
  public readonly basicAuth: pulumi.Output<Record<string, string>>;
  /** What clients trust (the private CA, or the provided chain); undefined without TLS. */
  public readonly caCertPem: pulumi.Output<string | undefined>;
  /** A ready-to-paste curl command, with a credential in it; secret. */
  public readonly curlExample: pulumi.Output<string>;
  /**
   * Shell lines that configure OpenAI-compatible clients (the official SDKs read
   * `OPENAI_BASE_URL` and `OPENAI_API_KEY`) with the first API key, and Node.js to trust the
   * private CA; secret. Without API keys, only the base URL.
   */
  public readonly clientEnv: pulumi.Output<string>;
  /** The HS256 secret token issuers sign with; secret; undefined unless `jwt.algorithms` lists `HS256`. */
  public readonly jwtHs256Secret: pulumi.Output<string | undefined>;
  /** Issuer, audience, algorithms and claims token issuers must use; undefined without `jwt`. Not secret. */
  public readonly jwtSettings: pulumi.Output<JwtIssuerSettings | undefined>;

  constructor(name: string, args: OllamaGatewayArgs = {}, opts?: pulumi.ComponentResourceOptions) {
    super("ollama-gateway:index:OllamaGateway", name, {}, opts);
    const a = { ...DEFAULTS, ...args };
    if (a.internalNetwork && (a.ollama?.models?.length ?? 0) > 0)
      throw new pulumi.ResourceError("`ollama.models` is not empty but `internalNetwork` is true; an internal network cannot pull models.", this);

    const privateNetwork = new docker.Network(`${name}-private`, { driver: "bridge", internal: a.internalNetwork }, { parent: this });
    const edgeNetwork = new docker.Network(`${name}-edge`, { driver: "bridge" }, { parent: this });

    const ollama = new OllamaServer(`${name}-ollama`, { ...a.ollama, network: privateNetwork.name }, { parent: this });

    const certificates =
      a.tls.mode === "none"
        ? undefined
        : new Certificates(
            `${name}-tls`,
            a.tls.mode === "provided"
              ? a.tls
              : { ...a.tls, dnsNames: [a.hostname, ...a.dnsNames.filter((n) => n !== a.hostname)], ipAddresses: a.ipAddresses },
            { parent: this },
          );

    const { hs256Secret, hs256Kid, hs256Rotation, ...jwt } = a.jwt ?? { hs256Secret: undefined, hs256Kid: undefined, hs256Rotation: undefined };
    const hs256 = a.jwt?.algorithms.includes("HS256") ?? false;
    if (!hs256 && (hs256Secret !== undefined || hs256Kid !== undefined || hs256Rotation !== undefined))
      throw new pulumi.ResourceError(
        "`jwt.hs256Secret`, `jwt.hs256Kid` or `jwt.hs256Rotation` is set but `jwt.algorithms` does not list `HS256`; add it or remove them.",
        this,
      );

    const credentials = new Credentials(
      `${name}-credentials`,
      {
        apiKeys: a.apiKeys,
        basicUsers: a.basicUsers,
        ...(hs256
          ? {
              jwtHs256: {
                ...(hs256Secret !== undefined ? { secret: hs256Secret } : {}),
                ...(hs256Kid !== undefined ? { kid: hs256Kid } : {}),
                ...(hs256Rotation !== undefined ? { rotation: hs256Rotation } : {}),
              },
            }
          : {}),
      },
      { parent: this },
    );

    new AuthProxy(
      `${name}-proxy`,
      {
        settings: {
          ...a.proxy,
          serverName: a.hostname,
          ...(a.jwt ? { jwt: jwt as JwtSettings } : {}),
          ...(a.externalAuth ? { externalAuth: a.externalAuth } : {}),
          network: { allow: [], deny: [], trustedProxies: [], ...a.network },
          callerPolicies: {
            apiKeys: a.apiKeys.filter(hasGovernance).map((e) => ({ name: e.name, ...governanceOf(e) })),
            basicUsers: a.basicUsers.filter(hasGovernance).map((e) => ({ name: e.name, ...governanceOf(e) })),
          },
        },
        credentials: credentials.specCredentials,
        tls: certificates ? { certPem: certificates.certPem, keyPem: certificates.keyPem } : undefined,
        edgeNetwork: edgeNetwork.name,
        privateNetwork: privateNetwork.name,
        bindAddress: a.bindAddress,
        httpPort: a.httpPort,
        httpsPort: a.httpsPort,
        ...(a.metricsPort !== undefined ? { metricsPort: a.metricsPort } : {}),
        ...(a.proxyImage !== undefined ? { image: a.proxyImage } : {}),
        dependsOn: [ollama],
      },
      { parent: this },
    );

    const endpoint = certificates ? `https://${a.hostname}:${a.httpsPort}` : `http://${a.hostname}:${a.httpPort}`;
    this.endpoint = pulumi.output(endpoint);
    this.healthUrl = pulumi.output(`${endpoint}/healthz`);
    this.openaiBaseUrl = pulumi.output(`${endpoint}/v1`);
    this.apiKeys = credentials.apiKeys;
    this.basicAuth = credentials.basicPasswords;
    this.caCertPem = certificates ? certificates.caCertPem : pulumi.output(undefined);

    this.jwtHs256Secret = credentials.jwtHs256Secret;
    const jwtSpec = a.jwt;
    this.jwtSettings = credentials.jwtHs256Kid.apply((hs256CurrentKid) =>
      jwtSpec
        ? {
            issuer: jwtSpec.issuer,
            audience: jwtSpec.audience,
            algorithms: [...jwtSpec.algorithms],
            scopeClaim: jwtSpec.scopeClaim ?? "scope",
            scopeValues: { read: ["read"], inference: ["inference"], admin: ["admin"], ...jwtSpec.scopeValues },
            nameClaim: jwtSpec.nameClaim ?? "sub",
            ...(hs256CurrentKid !== undefined ? { hs256Kid: hs256CurrentKid } : {}),
          }
        : undefined,
    );

    const cacert = certificates ? "--cacert ca.pem " : "";
    const firstKey = a.apiKeys[0]?.name;
    const firstUser = a.basicUsers[0]?.name;
    this.curlExample = pulumi.secret(
      pulumi.all([credentials.apiKeys, credentials.basicPasswords]).apply(([keys, passwords]) => {
        const auth =
          firstKey !== undefined
            ? `-H 'Authorization: Bearer ${keys[firstKey]}' `
            : firstUser !== undefined
              ? `-u '${firstUser}:${passwords[firstUser]}' `
              : "";
        return `curl ${cacert}${auth}${endpoint}/v1/models`;
      }),
    );

    this.clientEnv = pulumi.secret(
      credentials.apiKeys.apply((keys) => clientEnvScript(endpoint, firstKey !== undefined ? keys[firstKey] : undefined, certificates !== undefined)),
    );

    this.registerOutputs({
      endpoint: this.endpoint,
      healthUrl: this.healthUrl,
      openaiBaseUrl: this.openaiBaseUrl,
      apiKeys: this.apiKeys,
      basicAuth: this.basicAuth,
      caCertPem: this.caCertPem,
      curlExample: this.curlExample,
      clientEnv: this.clientEnv,
      jwtHs256Secret: this.jwtHs256Secret,
      jwtSettings: this.jwtSettings,
    });
  }
}
