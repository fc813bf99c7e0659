/**
 * Address facts shared by the gateway spec, the stack config checks and the proxy component:
 * CIDR blocks (validated with node:net, matched with its BlockList) and the proxy's own source.
 */
import net from "node:net";
import { z } from "zod";

/** Where the proxy container's healthcheck comes from: curl inside the container, to loopback. */
export const PROXY_HEALTHCHECK_SOURCE = "127.0.0.1";

type Family = "ipv4" | "ipv6";
interface Block {
  address: string;
  family: Family;
  /** Prefix length; a single address is its whole width. */
  prefix: number;
}

/** `10.0.0.0/8`, `2001:db8::/32` or a single address -> the block, or what is wrong with it. */
function parseBlock(value: string): Block | string {
  const [address, prefix, extra] = value.split("/");
  // net.isIP accepts an IPv6 zone (`fe80::1%eth0`); nginx's allow/deny do not.
  const version = address.includes("%") ? 0 : net.isIP(address);
  if (version === 0 || extra !== undefined) return "use an IPv4 or IPv6 address or CIDR block such as 10.0.0.0/8";
  const family = version === 4 ? "ipv4" : "ipv6";
  const bits = version === 4 ? 32 : 128;
  if (prefix === undefined) return { address, family, prefix: bits };
  if (!/^[0-9]{1,3}$/.test(prefix) || Number(prefix) > bits) return `use a prefix length from 0 to ${bits}`;
  // nginx would silently widen `10.1.2.3/8` to `10.0.0.0/8`: make the writer say what they mean.
  if (hostBits(address, family, Number(prefix)) !== 0n) return "has host bits set; use the network address of the block";
  return { address, family, prefix: Number(prefix) };
}

/** The bits of `address` (valid, per net.isIP) after the first `prefix`. */
function hostBits(address: string, family: Family, prefix: number): bigint {
  const width = family === "ipv4" ? 32 : 128;
  return addressValue(address, family) & ((1n << BigInt(width - prefix)) - 1n);
}

function addressValue(address: string, family: Family): bigint {
  if (family === "ipv4") return address.split(".").reduce((n, part) => (n << 8n) | BigInt(part), 0n);
  // The URL parser writes IPv6 canonically (lowercase, one `::`, an IPv4 tail as two groups).
  const [head, tail] = new URL(`http://[${address}]`).hostname.slice(1, -1).split("::");
  const groups = (text: string | undefined) => (text ? text.split(":") : []);
  const missing = tail === undefined ? 0 : 8 - groups(head).length - groups(tail).length;
  return [...groups(head), ...Array<string>(missing).fill("0"), ...groups(tail)].reduce((n, group) => (n << 16n) | BigInt(`0x${group}`), 0n);
}

/** A CIDR block or single address, host bits zero (spec `network`, stack config `allowCidrs` ...). */
export const cidr = z.string().superRefine((value, ctx) => {
  const block = parseBlock(value);
  if (typeof block === "string") ctx.addIssue({ code: "custom", input: value, message: block });
});

/** A trusted proxy's block: as `cidr`, but never every address (any client could then pick its own). */
export const trustedProxyCidr = cidr.superRefine((value, ctx) => {
  const block = parseBlock(value);
  if (typeof block !== "string" && block.prefix === 0)
    ctx.addIssue({
      code: "custom",
      input: value,
      message: "trusts every address, so any client could choose the address it is seen with; list your load balancers' addresses",
    });
});

/**
 * Whether a valid CIDR block (or single address) contains `address`. Families are compared as
 * nginx's allow/deny compare them: an IPv6 block never matches an IPv4 client.
 */
export function cidrContains(value: string, address: string): boolean {
  const block = parseBlock(value);
  if (typeof block === "string" || block.family !== (net.isIPv4(address) ? "ipv4" : "ipv6")) return false;
  const list = new net.BlockList();
  list.addSubnet(block.address, block.prefix, block.family);
  return list.check(address, block.family);
}

/** Whether a `network.deny` entry refuses the proxy container's own healthcheck. */
export const coversProxyLoopback = (block: string): boolean => cidrContains(block, PROXY_HEALTHCHECK_SOURCE);
