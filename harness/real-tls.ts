/**
 * What the `tls` provider computes, made for real with the openssl CLI, for suites that run the
 * program's certificates in a real nginx (the container replay). Values are cached by resource
 * name and inputs, so a second evaluation with unchanged config gets the same keys and
 * certificates, as a real provider's state would; `renewCertificates()` makes the next
 * evaluation issue new server certificates, as a renewal does.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

const cache = new Map<string, Record<string, string>>();
let renewals = 0;

/** The next evaluation issues new server certificates (same CA and keys). */
export function renewCertificates(): void {
  renewals++;
}

function openssl(files: Record<string, string>, args: string[], output: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), "real-tls-"));
  try {
    for (const [name, content] of Object.entries(files)) writeFileSync(path.join(dir, name), content);
    execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
    return readFileSync(path.join(dir, output), "utf8");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const subject = (s: { commonName?: string; organization?: string } | undefined) =>
  `/CN=${s?.commonName ?? "unnamed"}${s?.organization ? `/O=${s.organization}` : ""}`;
const days = (hours: number) => String(Math.max(1, Math.ceil(hours / 24)));

const KEY_USAGE: Record<string, string> = {
  cert_signing: "keyCertSign",
  crl_signing: "cRLSign",
  digital_signature: "digitalSignature",
  key_encipherment: "keyEncipherment",
};

function usageExtensions(uses: string[] = [], ca = false): string {
  const keyUsage = uses.filter((u) => KEY_USAGE[u]).map((u) => KEY_USAGE[u]);
  return [
    `basicConstraints=critical,CA:${ca ? "TRUE" : "FALSE"}`,
    ...(keyUsage.length ? [`keyUsage=critical,${keyUsage.join(",")}`] : []),
    ...(uses.includes("server_auth") ? ["extendedKeyUsage=serverAuth"] : []),
  ].join("\n");
}

/** Outputs of a `tls:` resource, or undefined for other types. Inputs arrive unwrapped. */
export function realTlsOutputs(type: string, name: string, inputs: Record<string, any>): Record<string, string> | undefined {
  if (!type.startsWith("tls:")) return undefined;
  const renewal = type === "tls:index/locallySignedCert:LocallySignedCert" ? renewals : 0;
  const key = `${type}/${name}/${JSON.stringify(inputs)}/${renewal}`;
  const cached = cache.get(key);
  if (cached) return cached;
  let result: Record<string, string>;
  switch (type) {
    case "tls:index/privateKey:PrivateKey": {
      const algorithm =
        inputs.algorithm === "RSA" ? ["-algorithm", "RSA", "-pkeyopt", `rsa_keygen_bits:${inputs.rsaBits ?? 2048}`] : ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
      const privateKeyPem = openssl({}, ["genpkey", ...algorithm, "-out", "key.pem"], "key.pem");
      const publicKeyPem = openssl({ "key.pem": privateKeyPem }, ["pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem"], "pub.pem");
      result = { privateKeyPem, publicKeyPem };
      break;
    }
    case "tls:index/selfSignedCert:SelfSignedCert": {
      const extensions = usageExtensions(inputs.allowedUses, inputs.isCaCertificate).split("\n").flatMap((e) => ["-addext", e]);
      result = {
        certPem: openssl(
          { "key.pem": inputs.privateKeyPem },
          ["req", "-x509", "-new", "-key", "key.pem", "-subj", subject(inputs.subject), "-days", days(inputs.validityPeriodHours), ...extensions, "-out", "cert.pem"],
          "cert.pem",
        ),
      };
      break;
    }
    case "tls:index/certRequest:CertRequest": {
      const san = [...(inputs.dnsNames ?? []).map((d: string) => `DNS:${d}`), ...(inputs.ipAddresses ?? []).map((ip: string) => `IP:${ip}`)];
      result = {
        certRequestPem: openssl(
          { "key.pem": inputs.privateKeyPem },
          ["req", "-new", "-key", "key.pem", "-subj", subject(inputs.subject), ...(san.length ? ["-addext", `subjectAltName=${san.join(",")}`] : []), "-out", "csr.pem"],
          "csr.pem",
        ),
      };
      break;
    }
    case "tls:index/locallySignedCert:LocallySignedCert":
      result = {
        certPem: openssl(
          { "csr.pem": inputs.certRequestPem, "ca.pem": inputs.caCertPem, "ca.key": inputs.caPrivateKeyPem, "ext.cnf": usageExtensions(inputs.allowedUses) },
          ["x509", "-req", "-in", "csr.pem", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", `0x${(Date.now() * 1000 + renewal).toString(16)}`, "-days", days(inputs.validityPeriodHours), "-copy_extensions", "copyall", "-extfile", "ext.cnf", "-out", "cert.pem"],
          "cert.pem",
        ),
      };
      break;
    default:
      throw new Error(`real-tls: no real outputs for ${type}`);
  }
  cache.set(key, result);
  return result;
}
