// The Vercel AI SDK (`ai`) with `@ai-sdk/openai-compatible` on the gateway's /v1 routes,
// configured by OPENAI_BASE_URL and OPENAI_API_KEY: OpenAI's error envelope there gives the
// gateway's message to `error.message`.
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { embedMany, generateText, streamText } from "ai";
import { EMBEDDING_MODEL, MODEL, PROMPT, run } from "./harness.mjs";

const gateway = createOpenAICompatible({ name: "ollama-gateway", baseURL: process.env.OPENAI_BASE_URL, apiKey: process.env.OPENAI_API_KEY });

await run(process.argv[2], {
  async use() {
    let chat = "";
    const stream = streamText({ model: gateway(MODEL), prompt: PROMPT, onError: ({ error }) => { throw error; } });
    for await (const text of stream.textStream) chat += text;
    const generate = (await generateText({ model: gateway.completionModel(MODEL), prompt: PROMPT })).text;
    const { embeddings } = await embedMany({ model: gateway.embeddingModel(EMBEDDING_MODEL), values: ["a", "b"] });
    return { chat, generate, embeddings: embeddings.length };
  },
  refuse: () => generateText({ model: gateway(MODEL), prompt: PROMPT }),
});
