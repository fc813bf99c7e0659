/** Address facts shared by the stack config checks and the proxy component. */
import net from "node:net";
import { cidrProblem } from "./spec";

/** Where the proxy container's healthcheck comes from: curl inside the container, to loopback. */
export const PROXY_HEALTHCHECK_SOURCE = "127.0.0.1";

/**
 * Whether a valid CIDR block (or single address) contains `address`. Families are compared as
 * nginx's allow/deny compare them: an IPv6 block never matches an IPv4 client.
 */
export function cidrContains(block: string, address: string): boolean {
  if (cidrProblem(block) !== undefined) return false;
  const [base, prefix] = block.split("/");
  const family = net.isIPv4(base) ? "ipv4" : "ipv6";
  if (family !== (net.isIPv4(address) ? "ipv4" : "ipv6")) return false;
  const list = new net.BlockList();
  if (prefix === undefined) list.addAddress(base, family);
  else list.addSubnet(base, Number(prefix), family);
  return list.check(address, family);
}

/** Whether a `network.deny` entry refuses the proxy container's own healthcheck. */
export const coversProxyLoopback = (block: string): boolean => cidrContains(block, PROXY_HEALTHCHECK_SOURCE);
