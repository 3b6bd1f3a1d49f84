#!/usr/bin/env bash
# SIGTERM under load for the mpirun pipeline (coordinator + 2 stages, real mpirun on loopback,
# curl clients): with 3 streaming and 3 non-streaming greedy requests in flight,
# 1. --drain-timeout long enough: every request finishes with all its tokens and the same text
#    as the same requests got before (each answer ended after the SIGTERM), a request sent
#    during the drain gets 503 `draining`,
#    every stage logs its shutdown, mpirun exits 0 and no process is left;
# 2. --drain-timeout 0.3 s, shorter than the work: every request either finished or ended
#    with a clear error (a stream: an error event then [DONE]; non-streaming: 503 with an
#    OpenAI-style error body), at least one was cut short, and still exit 0 with no process left.
# (mpi_pipeline_test.sh covers SIGTERM of an idle pipeline.) Usage: mpi_drain_load_test.sh ACCULLM
set -euo pipefail
BIN="$(realpath "$1")"
cd "$(dirname "$0")/../.."
source tests/integration/mpi_lib.sh
command -v mpirun >/dev/null || { echo "SKIP: mpirun not installed (openmpi-bin)"; exit 0; }
OUT="$(mktemp -d)"
trap '[ -n "${MPI_PID:-}" ] && kill -KILL -- -"$MPI_PID" 2>/dev/null; rm -rf "$OUT"' EXIT
FAIL=0
fail() { echo "FAIL: $*"; FAIL=1; }
PROMPTS=("Once upon a time" "The little dog" "Tom and Lily went to the park. They" "A cat sat" "The sun was" "Ben had a red ball")

# launch ROUND MAX_TOKENS: the six requests (even: streaming, odd: not) in the background.
CURLS=()
launch() {
  local round="$1" max="$2" i
  CURLS=()
  for i in 0 1 2 3 4 5; do
    local stream=false
    [ $((i % 2)) = 0 ] && stream=true
    curl -sN -o "$OUT/$round.$i" -w '%{http_code}' --max-time 120 -H 'Content-Type: application/json' \
      -d "{\"model\":\"tinystories-llama\",\"prompt\":\"${PROMPTS[$i]}\",\"max_tokens\":$max,\"ignore_eos\":true,\"temperature\":0,\"stream\":$stream}" \
      "http://127.0.0.1:$PORT/v1/completions" >"$OUT/$round.$i.code" 2>/dev/null &
    CURLS+=($!)
  done
}

# wait_in_flight ROUND: until the scheduler runs all six and every stream carries tokens. One
# curl per poll and bash builtins for the rest: with curl, awk and three greps per poll, the six
# requests (~1.6 s on a fast machine) came and went between two polls when another test shared
# the two cores (ctest -j2).
wait_in_flight() {
  local round="$1" start=$SECONDS running="" metrics body i flowing
  while [ $((SECONDS - start)) -lt 10 ]; do
    metrics="$(curl -sf --max-time 2 "http://127.0.0.1:$PORT/metrics" || true)"
    # The sample carries the model_name label: accullm_num_requests_running{...} N
    [[ $metrics =~ accullm_num_requests_running(\{[^}]*\})?\ ([0-9]+) ]] && running="${BASH_REMATCH[2]}"
    flowing=1
    for i in 0 2 4; do
      body=""
      [ -f "$OUT/$round.$i" ] && { IFS= read -r -d '' body <"$OUT/$round.$i" || true; }
      [[ $body == *'"text"'* ]] || flowing=0
    done
    [ "${running:-0}" -ge 6 ] && [ "$flowing" = 1 ] && return 0
    sleep 0.01
  done
  fail "round $round: the six requests were not all in flight within 10 s (running: ${running:-?})"
  return 1
}

# outcome FILE CODE MAX: "done <text as JSON>" for a completed answer with MAX tokens, "error <message>"
# for a clear error, anything else is a failure.
outcome() {
  /usr/bin/python3 - "$1" "$2" "$3" <<'PY'
import json, sys
path, code, want = sys.argv[1], sys.argv[2], int(sys.argv[3])
body = open(path, encoding="utf-8").read()
if body.startswith("data:"):
    text, finish, tokens, events = "", None, 0, [l[6:] for l in body.splitlines() if l.startswith("data: ")]
    if not events or events[-1] != "[DONE]": print("bad: the stream does not end with [DONE]"); sys.exit()
    for e in events[:-1]:
        d = json.loads(e)
        if "error" in d:
            print("error", d["error"]["message"]) if d["error"].get("message") else print("bad: an empty error")
            sys.exit()
        c = d["choices"][0]
        text += c.get("text") or ""
        tokens += 1 if c.get("text") is not None and c.get("finish_reason") is None else 0
        finish = c.get("finish_reason") or finish
    print("done", json.dumps(text)) if finish == "length" else print("bad: stream finish_reason", finish)
else:
    d = json.loads(body) if body else {}
    if code == "200" and d["choices"][0]["finish_reason"] == "length" and d["usage"]["completion_tokens"] == want:
        print("done", json.dumps(d["choices"][0]["text"]))
    elif code == "503" and d.get("error", {}).get("message"):
        print("error", d["error"]["message"])
    else:
        print("bad: http", code, body[:200])
PY
}

# sigterm_under_load ROUND MAX_TOKENS DRAIN_TIMEOUT: one job, a reference round when asked, then
# the round SIGTERMed; sets T_EXIT (s from SIGTERM to mpirun's exit) and the outcomes in $OUT/ROUND.k.out.
sigterm_under_load() {
  local round="$1" max="$2" drain="$3" i
  start_mpi_server 3 "$BIN" --drain-timeout "$drain" --heartbeat-ms 100 --stage-timeout-ms 3000
  if [ "$round" = full ]; then
    launch ref "$max"
    for i in 0 1 2 3 4 5; do wait "${CURLS[$i]}" || true; outcome "$OUT/ref.$i" "$(cat "$OUT/ref.$i.code")" "$max" >"$OUT/ref.$i.out"; done
  fi
  launch "$round" "$max"
  wait_in_flight "$round" || true
  local t0
  t0=$(date +%s.%N)
  kill -TERM "$(rank_pid 0)"
  sleep 0.05
  # New work during the drain: 503 draining (the listener stays open until the drain ends).
  local late
  late="$(curl -s -m 10 -w ' %{http_code}' -H 'Content-Type: application/json' \
    -d '{"model":"tinystories-llama","prompt":"late","max_tokens":4}' "http://127.0.0.1:$PORT/v1/completions" || echo refused)"
  for i in 0 1 2 3 4 5; do wait "${CURLS[$i]}" || true; done
  local t_clients
  t_clients=$(date +%s.%N)
  wait_exit "$MPI_PID" 60
  local rc=$WAIT_RC
  T_EXIT="$(printf '%.2f' "$(echo "$(date +%s.%N) - $t0" | bc -l)")"
  echo "$round: SIGTERM with 6 requests in flight (max_tokens $max, --drain-timeout $drain): clients done" \
    "$(printf '%.2f' "$(echo "$t_clients - $t0" | bc -l)") s after, mpirun exit $rc $T_EXIT s after"
  # (Only where the drain outlasts the late request: a 0.3 s one may have closed the listener.)
  if [ "$round" = full ]; then
    case "$late" in
      *'"draining"'*' 503') ;;
      *) fail "$round: a request during the drain got: $late" ;;
    esac
  fi
  [ "$rc" = 0 ] || fail "$round: mpirun exited $rc after SIGTERM (want 0)"
  # The six answers were all still running when the drain began (not done before the signal).
  local after_signal
  after_signal="$(sed -n '/signal 15 received: draining/,$p' "$MPI_LOG" | grep -c 'path=/v1/completions status=[0-9]* stream' || true)"
  [ "$after_signal" -ge 6 ] || fail "$round: only $after_signal of the 6 requests ended after the SIGTERM"
  [ "$(grep -c 'shutdown after' "$MPI_LOG")" = 2 ] || fail "$round: not every stage logged its shutdown"
  for i in 0 1 2 3 4 5; do
    outcome "$OUT/$round.$i" "$(cat "$OUT/$round.$i.code")" "$max" >"$OUT/$round.$i.out"
    grep -q '^bad' "$OUT/$round.$i.out" && fail "$round: request $i: $(cat "$OUT/$round.$i.out")"
  done
  local left="$(processes_left)"
  if [ -n "$left" ]; then fail "$round: processes left behind: $left"; kill -KILL $left 2>/dev/null || true; fi
  [ "$FAIL" = 0 ] || { echo "--- mpirun log"; tail -20 "$MPI_LOG"; }
  MPI_PID=""
}

# 1. Everything in flight finishes, identical to the same requests without the SIGTERM.
sigterm_under_load full 400 30
for i in 0 1 2 3 4 5; do
  if ! cmp -s "$OUT/ref.$i.out" "$OUT/full.$i.out"; then
    fail "request $i after SIGTERM: $(head -c 150 "$OUT/full.$i.out") != before: $(head -c 150 "$OUT/ref.$i.out")"
  fi
  grep -q '^done' "$OUT/ref.$i.out" || fail "reference request $i: $(cat "$OUT/ref.$i.out")"
done
[ "$FAIL" = 0 ] && echo "ok: all 6 in-flight requests finished with the reference text; exit 0"

# 2. A drain timeout shorter than the work: finished or a clear error, never silence.
sigterm_under_load short 500 0.3
aborted="$(grep -l '^error' "$OUT"/short.*.out | wc -l)"
echo "short drain: $((6 - aborted)) finished, $aborted ended with an error: $(grep -h '^error' "$OUT"/short.*.out | head -1)"
[ "$aborted" -ge 1 ] || fail "no request was cut short by a 0.3 s drain (the abort path was not exercised)"
[ "$FAIL" = 0 ] || exit 1
echo PASS
