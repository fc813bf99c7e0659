/**
 * The environment that configures Ollama and OpenAI clients, Node and Python, for one gateway
 * and one API key. One pure function serves the Pulumi `clientEnv` output, `npm run render --
 * --client-env <key>` and the example in docs/clients.md (`npm run docs`), so the lines the
 * client tests run are the lines users get. Which client reads which variable: docs/clients.md.
 */

import type { GatewaySpec } from "./spec";

/** The file the lines write the CA to, in the directory they are evaluated in. */
export const CA_FILE = "ca.pem";

export interface ClientEnvOptions {
  /** Base URL of the gateway, `https://host:port` (no trailing slash). */
  endpoint: string;
  /** The API key; absent when it is not known (a spec that holds only its SHA-256). */
  apiKey?: string;
  /** PEM certificate(s) clients must trust (a private CA); absent when the system's trust store suffices. */
  caPem?: string;
}

/** A shell word that is exactly `value` (POSIX single quotes). */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** The variables, in order, with the clients that read them. Values are literal except `$PWD`. */
export function clientEnvVariables(options: ClientEnvOptions): { name: string; value: string; readBy: string }[] {
  const endpoint = options.endpoint.replace(/\/+$/, "");
  const key = options.apiKey;
  const ca = `"$PWD/${CA_FILE}"`;
  return [
    { name: "OLLAMA_HOST", value: shellQuote(endpoint), readBy: "Python `ollama`; Node `ollama` and `@langchain/ollama` through their `host`/`baseUrl` option" },
    ...(key !== undefined ? [{ name: "OLLAMA_API_KEY", value: shellQuote(key), readBy: "Python `ollama` (sent as Bearer); Node clients through their `headers` option" }] : []),
    { name: "OPENAI_BASE_URL", value: shellQuote(`${endpoint}/v1`), readBy: "`openai` (Node, Python)" },
    ...(key !== undefined ? [{ name: "OPENAI_API_KEY", value: shellQuote(key), readBy: "`openai` (Node, Python)" }] : []),
    ...(options.caPem !== undefined
      ? [
          { name: "NODE_EXTRA_CA_CERTS", value: ca, readBy: "Node.js (added to its default CAs)" },
          { name: "SSL_CERT_FILE", value: ca, readBy: "Python: ssl's default context and httpx, so `ollama` and `openai` (replaces the default CAs)" },
        ]
      : []),
  ];
}

/**
 * `eval`-able shell lines: with a CA, first write it to ./ca.pem, then export the variables (the
 * CA paths are absolute, taken from the directory the lines run in). The key is in the text:
 * the output is a secret, and render prints it only when asked.
 */
export function clientEnvScript(options: ClientEnvOptions): string {
  const lines = ["# Ollama and OpenAI clients, Node and Python: docs/clients.md"];
  if (options.caPem !== undefined) {
    const pem = options.caPem.endsWith("\n") ? options.caPem : `${options.caPem}\n`;
    lines.push(`printf '%s' ${shellQuote(pem)} > ${CA_FILE}`);
  }
  for (const variable of clientEnvVariables(options)) lines.push(`export ${variable.name}=${variable.value}`);
  return `${lines.join("\n")}\n`;
}

/**
 * Where clients reach a host bundle, from its spec: HTTPS when it has TLS, at `serverName`, or
 * the listen address when that is `_` (a wildcard address as loopback).
 */
export function specEndpoint(spec: Pick<GatewaySpec, "tls" | "serverName" | "listen">): string {
  const address = spec.listen.address === "0.0.0.0" ? "127.0.0.1" : spec.listen.address === "::" ? "::1" : spec.listen.address;
  const host = spec.serverName !== "_" ? spec.serverName : address.includes(":") ? `[${address}]` : address;
  return spec.tls && spec.listen.https !== undefined ? `https://${host}:${spec.listen.https}` : `http://${host}:${spec.listen.http}`;
}
