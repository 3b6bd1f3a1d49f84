#!/usr/bin/env bash
# On-demand KV blocks, preemption and prefix caching over HTTP: 64 concurrent clients (chat
# sessions without max_tokens, most behind one shared system prompt, completions; greedy and
# seeded; streamed and not; n = 2, stop strings, logprobs, a presence penalty) against servers
# whose --kv-cache-mb holds 12 blocks (192 positions, for a context of 128) get exactly the
# responses an unconstrained server without prefix caching gives (text, finish reason,
# logprobs, usage): with and without prefix caching, with prompt-lookup speculation, and under
# `mpirun -np 3` (coordinator + two stages). The constrained servers did preempt and the
# caching ones did hit (their counters say so: else the comparison proves nothing); no request
# is lost, and no KV block is held by a sequence once the load is done (cached ones count free).
# Usage: serve_kv_pool_test.sh ACCULLM   (cwd: repository root)
set -uo pipefail
source tests/integration/test_prelude.sh "$@"
source tests/integration/serve_lib.sh
source tests/integration/mpi_lib.sh
SERVER_PID=""; MPI_PID=""
trap '[ -n "$SERVER_PID" ] && kill $SERVER_PID 2>/dev/null; [ -n "$MPI_PID" ] && kill -KILL -- -$MPI_PID 2>/dev/null
      rm -rf "$TMP"' EXIT

COMMON=(--model "$MODEL" --served-model-name m --max-model-len 128 --max-num-seqs 64)
TINY=(--kv-cache-mb 0.75)  # f16 rows: 64 KiB a block of 16 positions, 12 blocks

value() { grep -E "^$2(\{|[[:space:]])" "$1" | awk '{s += $NF} END {print s + 0}'; }

# check NAME: the run's answers and /metrics (already in $TMP/NAME.out, $TMP/NAME.metrics).
check() {
  local name=$1 want_preempt=$2 want_hits=${3:-no}
  local n failed
  n=$(wc -l <"$TMP/$name.out")
  failed=$(grep -c '"failed"' "$TMP/$name.out")
  [ "$n" -eq 64 ] && [ "$failed" -eq 0 ] && pass "$name: 64 of 64 requests answered" ||
    { fail "$name: $n answers, $failed failed"; grep -m2 '"failed"' "$TMP/$name.out"; }
  local p used
  p=$(value "$TMP/$name.metrics" accullm_num_preemptions_total)
  used=$(value "$TMP/$name.metrics" accullm_kv_cache_used_blocks)
  if [ "$want_preempt" = yes ]; then
    [ "$p" -gt 0 ] && pass "$name: $p preemptions (the pool ran out)" || fail "$name: no preemption: nothing was tested"
  else
    [ "$p" -eq 0 ] && pass "$name: no preemption" || fail "$name: $p preemptions with an unconstrained pool"
  fi
  local hits
  hits=$(value "$TMP/$name.metrics" accullm_prefix_cache_hits_total)
  if [ "$want_hits" = yes ]; then
    [ "$hits" -gt 0 ] && pass "$name: $hits of $(value "$TMP/$name.metrics" accullm_prefix_cache_queries_total) prompt tokens found in the prefix cache" ||
      fail "$name: no prefix cache hit"
  else
    [ "$hits" -eq 0 ] && pass "$name: no prefix cache hit (caching off)" || fail "$name: $hits hits with caching off"
  fi
  [ "$used" -eq 0 ] && pass "$name: no KV block held after the load" || fail "$name: $used KV blocks still held"
  [ "$name" = base ] && return 0
  cmp -s "$TMP/base.out" "$TMP/$name.out" && pass "$name: every response equals the unconstrained server's" ||
    { fail "$name: responses differ from the unconstrained server's ($(paste -d'\n' "$TMP/base.out" "$TMP/$name.out" |
        awk 'NR % 2 { a = $0; next } a != $0' | wc -l) of 64)"; diff "$TMP/base.out" "$TMP/$name.out" | head -4 | cut -c1-300; }
}

# metrics_settled PORT OUT: /metrics once the scheduler has no sequence left (gauges settle
# at the end of the iteration that finishes the last one).
metrics_settled() {
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$1/metrics" >"$2"
    [ "$(value "$2" accullm_num_requests_running)" = 0 ] && return 0
    sleep 0.1
  done
}

serve() {  # NAME flags...
  local name=$1; shift
  start_server "$ACCULLM" "${COMMON[@]}" "$@" || { fail "$name: server did not start"; return 1; }
  node tests/integration/serve_kv_pool.mjs "$PORT" "$TMP/$name.out"
  metrics_settled "$PORT" "$TMP/$name.metrics"
  stop_server || fail "$name: server exit status"
  SERVER_PID=""
}

serve base --no-enable-prefix-caching
check base no
distinct=$(sort -u "$TMP/base.out" | wc -l)
tokens=$(grep -o '"completion_tokens":[0-9]*' "$TMP/base.out" | awk -F: '{s += $2} END {print s + 0}')
[ "$distinct" -ge 60 ] && [ "$tokens" -ge 2000 ] && pass "the answers differ from each other ($distinct distinct, $tokens tokens)" ||
  fail "the answers are too alike to compare ($distinct distinct, $tokens tokens)"
serve cached --enable-prefix-caching
check cached no yes
serve tiny "${TINY[@]}" --no-enable-prefix-caching
check tiny yes
# tiny_cached serves the load twice: the second round (the prefix cache warm) gives the same
# answers, and the server's resident memory does not grow between the rounds (what one round
# allocates (scratch for the widest batch, cached blocks) is reused, nothing leaks).
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
start_server "$ACCULLM" "${COMMON[@]}" "${TINY[@]}" || fail "tiny_cached: server did not start"
node tests/integration/serve_kv_pool.mjs "$PORT" "$TMP/tiny_cached.out"
rss1=$(rss_kib "$SERVER_PID")
node tests/integration/serve_kv_pool.mjs "$PORT" "$TMP/tiny_cached2.out"
rss2=$(rss_kib "$SERVER_PID")
metrics_settled "$PORT" "$TMP/tiny_cached.metrics"
stop_server || fail "tiny_cached: server exit status"
SERVER_PID=""
check tiny_cached yes yes
cmp -s "$TMP/tiny_cached.out" "$TMP/tiny_cached2.out" && pass "tiny_cached: a second round answers the same" ||
  fail "tiny_cached: the second round's answers differ"
[ -n "$rss1" ] && [ -n "$rss2" ] && [ "$rss2" -le $((rss1 + rss1 / 50 + 4096)) ] &&
  pass "tiny_cached: resident memory steady across rounds ($rss1 -> $rss2 KiB)" ||
  fail "tiny_cached: resident memory grew across rounds ($rss1 -> $rss2 KiB)"
serve tiny_ngram "${TINY[@]}" --speculate ngram --draft-tokens 3
check tiny_ngram yes yes

# Two stages under mpirun (prefix caching on, the default): the coordinator owns the block
# table and the cache, each stage frees a preempted sequence's blocks for its layers and
# keeps cached blocks' rows for whoever starts on them.
if start_mpi_server 3 "$ACCULLM" "${COMMON[@]}" "${TINY[@]}"; then
  node tests/integration/serve_kv_pool.mjs "$PORT" "$TMP/mpi.out"
  metrics_settled "$PORT" "$TMP/mpi.metrics"
  kill -TERM "$MPI_PID" 2>/dev/null
  wait_exit "$MPI_PID" 60
  MPI_PID=""
  check mpi yes yes
else
  fail "mpirun -np 3: the pipeline did not start"
fi

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
