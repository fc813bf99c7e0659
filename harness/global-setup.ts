/**
 * Runs once before the test files (vitest `globalSetup`): builds the token-accounting module the
 * data-plane suites load (harness/nginx.ts), since a first build takes longer than a hook may.
 * Without nginx nothing is built here; the suites then fail with their own install message.
 */
import { nginxTestsEnabled, USAGE_MODULE_VARIABLE, usageModulePath } from "./nginx";

export default function setup(): void {
  if (!nginxTestsEnabled) return;
  try {
    process.env[USAGE_MODULE_VARIABLE] = usageModulePath();
  } catch (error) {
    process.stderr.write(`global setup: the token-accounting module was not built: ${(error as Error).message}\n`);
  }
}
