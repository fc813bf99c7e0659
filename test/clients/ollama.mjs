// Node `ollama`, configured as docs/clients.md says: it ignores OLLAMA_HOST and sends
// OLLAMA_API_KEY only to ollama.com, so both are passed explicitly.
import { Ollama } from "ollama";
import { EMBEDDING_MODEL, MODEL, PROMPT, run } from "./harness.mjs";

const ollama = new Ollama({ host: process.env.OLLAMA_HOST, headers: { Authorization: `Bearer ${process.env.OLLAMA_API_KEY}` } });

await run(process.argv[2], {
  async use() {
    let chat = "";
    for await (const part of await ollama.chat({ model: MODEL, messages: [{ role: "user", content: PROMPT }], stream: true })) chat += part.message.content;
    const generate = (await ollama.generate({ model: MODEL, prompt: PROMPT })).response;
    const embed = await ollama.embed({ model: EMBEDDING_MODEL, input: ["a", "b"] });
    const models = (await ollama.list()).models.map((m) => m.name);
    return { chat, generate, embeddings: embed.embeddings.length, models };
  },
  refuse: () => ollama.chat({ model: MODEL, messages: [{ role: "user", content: PROMPT }] }),
});
