/**
 * The committed stack files (Pulumi.dev.yaml, Pulumi.staging.yaml, Pulumi.prod.yaml, Pulumi.k8s.yaml), each
 * evaluated by the real program under mocks, as `pulumi up --stack <name>` would run it.
 */
import { readdirSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { ROTATION_NOW_VARIABLE } from "../config/rotation";
import { makeCertificates } from "../harness/certs";
import {
  configUploads,
  evaluateProgram,
  expectProgramRefuses,
  findResource,
  installMocks,
  readYaml,
  ROOT,
  stackFileConfig,
  TYPES,
  unwrap,
  type RecordedResource,
} from "../harness/pulumi-mocks";

installMocks();
// A fixed instant, so that two evaluations fall in the same rotation period.
process.env[ROTATION_NOW_VARIABLE] = "2026-11-23T12:00:00Z";
afterAll(() => {
  delete process.env[ROTATION_NOW_VARIABLE];
});

async function evaluate(config: Record<string, unknown>): Promise<RecordedResource[]> {
  return (await evaluateProgram(config)).resources;
}
const inputsByUrn = (resources: RecordedResource[]) => new Map(resources.map((r) => [r.urn, JSON.stringify(unwrap(r.inputs))]));
const proxyPorts = () => findResource(TYPES.container, "gateway-proxy-server").inputs.ports;
const commonConf = () => configUploads()["conf/gateway-common.conf"];

describe("the committed stack files", () => {
  const stacks = readdirSync(ROOT)
    .map((file) => /^Pulumi\.(.+)\.yaml$/.exec(file)?.[1])
    .filter((stack): stack is string => stack !== undefined)
    .sort();

  it("are dev, staging and prod, the stacks the rotation workflow runs, and k8s (which needs a cluster, so CI does not rotate it)", () => {
    expect(stacks).toEqual(["dev", "k8s", "prod", "staging"]);
    expect([...readYaml(".github/workflows/rotate-secrets.yml").jobs.rotate.strategy.matrix.stack].sort()).toEqual(stacks.filter((s) => s !== "k8s"));
  });

  it.each(["dev", "staging", "k8s"])("%s deploys as committed, and a second evaluation changes nothing", async (stack) => {
    const first = inputsByUrn(await evaluate(stackFileConfig(stack)));
    expect(first.size).toBeGreaterThan(10);
    const second = inputsByUrn(await evaluate(stackFileConfig(stack)));
    expect(second).toEqual(first);
  });

  it("staging serves the office networks only, on every interface, with rotating credentials by generation", async () => {
    const resources = await evaluate(stackFileConfig("staging"));
    expect(proxyPorts()).toEqual([
      { internal: 8080, external: 8080, ip: "0.0.0.0" },
      { internal: 8443, external: 8443, ip: "0.0.0.0" },
      { internal: 9145, external: 9145, ip: "127.0.0.1" },
    ]);
    expect(commonConf()).toContain(["allow 10.0.0.0/8;", "allow 192.168.0.0/16;", "allow 127.0.0.1;", "deny all;"].join("\n"));
    const secrets = resources.filter((r) => r.type === TYPES.password).map((r) => r.name);
    for (const name of ["key-webapp", "key-ci", "key-ops", "password-qa"]) {
      // The current generation (and the previous one during its overlap), never the unrotated `-current`.
      const generations = secrets.filter((n) => n.startsWith(`gateway-credentials-${name}-`));
      expect(generations.length, name).toBeGreaterThanOrEqual(1);
      expect(generations.every((n) => /-g\d+$/.test(n)), name).toBe(true);
    }
  });

  it("prod refuses to deploy until its certificate is set, naming both keys, and declares nothing", async () => {
    await expectProgramRefuses(stackFileConfig("prod"), [
      "Invalid stack config (2 problems):",
      "- `ollama-gateway:tlsCertPem` is missing; set it (`cat server.crt | pulumi config set tlsCertPem`) when `tlsMode` is `provided`.",
      "- `ollama-gateway:tlsKeyPem` is missing; set it (`cat server.key | pulumi config set --secret tlsKeyPem`) when `tlsMode` is `provided`.",
    ]);
  });

  it("prod, with its certificate set, serves 80 and 443 with the brought certificate and gives Ollama the GPUs", async () => {
    const { certPem, keyPem } = makeCertificates("ollama.example.com");
    const resources = await evaluate({ ...stackFileConfig("prod"), tlsCertPem: certPem, tlsKeyPem: keyPem });
    expect(resources.filter((r) => r.type.startsWith("tls:"))).toEqual([]);
    expect(proxyPorts()).toEqual([
      { internal: 80, external: 80, ip: "0.0.0.0" },
      { internal: 443, external: 443, ip: "0.0.0.0" },
      { internal: 9145, external: 9145, ip: "127.0.0.1" },
    ]);
    const ollama = findResource(TYPES.container, "gateway-ollama-server");
    expect(ollama.inputs.gpus).toBe("all");
    expect(ollama.inputs.envs).toEqual(expect.arrayContaining(["OLLAMA_KEEP_ALIVE=30m", "OLLAMA_NUM_PARALLEL=4"]));
  });
});
