/**
 * The Docker target's Ollama backends (docs/backends.md): local containers one per GPU group
 * (`ollamaGpuDevices`), Ollama on other Docker hosts over SSH (`ollamaRemoteHosts`), existing
 * servers by URL (`ollamaUrls`), and whether this host runs Ollama at all (`ollamaLocal`).
 * Every problem goes to `errors`, naming the key, the bad value and the fix; a backend's name and
 * URL are checked with the proxy's settings (`backendProblem` words their problems).
 */
import { isIP } from "node:net";
import { GPU_DEVICE_ID, gpuBackendName, LOCAL_BACKEND_NAME } from "../bundle/backends";
import type { z } from "zod";
import { CONFIG_DEFAULTS } from "./keys";
import { stringFormat } from "./formats";
import { key, parseFormat, show, withPeriod } from "./messages";
import type { OllamaBackendsSettings } from "./settings";

type Get = <K extends keyof typeof CONFIG_DEFAULTS>(name: K) => (typeof CONFIG_DEFAULTS)[K];

const REMOTE_EXAMPLE = "`gpubox1=ssh://deploy@gpubox1.example.com,10.0.0.11`";

/** Where a backend of the proxy's pool comes from: the key (or words) naming it and the entry as written. */
export interface BackendSource {
  label: string;
  item?: string;
}

/**
 * A problem the gateway settings' schema (bundle/spec.ts, which checks every backend's name and
 * URL, names once, one scheme) finds in `upstreams[i]`, worded by the config entry it came from.
 */
export function backendProblem(issue: z.core.$ZodIssue, sources: readonly BackendSource[], upstreams: readonly { name: string; url: string }[]): string {
  if (issue.path.length === 1)
    return issue.code === "too_small"
      ? `${key("ollamaLocal")} is false and neither \`ollamaRemoteHosts\` nor \`ollamaUrls\` lists a backend; set \`ollamaLocal\` to true or list at least one backend.`
      : `\`ollamaGpuDevices\`, \`ollamaRemoteHosts\` and \`ollamaUrls\` give ${upstreams.length} backends; use at most ${"maximum" in issue ? String(issue.maximum) : "fewer"} in all.`;
  const index = Number(issue.path[1]);
  const { label, item } = sources[index] ?? { label: `upstreams[${index}]` };
  const field = String(issue.path[2]);
  if (issue.code === "custom" && field === "name" && issue.message.startsWith("is already used")) {
    const other = sources[upstreams.findIndex((u) => u.name === issue.input)]?.label ?? "another backend";
    return `${key(label)} names its backend ${show(issue.input)}, as ${other.startsWith("the") ? other : `\`${other}\``} does; give every backend its own name.`;
  }
  if (issue.code === "custom" && field === "url" && issue.message.startsWith("uses ")) {
    const scheme = (url: unknown) => String(url).slice(0, String(url).indexOf(":"));
    return `${key(label)} is ${show(item)} and uses ${scheme(issue.input)} but the other backends use ${scheme(upstreams[0]?.url)}; use one scheme for every backend (put a TLS-ending proxy next to that server, or reach it over plain HTTP on a private network).`;
  }
  return `${key(label)} is ${show(item)}: its ${field} ${show(issue.input)} is refused; ${withPeriod(issue.message)}`;
}

/** `name=value` -> [name, value], or a problem naming the expected shape. */
const namedEntry = (shape: string) =>
  stringFormat((item): [string, string] | undefined => {
    const eq = item.indexOf("=");
    return eq > 0 ? [item.slice(0, eq).trim(), item.slice(eq + 1).trim()] : undefined;
  }, `use ${shape}`);
const splitNamed = (label: string, item: string, shape: string, errors: string[]) => parseFormat(namedEntry(shape), label, item, errors);

function parseGpuDevices(list: string[], errors: string[]): string[][] {
  const owner = new Map<string, number>();
  return list.map((item, i) => {
    const devices = item.split(",").map((d) => d.trim());
    for (const device of devices) {
      if (!GPU_DEVICE_ID.test(device)) {
        errors.push(`${key(`ollamaGpuDevices[${i}]`)} is ${show(item)}; use GPU indexes or UUIDs as \`nvidia-smi -L\` lists them, one group per container, such as "0" or "0,1" or "GPU-3a9c...".`);
        continue;
      }
      const other = owner.get(device);
      if (other !== undefined)
        errors.push(`${key(`ollamaGpuDevices[${i}]`)} is ${show(item)} and shares GPU ${show(device)} with \`ollamaGpuDevices[${other}]\` (${show(list[other])}); give each GPU to one container.`);
      else owner.set(device, i);
    }
    return devices;
  });
}

type Sourced<T> = { entry: T; source: BackendSource };

/** Each host whose private address is sound (the proxy reaches it there; the spec checks that URL). */
function parseRemoteHosts(list: string[], errors: string[]): Sourced<OllamaBackendsSettings["remoteHosts"][number]>[] {
  return list.flatMap((item, i) => {
    const label = `ollamaRemoteHosts[${i}]`;
    const named = splitNamed(label, item, `\`<name>=ssh://<user>@<host>[:<port>],<private IP>\`, such as ${REMOTE_EXAMPLE}`, errors);
    if (!named) return [];
    const [name, rest] = named;
    const comma = rest.lastIndexOf(",");
    if (comma < 0) {
      errors.push(`${key(label)} is ${show(item)} and has no private address; append \`,<IP>\`, the address of that host on the network the proxy's host reaches it by (Ollama is published there only), such as ${REMOTE_EXAMPLE}.`);
      return [];
    }
    const sshUrl = rest.slice(0, comma).trim();
    const privateAddress = rest.slice(comma + 1).trim();
    const url = URL.canParse(sshUrl) ? new URL(sshUrl) : undefined;
    if (!url || url.protocol !== "ssh:" || url.hostname === "" || url.password !== "" || !["", "/"].includes(url.pathname) || url.search !== "" || url.hash !== "")
      errors.push(`${key(label)} has SSH URL ${show(sshUrl)}; use \`ssh://<user>@<host>[:<port>]\` (keys from your SSH agent; no password, path or query), such as ${REMOTE_EXAMPLE}.`);
    if (isIP(privateAddress) === 0 || /^(0\.0\.0\.0|::|127\.|::1$)/.test(privateAddress)) {
      errors.push(`${key(label)} has private address ${show(privateAddress)}; use that host's own IP address on your private network, such as 10.0.0.11 (not 0.0.0.0, not loopback: Ollama is published on it alone).`);
      return [];
    }
    return [{ entry: { name, sshUrl, privateAddress }, source: { label, item } }];
  });
}

function parseUrls(list: string[], errors: string[]): Sourced<OllamaBackendsSettings["urls"][number]>[] {
  return list.flatMap((item, i) => {
    const label = `ollamaUrls[${i}]`;
    const named = splitNamed(label, item, "`<name>=<URL>`, such as `lab=http://10.0.0.5:11434`", errors);
    if (!named) return [];
    // The proxy runs in a container: its loopback is its own, never the host's Ollama.
    const host = URL.canParse(named[1]) ? new URL(named[1]).hostname : "";
    if (host === "localhost" || /^127\./.test(host) || host === "[::1]")
      errors.push(`${key(label)} is ${show(item)}, a loopback address, which inside the proxy's container is the proxy itself; use the server's address on your network (for Ollama on this host, leave \`ollamaLocal\` true instead).`);
    return [{ entry: { name: named[0], url: named[1] }, source: { label, item } }];
  });
}

/**
 * The backends, checked together. Their names and URLs, and that there is one, are the proxy's
 * `upstreams`, checked by its settings' schema; `sources` says where each came from.
 */
export function backendsSettings(get: Get, errors: string[]): { backends: OllamaBackendsSettings; sources: BackendSource[] } {
  // On Kubernetes these keys are refused as a whole (DOCKER_ONLY_KEYS); nothing to check entry by entry.
  if (get("target") !== "docker") return { backends: { local: true, gpuDevices: [], remoteHosts: [], urls: [], maxConcurrent: {} }, sources: [] };
  const local = get("ollamaLocal");
  const gpuDevices = parseGpuDevices(get("ollamaGpuDevices"), errors);
  const remote = parseRemoteHosts(get("ollamaRemoteHosts"), errors);
  const urlEntries = parseUrls(get("ollamaUrls"), errors);
  const remoteHosts = remote.map((r) => r.entry);
  const urls = urlEntries.map((u) => u.entry);
  if (!local && gpuDevices.length > 0)
    errors.push(`${key("ollamaGpuDevices")} is ${show(get("ollamaGpuDevices"))} but \`ollamaLocal\` is false; set \`ollamaLocal\` to true or \`ollamaGpuDevices\` to [].`);
  if (get("gpu") && gpuDevices.length > 0 && remoteHosts.length === 0)
    errors.push(`${key("gpu")} is true but \`ollamaGpuDevices\` gives the local containers their GPUs and there is no remote host for \`gpu\` to apply to; set \`gpu\` to false.`);
  if (get("internalNetwork") && remoteHosts.length > 0)
    errors.push(`${key("ollamaRemoteHosts")} is set but \`internalNetwork\` is true, and Docker publishes no port from an internal network; set \`internalNetwork\` to false or \`ollamaRemoteHosts\` to [].`);

  // In dockerBackendList's order: local (one, or one per GPU group), remote hosts, then URLs.
  const sources: BackendSource[] = [
    ...(local ? (gpuDevices.length > 0 ? gpuDevices.map((_, i) => ({ label: `ollamaGpuDevices[${i}]` })) : [{ label: "the local Ollama (`ollamaLocal`)" }]) : []),
    ...remote.map((r) => r.source),
    ...urlEntries.map((u) => u.source),
  ];
  const names = [...(local ? (gpuDevices.length > 0 ? gpuDevices.map((_, i) => gpuBackendName(i)) : [LOCAL_BACKEND_NAME]) : []), ...remoteHosts.map((h) => h.name), ...urls.map((u) => u.name)];
  const backends = { local, gpuDevices, remoteHosts, urls, maxConcurrent: parseMaxConcurrent(get("ollamaMaxConcurrent"), new Set(names), errors) };
  return { backends, sources };
}

/** `name=N` per backend: a known backend, once, N a whole number from 1. */
function parseMaxConcurrent(list: string[], backends: Set<string>, errors: string[]): Record<string, number> {
  const limits: Record<string, number> = {};
  list.forEach((item, i) => {
    const label = `ollamaMaxConcurrent[${i}]`;
    const named = splitNamed(label, item, "`<backend name>=<requests>`, such as `gpu0=4`", errors);
    if (!named) return;
    const [name, value] = named;
    if (!backends.has(name))
      errors.push(`${key(label)} is ${show(item)} but no backend is named ${show(name)}; use one of ${[...backends].map((n) => `\`${n}\``).join(", ")}.`);
    else if (limits[name] !== undefined) errors.push(`${key(label)} is ${show(item)} and sets ${show(name)} again; give each backend one limit.`);
    if (!/^[0-9]+$/.test(value) || Number(value) < 1)
      errors.push(`${key(label)} is ${show(item)}; use a whole number of requests, 1 or more, such as \`${name}=4\`.`);
    else limits[name] = Number(value);
  });
  return limits;
}
