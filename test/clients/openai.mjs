// Node `openai`, configured by OPENAI_BASE_URL and OPENAI_API_KEY alone.
import OpenAI from "openai";
import { EMBEDDING_MODEL, MODEL, PROMPT, run } from "./harness.mjs";

const openai = new OpenAI();

await run(process.argv[2], {
  async use() {
    let chat = "";
    const stream = await openai.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: PROMPT }], stream: true });
    for await (const chunk of stream) chat += chunk.choices[0]?.delta?.content ?? "";
    const generate = (await openai.completions.create({ model: MODEL, prompt: PROMPT })).choices[0].text;
    const embed = await openai.embeddings.create({ model: EMBEDDING_MODEL, input: ["a", "b"] });
    const models = [];
    for await (const model of openai.models.list()) models.push(model.id);
    return { chat, generate, embeddings: embed.data.length, models };
  },
  refuse: () => openai.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: PROMPT }] }),
});
