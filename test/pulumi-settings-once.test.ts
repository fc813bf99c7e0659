/**
 * Issue 14: the proxy's settings are derived and validated once. On the stack path config/ does
 * it (bundle/proxySettings.ts) and the gateway component renders from the result without
 * validating again; a program that uses a component directly gets the same rules, from the
 * component, before the proxy is declared.
 */
import { describe, expect, it, vi } from "vitest";
import { evaluateProgram, installMocks, recorded, stackFileConfig, TYPES } from "../harness/pulumi-mocks";

installMocks();

/** Every input the gateway settings' schema parses while the program runs, but `{}` (config/keys.ts reads the spec's defaults so). */
async function settingsParsedBy(config: Record<string, string>): Promise<unknown[]> {
  const inputs: unknown[] = [];
  vi.doMock("../bundle/spec.js", async (importOriginal) => {
    const spec = await importOriginal<typeof import("../bundle/spec")>();
    const schema = spec.gatewaySettingsSchema;
    const safeParse = schema.safeParse.bind(schema);
    schema.safeParse = ((input, params) => {
      inputs.push(input);
      return safeParse(input, params);
    }) as typeof schema.safeParse;
    return spec;
  });
  try {
    await evaluateProgram(config);
  } finally {
    vi.doUnmock("../bundle/spec.js");
  }
  return inputs.filter((input) => JSON.stringify(input) !== "{}");
}

describe("the proxy's settings on the stack path", () => {
  it.each(["dev", "staging", "k8s"])("are validated once, complete, for stack %s", async (stack) => {
    const parsed = await settingsParsedBy(stackFileConfig(stack));
    expect(parsed).toHaveLength(1);
    // The settings the proxy runs, the deployment's facts included, not the stack's alone.
    expect(parsed[0]).toMatchObject({ listen: { address: "0.0.0.0" }, accessLog: "/dev/stdout", errorLog: "/dev/stderr" });
    expect(Object.keys(parsed[0] as object)).toEqual(expect.arrayContaining(["serverName", "apiKeys", "network", "timeouts"]));
  });
});

describe("a gateway component used directly", () => {
  it("refuses settings the proxy cannot run, every problem at once in the spec's words, before declaring the proxy", async () => {
    vi.resetModules();
    const { OllamaGateway } = await import("../components/OllamaGateway.js");
    expect(() => new OllamaGateway("direct", { tls: { mode: "none" }, network: { deny: ["127.0.0.0/8"] }, proxy: { maxBodySize: "lots" } })).toThrow(
      [
        "Invalid gateway spec (2 problems):",
        '- `network.deny[0]` is "127.0.0.0/8", which covers 127.0.0.1, where the proxy\'s own healthcheck comes from; remove it (inside the container 127.0.0.1 is only the proxy itself)',
        "- `maxBodySize`",
      ].join("\n"),
    );
    expect(recorded.filter((r) => r.type === TYPES.container && r.name.startsWith("direct"))).toEqual([]);
  });
});
