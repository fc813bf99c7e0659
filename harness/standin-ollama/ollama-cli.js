// `ollama list` and `ollama pull MODEL` as the real CLI does them: against $OLLAMA_HOST, exit
// status 0 only when the server answered as Ollama does on success.
const [command, model] = process.argv.slice(2);
const host = process.env.OLLAMA_HOST || "127.0.0.1:11434";
const base = (host.includes("://") ? host : `http://${host}`).replace("//0.0.0.0", "//127.0.0.1");

async function main() {
  if (command === "list") {
    const response = await fetch(`${base}/api/tags`);
    if (response.status !== 200) throw new Error(`GET /api/tags: ${response.status}`);
    for (const m of (await response.json()).models) console.log(m.name);
  } else if (command === "pull" && model) {
    const response = await fetch(`${base}/api/pull`, { method: "POST", body: JSON.stringify({ model, stream: false }) });
    const body = await response.json();
    if (response.status !== 200 || body.status !== "success") throw new Error(`pull ${model}: ${response.status} ${JSON.stringify(body)}`);
    console.log("success");
  } else {
    throw new Error(`stand-in ollama: unsupported command ${JSON.stringify(process.argv.slice(2))}`);
  }
}
main().catch((error) => {
  console.error(`Error: ${error.message}`);
  process.exit(1);
});
