// Streams one chat completion with the official openai SDK and prints what it read as
// one JSON line: {"text", "content_chunks", "usage", "finish_reason"}, where
// content_chunks counts the chunks that carried non-empty content.
// Usage: node stream.mjs '{"baseURL": "...", "model": "...", "prompt": "...", "max_tokens": N}'
import OpenAI from "openai";

const request = JSON.parse(process.argv[2]);
const client = new OpenAI({ apiKey: "sk-ony-test", baseURL: request.baseURL, maxRetries: 0 });
const stream = await client.chat.completions.create({
  model: request.model,
  messages: [{ role: "user", content: request.prompt }],
  max_tokens: request.max_tokens,
  stream: true,
  stream_options: { include_usage: true },
});

let text = "";
let contentChunks = 0;
let finishReason = null;
let usage = null;
for await (const chunk of stream) {
  for (const choice of chunk.choices) {
    const content = choice.delta?.content ?? "";
    text += content;
    contentChunks += content === "" ? 0 : 1;
    finishReason = choice.finish_reason ?? finishReason;
  }
  usage = chunk.usage ?? usage;
}
const answer = { text, content_chunks: contentChunks, usage, finish_reason: finishReason };
console.log(JSON.stringify(answer));
