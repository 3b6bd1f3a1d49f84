// Raw HTTP against a running `accullm serve --api-key KEY --max-body-bytes 4096 --max-queue 4
// --max-num-seqs 1 --max-model-len 128`: every error code, each asserted, and the
// client-disconnect cancellation.
// Usage: node serve_errors.mjs PORT KEY
import { test, finish, assert, assertEq, request, postJson, parseSse, metric, sleep, net, rawExchangeWith, statusOf, replyBody } from
  './serve_test_util.mjs';

const [port, key] = process.argv.slice(2);
const MODEL = 'tinystories-llama';
const ok = { model: MODEL, prompt: 'Once upon a time', max_tokens: 4, temperature: 0 };

function errorOf(r, status, { code, param } = {}) {
  assertEq(r.status, status, `status (body ${r.body})`);
  const e = JSON.parse(r.body).error;
  assert(e && typeof e.message === 'string' && e.message.length > 0, `error body: ${r.body}`);
  assert(typeof e.type === 'string');
  if (code !== undefined) assertEq(e.code, code, 'code');
  if (param !== undefined) assertEq(e.param, param, 'param');
  return e;
}

await test('200 baseline with unknown fields ignored', async () => {
  const r = await postJson(port, '/v1/completions', { ...ok, some_future_field: { x: 1 }, logit_bias: {} }, key);
  assertEq(r.status, 200, r.body);
  assertEq(JSON.parse(r.body).choices[0].finish_reason, 'length');
});

await test('400 malformed JSON', async () => {
  errorOf(await postJson(port, '/v1/completions', '{"model": "x", ', key), 400, { code: 'invalid_json' });
  errorOf(await postJson(port, '/v1/completions', '[1, 2]', key), 400, { code: 'invalid_json' });
});

await test('400 wrong types name the field', async () => {
  errorOf(await postJson(port, '/v1/completions', { ...ok, max_tokens: 'ten' }, key), 400, { param: 'max_tokens' });
  errorOf(await postJson(port, '/v1/completions', { ...ok, temperature: 'hot' }, key), 400, { param: 'temperature' });
  errorOf(await postJson(port, '/v1/completions', { ...ok, stop: 5 }, key), 400, { param: 'stop' });
  errorOf(await postJson(port, '/v1/completions', { ...ok, stream: 'yes' }, key), 400, { param: 'stream' });
  errorOf(await postJson(port, '/v1/completions', { ...ok, prompt: 12 }, key), 400, { param: 'prompt' });
  errorOf(await postJson(port, '/v1/completions', { ...ok, n: 1.5 }, key), 400, { param: 'n' });
  errorOf(await postJson(port, '/v1/chat/completions', { model: MODEL, messages: 'hi' }, key), 400, { param: 'messages' });
  errorOf(await postJson(port, '/v1/chat/completions', { model: MODEL, messages: [{ role: 'wizard', content: 'x' }] }, key), 400,
    { param: 'messages[0].role' });
  errorOf(await postJson(port, '/v1/completions', { prompt: 'x' }, key), 400, { param: 'model' });
});

await test('400 out-of-range values', async () => {
  errorOf(await postJson(port, '/v1/completions', { ...ok, temperature: 3 }, key), 400, { param: 'temperature' });
  errorOf(await postJson(port, '/v1/completions', { ...ok, top_p: 0 }, key), 400, { param: 'top_p' });
  errorOf(await postJson(port, '/v1/completions', { ...ok, n: 0 }, key), 400, { param: 'n' });
  errorOf(await postJson(port, '/v1/completions', { ...ok, stop: ['a', 'b', 'c', 'd', 'e'] }, key), 400, { param: 'stop' });
  errorOf(await postJson(port, '/v1/completions', { ...ok, echo: true }, key), 400, { param: 'echo' });
});

await test('400 unknown model', async () => {
  errorOf(await postJson(port, '/v1/completions', { ...ok, model: 'gpt-9' }, key), 400, { code: 'model_not_found', param: 'model' });
});

await test('400 prompt longer than the context', async () => {
  const long = 'Once upon a time there was a dog. '.repeat(40);
  errorOf(await postJson(port, '/v1/completions', { ...ok, prompt: long }, key), 400, { code: 'context_length_exceeded' });
  errorOf(await postJson(port, '/v1/completions', { ...ok, prompt: Array(200).fill(5) }, key), 400, { code: 'context_length_exceeded' });
  errorOf(await postJson(port, '/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: long }] }, key), 400,
    { code: 'context_length_exceeded', param: 'messages' });
});

await test('400 max_tokens out of range', async () => {
  errorOf(await postJson(port, '/v1/completions', { ...ok, max_tokens: 0 }, key), 400, { param: 'max_tokens' });
  errorOf(await postJson(port, '/v1/completions', { ...ok, max_tokens: -3 }, key), 400, { param: 'max_tokens' });
  errorOf(await postJson(port, '/v1/completions', { ...ok, max_tokens: 1000 }, key), 400,
    { param: 'max_tokens', code: 'context_length_exceeded' });
});

await test('400 invalid UTF-8 body', async () => {
  const body = Buffer.concat([Buffer.from('{"model":"tinystories-llama","prompt":"bad '), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
  errorOf(await postJson(port, '/v1/completions', body, key), 400, { code: 'invalid_utf8' });
  const overlong = Buffer.concat([Buffer.from('{"model":"tinystories-llama","prompt":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')]);
  errorOf(await postJson(port, '/v1/completions', overlong, key), 400, { code: 'invalid_utf8' });
});

await test('401 without or with a wrong key; probes stay open', async () => {
  errorOf(await postJson(port, '/v1/completions', ok), 401, { code: 'invalid_api_key' });
  errorOf(await postJson(port, '/v1/completions', ok, key + 'x'), 401, { code: 'invalid_api_key' });
  errorOf(await postJson(port, '/v1/completions', ok, key.slice(0, -1)), 401);
  errorOf(await request(port, 'GET', '/v1/models'), 401);
  errorOf(await request(port, 'GET', '/metrics'), 401);
  assertEq((await request(port, 'GET', '/healthz')).status, 200);
  assertEq((await request(port, 'GET', '/readyz')).status, 200);
});

await test('404 unknown route, 405 wrong method', async () => {
  errorOf(await request(port, 'GET', '/v2/nothing', { headers: { authorization: `Bearer ${key}` } }), 404);
  errorOf(await request(port, 'GET', '/v1/completions', { headers: { authorization: `Bearer ${key}` } }), 405);
});

await test('413 body over the limit', async () => {
  const big = JSON.stringify({ ...ok, prompt: 'a'.repeat(5000) });
  errorOf(await postJson(port, '/v1/completions', big, key), 413, { code: 'request_too_large' });
});

await test('429 when the queue is full; every other request completes', async () => {
  // n beyond the queue's room is refused at once.
  errorOf(await postJson(port, '/v1/completions', { ...ok, n: 5, temperature: 1 }, key), 429, { code: 'queue_full' });
  // A flood: one running (--max-num-seqs 1), four waiting, the rest refused.
  const flood = [];
  for (let i = 0; i < 12; i++) {
    flood.push(postJson(port, '/v1/completions', { ...ok, max_tokens: 100, ignore_eos: true, seed: i, temperature: 1 }, key));
  }
  const rs = await Promise.all(flood);
  const codes = rs.map((r) => r.status);
  assert(codes.includes(429), `no 429 in ${codes}`);
  assert(codes.filter((c) => c === 200).length >= 2, `too few 200 in ${codes}`);
  for (const r of rs) {
    if (r.status === 429) errorOf(r, 429, { code: 'queue_full' });
    else {
      assertEq(r.status, 200, r.body);
      assertEq(JSON.parse(r.body).usage.completion_tokens, 100);
    }
  }
});

await test('client disconnect mid-stream cancels the sequence and frees its KV blocks', async () => {
  const aborts0 = (await metric(port, 'accullm_request_success_total', key, 'finished_reason="abort"')) ?? 0;
  const body = JSON.stringify({ ...ok, prompt: 'Once', max_tokens: 120, ignore_eos: true, stream: true, temperature: 1 });
  await new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => {
      sock.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    });
    let got = '';
    sock.on('data', (d) => {
      got += d.toString();
      if ((got.match(/data: /g) || []).length >= 2) {
        sock.destroy();  // hang up after the first tokens
        resolve();
      }
    });
    sock.on('error', reject);
  });
  let usage = 1, running = 1, aborts = aborts0;
  for (let i = 0; i < 100 && (usage !== 0 || running !== 0 || aborts === aborts0); i++) {
    await sleep(20);
    usage = await metric(port, 'accullm_kv_cache_usage_perc', key);
    running = await metric(port, 'accullm_num_requests_running', key);
    aborts = (await metric(port, 'accullm_request_success_total', key, 'finished_reason="abort"')) ?? 0;
  }
  assertEq(usage, 0, 'kv_cache_usage_perc');
  assertEq(running, 0, 'num_requests_running');
  assertEq(aborts, aborts0 + 1, 'aborted sequences');
});

const rawExchange = (bytes, timeoutMs) => rawExchangeWith(port, bytes, timeoutMs);

const chunkedHead = `POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nTransfer-Encoding: chunked\r\n\r\n`;

async function assertServerAlive() {
  assertEq((await request(port, 'GET', '/healthz')).status, 200, 'server still answers /healthz');
}

await test('a 65,535-byte trailer field gets 400, not a crash', async () => {
  const reply = await rawExchange(Buffer.from(chunkedHead + '2\r\n{}\r\n0\r\nX-T: ' + 'a'.repeat(65535) + '\r\n\r\n'));
  assertEq(statusOf(reply), 400, reply.slice(0, 300));
  assertEq(JSON.parse(replyBody(reply)).error.code, 'chunk_metadata_too_large');
  await assertServerAlive();
});

await test('50,000 trailer fields are refused', async () => {
  const reply = await rawExchange(Buffer.from(chunkedHead + '2\r\n{}\r\n0\r\n' + 'X-T: a\r\n'.repeat(50000) + '\r\n'));
  assertEq(statusOf(reply), 400, reply.slice(0, 300));
  await assertServerAlive();
});

await test('a long chunk extension is refused before it is buffered', async () => {
  // 32 MiB of extension, streamed: the server answers and closes long before the end.
  const ext = Buffer.alloc(1 << 20, 'a');
  const parts = [Buffer.from(chunkedHead + '2;x=')];
  for (let i = 0; i < 32; i++) parts.push(ext);
  const reply = await rawExchange(parts);
  assertEq(statusOf(reply), 400, reply.slice(0, 300));
  // A short extension is harmless and still accepted.
  const body = JSON.stringify(ok);
  const fine = await rawExchange(Buffer.from(chunkedHead.replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n') +
    `${Buffer.byteLength(body).toString(16)};name=value\r\n${body}\r\n0\r\n\r\n`));
  assertEq(statusOf(fine), 200, fine.slice(0, 300));
});

await test('413 from Content-Length alone, answered and counted', async () => {
  const before = (await metric(port, 'accullm_requests_rejected_total', key, 'reason="too_large"')) ?? 0;
  // Counted under the route the request named (the soak found it counted under "other").
  const label = 'code="413",endpoint="/v1/completions"';
  const routeBefore = (await metric(port, 'accullm_http_responses_total', key, label)) ?? 0;
  const reply = await rawExchange(Buffer.from(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n` +
    'Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n'));
  assertEq(statusOf(reply), 413, reply.slice(0, 300));
  assertEq(JSON.parse(replyBody(reply)).error.code, 'request_too_large');
  const after = await metric(port, 'accullm_requests_rejected_total', key, 'reason="too_large"');
  assertEq(after, before + 1, 'too_large rejections');
  assertEq(await metric(port, 'accullm_http_responses_total', key, label), routeBefore + 1, `responses{${label}}`);
});

await test('HEAD gets the GET headers and no body', async () => {
  const reply = await rawExchange(Buffer.from('HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
  assertEq(statusOf(reply), 200, reply);
  assert(/\r\nContent-Length: 15\r\n/i.test(reply), `HEAD content-length: ${reply}`);
  assertEq(replyBody(reply), '', 'HEAD body');
  const missing = await rawExchange(Buffer.from('HEAD /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
  assertEq(statusOf(missing), 404, missing);
  assertEq(replyBody(missing), '', 'HEAD 404 body');
});

await test('transfer codings other than chunked get 501; compressed bodies 415', async () => {
  const body = JSON.stringify(ok);
  const gz = await rawExchange(Buffer.from(chunkedHead.replace('chunked', 'gzip, chunked') +
    `${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\n\r\n`));
  assertEq(statusOf(gz), 501, gz.slice(0, 300));
  assertEq(JSON.parse(replyBody(gz)).error.code, 'unsupported_transfer_encoding');
  const ce = await rawExchange(Buffer.from(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n` +
    `Content-Encoding: gzip\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`));
  assertEq(statusOf(ce), 415, ce.slice(0, 300));
});

await test('malformed request lines get 400', async () => {
  const reply = await rawExchange(Buffer.from('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n'));
  assertEq(statusOf(reply), 400, reply.slice(0, 300));
  assertEq(JSON.parse(replyBody(reply)).error.code, 'malformed_request');
});

await test('over --max-connections, probes still answer and other requests get 503', async () => {
  // The server runs with --max-connections 32: hold 40 idle connections.
  const idle = await Promise.all(Array.from({ length: 40 }, () => new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.on('error', () => {});
  })));
  try {
    await sleep(100);
    assertEq((await request(port, 'GET', '/healthz')).status, 200, '/healthz over the connection limit');
    errorOf(await postJson(port, '/v1/completions', ok, key), 503, { code: 'too_many_connections' });
  } finally {
    for (const s of idle) s.destroy();
  }
  await sleep(200);
  assertEq((await postJson(port, '/v1/completions', ok, key)).status, 200, 'served again once the idle connections closed');
});

await test('SSE framing: [DONE] last, every chunk one JSON object', async () => {
  const r = await postJson(port, '/v1/completions', { ...ok, max_tokens: 6, stream: true }, key);
  assertEq(r.status, 200);
  assert(r.headers['content-type'].startsWith('text/event-stream'));
  const events = parseSse(r.body);
  assertEq(events[events.length - 1], 'DONE');
  assertEq(events[events.length - 2].choices[0].finish_reason, 'length');
});

finish();
