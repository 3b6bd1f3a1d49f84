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
