import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { renderConfigFiles, renderCredentialFiles } from "../bundle/render";
import net from "node:net";
import { cidrProblem, type GatewaySpec, type GatewaySpecInput, SpecError, validateSpec } from "../bundle/spec";
import type { SpecCredentials } from "./Credentials";
import { OLLAMA_ALIAS, OLLAMA_PORT } from "./OllamaServer";

/** Where the bundle lives in the proxy container: the nginx prefix (`-p`). */
export const PROXY_PREFIX = "/etc/ollama-gateway";
export const CREDENTIALS_DIR = `${PROXY_PREFIX}/credentials`;
/** Where the writer finds its uploads before it moves them into the volume. */
const STAGING_DIR = "/staging";

/** The spec's `jwt` section without HS256 secrets: those are credentials (`SpecCredentials.jwtHs256Secrets`). */
export type JwtSettings = Omit<NonNullable<GatewaySpecInput["jwt"]>, "hs256Secrets">;

/** Proxy settings the caller chooses; the component sets upstream, listen, logs and credentials. */
export type ProxySettings = Omit<GatewaySpecInput, "upstream" | "listen" | "tls" | "apiKeys" | "basicUsers" | "accessLog" | "errorLog" | "jwt"> & {
  /** JWT bearer tokens (issuer, audience, algorithms, public keys, claims). Default: off. */
  jwt?: JwtSettings;
};

/** Where the container's own healthcheck connects from. */
const HEALTHCHECK_SOURCE = "127.0.0.1";

/** Whether a `network.deny` entry refuses the container's own healthcheck (127.0.0.1). */
export function coversProxyLoopback(block: string): boolean {
  if (cidrProblem(block) !== undefined) return false;
  const [address, prefix] = block.split("/");
  if (!net.isIPv4(address)) return false;
  const bits = prefix === undefined ? 32 : Number(prefix);
  const toInt = (a: string) => a.split(".").reduce((acc, part) => acc * 256 + Number(part), 0);
  const size = 2 ** (32 - bits);
  return Math.floor(toInt(address) / size) === Math.floor(toInt(HEALTHCHECK_SOURCE) / size);
}

export interface AuthProxyArgs {
  /**
   * Rate limit, timeouts, body size, CORS, server name, `jwt`, `externalAuth`, `network`...
   * Default: the gateway spec's defaults. With `network.allow` set, `127.0.0.1` is added to it
   * (the container's healthcheck); a `network.deny` entry that covers it is refused.
   * `jwt.algorithms` with `HS256` needs `credentials.jwtHs256Secrets`.
   */
  settings?: ProxySettings;
  /** Key digests, bcrypt hashes and HS256 secrets (secret), as `Credentials.specCredentials` gives them. */
  credentials: pulumi.Input<SpecCredentials>;
  /** Certificate chain and key; without them the proxy serves plain HTTP only. */
  tls?: { certPem: pulumi.Input<string>; keyPem: pulumi.Input<string> };
  /** Network with published ports (the proxy's only way in). */
  edgeNetwork: pulumi.Input<string>;
  /** Private network on which Ollama answers as `ollama`. */
  privateNetwork: pulumi.Input<string>;
  /** Host address the ports are published on. Default `127.0.0.1`; `0.0.0.0` serves other hosts. */
  bindAddress?: string;
  /** HTTP port, on the host and in the container. Default 8080. */
  httpPort?: number;
  /** HTTPS port (with `tls` only). Default 8443; must differ from `httpPort`. */
  httpsPort?: number;
  /** Pinned OpenResty image; an Alpine flavour, whose libc verifies bcrypt. Default `openresty/openresty:1.27.1.2-alpine`. */
  image?: string;
  /** Resources the proxy must start after (Ollama). */
  dependsOn?: pulumi.Input<pulumi.Resource>[];
}

const DEFAULTS = { settings: {} as ProxySettings, bindAddress: "127.0.0.1", httpPort: 8080, httpsPort: 8443, image: "openresty/openresty:1.27.1.2-alpine" };

/** A syntactically valid stand-in: config files depend on whether TLS is on, never on its material. */
const TLS_PLACEHOLDER = { certPem: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----", keyPem: "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----" };
/** Likewise for HS256: config files name the algorithms, never a key. */
const HS256_PLACEHOLDER = { secret: "0".repeat(32) };

/** The spec the proxy container runs, without credentials. Exported so tests can render the same. */
export function proxySpecInput(settings: ProxySettings, ports: { http: number; https?: number }): GatewaySpecInput {
  const { jwt, network, ...rest } = settings;
  const allow = network?.allow ?? [];
  return {
    ...rest,
    ...(jwt ? { jwt: { ...jwt, hs256Secrets: jwt.algorithms.includes("HS256") ? [HS256_PLACEHOLDER] : [] } } : {}),
    // With an allow list, the container's own healthcheck (from 127.0.0.1) must still get through.
    network: {
      ...network,
      deny: network?.deny ?? [],
      allow: allow.length > 0 && !allow.includes(HEALTHCHECK_SOURCE) ? [...allow, HEALTHCHECK_SOURCE] : allow,
    },
    upstream: `http://${OLLAMA_ALIAS}:${OLLAMA_PORT}`,
    // Inside the container; the host side is the published port's bind address. Same port
    // numbers on both sides, so the HTTP -> HTTPS redirect names the port clients use.
    listen: { address: "0.0.0.0", http: ports.http, ...(ports.https !== undefined ? { https: ports.https } : {}) },
    ...(ports.https !== undefined ? { tls: TLS_PLACEHOLDER } : {}),
    apiKeys: [],
    basicUsers: [],
    accessLog: "/dev/stdout",
    errorLog: "/dev/stderr",
  };
}

/** Copies each staged file to a temporary name in the volume, then renames it into place. */
const WRITER_SCRIPT = [
  "set -eu",
  `cd ${STAGING_DIR}/credentials`,
  "for f in *; do",
  `  cp "$f" "${CREDENTIALS_DIR}/.$f.tmp"`,
  // Workers run as nobody: a 0600 file would answer 500.
  `  chmod 0644 "${CREDENTIALS_DIR}/.$f.tmp"`,
  `  mv -f "${CREDENTIALS_DIR}/.$f.tmp" "${CREDENTIALS_DIR}/$f"`,
  "done",
  `ls -l ${CREDENTIALS_DIR}`,
].join("\n");

/**
 * OpenResty in front of Ollama: authentication, route policy, rate limits, TLS.
 *
 * Config files are uploaded into the proxy container (they hold no secret). Credential files
 * live on a volume written by a short-lived writer container, so a new key or certificate
 * replaces only the writer: the proxy keeps its connections and reads the new files by itself.
 */
export class AuthProxy extends pulumi.ComponentResource {
  public readonly container: docker.Container;
  /** The credential writer; replaced whenever a credential changes. */
  public readonly writer: docker.Container;

  constructor(name: string, args: AuthProxyArgs, opts?: pulumi.ComponentResourceOptions) {
    super("ollama-gateway:index:AuthProxy", name, {}, opts);
    const a = { ...DEFAULTS, ...args };
    const httpsPort = args.tls ? a.httpsPort : undefined;

    const loopbackDenied = (a.settings.network?.deny ?? []).filter(coversProxyLoopback);
    if (loopbackDenied.length > 0)
      throw new pulumi.ResourceError(
        `\`network.deny\` has ${loopbackDenied.map((b) => `\`${b}\``).join(", ")}, which covers 127.0.0.1, where the container's healthcheck comes from; remove it.`,
        this,
      );
    let spec: GatewaySpec;
    try {
      spec = validateSpec(proxySpecInput(a.settings, { http: a.httpPort, https: httpsPort }));
    } catch (error) {
      if (error instanceof SpecError) throw new pulumi.ResourceError(error.message, this);
      throw error;
    }
    const configFiles = renderConfigFiles(spec, "openresty");

    // Secret end to end: digests, hashes and the TLS key only ever travel as secret Outputs.
    const tlsInput = args.tls ? pulumi.all([args.tls.certPem, args.tls.keyPem]) : pulumi.output(undefined);
    const credentialFiles = pulumi.secret(
      pulumi.all([args.credentials, tlsInput]).apply(([credentials, tls]) => {
        const hs256Secrets = credentials.jwtHs256Secrets ?? [];
        // The spec was validated with a stand-in secret; hold the real ones to the same rules.
        if (spec.jwt && spec.jwt.algorithms.includes("HS256") !== hs256Secrets.length > 0)
          throw new pulumi.ResourceError("`jwt.algorithms` and `credentials.jwtHs256Secrets` disagree; give HS256 secrets exactly when `HS256` is listed.", this);
        if (hs256Secrets.some((s) => Buffer.byteLength(s.secret, "utf8") < 32))
          throw new pulumi.ResourceError("`credentials.jwtHs256Secrets` has a secret shorter than 32 bytes (not shown); use at least 32.", this);
        return renderCredentialFiles({
          ...spec,
          apiKeys: credentials.apiKeys,
          basicUsers: credentials.basicUsers,
          ...(spec.jwt ? { jwt: { ...spec.jwt, hs256Secrets } } : {}),
          tls: tls ? { certPem: tls[0], keyPem: tls[1] } : undefined,
        });
      }),
    );

    const image = new docker.RemoteImage(`${name}-image`, { name: a.image, keepLocally: true }, { parent: this });
    const credentialsVolume = new docker.Volume(`${name}-credentials`, {}, { parent: this });

    this.writer = new docker.Container(
      `${name}-credentials-writer`,
      {
        image: image.imageId,
        entrypoints: ["/bin/sh", "-c"],
        command: [WRITER_SCRIPT],
        volumes: [{ volumeName: credentialsVolume.name, containerPath: CREDENTIALS_DIR }],
        uploads: credentialFiles.apply((files) =>
          Object.entries(files).map(([file, content]) => ({ file: `${STAGING_DIR}/${file}`, content: pulumi.secret(content) })),
        ),
        networkMode: "none",
        mustRun: false,
        restart: "no",
        // Wait for the copy to finish, and fail the deployment if it fails.
        attach: true,
      },
      { parent: this },
    );

    const ports = [
      { internal: a.httpPort, external: a.httpPort, ip: a.bindAddress },
      ...(httpsPort !== undefined ? [{ internal: httpsPort, external: httpsPort, ip: a.bindAddress }] : []),
    ];
    this.container = new docker.Container(
      `${name}-server`,
      {
        image: image.imageId,
        command: ["openresty", "-p", PROXY_PREFIX, "-c", "conf/nginx.conf", "-g", "daemon off;"],
        uploads: Object.entries(configFiles).map(([file, content]) => ({ file: `${PROXY_PREFIX}/${file}`, content })),
        volumes: [{ volumeName: credentialsVolume.name, containerPath: CREDENTIALS_DIR, readOnly: true }],
        // The edge network carries the published ports; the private one reaches Ollama.
        networksAdvanced: [{ name: args.edgeNetwork }, { name: args.privateNetwork }],
        ports,
        restart: "unless-stopped",
        // Busybox wget: the image has no curl. /healthz answers on HTTP even with TLS on.
        healthcheck: {
          tests: ["CMD", "wget", "-q", "-O", "/dev/null", `http://127.0.0.1:${a.httpPort}/healthz`],
          interval: "10s",
          timeout: "5s",
          retries: 3,
          startPeriod: "5s",
        },
        wait: true,
        waitTimeout: 60,
      },
      // Fixed host ports: a replacement must free them first (a short gap, only on config changes).
      { parent: this, dependsOn: [this.writer, ...(args.dependsOn ?? [])], deleteBeforeReplace: true },
    );

    this.registerOutputs({});
  }
}
