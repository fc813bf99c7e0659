/**
 * Client compatibility (issue 17): real client libraries through the real nginx over TLS with a
 * private CA, each in a fresh process whose environment is only PATH plus the `clientEnv` lines
 * (bundle/clientEnv.ts), configured as docs/clients.md says (test/clients/*). Each client
 * streams a chat, generates, embeds and lists models where it can; a wrong key and a scope
 * refusal must put the gateway's own message in the client's error object.
 */
import { execFile, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientEnvScript, shellQuote } from "../bundle/clientEnv";
import { makeCertificates } from "../harness/certs";
import { FAKE_MODEL, type FakeOllama, fakeCompletion, startFakeOllama } from "../harness/fake-ollama";
import { nginxTestsEnabled, type RunningGateway, startGateway } from "../harness/nginx";
import { ROOT } from "../harness/pulumi-mocks";

const KEYS = {
  inference: "clients-infer-key-000000000000000000",
  read: "clients-read-key-0000000000000000000",
  wrong: "clients-wrong-key-000000000000000000",
};
const PASSWORD = "clients-password-1";
const CLIENTS = path.join(__dirname, "clients");
const WRONG_KEY_MESSAGE = "invalid API key";
const SCOPE_MESSAGE = "the credential's scope 'read' does not allow this route (needs 'inference')";

describe.runIf(nginxTestsEnabled)("client libraries through the real nginx over TLS, configured by clientEnv alone", () => {
  let fake: FakeOllama;
  let gateway: RunningGateway;
  let caPem: string;
  let dir: string;

  /** Runs `command` after the `clientEnv` lines for `key`, in a directory of its own, with nothing else set but PATH. */
  function runClient(key: string, command: string, endpoint = gateway.httpsUrl!): Promise<any> {
    const script = `${clientEnvScript({ endpoint, apiKey: key, caPem })}exec ${command}\n`;
    return new Promise((resolve, reject) =>
      execFile("bash", ["-c", script], { cwd: dir, env: { PATH: process.env.PATH! }, timeout: 60_000 }, (error, stdout, stderr) => {
        if (error) return reject(new Error(`${command}: ${error.message}\n${stderr}`));
        try {
          resolve(JSON.parse(stdout.trim().split("\n").pop()!));
        } catch {
          reject(new Error(`${command}: no JSON result\n${stdout}\n${stderr}`));
        }
      }),
    );
  }
  const node = (client: string, scenario: "use" | "refuse") => `node ${shellQuote(path.join(CLIENTS, client))} ${scenario}`;

  beforeAll(async () => {
    const certs = makeCertificates();
    caPem = certs.caPem;
    dir = mkdtempSync(path.join(tmpdir(), "clients-"));
    fake = await startFakeOllama();
    gateway = await startGateway({
      upstreamUrl: fake.url,
      spec: {
        apiKeys: [
          { name: "app", key: KEYS.inference, scope: "inference" },
          { name: "viewer", key: KEYS.read, scope: "read" },
        ],
        basicUsers: [{ name: "alice", password: PASSWORD, scope: "inference" }],
        tls: { certPem: certs.certPem, keyPem: certs.keyPem },
        rateLimit: { requestsPerSecond: 10_000, burst: 10_000 },
      },
    });
  });
  afterAll(async () => {
    await gateway?.stop();
    await fake?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const answer = fakeCompletion(5);
  // Per client: its script, the fields its `use` run returns, and where its error keeps the gateway's message.
  const cases: { name: string; script: string; lists: boolean; message: (error: any) => string }[] = [
    { name: "ollama (Node)", script: "ollama.mjs", lists: true, message: (e) => e.message },
    { name: "openai (Node)", script: "openai.mjs", lists: true, message: (e) => e.message },
    { name: "@langchain/ollama", script: "langchain.mjs", lists: false, message: (e) => e.message },
    // ollama-ai-provider-v2 parses only OpenAI's envelope, on Ollama's /api routes: its message
    // is the status text, and the gateway's message is in responseBody (as with Ollama itself).
    { name: "ai + ollama-ai-provider-v2", script: "ai-sdk.mjs", lists: false, message: (e) => (e.lastError ?? e).responseBody },
    { name: "ai + @ai-sdk/openai-compatible", script: "ai-sdk-openai.mjs", lists: false, message: (e) => (e.lastError ?? e).message },
  ];

  for (const client of cases) {
    it(`${client.name}: streams a chat, generates, embeds${client.lists ? ", lists models" : ""}`, async () => {
      const result = await runClient(KEYS.inference, node(client.script, "use"));
      expect(result.chat).toBe(answer);
      expect(result.generate).toBe(answer);
      expect(result.embeddings).toBe(2);
      if (client.lists) expect(result.models).toContain(FAKE_MODEL);
    });

    it(`${client.name}: a wrong key and a scope refusal show the gateway's message in the error`, async () => {
      const wrong = await runClient(KEYS.wrong, node(client.script, "refuse"));
      expect(client.message(wrong)).toContain(WRONG_KEY_MESSAGE);
      const refused = await runClient(KEYS.read, node(client.script, "refuse"));
      expect(client.message(refused)).toContain(SCOPE_MESSAGE);
    });
  }

  it("openai (Node): the error carries OpenAI's type and the gateway's code", async () => {
    const wrong = await runClient(KEYS.wrong, node("openai.mjs", "refuse"));
    expect(wrong).toMatchObject({ status: 401, code: "invalid_api_key", type: "invalid_request_error", message: `401 ${WRONG_KEY_MESSAGE}` });
    const refused = await runClient(KEYS.read, node("openai.mjs", "refuse"));
    expect(refused).toMatchObject({ status: 403, code: "insufficient_scope" });
  });

  it("Python's standard library (urllib + ssl, CA from SSL_CERT_FILE): NDJSON chat, model list, OpenAI chat", async () => {
    const result = await runClient(KEYS.inference, `python3 ${shellQuote(path.join(CLIENTS, "stdlib.py"))} use`);
    expect(result).toEqual({ models: expect.arrayContaining([FAKE_MODEL]), chat: answer, openai: answer });
  });

  it("Python's standard library reads each route family's error envelope", async () => {
    const wrong = await runClient(KEYS.wrong, `python3 ${shellQuote(path.join(CLIENTS, "stdlib.py"))} refuse`);
    expect(wrong).toEqual({
      ollama: { status: 401, message: WRONG_KEY_MESSAGE },
      openai: { status: 401, message: WRONG_KEY_MESSAGE, type: "invalid_request_error", code: "invalid_api_key" },
      anthropic: { status: 401, message: WRONG_KEY_MESSAGE, type: "authentication_error", code: null },
    });
    const refused = await runClient(KEYS.read, `python3 ${shellQuote(path.join(CLIENTS, "stdlib.py"))} refuse`);
    expect(refused.openai).toEqual({ status: 403, message: SCOPE_MESSAGE, type: "invalid_request_error", code: "insufficient_scope" });
    expect(refused.anthropic).toMatchObject({ status: 403, type: "permission_error" });
  });

  it("credentials in the URL: curl sends them as Basic; Node's fetch-based clients refuse the URL; urllib does not parse it", async () => {
    const withUser = gateway.httpsUrl!.replace("https://", `https://alice:${PASSWORD}@`);
    const curl = await runClient(KEYS.wrong, `curl -sS --cacert ca.pem ${shellQuote(`${withUser}/api/tags`)}`);
    expect(curl.models.map((m: { name: string }) => m.name)).toContain(FAKE_MODEL);
    for (const client of cases) {
      // The key is wrong: only the URL's user could authenticate, and no client gets that far.
      const error = await runClient(KEYS.wrong, node(client.script, "refuse"), withUser);
      expect(JSON.stringify(error), client.name).toMatch(/Request cannot be constructed from a URL that includes credentials/);
    }
    const python = `python3 -c ${shellQuote(
      "import json, os, urllib.request\ntry:\n  urllib.request.urlopen(os.environ['OLLAMA_HOST'] + '/api/tags')\nexcept Exception as e:\n  print(json.dumps({'error': type(e).__name__}))",
    )}`;
    expect(await runClient(KEYS.wrong, python, withUser)).toEqual({ error: "URLError" });
  });

  it("`render --client-env <key>` prints the same lines for a host bundle's spec; a client runs on them alone", async () => {
    const specFile = path.join(dir, "spec.json");
    const caFile = path.join(dir, "private-ca.pem");
    writeFileSync(caFile, caPem);
    const spec = { ...gateway.spec, apiKeys: [{ name: "app", key: KEYS.inference, scope: "inference" }, { name: "hashed", keySha256: "a".repeat(64), scope: "read" }] };
    writeFileSync(specFile, JSON.stringify(spec), { mode: 0o600 });
    const render = (...args: string[]) => spawnSync("npx", ["tsx", path.join(ROOT, "scripts/render.ts"), "--config", specFile, ...args], { encoding: "utf8", timeout: 60_000 });

    const printed = render("--client-env", "app", "--ca", caFile);
    expect(printed.status, printed.stderr).toBe(0);
    expect(printed.stderr).toBe("");
    expect(printed.stdout).toBe(clientEnvScript({ endpoint: gateway.httpsUrl!, apiKey: KEYS.inference, caPem }));
    const script = `${printed.stdout}exec python3 ${shellQuote(path.join(CLIENTS, "stdlib.py"))} use\n`;
    const result = await new Promise<string>((resolve, reject) =>
      execFile("bash", ["-c", script], { cwd: dir, env: { PATH: process.env.PATH! }, timeout: 30_000 }, (error, out, err) => (error ? reject(new Error(`${error.message}\n${err}`)) : resolve(out))),
    );
    expect(JSON.parse(result).chat).toBe(answer);

    // A key the spec holds only as a digest: no key lines, and stderr says so.
    const hashed = render("--client-env", "hashed", "--ca", "none");
    expect(hashed.status).toBe(0);
    expect(hashed.stdout).not.toMatch(/API_KEY|ca\.pem/);
    expect(hashed.stderr).toMatch(/only the SHA-256 of key "hashed"; set OLLAMA_API_KEY and OPENAI_API_KEY yourself/);
    // Every problem at once, nothing printed on stdout.
    const bad = render("--client-env", "nobody", "--endpoint", "https://h:1/v1", "--ca", path.join(dir, "missing.pem"));
    expect(bad.status).toBe(2);
    expect(bad.stdout).toBe("");
    expect(bad.stderr).toMatch(/"nobody", which is not in the spec's apiKeys; use one of: app, hashed/);
    expect(bad.stderr).toMatch(/`--endpoint` is "https:\/\/h:1\/v1"; use a base URL/);
    expect(bad.stderr).toMatch(/`--ca` .*missing\.pem: ENOENT/);
  });

  it("the lines wrote the CA next to the variables that name it", () => {
    expect(readFileSync(path.join(dir, "ca.pem"), "utf8")).toBe(caPem.endsWith("\n") ? caPem : `${caPem}\n`);
  });
});
