/**
 * What every form of the gateway (Docker: OllamaGateway, Kubernetes: KubernetesGateway) builds the
 * same way: the certificates, the credentials, and the outputs clients need. Not a component of
 * its own: the resources are children of the gateway that calls it, under the names they always
 * had (`<name>-tls`, `<name>-credentials`), so no stack sees a rename.
 */
import * as pulumi from "@pulumi/pulumi";
import { governanceOf } from "../bundle/governance";
import { clientEnvScript } from "../bundle/clientEnv";
import type { GatewaySpecInput } from "../bundle/spec";
import type { ProxyGatewaySettings, ProxySettings } from "../bundle/proxySettings";
import type { JwtSettings } from "./AuthProxy";
import { Certificates, type ProvidedCertificatesArgs } from "./Certificates";
import { type ApiKeyArgs, type BasicUserArgs, type CredentialRotationArgs, Credentials } from "./Credentials";

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

export interface GatewayAccessArgs {
  hostname: string;
  dnsNames: string[];
  ipAddresses: string[];
  tls: GatewayTlsArgs;
  apiKeys: ApiKeyArgs[];
  basicUsers: BasicUserArgs[];
  jwt?: GatewayJwtArgs;
}

/** The outputs both gateways export, with the same meaning. */
export interface GatewayAccessOutputs {
  /** name -> API key; secret. */
  apiKeys: pulumi.Output<Record<string, string>>;
  /** user -> password; secret. */
  basicAuth: pulumi.Output<Record<string, string>>;
  /** What clients trust (the private CA, or the provided chain); undefined without TLS. */
  caCertPem: pulumi.Output<string | undefined>;
  /** A ready-to-paste curl command, with a credential in it; secret. */
  curlExample: pulumi.Output<string>;
  /** Shell lines (bundle/clientEnv.ts) that configure Ollama and OpenAI clients, Node and Python; secret. */
  clientEnv: pulumi.Output<string>;
  /** The HS256 secret token issuers sign with; secret; undefined unless `jwt.algorithms` lists `HS256`. */
  jwtHs256Secret: pulumi.Output<string | undefined>;
  /** Issuer, audience, algorithms and claims token issuers must use; undefined without `jwt`. Not secret. */
  jwtSettings: pulumi.Output<JwtIssuerSettings | undefined>;
}

export interface GatewayAccess {
  certificates?: Certificates;
  credentials: Credentials;
  /** The spec's `jwt` section without secrets; undefined without `jwt`. */
  jwt?: JwtSettings;
  /** Client outputs for a gateway reached at `endpoint`. */
  outputs(endpoint: string): GatewayAccessOutputs;
}

/** Certificates and credentials for `parent`, with every combination it refuses checked first. */
export function gatewayAccess(parent: pulumi.ComponentResource, name: string, a: GatewayAccessArgs): GatewayAccess {
  const certificates =
    a.tls.mode === "none"
      ? undefined
      : new Certificates(
          `${name}-tls`,
          a.tls.mode === "provided"
            ? a.tls
            : { ...a.tls, dnsNames: [a.hostname, ...a.dnsNames.filter((n) => n !== a.hostname)], ipAddresses: a.ipAddresses },
          { parent },
        );

  const { hs256Secret, hs256Kid, hs256Rotation, ...jwt } = a.jwt ?? { hs256Secret: undefined, hs256Kid: undefined, hs256Rotation: undefined };
  const hs256 = a.jwt?.algorithms.includes("HS256") ?? false;
  if (!hs256 && (hs256Secret !== undefined || hs256Kid !== undefined || hs256Rotation !== undefined))
    throw new pulumi.ResourceError(
      "`jwt.hs256Secret`, `jwt.hs256Kid` or `jwt.hs256Rotation` is set but `jwt.algorithms` does not list `HS256`; add it or remove them.",
      parent,
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
    { parent },
  );

  const outputs = (endpoint: string): GatewayAccessOutputs => {
    const jwtSpec = a.jwt;
    const cacert = certificates ? "--cacert ca.pem " : "";
    const firstKey = a.apiKeys[0]?.name;
    const firstUser = a.basicUsers[0]?.name;
    return {
      apiKeys: credentials.apiKeys,
      basicAuth: credentials.basicPasswords,
      caCertPem: certificates ? certificates.caCertPem : pulumi.output(undefined),
      jwtHs256Secret: credentials.jwtHs256Secret,
      jwtSettings: credentials.jwtHs256Kid.apply((hs256CurrentKid) =>
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
      ),
      curlExample: pulumi.secret(
        pulumi.all([credentials.apiKeys, credentials.basicPasswords]).apply(([keys, passwords]) => {
          const auth =
            firstKey !== undefined
              ? `-H 'Authorization: Bearer ${keys[firstKey]}' `
              : firstUser !== undefined
                ? `-u '${firstUser}:${passwords[firstUser]}' `
                : "";
          return `curl ${cacert}${auth}${endpoint}/v1/models`;
        }),
      ),
      clientEnv: pulumi.secret(
        pulumi.all([credentials.apiKeys, certificates ? certificates.caCertPem : pulumi.output(undefined)]).apply(([keys, caPem]) =>
          clientEnvScript({
            endpoint,
            ...(firstKey !== undefined ? { apiKey: keys[firstKey] } : {}),
            ...(caPem !== undefined ? { caPem } : {}),
          }),
        ),
      ),
    };
  };
  return { certificates, credentials, ...(a.jwt ? { jwt: jwt as JwtSettings } : {}), outputs };
}

/** What clients and credentials look like: the same for the Docker and the Kubernetes gateway. */
export interface GatewayCommonArgs {
  /** DNS name clients use: endpoint host, certificate name, nginx `server_name`. Default `localhost`. */
  hostname?: string;
  /** More DNS names for the certificate. Default none. */
  dnsNames?: string[];
  /** IP addresses for the certificate. Default: `["127.0.0.1"]` on Docker, none on Kubernetes. */
  ipAddresses?: string[];
  /** The proxy's HTTP port. Default 8080. With TLS it only answers /healthz and redirects to HTTPS. */
  httpPort?: number;
  /** The proxy's HTTPS port. Default 8443; ignored when `tls.mode` is `none`. */
  httpsPort?: number;
  /** TLS in the proxy. Default: `{ mode: "selfSigned" }` on Docker, `{ mode: "none" }` on Kubernetes (TLS at the Ingress). */
  tls?: GatewayTlsArgs;
  /** Default none; a gateway without credentials refuses every model route. */
  apiKeys?: ApiKeyArgs[];
  /** Default none. */
  basicUsers?: BasicUserArgs[];
  /** Proxy settings (rate limit, timeouts, body size, CORS). Default: the gateway spec's defaults. */
  proxy?: Omit<ProxySettings, "serverName" | "jwt" | "externalAuth" | "network" | "apiKeys" | "basicUsers">;
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
   * `allow`, other addresses get 403. `127.0.0.1` is added to `allow` for the proxy's own
   * healthcheck (it runs inside the container or pod), and a `deny` entry covering it is refused.
   * Default: no restriction. `trustedProxies`: load balancers whose `clientAddressHeader`
   * (default `X-Forwarded-For`) names the client; default none.
   */
  network?: { allow?: string[]; deny?: string[]; trustedProxies?: string[]; clientAddressHeader?: string };
  /**
   * The proxy's settings, already derived and validated (`proxySettingsFor`, bundle/proxySettings.ts;
   * the stack program does it in config/) from these same args and the deployment's ports and
   * backend(s): the component then renders from them as they are, and ignores `proxy`,
   * `externalAuth`, `network` and JWT's settings for the proxy. Default: derived and validated
   * here, from the args, with every problem refused before any resource is declared.
   */
  settings?: ProxyGatewaySettings;
}

/** The outputs every gateway component has, set once from `gatewayAccess(...).outputs`. */
export abstract class GatewayComponent extends pulumi.ComponentResource {
  /** Base URL of the gateway, as clients reach it. */
  public readonly endpoint!: pulumi.Output<string>;
  /** Unauthenticated health check URL. */
  public readonly healthUrl!: pulumi.Output<string>;
  /** Base URL for OpenAI-compatible clients (`<endpoint>/v1`). */
  public readonly openaiBaseUrl!: pulumi.Output<string>;
  /** name -> API key; secret. */
  public readonly apiKeys!: GatewayAccessOutputs["apiKeys"];
  /** user -> password; secret. */
  public readonly basicAuth!: GatewayAccessOutputs["basicAuth"];
  /** What clients trust (the private CA, or the provided chain); undefined without TLS. */
  public readonly caCertPem!: GatewayAccessOutputs["caCertPem"];
  /** A ready-to-paste curl command, with a credential in it; secret. */
  public readonly curlExample!: GatewayAccessOutputs["curlExample"];
  /**
   * Shell lines (bundle/clientEnv.ts) that configure Ollama and OpenAI clients, Node and Python,
   * with the first API key: they write the CA to ./ca.pem and export OLLAMA_HOST, OLLAMA_API_KEY,
   * OPENAI_BASE_URL, OPENAI_API_KEY, NODE_EXTRA_CA_CERTS and SSL_CERT_FILE; secret. Without API
   * keys, no key variables.
   */
  public readonly clientEnv!: GatewayAccessOutputs["clientEnv"];
  /** The HS256 secret token issuers sign with; secret; undefined unless `jwt.algorithms` lists `HS256`. */
  public readonly jwtHs256Secret!: GatewayAccessOutputs["jwtHs256Secret"];
  /** Issuer, audience, algorithms and claims token issuers must use; undefined without `jwt`. Not secret. */
  public readonly jwtSettings!: GatewayAccessOutputs["jwtSettings"];

  /** Sets every output for a gateway reached at `endpoint` and registers them. */
  protected exportOutputs(endpoint: string, access: GatewayAccess): void {
    const outputs = {
      endpoint: pulumi.output(endpoint),
      healthUrl: pulumi.output(`${endpoint}/healthz`),
      openaiBaseUrl: pulumi.output(`${endpoint}/v1`),
      ...access.outputs(endpoint),
    };
    Object.assign(this, outputs);
    this.registerOutputs(outputs);
  }
}

/**
 * The proxy settings a gateway's args choose (`proxySettingsFor` adds the deployment's): each
 * credential's settings (name, scope, governance: `models`, `maxConcurrent`...), never its secret.
 */
export function callerProxySettings(
  a: Pick<GatewayCommonArgs, "proxy" | "externalAuth" | "network"> & { hostname: string; apiKeys: readonly ApiKeyArgs[]; basicUsers: readonly BasicUserArgs[] },
  jwt: JwtSettings | undefined,
): ProxySettings {
  const credential = (e: ApiKeyArgs | BasicUserArgs) => ({ name: e.name, scope: e.scope, ...governanceOf(e) });
  return {
    ...a.proxy,
    serverName: a.hostname,
    ...(jwt ? { jwt } : {}),
    ...(a.externalAuth ? { externalAuth: a.externalAuth } : {}),
    network: { allow: [], deny: [], trustedProxies: [], ...a.network },
    apiKeys: a.apiKeys.map(credential),
    basicUsers: a.basicUsers.map(credential),
  };
}
