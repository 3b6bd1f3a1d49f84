// SIGTERM drain against a running server. Usage: node serve_drain.mjs PORT SERVER_PID
import { test, finish, assert, assertEq, request, postJson, parseSse, sleep, net } from './serve_test_util.mjs';

const [port, pid] = process.argv.slice(2);

await test('SIGTERM: in-flight stream finishes, new work gets 503, readiness fails', async () => {
  const body = JSON.stringify({ model: 'tinystories-llama', prompt: 'Once', max_tokens: 120, ignore_eos: true, stream: true, n: 4, temperature: 1 });
  let firstData;
  const seen = new Promise((r) => { firstData = r; });
  const done = new Promise((resolve, reject) => {
    let got = '';
    const sock = net.connect(port, '127.0.0.1', () => {
      sock.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    });
    sock.on('data', (d) => { got += d.toString(); if (got.includes('data: {')) firstData(); });
    sock.on('end', () => resolve(got));
    sock.on('error', reject);
  });
  await seen;
  process.kill(Number(pid), 'SIGTERM');
  await sleep(50);
  const r = await postJson(port, '/v1/completions', { model: 'tinystories-llama', prompt: 'x', max_tokens: 2 });
  assertEq(r.status, 503, r.body);
  assertEq(JSON.parse(r.body).error.code, 'draining');
  assertEq((await request(port, 'GET', '/readyz')).status, 503);
  assertEq((await request(port, 'GET', '/healthz')).status, 200);
  const raw = await done;
  const sse = raw.slice(raw.indexOf('\r\n\r\n') + 4).replace(/\r\n[0-9a-f]+\r\n/g, '').replace(/^[0-9a-f]+\r\n/, '');
  assert(raw.startsWith('HTTP/1.1 200'), raw.slice(0, 80));
  assert(sse.includes('data: [DONE]'), 'stream did not complete');
  const finishes = (sse.match(/"finish_reason":"length"/g) || []).length;
  assertEq(finishes, 4, 'all four choices finished');
});

finish();
