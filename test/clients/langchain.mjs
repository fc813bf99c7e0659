// `@langchain/ollama`: `baseUrl` (it reads OLLAMA_BASE_URL, not OLLAMA_HOST) and `headers`.
import { ChatOllama, Ollama, OllamaEmbeddings } from "@langchain/ollama";
import { EMBEDDING_MODEL, MODEL, PROMPT, run } from "./harness.mjs";

const connection = { baseUrl: process.env.OLLAMA_HOST, headers: { Authorization: `Bearer ${process.env.OLLAMA_API_KEY}` } };
const chatModel = new ChatOllama({ ...connection, model: MODEL });

await run(process.argv[2], {
  async use() {
    let chat = "";
    for await (const chunk of await chatModel.stream(PROMPT)) chat += chunk.content;
    const generate = await new Ollama({ ...connection, model: MODEL }).invoke(PROMPT);
    const embeddings = await new OllamaEmbeddings({ ...connection, model: EMBEDDING_MODEL }).embedDocuments(["a", "b"]);
    return { chat, generate, embeddings: embeddings.length };
  },
  refuse: () => chatModel.invoke(PROMPT),
});
