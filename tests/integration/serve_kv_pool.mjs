// The client of serve_kv_pool_test.sh: 64 concurrent requests against one server, each the
// way a client sends it (chat sessions without max_tokens, most behind one shared system
// prompt, completions; greedy and seeded;
// streamed and not; n = 2, stop strings, logprobs), and what came back, one JSON line per
// request in request order: the choices (text, finish reason, token logprobs; a stream's
// chunks joined, so a token streamed twice shows) and the usage. Ids and timestamps are left
// out: two servers given the same requests must print the same bytes.
// Usage: node tests/integration/serve_kv_pool.mjs PORT OUT
import http from 'node:http';
import fs from 'node:fs';
import { normalizeCompletion } from './serve_test_util.mjs';

const [port, out] = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true, maxSockets: 128 });
const NAMES = ['Tom', 'Sue', 'Max', 'Lily', 'Ben', 'Amy', 'Sam', 'Kim'];
const THINGS = ['cat', 'dog', 'bird', 'fox', 'ball', 'tree', 'boat', 'cake'];
// Four blocks of 16 and more: what prefix caching shares between sessions.
const SYSTEM = 'You are a friendly storyteller. You tell short, happy stories for small children, with simple ' +
  'words, a kind animal friend and a good ending. Every story starts with once upon a time.';

function requestFor(i) {
  const name = NAMES[i % 8], thing = THINGS[(i >> 3) % 8];
  const r = { model: 'm' };
  const chat = i % 2 === 0;
  if (chat) {
    // No max_tokens: the rest of the context (what used to be reserved whole at admission).
    r.messages = [{ role: 'user', content: `Tell me a story about ${name} and the ${thing}.` }];
    if (i % 8 !== 2) r.messages.unshift({ role: 'system', content: SYSTEM });
  } else {
    r.prompt = `Once upon a time, ${name} found a little ${thing}. ${name}`;
    r.max_tokens = 40 + (i % 5) * 12;
    r.ignore_eos = i % 3 === 0;
  }
  if (i % 4 < 2) r.temperature = 0;
  else Object.assign(r, { temperature: 0.9, top_p: 0.9, seed: 100 + i });
  if (i % 7 === 3) r.n = 2;
  if (i % 9 === 4) r.stop = [' the ', '!'];
  if (i % 5 === 1) r.logprobs = chat ? true : 2;
  if (i % 5 === 1 && chat) r.top_logprobs = 2;
  if (i % 6 === 5) r.presence_penalty = 0.5;
  if (i % 3 === 2) Object.assign(r, { stream: true, stream_options: { include_usage: true } });
  return { path: chat ? '/v1/chat/completions' : '/v1/completions', body: r };
}

function post(path, body) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path, agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(900000, () => req.destroy(new Error('timeout')));
    req.end(data);
  });
}

const N = 64;
const reqs = Array.from({ length: N }, (_, i) => requestFor(i));
const results = await Promise.all(reqs.map(async (r) => {
  try {
    return normalizeCompletion(!!r.body.stream, await post(r.path, r.body));
  } catch (e) {
    return { failed: String(e) };
  }
}));
fs.writeFileSync(out, results.map((x) => JSON.stringify(x)).join('\n') + '\n');
agent.destroy();
