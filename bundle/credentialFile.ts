/**
 * The framing every credential file shares (store.lua reads it): a header naming the file and its
 * format version, a comment naming the columns, one line per entry, and a `# end N` trailer, so
 * the proxy tells a complete file from an empty or truncated one and fails closed.
 */
export function credentialFile(kind: string, columns: string, lines: readonly string[]): string {
  return [`# ollama-gateway ${kind} v1`, `# ${columns}`, ...lines, `# end ${lines.length}`, ""].join("\n");
}
