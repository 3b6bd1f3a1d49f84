// The client of serve_soak_test.sh: a bounded soak of one running server (embedded or the
// coordinator of a pipeline). Phases:
//   1. references: every request template answered alone, one at a time (streamed and not);
//   2. warm-up: one request per client at once (the widest batch's scratch is allocated),
//      then the resident-memory baseline once the server is idle;
//   3. load: CLIENTS concurrent clients for SECONDS, each looping over a seeded random mix of
//      valid requests (streamed and not; each answer compared with its reference, so a lost,
//      truncated or mixed-up response fails), clients hanging up mid-stream or before a
//      non-streamed reply, and malformed requests (bad JSON, invalid UTF-8, a body over
//      --max-body-bytes by Content-Length and chunked, wrong types, an unknown model, a prompt
//      over the context, garbage instead of HTTP; each must get its 4xx and error code) and
//      unknown fields (ignored: the answer must equal the reference); /healthz polled throughout;
//   4. after: once idle and settled, resident memory against the baseline, /healthz, /readyz,
//      /metrics counters against the client's own tally, no KV block held, and the references
//      answered the same again.
// Prints ok/FAIL lines, latency percentiles and throughput, writes the figures as JSON to OUT,
// and exits 1 on any failure.
// Usage: node serve_soak.mjs PORT SECONDS CLIENTS MAX_BODY_BYTES PIDS OUT
//   PIDS: comma-separated pids whose resident memory is tracked (the server's, or every rank's).
import http from 'node:http';
import fs from 'node:fs';
import { request, parseSse, sleep, rawExchangeWith, statusOf, replyBody, normalizeCompletion } from
  './serve_test_util.mjs';

const [port, secondsArg, clientsArg, maxBodyArg, pidsArg, out] = process.argv.slice(2);
const SECONDS = Number(secondsArg), CLIENTS = Number(clientsArg), MAX_BODY = Number(maxBodyArg);
const PIDS = pidsArg.split(',').map(Number);
const MODEL = 'm';
const REQUEST_TIMEOUT_MS = 120000;  // a valid request unanswered this long counts as lost (a hang)

let failures = 0;
const ok = (msg) => console.log(`ok   - ${msg}`);
const fail = (msg) => { failures++; console.log(`FAIL - ${msg}`); };
const check = (cond, msg) => (cond ? ok(msg) : fail(msg));

// Deterministic per-client choices (mulberry32), so a failing mix can be replayed.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---- Request templates: distinct prompts, so a response given to the wrong request shows.
const NAMES = ['Tom', 'Sue', 'Max', 'Lily', 'Ben', 'Amy', 'Sam', 'Kim', 'Tim', 'Mia', 'Leo', 'Zoe'];
const THINGS = ['cat', 'dog', 'bird', 'fox', 'ball', 'tree', 'boat', 'cake', 'frog', 'kite', 'star', 'duck'];
const N_TEMPLATES = 24;
function template(i) {
  const name = NAMES[i % 12], thing = THINGS[(i * 5) % 12];
  const chat = i % 2 === 0;
  const body = { model: MODEL };
  if (chat) {
    body.messages = [{ role: 'user', content: `Tell me a story about ${name} and the ${thing}.` }];
    if (i % 3 === 0) body.messages.unshift({ role: 'system', content: 'You tell short stories for children.' });
    body.max_tokens = 16 + ((i * 5) % 40);
  } else {
    body.prompt = `Once upon a time, ${name} found a little ${thing}. ${name}`;
    body.max_tokens = 8 + ((i * 7) % 40);
    if (i % 3 === 1) body.ignore_eos = true;
  }
  if (i % 4 < 2) body.temperature = 0;
  else Object.assign(body, { temperature: 0.8, top_p: 0.9, seed: 1000 + i });
  if (i % 6 === 3) body.n = 2;
  if (i % 5 === 1) Object.assign(body, chat ? { logprobs: true, top_logprobs: 2 } : { logprobs: 2 });
  if (i % 7 === 4) body.stop = [' the ', '!'];
  if (i % 6 === 5) body.presence_penalty = 0.4;
  return { path: chat ? '/v1/chat/completions' : '/v1/completions', body, n: body.n || 1 };
}
const TEMPLATES = Array.from({ length: N_TEMPLATES }, (_, i) => template(i));
const withStream = (body) => ({ ...body, stream: true, stream_options: { include_usage: true } });

// ---- HTTP: a keep-alive pool for well-formed requests, as real clients hold.
const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS + 8 });

// Sends one request; resolves {status, body, ttftMs, totalMs} or, with hangUp, resolves
// {hungUp: true, status} once it hung up: hangUp.afterTokens (streams: after that many token
// events) or hangUp.afterMs (a non-streamed reply not awaited).
function send(path, body, { stream = false, hangUp = null } = {}) {
  return new Promise((resolve, reject) => {
    const data = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
    const t0 = performance.now();
    let ttftMs = null, done = false, tokenEvents = 0, status = 0, pending = '';
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path, agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
      status = res.statusCode;
      const chunks = [];
      res.on('data', (c) => {
        chunks.push(c);
        if (!stream || status !== 200) return;
        // Count the events carrying tokens as they arrive (a chat stream's first event only
        // announces the role): the first one's arrival is the time to first token.
        pending += c.toString('utf8');
        let cut;
        while ((cut = pending.indexOf('\n\n')) >= 0) {
          const line = pending.slice(0, cut).trim();
          pending = pending.slice(cut + 2);
          if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
          const e = JSON.parse(line.slice(6));
          if ((e.choices || []).some((ch) => ch.text !== undefined || (ch.delta && !ch.delta.role))) {
            if (ttftMs === null) ttftMs = performance.now() - t0;
            tokenEvents++;
          }
        }
        if (hangUp && hangUp.afterTokens && tokenEvents >= hangUp.afterTokens && !done) {
          done = true;
          req.destroy();
          resolve({ hungUp: true, status });
        }
      });
      res.on('end', () => {
        if (done) return;
        done = true;
        resolve({ status, body: Buffer.concat(chunks).toString('utf8'), ttftMs, totalMs: performance.now() - t0 });
      });
      res.on('error', (e) => { if (!done) { done = true; reject(e); } });
    });
    req.on('error', (e) => { if (!done) { done = true; reject(e); } });
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    req.end(data);
    if (hangUp && hangUp.afterMs) {
      setTimeout(() => {
        if (done) return;
        done = true;
        req.destroy();
        resolve({ hungUp: true, status });
      }, hangUp.afterMs);
    }
  });
}

async function metricsText() {
  const r = await request(port, 'GET', '/metrics');
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`);
  return r.body;
}
// Sum of a series' samples whose labels include every `key="value"` in `labels`.
function series(text, name, labels = {}) {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || !(line[name.length] === ' ' || line[name.length] === '{')) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) sum += Number(line.split(' ').pop());
  }
  return sum;
}
async function waitIdle() {
  for (let i = 0; i < 600; i++) {
    const m = await metricsText();
    if (series(m, 'accullm_num_requests_running') === 0 && series(m, 'accullm_num_requests_waiting') === 0) return m;
    await sleep(100);
  }
  throw new Error('the server never became idle');
}
function rssKib() {
  const per = PIDS.map((pid) => {
    const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  });
  return { per, total: per.reduce((a, b) => a + b, 0) };
}

// ---- Phase 1: references, one request at a time.
async function answerAlone(t, stream) {
  const r = await send(t.path, stream ? withStream(t.body) : t.body, { stream });
  return JSON.stringify(normalizeCompletion(stream, r));
}
async function allReferences() {
  const refs = [];
  for (const t of TEMPLATES) refs.push({ plain: await answerAlone(t, false), stream: await answerAlone(t, true) });
  return refs;
}
const refs = await allReferences();
const bad = refs.filter((r) => r.plain.includes('"failed"') || r.stream.includes('"failed"'));
if (bad.length > 0) {
  fail(`references: ${bad.length} of ${N_TEMPLATES} templates failed alone: ${bad[0].plain.slice(0, 200)}`);
  process.exit(1);
}
const distinct = new Set(refs.map((r) => r.plain)).size;
check(distinct === N_TEMPLATES, `references: ${distinct} distinct answers to ${N_TEMPLATES} templates (a mix-up would show)`);

// ---- Phase 2: warm-up at full width, then the baseline.
await Promise.all(Array.from({ length: CLIENTS }, (_, c) => {
  const t = TEMPLATES[c % N_TEMPLATES];
  return send(t.path, c % 2 ? withStream(t.body) : t.body, { stream: c % 2 === 1 });
}));
await waitIdle();
await sleep(2000);
const rssBase = rssKib();
const before = await metricsText();

// ---- Phase 3: the load.
const tally = {
  valid: 0, validSequences: 0, matched: 0, mismatched: 0, lost: 0, completionTokens: 0,
  streamHangUps: 0, streamHangUpSequences: 0, plainHangUps: 0, plainHangUpSequences: 0, plainAnsweredBeforeHangUp: 0,
  status: {},  // "endpoint code" -> count, as the server labels http_responses_total
  rejected: { invalid: 0, too_large: 0 },
  malformed: {}, malformedWrong: 0, fiveHundreds: 0, healthzPolls: 0, healthzBad: 0, healthzMaxMs: 0,
};
const ttft = [], totalMs = [];
const firstExamples = [];
const note = (msg) => { if (firstExamples.length < 5) firstExamples.push(msg); };
const countStatus = (endpoint, code) => {
  const k = `${endpoint} ${code}`;
  tally.status[k] = (tally.status[k] || 0) + 1;
  if (code >= 500) tally.fiveHundreds++;
};

async function validRequest(r, { stream, extra = null }) {
  const ti = Math.floor(r() * N_TEMPLATES), t = TEMPLATES[ti];
  const body = extra ? { ...t.body, ...extra } : t.body;
  tally.valid++;
  tally.validSequences += t.n;
  let res;
  try {
    res = await send(t.path, stream ? withStream(body) : body, { stream });
  } catch (e) {
    tally.lost++;
    note(`template ${ti} stream=${stream}: ${e}`);
    return;
  }
  countStatus(t.path, res.status);
  const got = JSON.stringify(normalizeCompletion(stream, res));
  if (got === (stream ? refs[ti].stream : refs[ti].plain)) {
    tally.matched++;
    totalMs.push(res.totalMs);
    if (stream && res.ttftMs !== null) ttft.push(res.ttftMs);
    tally.completionTokens += JSON.parse(got).usage.completion_tokens;
  } else {
    tally.mismatched++;
    note(`template ${ti} stream=${stream}: status ${res.status}: ${got.slice(0, 300)}`);
  }
}

// A long request (100 tokens past EOS) the client abandons.
const LONG = { model: MODEL, prompt: 'Once upon a time, a little girl', max_tokens: 100, ignore_eos: true,
  temperature: 0.9, seed: 7 };
async function hangUpMidStream() {
  tally.streamHangUps++;
  tally.streamHangUpSequences++;
  try {
    const res = await send('/v1/completions', withStream(LONG), { stream: true, hangUp: { afterTokens: 2 } });
    countStatus('/v1/completions', res.status);
    if (!res.hungUp) note(`a stream meant to be abandoned ended first (status ${res.status})`);
  } catch (e) {
    tally.lost++;
    note(`stream hang-up: ${e}`);
  }
}
async function hangUpBeforeReply(r) {
  tally.plainHangUps++;
  tally.plainHangUpSequences++;
  try {
    const res = await send('/v1/completions', LONG, { hangUp: { afterMs: 5 + Math.floor(r() * 60) } });
    if (!res.hungUp) {
      tally.plainAnsweredBeforeHangUp++;
      countStatus('/v1/completions', res.status);
    }
  } catch (e) {
    tally.lost++;
    note(`hang-up before the reply: ${e}`);
  }
}

// Malformed requests: what is sent, and the status and error code it must get.
const okBody = { model: MODEL, prompt: 'Once upon a time', max_tokens: 4, temperature: 0 };
const head = (extra) => `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n${extra}\r\n`;
const MALFORMED = {
  bad_json: { status: 400, code: 'invalid_json', reason: 'invalid', body: '{"model": "m", "prompt": ' },
  invalid_utf8: { status: 400, code: 'invalid_utf8', reason: 'invalid',
    body: Buffer.concat([Buffer.from('{"model":"m","prompt":"bad '), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}')]) },
  wrong_type: { status: 400, reason: 'invalid', body: JSON.stringify({ ...okBody, max_tokens: 'ten' }) },
  unknown_model: { status: 400, code: 'model_not_found', reason: 'invalid', body: JSON.stringify({ ...okBody, model: 'gpt-9' }) },
  over_context: { status: 400, code: 'context_length_exceeded', reason: 'invalid',
    body: JSON.stringify({ ...okBody, prompt: 'Once upon a time there was a dog. '.repeat(40) }) },
  // Raw bytes, the connection closed by the server after its answer.
  oversized_length: { status: 413, code: 'request_too_large', reason: 'too_large', endpoint: '/v1/completions',
    raw: () => [Buffer.from(head(`Content-Length: ${MAX_BODY * 4}\r\n`)), Buffer.alloc(1024, 'a')] },
  oversized_chunked: { status: 413, code: 'request_too_large', reason: 'too_large', endpoint: '/v1/completions',
    raw: () => {
      const chunk = Buffer.alloc(4096, 'a');
      const parts = [Buffer.from(head('Transfer-Encoding: chunked\r\n') + 'b\r\n{"prompt":"\r\n')];
      for (let i = 0; i < Math.ceil((MAX_BODY * 2) / 4096); i++) {
        parts.push(Buffer.from('1000\r\n'), chunk, Buffer.from('\r\n'));
      }
      return parts;
    } },
  // (A request line the parser can still take for the start of a longer one waits for more
  // bytes until the keep-alive timeout, as any HTTP/1.1 server does: not sent here.)
  garbage_line: { status: 400, code: 'malformed_request', reason: 'invalid', endpoint: 'other',
    raw: () => [Buffer.from('GARBAGE\x01\x02\r\n\r\n')] },
  garbage_header: { status: 400, code: 'malformed_request', reason: 'invalid', endpoint: 'other',
    raw: () => [Buffer.from('POST /v1/completions HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n')] },
};
const MALFORMED_KINDS = Object.keys(MALFORMED);
let malformedSent = 0;
async function malformedRequest() {
  // In turn (not drawn), so that even a short run sends every kind.
  const kind = MALFORMED_KINDS[malformedSent++ % MALFORMED_KINDS.length];
  const m = MALFORMED[kind];
  tally.malformed[kind] = (tally.malformed[kind] || 0) + 1;
  let status, body;
  try {
    if (m.raw) {
      const reply = await rawExchangeWith(port, m.raw(), 20000);
      status = statusOf(reply);
      body = replyBody(reply);
    } else {
      const res = await send('/v1/completions', m.body);
      status = res.status;
      body = res.body;
    }
  } catch (e) {
    tally.malformedWrong++;
    note(`${kind}: ${e}`);
    return;
  }
  countStatus(m.endpoint || '/v1/completions', status);
  if (status === m.status) tally.rejected[m.reason]++;
  let code;
  try {
    code = JSON.parse(body).error.code;
  } catch {
    code = '(no JSON error body)';
  }
  if (status !== m.status || (m.code && code !== m.code)) {
    tally.malformedWrong++;
    note(`${kind}: got ${status} ${code}, want ${m.status} ${m.code || ''}`);
  }
}

async function client(c, deadline) {
  const r = rng(0x5eed + c);
  while (performance.now() < deadline) {
    const x = r();
    if (x < 0.45) await validRequest(r, { stream: false });
    else if (x < 0.72) await validRequest(r, { stream: true });
    else if (x < 0.77) await validRequest(r, { stream: false, extra: { some_future_field: { a: [1, 2] }, user_tag: 'x' } });
    else if (x < 0.83) await hangUpMidStream();
    else if (x < 0.87) await hangUpBeforeReply(r);
    else await malformedRequest();
  }
}

let rssPeak = rssBase.total;
const rssTimeline = [];  // [seconds into the load, total KiB] every 10 s: a plateau, or a leak's slope
let loadRunning = true;
async function probe() {
  while (loadRunning) {
    const at = (performance.now() - loadStart) / 1000;
    if (at >= rssTimeline.length * 10) rssTimeline.push([Math.round(at), rssKib().total]);
    const sent = performance.now();
    const h = await request(port, 'GET', '/healthz').catch(() => ({ status: 0 }));
    const ms = performance.now() - sent;
    tally.healthzPolls++;
    if (h.status !== 200) tally.healthzBad++;
    tally.healthzMaxMs = Math.max(tally.healthzMaxMs, ms);
    rssPeak = Math.max(rssPeak, rssKib().total);
    await sleep(500);
  }
}

const loadStart = performance.now();
const deadline = loadStart + SECONDS * 1000;
const prober = probe();
await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c, deadline)));
const loadSeconds = (performance.now() - loadStart) / 1000;
loadRunning = false;
await prober;

// ---- Phase 4: after the load.
const after = await waitIdle();
await sleep(3000);
const rssAfter = rssKib();
const afterSettled = await metricsText();
const delta = (name, labels) => series(after, name, labels) - series(before, name, labels);

const pct = (xs, p) => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] * 10) / 10;
};
const figures = {
  seconds: Math.round(loadSeconds * 10) / 10, clients: CLIENTS,
  requests: tally.valid + tally.streamHangUps + tally.plainHangUps + Object.values(tally.malformed).reduce((a, b) => a + b, 0),
  completed_checked: tally.matched, requests_per_s: Math.round((tally.matched / loadSeconds) * 10) / 10,
  completion_tokens: tally.completionTokens, tokens_per_s: Math.round(tally.completionTokens / loadSeconds),
  server_generated_tokens: delta('accullm_generation_tokens_total'),
  preemptions: delta('accullm_num_preemptions_total'),
  ttft_ms: { p50: pct(ttft, 50), p99: pct(ttft, 99), n: ttft.length },
  total_ms: { p50: pct(totalMs, 50), p99: pct(totalMs, 99), n: totalMs.length },
  stream_hang_ups: tally.streamHangUps, hang_ups_before_reply: tally.plainHangUps, malformed: tally.malformed,
  healthz: { polls: tally.healthzPolls, bad: tally.healthzBad, max_ms: Math.round(tally.healthzMaxMs) },
  rss_kib: { baseline: rssBase, peak: rssPeak, after: rssAfter, during: rssTimeline },
};
console.log(JSON.stringify(figures));
fs.writeFileSync(out, JSON.stringify(figures, null, 2) + '\n');

check(tally.matched > 0 && tally.mismatched === 0 && tally.lost === 0,
  `load: ${tally.matched} of ${tally.valid} valid requests answered exactly as alone; ${tally.mismatched} differ, ` +
  `${tally.lost} lost (errors or timeouts)`);
check(tally.fiveHundreds === 0, `load: no 5xx (${tally.fiveHundreds})`);
const malformedTotal = Object.values(tally.malformed).reduce((a, b) => a + b, 0);
check(tally.malformedWrong === 0 && Object.keys(tally.malformed).length === MALFORMED_KINDS.length,
  `load: ${malformedTotal} malformed requests (${MALFORMED_KINDS.length} kinds) each got its 4xx and error code; ` +
  `${tally.malformedWrong} did not`);
check(tally.streamHangUps > 0 && tally.plainHangUps > 0,
  `load: ${tally.streamHangUps} clients hung up mid-stream, ${tally.plainHangUps} before a non-streamed reply ` +
  `(${tally.plainAnsweredBeforeHangUp} answered first)`);
check(tally.healthzBad === 0, `load: /healthz answered 200 to ${tally.healthzPolls} polls (slowest ${figures.healthz.max_ms} ms)`);
for (const e of firstExamples) console.log(`       ${e}`);

// Counters against the client's tally (the load phase only: before is taken after the warm-up).
// Every (route, code) either side saw: the client's tally and the server's non-zero rises.
const seenKeys = new Set(Object.keys(tally.status));
for (const line of after.split('\n')) {
  const m = /^accullm_http_responses_total\{code="(\d+)",endpoint="([^"]+)"/.exec(line);
  if (m && ['/v1/completions', '/v1/chat/completions', 'other'].includes(m[2]) &&
      delta('accullm_http_responses_total', { endpoint: m[2], code: m[1] }) > 0) seenKeys.add(`${m[2]} ${m[1]}`);
}
for (const k of [...seenKeys].sort()) {
  const [endpoint, code] = k.split(' ');
  const server = delta('accullm_http_responses_total', { endpoint, code });
  const client = tally.status[k] || 0;
  // A non-streamed reply written just as its client hung up counts on the server only.
  const slack = code === '200' && endpoint === '/v1/completions' ? tally.plainHangUps : 0;
  check(server >= client && server <= client + slack,
    `metrics: http_responses_total{endpoint="${endpoint}",code="${code}"} rose by ${server}; the client saw ${client}` +
    (slack ? ` (+ up to ${slack} hung up)` : ''));
}
for (const code of ['429', '500', '503']) {
  const n = delta('accullm_http_responses_total', { code });
  check(n === 0, `metrics: no ${code} counted (${n})`);
}
for (const [reason, n] of Object.entries(tally.rejected)) {
  const server = delta('accullm_requests_rejected_total', { reason });
  check(server === n, `metrics: requests_rejected_total{reason="${reason}"} rose by ${server}; the client got ${n}`);
}
check(delta('accullm_requests_rejected_total', { reason: 'queue_full' }) === 0, 'metrics: nothing refused for a full queue');
const finished = (reason) => delta('accullm_request_success_total', { finished_reason: reason });
const done = finished('stop') + finished('length'), aborted = finished('abort');
const hungUp = tally.streamHangUpSequences + tally.plainHangUpSequences;
check(finished('error') === 0, `metrics: no sequence finished in error (${finished('error')})`);
check(done + aborted >= tally.validSequences && done + aborted <= tally.validSequences + hungUp && done >= tally.validSequences,
  `metrics: ${done} sequences finished + ${aborted} aborted; the client sent ${tally.validSequences} answered + ` +
  `${hungUp} abandoned`);
check(aborted >= 1, `metrics: the hung-up clients' sequences were cancelled (${aborted} aborted)`);
check(figures.server_generated_tokens >= tally.completionTokens,
  `metrics: generation_tokens_total rose by ${figures.server_generated_tokens} >= ${tally.completionTokens} tokens answered`);
check(series(afterSettled, 'accullm_kv_cache_used_blocks') === 0 && series(afterSettled, 'accullm_num_requests_running') === 0,
  `metrics: no sequence running and no KV block held after the load`);

// Resident memory: back to the warmed-up baseline (the allocator may keep a little).
const allowKib = Math.max(8192, Math.round(rssBase.total * 0.05));
check(rssAfter.total <= rssBase.total + allowKib,
  `memory: resident ${rssBase.total} KiB after warm-up, ${rssPeak} KiB peak, ${rssAfter.total} KiB after the load ` +
  `(allowed +${allowKib} KiB; per process ${rssBase.per.join('/')} -> ${rssAfter.per.join('/')})`);

// Still healthy, and still answering exactly as before.
check((await request(port, 'GET', '/healthz')).status === 200 && (await request(port, 'GET', '/readyz')).status === 200,
  'after: /healthz and /readyz answer 200');
const again = await allReferences();
const same = again.filter((a, i) => a.plain === refs[i].plain && a.stream === refs[i].stream).length;
check(same === N_TEMPLATES, `after: ${same} of ${N_TEMPLATES} templates answered alone exactly as before the load`);

agent.destroy();
console.log(failures === 0 ? 'soak passed' : `${failures} failure(s)`);
process.exit(failures === 0 ? 0 : 1);
