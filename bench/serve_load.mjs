// Load test for `accullm serve` over loopback: streaming completions at several
// concurrencies; reports p50/p99 latency and time to first token, aggregate tokens/s, checks
// that no request is lost and no response is corrupted or mixed up between clients (every
// response must equal its prompt's greedy reference), and that memory returns to baseline.
//
// Usage: node bench/serve_load.mjs --port N [--pid SERVER_PID] [--key K] [--model NAME]
//          [--levels 1,4,16,64] [--requests 64] [--max-tokens 64]
import http from 'node:http';
import fs from 'node:fs';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
  return acc;
}, []));
const port = Number(args.port);
const key = args.key || '';
const model = args.model || 'tinystories-llama';
const levels = (args.levels || '1,4,16,64').split(',').map(Number);
const requestsPerLevel = Number(args.requests || 64);
const maxTokens = Number(args['max-tokens'] || 64);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const PROMPTS = Array.from({ length: 16 }, (_, i) => `Story ${i}: Once upon a time, a little ${['cat', 'dog', 'bird', 'fox'][i % 4]} named ${['Tom', 'Sue', 'Max', 'Lily'][(i >> 2) % 4]}`);

function rss(pid) {
  if (!pid) return NaN;
  const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) / 1024 : NaN;
}

// One streaming completion; resolves {text, tokens, latency, ttft}.
function stream(prompt) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ model, prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true,
      stream_options: { include_usage: true } });
    const t0 = performance.now();
    let ttft = null, buf = '', text = '', tokens = 0, done = false;
    const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
    if (key) headers.authorization = `Bearer ${key}`;
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/completions', headers, agent }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}`));
      res.setEncoding('utf8');
      res.on('data', (d) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const line = buf.slice(0, i).trim();
          buf = buf.slice(i + 2);
          if (!line.startsWith('data: ')) return reject(new Error(`bad SSE: ${line}`));
          const data = line.slice(6);
          if (data === '[DONE]') { done = true; continue; }
          const j = JSON.parse(data);
          if (j.usage) tokens = j.usage.completion_tokens;
          for (const c of j.choices) {
            if (c.text && ttft === null) ttft = performance.now() - t0;
            text += c.text;
          }
        }
      });
      res.on('end', () => done ? resolve({ text, tokens, latency: performance.now() - t0, ttft }) : reject(new Error('no [DONE]')));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))]; };

// Greedy references, one at a time.
const reference = [];
for (const p of PROMPTS) reference.push((await stream(p)).text);
await new Promise((r) => setTimeout(r, 200));
const rss0 = rss(args.pid);
const rows = [];
let lost = 0, corrupted = 0;
for (const c of levels) {
  const total = Math.max(requestsPerLevel, c);
  let next = 0;
  const lat = [], ttfts = [];
  let tokens = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: c }, async () => {
    while (next < total) {
      const i = next++;
      try {
        const r = await stream(PROMPTS[i % PROMPTS.length]);
        if (r.text !== reference[i % PROMPTS.length]) corrupted++;
        lat.push(r.latency);
        ttfts.push(r.ttft);
        tokens += r.tokens;
      } catch (e) {
        lost++;
        console.error(`request ${i}: ${e.message}`);
      }
    }
  }));
  const wall = (performance.now() - t0) / 1000;
  rows.push({ concurrency: c, requests: lat.length, p50_ms: pct(lat, 50), p99_ms: pct(lat, 99), ttft_p50_ms: pct(ttfts, 50),
    ttft_p99_ms: pct(ttfts, 99), tokens_per_s: tokens / wall, wall_s: wall });
}
await new Promise((r) => setTimeout(r, 300));
const rss1 = rss(args.pid);
console.log(`max_tokens=${maxTokens} (ignore_eos), greedy, streaming, ${PROMPTS.length} distinct prompts`);
console.log('| concurrency | requests | p50 latency (ms) | p99 latency (ms) | p50 TTFT (ms) | p99 TTFT (ms) | tokens/s |');
console.log('|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  console.log(`| ${r.concurrency} | ${r.requests} | ${r.p50_ms.toFixed(1)} | ${r.p99_ms.toFixed(1)} | ${r.ttft_p50_ms.toFixed(1)} | ${r.ttft_p99_ms.toFixed(1)} | ${r.tokens_per_s.toFixed(0)} |`);
}
console.log(`lost requests: ${lost}; responses differing from their reference: ${corrupted}`);
if (args.pid) console.log(`server RSS: ${rss0.toFixed(1)} MiB before the load, ${rss1.toFixed(1)} MiB after`);
agent.destroy();
process.exit(lost || corrupted ? 1 : 0);
