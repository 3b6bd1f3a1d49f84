// Small helpers shared by the serve_*.mjs scripts: a test runner, raw HTTP, SSE parsing.
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

export async function importOpenAI() {
  const dir = path.resolve(process.cwd(), 'tests/oracles/node_modules/openai/index.mjs');
  return (await import(pathToFileURL(dir).href)).default;
}

let failures = 0;
export async function test(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
  }
}
export function finish() {
  if (failures > 0) {
    console.log(`${failures} test(s) failed`);
    process.exit(1);
  }
  console.log('all passed');
}

export function assert(cond, msg) {
  if (!cond) throw new Error(msg || 'assertion failed');
}
export function assertEq(a, b, msg) {
  if (a !== b) throw new Error(`${msg || 'not equal'}: ${JSON.stringify(a)} !== ${JSON.stringify(b)}`);
}

// One HTTP request; body may be a string or a Buffer. Resolves {status, headers, body}.
export function request(port, method, urlPath, { body, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

export function postJson(port, urlPath, obj, key) {
  const headers = { 'content-type': 'application/json' };
  if (key) headers.authorization = `Bearer ${key}`;
  return request(port, 'POST', urlPath, { body: typeof obj === 'string' || Buffer.isBuffer(obj) ? obj : JSON.stringify(obj), headers });
}

// Parses an SSE body into the JSON payloads (and 'DONE' for data: [DONE]).
export function parseSse(text) {
  const out = [];
  for (const block of text.split('\n\n')) {
    const line = block.trim();
    if (!line) continue;
    assert(line.startsWith('data: '), `bad SSE line: ${line}`);
    const data = line.slice(6);
    out.push(data === '[DONE]' ? 'DONE' : JSON.parse(data));
  }
  return out;
}

// Reads a Prometheus series value (first match of the name, labels ignored unless given).
export async function metric(port, name, key, labelFilter = '') {
  const headers = key ? { authorization: `Bearer ${key}` } : {};
  const r = await request(port, 'GET', '/metrics', { headers });
  assertEq(r.status, 200, 'metrics status');
  for (const line of r.body.split('\n')) {
    if (line.startsWith(name) && (line[name.length] === ' ' || line[name.length] === '{') && line.includes(labelFilter)) {
      return Number(line.split(' ').pop());
    }
  }
  return undefined;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export { net };

// Sends raw bytes (a Buffer or an array of Buffers written in order) and resolves the
// server's full reply once it closes the connection (or after timeoutMs).
export function rawExchangeWith(port, bytes, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const parts = Array.isArray(bytes) ? bytes : [bytes];
    const sock = net.connect(port, '127.0.0.1', () => {
      for (const p of parts) sock.write(p);
    });
    const chunks = [];
    const timer = setTimeout(() => { sock.destroy(); resolve(Buffer.concat(chunks).toString('latin1')); }, timeoutMs);
    sock.on('data', (d) => chunks.push(d));
    sock.on('close', () => { clearTimeout(timer); resolve(Buffer.concat(chunks).toString('latin1')); });
    sock.on('error', (e) => { if (e.code === 'ECONNRESET' || e.code === 'EPIPE') return; clearTimeout(timer); reject(e); });
  });
}

export function statusOf(reply) {
  const m = /^HTTP\/1\.1 (\d{3})/.exec(reply);
  assert(m, `no HTTP status line in reply: ${JSON.stringify(reply.slice(0, 200))}`);
  return Number(m[1]);
}

export function replyBody(reply) {
  return reply.slice(reply.indexOf('\r\n\r\n') + 4);
}

const roundLogprob = (x) => (typeof x === 'number' ? Math.round(x * 1e5) / 1e5 : x);
function logprobsOf(lp) {
  if (!lp) return null;
  if (lp.content) {
    return lp.content.map((t) => [t.token, roundLogprob(t.logprob),
      (t.top_logprobs || []).map((a) => [a.token, roundLogprob(a.logprob)])]);
  }
  return [lp.tokens, (lp.token_logprobs || []).map(roundLogprob), lp.top_logprobs];
}

// A completion's choices (text, finish reason, token logprobs; a stream's chunks joined, so a
// token streamed twice shows) and usage, streamed or not, in one shape; ids and timestamps
// left out, so two servers (or one server twice) given the same request give the same value.
// `stream` says how the request was sent; `res` is {status, body}.
export function normalizeCompletion(stream, res) {
  if (res.status !== 200) return { failed: res.status, body: res.body.slice(0, 200) };
  if (!stream) {
    const j = JSON.parse(res.body);
    return {
      choices: j.choices.map((c) => ({ index: c.index, text: c.message ? c.message.content : c.text,
        finish: c.finish_reason, logprobs: logprobsOf(c.logprobs) })),
      usage: j.usage,
    };
  }
  const events = parseSse(res.body);
  if (events[events.length - 1] !== 'DONE') return { failed: 'no [DONE]' };
  const choices = [];
  let usage = null;
  for (const e of events) {
    if (e === 'DONE') continue;
    if (e.error) return { failed: 'error event', error: e.error };
    if (e.usage) usage = e.usage;
    for (const c of e.choices || []) {
      const ch = (choices[c.index] ||= { index: c.index, text: '', finish: null, logprobs: [] });
      ch.text += c.delta ? (c.delta.content || '') : (c.text || '');
      if (c.finish_reason) ch.finish = c.finish_reason;
      const lp = logprobsOf(c.logprobs);
      if (lp) ch.logprobs.push(lp);
    }
  }
  return { choices, usage };
}
