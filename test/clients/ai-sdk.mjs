// The Vercel AI SDK (`ai`) with `ollama-ai-provider-v2`: `baseURL` is the gateway's /api, and
// `headers` carry the key.
import { embedMany, generateText, streamText } from "ai";
import { createOllama } from "ollama-ai-provider-v2";
import { EMBEDDING_MODEL, MODEL, PROMPT, run } from "./harness.mjs";

const ollama = createOllama({ baseURL: `${process.env.OLLAMA_HOST}/api`, headers: { Authorization: `Bearer ${process.env.OLLAMA_API_KEY}` } });

await run(process.argv[2], {
  async use() {
    let chat = "";
    const stream = streamText({ model: ollama(MODEL), prompt: PROMPT, onError: ({ error }) => { throw error; } });
    for await (const text of stream.textStream) chat += text;
    const generate = (await generateText({ model: ollama.completion(MODEL), prompt: PROMPT })).text;
    const { embeddings } = await embedMany({ model: ollama.textEmbeddingModel(EMBEDDING_MODEL), values: ["a", "b"] });
    return { chat, generate, embeddings: embeddings.length };
  },
  refuse: () => generateText({ model: ollama(MODEL), prompt: PROMPT }),
});
