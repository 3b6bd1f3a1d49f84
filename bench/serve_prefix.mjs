// Prefix caching under load: `--requests` streaming chat completions, `--concurrency` at a time,
// every one behind the same long system prompt (about 400 tokens) with a short user message of
// its own, greedy, `--max-tokens` each. Reports prompt tokens per request, p50/p99 time to first
// token, aggregate generated tokens/s, the server's prefix-cache counters, and a digest of every
// answer (runs with the cache on and off must print the same digest).
//
// Usage: node bench/serve_prefix.mjs --port N [--requests 64] [--concurrency 16] [--max-tokens 32] [--label NAME]
import http from 'node:http';
import { httpGet, metricSum } from './server_metrics.mjs';
import crypto from 'node:crypto';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
  return acc;
}, []));
const port = Number(args.port);
const requests = Number(args.requests || 64);
const concurrency = Number(args.concurrency || 16);
const maxTokens = Number(args['max-tokens'] || 32);
const label = args.label || '';
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

const ANIMALS = ['cat', 'dog', 'bird', 'fox', 'frog', 'bear', 'duck', 'fish'];
const PLACES = ['park', 'garden', 'forest', 'river', 'beach', 'farm', 'school', 'hill'];
let system = 'You are a kind storyteller for small children. Follow these rules.';
for (let i = 0; i < 14; i++) {
  system += ` Rule ${i + 1}: when the ${ANIMALS[i % 8]} goes to the ${PLACES[(i * 3) % 8]}, it is happy and it shares with its friends.`;
}

const get = (path) => httpGet(port, agent, path);
const metric = metricSum;

function chat(i) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ model: 'm', temperature: 0, max_tokens: maxTokens, ignore_eos: true, stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'system', content: system }, { role: 'user', content: `Story ${i}: the ${ANIMALS[i % 8]} and the ${PLACES[(i >> 3) % 8]}.` }] });
    const t0 = performance.now();
    let ttft = null, buf = '', text = '', usage = null;
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions', agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}`));
      res.setEncoding('utf8');
      res.on('data', (d) => {
        buf += d;
        let k;
        while ((k = buf.indexOf('\n\n')) >= 0) {
          const line = buf.slice(0, k).trim();
          buf = buf.slice(k + 2);
          if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
          const j = JSON.parse(line.slice(6));
          if (j.usage) usage = j.usage;
          for (const c of j.choices || []) {
            const piece = c.delta && c.delta.content;
            if (piece && ttft === null) ttft = performance.now() - t0;
            if (piece) text += piece;
          }
        }
      });
      res.on('end', () => resolve({ i, text, ttft, usage }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const pct = (xs, p) => { if (!xs.length) return NaN; const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))]; };
const before = await get('/metrics');
const t0 = performance.now();
let next = 0, lost = 0;
const out = [];
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (next < requests) {
    const i = next++;
    try { out.push(await chat(i)); } catch (e) { lost++; }
  }
}));
const wall = (performance.now() - t0) / 1000;
const after = await get('/metrics');
out.sort((a, b) => a.i - b.i);
const tokens = out.reduce((s, r) => s + (r.usage ? r.usage.completion_tokens : 0), 0);
const digest = crypto.createHash('sha256').update(out.map((r) => r.text).join('\u0000')).digest('hex').slice(0, 16);
const d = (name) => metric(after, name) - metric(before, name);
console.log(JSON.stringify({ label, requests, concurrency, prompt_tokens: out[0] && out[0].usage ? out[0].usage.prompt_tokens : null,
  ttft_p50_ms: +pct(out.map((r) => r.ttft), 50).toFixed(1), ttft_p99_ms: +pct(out.map((r) => r.ttft), 99).toFixed(1),
  tokens_per_s: +(tokens / wall).toFixed(0), wall_s: +wall.toFixed(2), lost,
  cache_queries: d('accullm_prefix_cache_queries_total'), cache_hits: d('accullm_prefix_cache_hits_total'), digest }));
agent.destroy();
