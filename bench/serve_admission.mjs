// How many concurrent chat sessions without max_tokens a server's KV budget runs at once:
// fires `--sessions` streaming chat completions together (no max_tokens: OpenAI's default is
// the rest of the context), samples /metrics every 10 ms while they run and reports the most
// sequences running at once (admitted), the most waiting, the preemptions, wall time and
// tokens/s. Before on-demand blocks a session reserved its whole context at admission; after,
// only its prompt's blocks.
//
// Usage: node bench/serve_admission.mjs --port N [--sessions 64] [--model m] [--label NAME]
import http from 'node:http';
import { httpGet, metricSum } from './server_metrics.mjs';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
  return acc;
}, []));
const port = Number(args.port);
const sessions = Number(args.sessions || 64);
const model = args.model || 'm';
const label = args.label || '';
const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });
const NAMES = ['Tom', 'Sue', 'Max', 'Lily', 'Ben', 'Amy', 'Sam', 'Kim'];

const get = (path) => httpGet(port, agent, path);
const metric = metricSum;

function chat(i) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ model, temperature: 0, stream: true, stream_options: { include_usage: true },
      messages: [{ role: 'user', content: `Tell me a long story about ${NAMES[i % 8]} number ${i}.` }] });
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions', agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}`));
      let buf = '', tokens = 0;
      res.setEncoding('utf8');
      res.on('data', (d) => {
        buf += d;
        const m = buf.match(/"completion_tokens":(\d+)/);
        if (m) tokens = Number(m[1]);
      });
      res.on('end', () => resolve(tokens));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const before = await get('/metrics');
let peakRunning = 0, peakWaiting = 0, sampling = true;
const sampler = (async () => {
  while (sampling) {
    const m = await get('/metrics');
    peakRunning = Math.max(peakRunning, metric(m, 'accullm_num_requests_running'));
    peakWaiting = Math.max(peakWaiting, metric(m, 'accullm_num_requests_waiting'));
    await new Promise((r) => setTimeout(r, 10));
  }
})();
const t0 = performance.now();
let lost = 0, tokens = 0;
await Promise.all(Array.from({ length: sessions }, (_, i) => chat(i).then((t) => { tokens += t; }, () => { lost++; })));
const wall = (performance.now() - t0) / 1000;
sampling = false;
await sampler;
const after = await get('/metrics');
const preempt = metric(after, 'accullm_num_preemptions_total') - metric(before, 'accullm_num_preemptions_total');
const blocks = metric(after, 'accullm_kv_cache_free_blocks') + metric(after, 'accullm_kv_cache_used_blocks');
console.log(JSON.stringify({ label, sessions, kv_blocks: blocks || null, peak_running: peakRunning, peak_waiting: peakWaiting,
  preemptions: preempt, lost, tokens, wall_s: +wall.toFixed(2), tokens_per_s: +(tokens / wall).toFixed(0) }));
agent.destroy();
