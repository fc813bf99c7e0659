/** The CI workflow that rotates secrets: schedule, manual inputs, one job per stack, no secret printed. */
import { describe, expect, it } from "vitest";
import { readYaml } from "../harness/pulumi-mocks";

const workflow = readYaml(".github/workflows/rotate-secrets.yml");
const job = workflow.jobs.rotate;
const steps: { name?: string; uses?: string; run?: string; if?: string; with?: Record<string, unknown>; env?: Record<string, string> }[] = job.steps;
const runText = steps.map((s) => s.run ?? "").join("\n");

describe("rotate-secrets workflow", () => {
  it("runs daily and on manual dispatch with a stack and a key, user or all", () => {
    expect(workflow.on.schedule).toEqual([{ cron: expect.stringMatching(/^\d+ \d+ \* \* \*$/) }]);
    const inputs = workflow.on.workflow_dispatch.inputs;
    expect(inputs.stack).toMatchObject({ type: "choice", options: ["dev", "staging", "prod"], required: true });
    expect(inputs.key.type).toBe("string");
    expect(inputs.user.type).toBe("string");
    expect(inputs.all).toMatchObject({ type: "boolean", default: false });
    expect(inputs.jwt_hs256).toMatchObject({ type: "boolean", default: false });
  });

  it("has one job per stack, not cancelled half-way, and may push the stack file", () => {
    expect(job.strategy.matrix.stack).toEqual(["dev", "staging", "prod"]);
    expect(job.strategy["fail-fast"]).toBe(false);
    expect(job.concurrency).toEqual({ group: "rotate-secrets-${{ matrix.stack }}", "cancel-in-progress": false });
    expect(workflow.permissions).toEqual({ contents: "write" });
  });

  it("installs Node 20, the dependencies and the Pulumi CLI, and takes credentials from CI secrets", () => {
    expect(steps.find((s) => s.uses?.startsWith("actions/setup-node@"))?.with?.["node-version"]).toBe(20);
    expect(runText).toContain("npm ci");
    expect(steps.some((s) => s.uses?.startsWith("pulumi/actions@"))).toBe(true);
    expect(job.env).toMatchObject({
      PULUMI_CONFIG_PASSPHRASE: "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}",
      PULUMI_BACKEND_URL: "${{ secrets.PULUMI_BACKEND_URL }}",
      DOCKER_HOST: "${{ secrets.DOCKER_HOST }}",
    });
  });

  it("requests the on-demand rotation only on manual dispatch, then deploys the matrix stack", () => {
    const rotate = steps.find((s) => s.run?.includes("npm run rotate"))!;
    expect(rotate.if).toContain("github.event_name == 'workflow_dispatch'");
    for (const flag of ["--all", "--key", "--user", "--jwt-hs256"]) expect(rotate.run).toContain(`npm run rotate -- --stack "$STACK" ${flag}`);
    // Inputs reach the shell through env, never pasted into the script (no injection).
    expect(rotate.run).not.toContain("${{");
    const up = steps.find((s) => s.run?.includes("pulumi up"))!;
    expect(up.run).toMatch(/pulumi up --yes .*--stack "\$STACK"/);
    expect(steps.indexOf(rotate)).toBeLessThan(steps.indexOf(up));
    expect(job.env.STACK).toBe("${{ matrix.stack }}");
  });

  it("never prints a secret", () => {
    const all = JSON.stringify(workflow);
    expect(all).not.toContain("--show-secrets");
    expect(runText).not.toMatch(/stack output|config get|echo "?\$PULUMI_CONFIG_PASSPHRASE|set -x/);
    expect(steps.find((s) => s.run?.includes("pulumi up"))!.run).toContain("--suppress-outputs");
  });

  it("commits the stack file back only when the rotate script changed it", () => {
    const commit = steps.find((s) => s.run?.includes("git commit"))!;
    expect(commit.run).toContain('git diff --quiet -- "Pulumi.$STACK.yaml"');
    expect(commit.run).toContain('git add "Pulumi.$STACK.yaml"');
    expect(steps.indexOf(commit)).toBeGreaterThan(steps.findIndex((s) => s.run?.includes("pulumi up")));
  });
});
