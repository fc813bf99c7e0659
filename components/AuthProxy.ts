import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { DEPLOYMENT_DEFAULTS } from "../bundle/defaults";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import path from "node:path";
import { type ProxyDeployment, type ProxyGatewaySettings, type ProxySettings, proxySettingsFor } from "../bundle/proxySettings";
import { DEBIAN_USAGE_MODULE, renderConfigFiles, renderCredentials, workerFileLimit } from "../bundle/render";
import { type GatewaySettings, type GatewaySettingsInput, SpecError, validateCredentials } from "../bundle/spec";
import type { SpecCredentials } from "./Credentials";

/** Where the bundle lives in the proxy container: the nginx prefix (`-p`), as image/proxy/Dockerfile sets it. */
export const PROXY_PREFIX = "/gateway";
export const CREDENTIALS_DIR = `${PROXY_PREFIX}/credentials`;
/** The image's unprivileged user (image/proxy/Dockerfile): nginx's master and workers, and the writer. */
export const PROXY_USER = "10001:10001";
const TMPFS_OWNER = `uid=${PROXY_USER.split(":")[0]},gid=${PROXY_USER.split(":")[1]},mode=0700`;
/**
 * The proxy image's build context in this package; its Dockerfile installs image/proxy/packages.txt.
 * Relative to the working directory (the project, under `pulumi up`), so the state does not
 * depend on where the checkout lives.
 */
export const PROXY_IMAGE_CONTEXT = path.relative(process.cwd(), path.join(__dirname, "..", "image", "proxy")) || ".";
/** The proxy container's label with the digest of its config files: a new config replaces the proxy. */
export const CONFIG_DIGEST_LABEL = "ollama-gateway.config-sha256";

/** A digest of the config files, in a stable order. */
export function configDigest(files: Record<string, string>): string {
  const hash = createHash("sha256");
  for (const file of Object.keys(files).sort()) hash.update(`${file}\0${files[file]}\0`);
  return hash.digest("hex");
}

/** The tag the program (and `npm run image:proxy`) gives the image it builds. */
export const PROXY_IMAGE_TAG = "ollama-gateway-proxy:local";
/** Where the writer finds its uploads before it moves them into the volume. */
const STAGING_DIR = "/staging";

/** The spec's `jwt` section, as settings: without HS256 secrets (those are credentials, `SpecCredentials.hs256Secrets`). */
export type JwtSettings = NonNullable<GatewaySettingsInput["jwt"]>;

export interface AuthProxyArgs {
  /**
   * What the proxy runs, derived and validated by `proxySettingsFor` (bundle/proxySettings.ts):
   * its listen ports (published on the host with the same numbers), upstream(s), metrics port,
   * whether TLS is on. Rendered as it is, not validated again.
   */
  settings: ProxyGatewaySettings;
  /** Key digests, bcrypt hashes and HS256 secrets (secret) of `settings`' credentials, as `Credentials.specCredentials` gives them. */
  credentials: pulumi.Input<SpecCredentials>;
  /** Certificate chain and key; without them the proxy serves plain HTTP only. */
  tls?: { certPem: pulumi.Input<string>; keyPem: pulumi.Input<string> };
  /** Network with published ports (the proxy's only way in). */
  edgeNetwork: pulumi.Input<string>;
  /** Private network on which Ollama answers as `ollama`. */
  privateNetwork: pulumi.Input<string>;
  /** Host address the ports are published on. Default `127.0.0.1`; `0.0.0.0` serves other hosts. */
  bindAddress?: string;
  /**
   * A pinned image built from image/proxy/Dockerfile and pushed to a registry you use (Debian's
   * nginx and Lua module, nginx at /usr/sbin/nginx, user 10001). Default: build that Dockerfile
   * on the target Docker host (`imageBuild`) and tag it `ollama-gateway-proxy:local`.
   */
  image?: string;
  /** Where to build the proxy image when `image` is not given. Default: this package's `image/proxy`. */
  imageBuild?: { context: string; dockerfile?: string };
  /** Resources the proxy must start after (Ollama). */
  dependsOn?: pulumi.Input<pulumi.Resource>[];
}

const DEFAULTS = { bindAddress: DEPLOYMENT_DEFAULTS.bindAddress as string, imageBuild: { context: PROXY_IMAGE_CONTEXT } as { context: string; dockerfile?: string } };

/**
 * `proxySettingsFor` for a component that derives the settings from its own args (programs that
 * use it directly): a problem is refused on `parent`, every one at once.
 */
export function proxySettingsOn(parent: pulumi.Resource, settings: ProxySettings, deployment: ProxyDeployment): ProxyGatewaySettings {
  try {
    return proxySettingsFor(settings, deployment);
  } catch (error) {
    if (error instanceof SpecError) throw new pulumi.ResourceError(error.message, parent);
    throw error;
  }
}

/**
 * The credential files for `settings` (bundle path -> content), secret end to end: digests,
 * hashes and the TLS key only ever travel as secret Outputs, and are checked against the settings
 * (bundle/spec.ts `validateCredentials`) there, where their values are known.
 */
export function proxyCredentialFiles(
  parent: pulumi.Resource,
  settings: GatewaySettings,
  credentials: pulumi.Input<SpecCredentials>,
  tls: AuthProxyArgs["tls"],
): pulumi.Output<Record<string, string>> {
  const tlsInput = tls ? pulumi.all([tls.certPem, tls.keyPem]) : pulumi.output(undefined);
  return pulumi.secret(
    pulumi.all([credentials, tlsInput]).apply(([given, pems]) => {
      try {
        const checked = validateCredentials(settings, { ...given, ...(pems ? { tls: { certPem: pems[0], keyPem: pems[1] } } : {}) });
        return renderCredentials(settings, checked);
      } catch (error) {
        if (error instanceof SpecError) throw new pulumi.ResourceError(error.message, parent);
        throw error;
      }
    }),
  );
}

/**
 * A one-shot writer's script: copies every file staged under `staging` into `target` (a volume)
 * under a temporary name and renames it into place, so a running proxy never reads a half-written
 * file, then removes files of `target`'s `subdirs` that the new set no longer has.
 */
export function syncScript(staging: string, target: string, options: { mode: string; subdirs: string[]; mkdirs?: string[] }): string {
  return [
    "set -eu",
    `cd ${staging}`,
    "find . -type f | while read -r f; do",
    `  mkdir -p "${target}/$(dirname "$f")"`,
    `  tmp="${target}/$(dirname "$f")/.$(basename "$f").tmp"`,
    `  cp "$f" "$tmp"`,
    `  chmod ${options.mode} "$tmp"`,
    `  mv -f "$tmp" "${target}/$f"`,
    "done",
    `cd ${target}`,
    `find ${options.subdirs.join(" ")} -type f 2>/dev/null | while read -r f; do`,
    `  [ -e "${staging}/$f" ] || rm -f "$f"`,
    "done",
    ...(options.mkdirs?.length ? [`mkdir -p ${options.mkdirs.join(" ")}`] : []),
    `ls -lnR ${target}`,
  ].join("\n");
}

/**
 * nginx with Lua in front of Ollama: authentication, route policy, rate limits, TLS.
 *
 * The image is image/proxy/Dockerfile (Debian's nginx and Lua module, the build the tests run),
 * built on the target Docker host. The proxy runs as an unprivileged user on a read-only root
 * filesystem, so nothing can be uploaded into it (the provider uploads to `/`, which Docker
 * refuses there): one-shot writers put the config files and the credential files on two volumes
 * it mounts read-only. A new key or certificate replaces only the credentials writer: the proxy
 * keeps its connections and reads the new files. A config change also replaces the proxy (its
 * label carries the config's digest), since nginx reads its config only at start.
 *
 * Used directly, its settings come from `proxySettingsFor` (which refuses what the proxy cannot
 * run, every problem at once): `settings: proxySettingsFor({ serverName: "gw.example.com",
 * apiKeys: [{ name: "app", scope: "inference" }] }, { ports: { http: 8080 }, backend: { upstream:
 * "http://ollama:11434" } })`, with the keys' digests as `credentials`.
 */
export class AuthProxy extends pulumi.ComponentResource {
  public readonly container: docker.Container;
  /** The credential writer; replaced whenever a credential changes. */
  public readonly writer: docker.Container;
  /** The config writer; replaced, with the proxy, whenever a config file changes. */
  public readonly configWriter: docker.Container;

  constructor(name: string, args: AuthProxyArgs, opts?: pulumi.ComponentResourceOptions) {
    super("ollama-gateway:index:AuthProxy", name, {}, opts);
    const a = { ...DEFAULTS, ...args };
    const { settings } = args;
    const httpPort = settings.listen.http;
    const httpsPort = settings.listen.https;
    const metricsPort = settings.metrics?.listen.port;
    const configFiles = renderConfigFiles(settings, "debian", DEBIAN_USAGE_MODULE);
    const dockerfile = path.join(a.imageBuild.context, a.imageBuild.dockerfile ?? "Dockerfile");
    if (args.image === undefined && !existsSync(dockerfile))
      throw new pulumi.ResourceError(
        `\`imageBuild\`: no Dockerfile at ${dockerfile}; point \`imageBuild.context\` at a copy of this package's image/proxy, or set \`image\` to an image built from it.`,
        this,
      );

    const credentialFiles = proxyCredentialFiles(this, settings, args.credentials, args.tls);

    // The image ID (repoDigest of a local build) changes with the image's content, so a rebuilt
    // image replaces the containers; a pinned image is pulled once and kept.
    const imageRef =
      args.image !== undefined
        ? new docker.RemoteImage(`${name}-image`, { name: args.image, keepLocally: true }, { parent: this }).imageId
        : new docker.Image(
            `${name}-image`,
            {
              imageName: PROXY_IMAGE_TAG,
              build: { context: a.imageBuild.context, dockerfile },
              skipPush: true,
            },
            { parent: this },
          ).repoDigest;
    const writerDefaults = { image: imageRef, entrypoints: ["/bin/sh", "-c"], networkMode: "none", mustRun: false, restart: "no", attach: true };
    // Root-owned and world-readable: config holds no secret, and the workers' user cannot change it.
    const configVolume = new docker.Volume(`${name}-config`, {}, { parent: this });
    this.configWriter = new docker.Container(
      `${name}-config-writer`,
      {
        ...writerDefaults,
        user: "0:0",
        command: [syncScript(STAGING_DIR, PROXY_PREFIX, { mode: "0644", subdirs: ["conf", "lua"], mkdirs: ["credentials", "tmp", "logs"] })],
        volumes: [{ volumeName: configVolume.name, containerPath: PROXY_PREFIX }],
        uploads: Object.entries(configFiles).map(([file, content]) => ({ file: `${STAGING_DIR}/${file}`, content })),
      },
      { parent: this },
    );

    // The proxy's user writes them, 0600: nothing else in the container (or on the host) reads a key.
    const credentialsVolume = new docker.Volume(`${name}-credentials`, {}, { parent: this });
    this.writer = new docker.Container(
      `${name}-credentials-writer`,
      {
        ...writerDefaults,
        user: PROXY_USER,
        command: [syncScript(`${STAGING_DIR}/credentials`, CREDENTIALS_DIR, { mode: "0600", subdirs: ["."] })],
        volumes: [{ volumeName: credentialsVolume.name, containerPath: CREDENTIALS_DIR }],
        uploads: credentialFiles.apply((files) =>
          Object.entries(files).map(([file, content]) => ({ file: `${STAGING_DIR}/${file}`, content: pulumi.secret(content) })),
        ),
      },
      { parent: this },
    );

    const ports = [
      { internal: httpPort, external: httpPort, ip: a.bindAddress },
      ...(httpsPort !== undefined ? [{ internal: httpsPort, external: httpsPort, ip: a.bindAddress }] : []),
      // Metrics never leave the host: Prometheus scrapes 127.0.0.1 (or tunnels to it).
      ...(metricsPort !== undefined ? [{ internal: metricsPort, external: metricsPort, ip: "127.0.0.1" }] : []),
    ];
    this.container = new docker.Container(
      `${name}-server`,
      {
        image: imageRef,
        user: PROXY_USER,
        command: ["nginx", "-p", PROXY_PREFIX, "-c", "conf/nginx.conf", "-e", "/dev/stderr", "-g", "daemon off;"],
        readOnly: true,
        volumes: [
          { volumeName: configVolume.name, containerPath: PROXY_PREFIX, readOnly: true },
          { volumeName: credentialsVolume.name, containerPath: CREDENTIALS_DIR, readOnly: true },
        ],
        labels: [{ label: CONFIG_DIGEST_LABEL, value: configDigest(configFiles) }],
        // Owned by nginx's user: a tmpfs on a directory of a volume ignores `mode` (runc keeps the
        // directory's own), so uid and gid say who may write.
        tmpfs: {
          [`${PROXY_PREFIX}/tmp`]: `rw,nosuid,nodev,noexec,${TMPFS_OWNER}`,
          [`${PROXY_PREFIX}/logs`]: `rw,nosuid,nodev,noexec,size=16m,${TMPFS_OWNER}`,
        },
        // Exactly nginx's worker_rlimit_nofile: a lower hard limit makes nginx keep the inherited one.
        ulimits: [{ name: "nofile", soft: workerFileLimit(settings), hard: workerFileLimit(settings) }],
        capabilities: { drops: ["ALL"] },
        securityOpts: ["no-new-privileges:true"],
        // The edge network carries the published ports; the private one reaches Ollama.
        networksAdvanced: [{ name: args.edgeNetwork }, { name: args.privateNetwork }],
        ports,
        restart: "unless-stopped",
        // /healthz answers on HTTP even with TLS on.
        healthcheck: {
          tests: ["CMD", "curl", "-fsS", "-o", "/dev/null", `http://127.0.0.1:${httpPort}/healthz`],
          interval: "10s",
          timeout: "5s",
          retries: 3,
          startPeriod: "5s",
        },
        wait: true,
        waitTimeout: 60,
      },
      // Fixed host ports: a replacement must free them first (a short gap, only on config changes).
      { parent: this, dependsOn: [this.configWriter, this.writer, ...(args.dependsOn ?? [])], deleteBeforeReplace: true },
    );

    this.registerOutputs({});
  }
}
