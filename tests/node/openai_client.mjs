// The official OpenAI Node SDK against aigw, as a user runs it: argv[2] is the base URL.
// Prints one JSON object with what the SDK returned, for tests/api/test_node_sdk.py.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.argv[2], apiKey: "unused", maxRetries: 0 });
const out = {};
// The SDK asks for base64 embeddings unless told otherwise, and decodes them without looking.
const emb = await client.embeddings.create({ model: "text-embed", input: ["abc", "hello"] });
out.embeddings = emb.data.map((d) => Array.from(d.embedding));
const floats = await client.embeddings.create({ model: "text-embed", input: ["abc", "hello"], encoding_format: "float" });
out.floats = floats.data.map((d) => d.embedding);
const { data: chat, response } = await client.chat.completions
  .create({ model: "gpt-test", messages: [{ role: "user", content: "hi node" }] })
  .withResponse();
out.chat = chat.choices[0].message.content;
out.request_id = response.headers.get("x-request-id");
out.chat_request_id = chat._request_id ?? null;
const stream = await client.chat.completions.create({
  model: "gpt-test",
  messages: [{ role: "user", content: "stream please" }],
  stream: true,
});
let text = "";
for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
out.stream = text;
const models = [];
for await (const m of client.models.list()) models.push(m.id);
out.models = models;
console.log(JSON.stringify(out));
