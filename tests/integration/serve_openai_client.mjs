// Drives a running `accullm serve` with the official openai npm client.
// Usage: node serve_openai_client.mjs PORT API_KEY   (env GREEDY_TEXT: the CLI's greedy output)
import { importOpenAI, test, finish, assert, assertEq, request, metric } from './serve_test_util.mjs';

const [port, key] = process.argv.slice(2);
const OpenAI = await importOpenAI();
const client = new OpenAI({ apiKey: key, baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0 });
const MODEL = 'tinystories-llama';
const PROMPT = 'Once upon a time';

await test('models.list names the served model', async () => {
  const list = await client.models.list();
  assert(list.data.some((m) => m.id === MODEL), JSON.stringify(list.data));
});

await test('greedy completion equals `accullm generate`', async () => {
  const r = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 24, temperature: 0 });
  assertEq(r.object, 'text_completion');
  assertEq(r.choices[0].text, process.env.GREEDY_TEXT, 'text');
  assertEq(r.choices[0].finish_reason, 'length');
  assertEq(r.usage.completion_tokens, 24);
  assertEq(r.usage.prompt_tokens, 5);
  assertEq(r.usage.total_tokens, 29);
});

await test('chat completion', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'system', content: 'You tell stories.' }, { role: 'user', content: 'A story about a cat.' }],
    max_tokens: 16, temperature: 0,
  });
  assertEq(r.object, 'chat.completion');
  assertEq(r.choices[0].message.role, 'assistant');
  assert(r.choices[0].message.content.length > 0, 'empty content');
  assert(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert(r.usage.completion_tokens <= 16 && r.usage.completion_tokens > 0);
});

await test('streaming completion concatenates to the non-streamed text', async () => {
  const args = { model: MODEL, prompt: PROMPT, max_tokens: 40, temperature: 0.8, seed: 7 };
  const whole = await client.completions.create(args);
  const stream = await client.completions.create({ ...args, stream: true, stream_options: { include_usage: true } });
  let text = '', finish = null, usage = null, chunks = 0;
  for await (const c of stream) {
    chunks++;
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) {
      text += ch.text;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert(chunks > 5, `only ${chunks} chunks`);
  assertEq(text, whole.choices[0].text, 'streamed text');
  assertEq(finish, whole.choices[0].finish_reason, 'finish_reason');
  assertEq(usage.completion_tokens, whole.usage.completion_tokens, 'usage');
});

await test('streaming chat: role first, then content deltas', async () => {
  const stream = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 12, temperature: 0, stream: true,
  });
  let role = null, text = '', finish = null;
  for await (const c of stream) {
    assertEq(c.object, 'chat.completion.chunk');
    const d = c.choices[0].delta;
    if (d.role) role = d.role;
    if (d.content) text += d.content;
    if (c.choices[0].finish_reason) finish = c.choices[0].finish_reason;
  }
  const whole = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 12, temperature: 0,
  });
  assertEq(role, 'assistant');
  assertEq(text, whole.choices[0].message.content);
  assertEq(finish, whole.choices[0].finish_reason);
});

await test('stop sequences cut the text and finish with "stop" (plain and streamed)', async () => {
  const greedy = process.env.GREEDY_TEXT;
  const stop = ' girl';
  const at = greedy.indexOf(stop);
  assert(at > 0, `"${stop}" not in the greedy text`);
  const r = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 24, temperature: 0, stop: ['zzz', stop] });
  assertEq(r.choices[0].text, greedy.slice(0, at));
  assertEq(r.choices[0].finish_reason, 'stop');
  const s = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 24, temperature: 0, stop, stream: true });
  let text = '', finish = null;
  for await (const c of s) {
    text += c.choices[0]?.text ?? '';
    if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
  }
  assertEq(text, greedy.slice(0, at));
  assertEq(finish, 'stop');
});

await test('seed: same seed → same text; n > 1 choice i equals seed + i alone', async () => {
  const args = { model: MODEL, prompt: PROMPT, max_tokens: 30, temperature: 1.0, top_p: 0.95 };
  const a = await client.completions.create({ ...args, seed: 42 });
  const b = await client.completions.create({ ...args, seed: 42 });
  assertEq(a.choices[0].text, b.choices[0].text, 'same seed');
  const many = await client.completions.create({ ...args, seed: 42, n: 3 });
  assertEq(many.choices.length, 3);
  for (let i = 0; i < 3; i++) {
    assertEq(many.choices[i].index, i);
    const alone = await client.completions.create({ ...args, seed: 42 + i });
    assertEq(many.choices[i].text, alone.choices[0].text, `choice ${i}`);
  }
  assert(new Set(many.choices.map((c) => c.text)).size > 1, 'n choices all identical');
  assert(many.usage.completion_tokens <= 90 && many.usage.completion_tokens > 0, 'usage');
});

await test('same request + seed: identical alone and batched with 15 others', async () => {
  const mine = { model: MODEL, prompt: 'The little dog', max_tokens: 48, temperature: 0.9, seed: 1234 };
  const alone = await client.completions.create(mine);
  const others = [];
  for (let i = 0; i < 15; i++) {
    others.push(client.completions.create({
      model: MODEL, prompt: `Tom and Sue went to the park number ${i}`, max_tokens: 40 + i, temperature: 0.7, seed: i,
    }));
  }
  const batched = client.completions.create(mine);
  const results = await Promise.all([batched, ...others]);
  assertEq(results[0].choices[0].text, alone.choices[0].text, 'batched text');
  const streamed = await client.completions.create({ ...mine, stream: true });
  let text = '';
  for await (const c of streamed) text += c.choices[0]?.text ?? '';
  assertEq(text, alone.choices[0].text, 'streamed text');
});

await test('logprobs (completions and chat)', async () => {
  const r = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 5, temperature: 0, logprobs: 2 });
  const lp = r.choices[0].logprobs;
  assertEq(lp.tokens.length, r.usage.completion_tokens);
  assertEq(lp.token_logprobs.length, lp.tokens.length);
  assertEq(Object.keys(lp.top_logprobs[0]).length, 2);
  assertEq(lp.tokens.join(''), r.choices[0].text, 'tokens join');
  assertEq(lp.text_offset[1], lp.tokens[0].length, 'text_offset');
  for (const v of lp.token_logprobs) assert(v <= 0, 'logprob > 0');
  // Greedy: the sampled token is the most likely one.
  assertEq(Math.max(...Object.values(lp.top_logprobs[0])), lp.token_logprobs[0]);
  const c = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 3,
  });
  const content = c.choices[0].logprobs.content;
  assertEq(content.length, c.usage.completion_tokens);
  assertEq(content[0].top_logprobs.length, 3);
  assertEq(content[0].top_logprobs[0].logprob, content[0].logprob);
});

await test('auth: wrong key → 401 AuthenticationError; probes open; /metrics needs the key', async () => {
  const bad = new OpenAI({ apiKey: 'wrong', baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0 });
  let err = null;
  try {
    await bad.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 2 });
  } catch (e) {
    err = e;
  }
  assert(err instanceof OpenAI.AuthenticationError, `expected AuthenticationError, got ${err}`);
  assertEq(err.status, 401);
  assertEq((await request(port, 'GET', '/healthz')).status, 200);
  assertEq((await request(port, 'GET', '/readyz')).status, 200);
  assertEq((await request(port, 'GET', '/metrics')).status, 401);
  assertEq((await request(port, 'GET', '/v1/models')).status, 401);
  const gen = await metric(port, 'accullm_generation_tokens_total', key);
  assert(gen > 0, `generation_tokens_total ${gen}`);
  assertEq(await metric(port, 'accullm_kv_cache_usage_perc', key), 0, 'kv usage back to 0');
  assertEq(await metric(port, 'accullm_num_requests_running', key), 0);
});

finish();
