// What the serve benchmarks (serve_admission.mjs, serve_prefix.mjs) read from a running server:
// a GET's body, and one Prometheus series summed over its labels.
import http from 'node:http';

// The body of GET PATH on 127.0.0.1:PORT (over AGENT, so it reuses the benchmark's sockets).
export function httpGet(port, agent, path) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { b += d; });
      res.on('end', () => resolve(b));
    }).on('error', reject);
  });
}

// The sum of every sample of series NAME (any labels) in a /metrics text.
export function metricSum(text, name) {
  let s = 0;
  for (const line of text.split('\n')) if (line.startsWith(name + '{') || line.startsWith(name + ' ')) s += Number(line.split(' ').pop());
  return s;
}
