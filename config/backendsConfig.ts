/**
 * The Docker target's Ollama backends (docs/backends.md): local containers one per GPU group
 * (`ollamaGpuDevices`), Ollama on other Docker hosts over SSH (`ollamaRemoteHosts`), existing
 * servers by URL (`ollamaUrls`), and whether this host runs Ollama at all (`ollamaLocal`).
 * Every problem goes to `errors`, naming the key, the bad value and the fix.
 */
import { isIP } from "node:net";
import { GPU_DEVICE_ID, gpuBackendName, LOCAL_BACKEND_NAME, ollamaUrlAt } from "../bundle/backends";
import { gatewaySpecSchema } from "../bundle/spec";
import { CONFIG_DEFAULTS } from "./keys";
import { stringFormat } from "./formats";
import { key, parseFormat, show, withPeriod } from "./messages";
import type { OllamaBackendsSettings } from "./settings";

type Get = <K extends keyof typeof CONFIG_DEFAULTS>(name: K) => (typeof CONFIG_DEFAULTS)[K];

const REMOTE_EXAMPLE = "`gpubox1=ssh://deploy@gpubox1.example.com,10.0.0.11`";

/** The spec's own rules for a backend's name and URL, worded for `label`. */
function checkBackend(label: string, item: string, name: string, url: string, errors: string[]): void {
  const result = gatewaySpecSchema.safeParse({ upstreams: [{ name, url }] });
  if (!result.success)
    for (const issue of result.error.issues)
      errors.push(`${key(label)} is ${show(item)}: its ${String(issue.path[issue.path.length - 1])} ${show(issue.path.includes("name") ? name : url)} is refused; ${withPeriod(issue.message)}`);
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

function parseRemoteHosts(list: string[], errors: string[]): OllamaBackendsSettings["remoteHosts"] {
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
    if (isIP(privateAddress) === 0 || /^(0\.0\.0\.0|::|127\.|::1$)/.test(privateAddress))
      errors.push(`${key(label)} has private address ${show(privateAddress)}; use that host's own IP address on your private network, such as 10.0.0.11 (not 0.0.0.0, not loopback: Ollama is published on it alone).`);
    else checkBackend(label, item, name, ollamaUrlAt(privateAddress), errors);
    return [{ name, sshUrl, privateAddress }];
  });
}

function parseUrls(list: string[], errors: string[]): OllamaBackendsSettings["urls"] {
  return list.flatMap((item, i) => {
    const label = `ollamaUrls[${i}]`;
    const named = splitNamed(label, item, "`<name>=<URL>`, such as `lab=http://10.0.0.5:11434`", errors);
    if (!named) return [];
    checkBackend(label, item, named[0], named[1], errors);
    // The proxy runs in a container: its loopback is its own, never the host's Ollama.
    const host = URL.canParse(named[1]) ? new URL(named[1]).hostname : "";
    if (host === "localhost" || /^127\./.test(host) || host === "[::1]")
      errors.push(`${key(label)} is ${show(item)}, a loopback address, which inside the proxy's container is the proxy itself; use the server's address on your network (for Ollama on this host, leave \`ollamaLocal\` true instead).`);
    return [{ name: named[0], url: named[1] }];
  });
}

/** The backends, checked together: names unique across all forms, one URL scheme, something to serve. */
export function backendsSettings(get: Get, errors: string[]): OllamaBackendsSettings {
  // On Kubernetes these keys are refused as a whole (DOCKER_ONLY_KEYS); nothing to check entry by entry.
  if (get("target") !== "docker") return { local: true, gpuDevices: [], remoteHosts: [], urls: [], maxConcurrent: {} };
  const local = get("ollamaLocal");
  const gpuDevices = parseGpuDevices(get("ollamaGpuDevices"), errors);
  const remoteHosts = parseRemoteHosts(get("ollamaRemoteHosts"), errors);
  const urls = parseUrls(get("ollamaUrls"), errors);
  if (!local && gpuDevices.length > 0)
    errors.push(`${key("ollamaGpuDevices")} is ${show(get("ollamaGpuDevices"))} but \`ollamaLocal\` is false; set \`ollamaLocal\` to true or \`ollamaGpuDevices\` to [].`);
  if (!local && remoteHosts.length === 0 && urls.length === 0)
    errors.push(`${key("ollamaLocal")} is false and neither \`ollamaRemoteHosts\` nor \`ollamaUrls\` lists a backend; set \`ollamaLocal\` to true or list at least one backend.`);
  if (get("gpu") && gpuDevices.length > 0 && remoteHosts.length === 0)
    errors.push(`${key("gpu")} is true but \`ollamaGpuDevices\` gives the local containers their GPUs and there is no remote host for \`gpu\` to apply to; set \`gpu\` to false.`);
  if (get("internalNetwork") && remoteHosts.length > 0)
    errors.push(`${key("ollamaRemoteHosts")} is set but \`internalNetwork\` is true, and Docker publishes no port from an internal network; set \`internalNetwork\` to false or \`ollamaRemoteHosts\` to [].`);

  const named: [string, string][] = [
    ...(local ? (gpuDevices.length > 0 ? gpuDevices.map((_, i) => [gpuBackendName(i), `ollamaGpuDevices[${i}]`]) : [[LOCAL_BACKEND_NAME, "the local Ollama (`ollamaLocal`)"]]) : []),
    ...remoteHosts.map((h, i) => [h.name, `ollamaRemoteHosts[${i}]`]),
    ...urls.map((u, i) => [u.name, `ollamaUrls[${i}]`]),
  ] as [string, string][];
  const seen = new Map<string, string>();
  for (const [name, label] of named) {
    const other = seen.get(name);
    if (other !== undefined) errors.push(`${key(label)} names its backend ${show(name)}, as ${other.startsWith("the") ? other : `\`${other}\``} does; give every backend its own name.`);
    else seen.set(name, label);
  }
  // nginx proxies a pool with one scheme; the containers this stack creates speak http.
  const creates = local || remoteHosts.length > 0;
  urls.forEach((u, i) => {
    const first = creates ? "http:" : URL.canParse(urls[0].url) ? new URL(urls[0].url).protocol : "http:";
    if (URL.canParse(u.url) && new URL(u.url).protocol !== first)
      errors.push(`${key(`ollamaUrls[${i}]`)} is ${show(`${u.name}=${u.url}`)} and uses ${new URL(u.url).protocol.slice(0, -1)} but the other backends use ${first.slice(0, -1)}; use one scheme for every backend (put a TLS-ending proxy next to that server, or reach it over plain HTTP on a private network).`);
  });
  return { local, gpuDevices, remoteHosts, urls, maxConcurrent: parseMaxConcurrent(get("ollamaMaxConcurrent"), seen, errors) };
}

/** `name=N` per backend: a known backend, once, N a whole number from 1. */
function parseMaxConcurrent(list: string[], backends: Map<string, string>, errors: string[]): Record<string, number> {
  const limits: Record<string, number> = {};
  list.forEach((item, i) => {
    const label = `ollamaMaxConcurrent[${i}]`;
    const named = splitNamed(label, item, "`<backend name>=<requests>`, such as `gpu0=4`", errors);
    if (!named) return;
    const [name, value] = named;
    if (!backends.has(name))
      errors.push(`${key(label)} is ${show(item)} but no backend is named ${show(name)}; use one of ${[...backends.keys()].map((n) => `\`${n}\``).join(", ")}.`);
    else if (limits[name] !== undefined) errors.push(`${key(label)} is ${show(item)} and sets ${show(name)} again; give each backend one limit.`);
    if (!/^[0-9]+$/.test(value) || Number(value) < 1)
      errors.push(`${key(label)} is ${show(item)}; use a whole number of requests, 1 or more, such as \`${name}=4\`.`);
    else limits[name] = Number(value);
  });
  return limits;
}
