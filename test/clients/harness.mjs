// Runs one scenario of a client script and prints its result as JSON on stdout: `use` (the
// client's calls; they must succeed) or `refuse` (one inference call that must fail: what the
// client's error object says). Each client is configured from the environment alone, as
// docs/clients.md says; test/clients.test.ts sets only the `clientEnv` lines' variables.
export async function run(scenario, { use, refuse }) {
  if (scenario === "use") {
    process.stdout.write(`${JSON.stringify(await use())}\n`);
    return;
  }
  try {
    await refuse();
  } catch (error) {
    process.stdout.write(`${JSON.stringify(describe(error))}\n`);
    return;
  }
  throw new Error("the call that should have been refused succeeded");
}

/** What a caller can read from a client's error: its own fields, and its cause's. */
function describe(error) {
  const fields = {};
  for (const name of ["name", "message", "status", "status_code", "statusCode", "code", "type", "error", "responseBody"]) {
    const value = error?.[name];
    if (value !== undefined && typeof value !== "function") fields[name] = value;
  }
  if (error?.cause) fields.cause = describe(error.cause);
  // The AI SDK's RetryError keeps the refused call's error as lastError.
  if (error?.lastError) fields.lastError = describe(error.lastError);
  return fields;
}

export const MODEL = "gemma3:1b";
export const EMBEDDING_MODEL = "embeddinggemma";
export const PROMPT = "Why is the sky blue?";
