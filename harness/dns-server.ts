/**
 * A small authoritative DNS server on loopback UDP, standing in for the cluster DNS (CoreDNS) that
 * answers a Kubernetes Service's name: A records from a table the test changes while it runs,
 * with a short TTL. Packets are encoded and decoded with `dns-packet` (the library behind
 * multicast-dns); only the answering logic is written here.
 */
import dgram from "node:dgram";
import * as dnsPacket from "dns-packet";

export interface DnsStandIn {
  /** `127.0.0.1:<port>`, as nginx's `resolver` takes it. */
  address: string;
  /** Replaces the A records of `name` (no records: NXDOMAIN). */
  setRecords(name: string, addresses: string[]): void;
  /** Queries answered so far, per name. */
  queries: Map<string, number>;
  close(): Promise<void>;
}

export async function startDnsStandIn(ttlSeconds = 1): Promise<DnsStandIn> {
  const records = new Map<string, string[]>();
  const queries = new Map<string, number>();
  const socket = dgram.createSocket("udp4");
  socket.on("message", (message, peer) => {
    let query: dnsPacket.Packet;
    try {
      query = dnsPacket.decode(message);
    } catch {
      return; // not DNS: a real server drops it too
    }
    const question = query.questions?.[0];
    if (!question) return;
    const name = question.name.toLowerCase();
    queries.set(name, (queries.get(name) ?? 0) + 1);
    const addresses = records.get(name);
    const answers: dnsPacket.Answer[] =
      question.type === "A" && addresses
        ? addresses.map((data) => ({ type: "A", class: "IN", name: question.name, ttl: ttlSeconds, data }))
        : [];
    // A known name without records of the asked type (AAAA here) is NOERROR with no answers.
    const rcode = addresses ? "NOERROR" : "NXDOMAIN";
    const reply = dnsPacket.encode({
      id: query.id,
      type: "response",
      flags: dnsPacket.AUTHORITATIVE_ANSWER | (rcode === "NXDOMAIN" ? 3 : 0),
      questions: query.questions,
      answers,
    });
    socket.send(reply, peer.port, peer.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(0, "127.0.0.1", () => resolve());
  });
  return {
    address: `127.0.0.1:${socket.address().port}`,
    setRecords: (name, addresses) => records.set(name.toLowerCase(), [...addresses]),
    queries,
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  };
}
