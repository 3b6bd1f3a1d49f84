#!/usr/bin/env bash
# A pipeline stage stopped (SIGSTOP) mid-generation and resumed (SIGCONT), on both sides of
# --stage-timeout-ms (coordinator + 2 stages, real mpirun on loopback, streaming curl clients):
# - stopped for under half the timeout: nobody is declared dead, the stream completes and its
#   text equals the same request's answer without the stop (greedy), and the job still serves;
# - stopped for good (resumed only after twice the timeout): the client gets an error naming the
#   stopped rank within the timeout plus a margin, mpirun exits non-zero, no process is left.
# (mpi_starvation_test.sh: the whole job or the coordinator stopped is excused, not a death.)
# Usage: mpi_stop_resume_test.sh ACCULLM
set -euo pipefail
BIN="$(realpath "$1")"
cd "$(dirname "$0")/../.."
source tests/integration/mpi_lib.sh
command -v mpirun >/dev/null || { echo "SKIP: mpirun not installed (openmpi-bin)"; exit 0; }

HB=100 TIMEOUT=1500
SHORT_MS=600  # < TIMEOUT / 2: not even a "late" warning is due
REQ='{"model":"tinystories-llama","prompt":"Once upon a time","max_tokens":400,"ignore_eos":true,"temperature":0,"stream":true}'
OUT="$(mktemp -d)"
cleanup() {
  [ -n "${STOPPED:-}" ] && kill -CONT "$STOPPED" 2>/dev/null || true
  [ -n "${MPI_PID:-}" ] && kill -KILL -- -"$MPI_PID" 2>/dev/null || true
  rm -rf "$OUT"
}
trap cleanup EXIT
FAIL=0
fail() { echo "FAIL: $*"; FAIL=1; }
now() { date +%s.%N; }
secs() { printf '%.2f' "$(echo "$2 - $1" | bc -l)"; }
# stream_text FILE: the concatenated text of a finished SSE stream, or nothing.
stream_text() {
  /usr/bin/python3 - "$1" <<'PY'
import json, sys
text, finish = "", None
for line in open(sys.argv[1], encoding="utf-8"):
    if line.startswith("data: {"):
        d = json.loads(line[6:])
        if "error" in d: sys.exit(0)
        c = d["choices"][0]
        text += c.get("text") or ""
        finish = c.get("finish_reason") or finish
if finish == "length": print(json.dumps(text))
PY
}
# start_stream NAME: a streaming request in the background (CURL pid), its events in $OUT/NAME.
start_stream() {
  curl -sN -o "$OUT/$1" -w '%{http_code}' --max-time 60 -H 'Content-Type: application/json' -d "$REQ" \
    "http://127.0.0.1:$PORT/v1/completions" >"$OUT/$1.code" 2>/dev/null &
  CURL=$!
}
# wait_tokens NAME N: until the stream carries N events (tokens flow); fails the test otherwise.
wait_tokens() {
  for _ in $(seq 1 600); do
    local n
    n="$(grep -c '"text"' "$OUT/$1" 2>/dev/null || true)"
    [ "${n:-0}" -ge "$2" ] && return 0
    sleep 0.01
  done
  fail "$1: no tokens within 6 s"; return 1
}

start_mpi_server 3 "$BIN" --heartbeat-ms "$HB" --stage-timeout-ms "$TIMEOUT"
VICTIM="$(rank_pid 2)"  # the last stage

# The un-faulted answer.
start_stream ref
wait "$CURL" || true
REF="$(stream_text "$OUT/ref")"
[ -n "$REF" ] || { cat "$OUT/ref" | tail -3; fail "the reference stream did not complete"; exit 1; }

# 1. Within the bound: stopped for SHORT_MS once tokens flow, then resumed.
start_stream short
wait_tokens short 5
kill -STOP "$VICTIM"; STOPPED=$VICTIM
AT_STOP=$(grep -c '"text"' "$OUT/short" || true)
sleep "$(echo "$SHORT_MS / 1000" | bc -l)"
AFTER_STOP=$(grep -c '"text"' "$OUT/short" || true)
kill -CONT "$VICTIM"; STOPPED=""
wait "$CURL" || true
GOT="$(stream_text "$OUT/short")"
echo "within the bound: stopped ${SHORT_MS} ms after $AT_STOP events (the stream had $AFTER_STOP when resumed)"
if [ "$AT_STOP" -ge 400 ]; then fail "the generation ended before the stop (not mid-generation)"; fi
# Tokens may still arrive for a moment (results already sent) but the stage held the rest.
if [ $((AFTER_STOP - AT_STOP)) -ge 100 ]; then fail "tokens kept flowing while the last stage was stopped"; fi
if [ "$GOT" != "$REF" ]; then fail "the stream stopped and resumed differs from the un-faulted one"; tail -3 "$OUT/short"; fi
if grep -Eq "pipeline failed|sent nothing" "$MPI_LOG"; then fail "a stage stopped for ${SHORT_MS} ms was declared dead"; fi
if ! kill -0 "$MPI_PID" 2>/dev/null; then fail "the job exited"; exit 1; fi
curl -sf -m 10 "http://127.0.0.1:$PORT/readyz" >/dev/null || fail "/readyz after the resume"
[ "$FAIL" = 0 ] && echo "ok: stopped ${SHORT_MS} ms (< timeout ${TIMEOUT} ms / 2), resumed: same text, no failure"

# 2. Beyond the bound: stopped until twice the timeout has passed, then resumed.
start_stream long
wait_tokens long 5
kill -STOP "$VICTIM"; STOPPED=$VICTIM
T_STOP=$(now)
T_ERR=""
T_EXIT=""
RESUMED=0
while :; do
  t=$(now)
  if [ -z "$T_ERR" ] && ! kill -0 "$CURL" 2>/dev/null; then T_ERR=$t; fi
  if [ -z "$T_EXIT" ] && ! kill -0 "$MPI_PID" 2>/dev/null; then T_EXIT=$t; fi
  if [ "$RESUMED" = 0 ] && [ "$(echo "$t - $T_STOP > 2 * $TIMEOUT / 1000" | bc -l)" = 1 ]; then
    kill -CONT "$VICTIM" 2>/dev/null || true; STOPPED=""; RESUMED=$t
  fi
  [ -n "$T_ERR" ] && [ -n "$T_EXIT" ] && [ "$RESUMED" != 0 ] && break
  if [ "$(echo "$t - $T_STOP > 30" | bc -l)" = 1 ]; then break; fi
  sleep 0.05
done
wait "$CURL" || true
wait_exit "$MPI_PID" 1; rc=$WAIT_RC
code="$(cat "$OUT/long.code" 2>/dev/null || echo none)"
echo "beyond the bound: client ended $( [ -n "$T_ERR" ] && secs "$T_STOP" "$T_ERR" || echo never) s after SIGSTOP," \
  "mpirun exited $rc after $( [ -n "$T_EXIT" ] && secs "$T_STOP" "$T_EXIT" || echo never) s" \
  "(resumed at $(secs "$T_STOP" "$RESUMED") s)"
tail -c 300 "$OUT/long"; echo
grep -E "pipeline failed|exiting with status" "$MPI_LOG" | head -3 || true
if grep -q '"finish_reason":"length"' "$OUT/long"; then fail "the generation completed with a stage stopped for good"; fi
if ! grep -q '"error"' "$OUT/long"; then fail "no error event reached the client (http $code)"; fi
if grep -q '"error"' "$OUT/long" && ! grep -Eq 'worker (rank 2 |ranks ([0-9]+, )*2[ ,])' "$OUT/long"; then
  fail "the error does not name the stopped rank 2"
fi
# Declared dead after TIMEOUT of silence; the client hears within one monitor poll after that.
if [ -z "$T_ERR" ] || [ "$(echo "$T_ERR - $T_STOP < $TIMEOUT / 1000 + 3" | bc -l)" != 1 ]; then
  fail "the client did not get its error within the timeout + 3 s"
fi
if [ -n "$T_ERR" ] && [ "$(echo "$T_ERR - $T_STOP < $TIMEOUT / 1000" | bc -l)" = 1 ]; then
  fail "the client got its error before the timeout: the stage was declared dead too early"
fi
if [ -z "$T_EXIT" ] || [ "$rc" = 0 ] || [ "$rc" = 124 ]; then fail "mpirun exit status $rc (want non-zero, no hang)"; fi
LEFT="$(processes_left)"
if [ -n "$LEFT" ]; then fail "processes left behind: $LEFT"; kill -KILL $LEFT 2>/dev/null || true; fi
[ "$FAIL" = 0 ] || { echo "--- mpirun log"; tail -30 "$MPI_LOG"; exit 1; }
MPI_PID=""
echo PASS
