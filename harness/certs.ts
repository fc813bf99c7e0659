/** Test certificates made with the openssl CLI (never committed). */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

/** A private CA and a server certificate for 127.0.0.1 signed by it (ECDSA P-256). */
export function makeCertificates(commonName = "ollama-gateway-test") {
  const dir = mkdtempSync(path.join(tmpdir(), "gateway-tls-"));
  const run = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=test CA");
  run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", `/CN=${commonName}`);
  writeFileSync(path.join(dir, "san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext");
  const read = (name: string) => readFileSync(path.join(dir, name), "utf8");
  const result = { caPem: read("ca.crt"), certPem: read("server.crt"), keyPem: read("server.key") };
  rmSync(dir, { recursive: true, force: true });
  return result;
}

