#!/usr/bin/env bash
# SIGTERM at a random moment of a burst: the embedded server must drain and exit 0 every time.
# Each round starts `accullm serve`, sends 16 concurrent completions (half streamed, a third
# hanging up within 90 ms), then SIGTERM after 0.2–0.8 s, while requests are in flight, new
# connections arrive or everything has just finished. A regression test for a race the CI's soak
# hit once (the drain closed the acceptor on one network thread while another started the next
# accept on it: SIGSEGV after "drained: stopping"). Before the fix 3 of 160 such rounds
# crashed (2 of 80, then 1 of 80), after it 0 of 210. A race test: one run of 60 rounds
# catches that rate about two times in three (~40 s).
# Usage: serve_sigterm_test.sh ACCULLM   (cwd: repository root)
# Environment: ACCULLM_SIGTERM_ROUNDS (default 60).
set -uo pipefail
source tests/integration/test_prelude.sh "$@"
source tests/integration/serve_lib.sh
SERVER_PID=""
trap '[ -n "$SERVER_PID" ] && kill -KILL $SERVER_PID 2>/dev/null; rm -rf "$TMP"' EXIT
ROUNDS=${ACCULLM_SIGTERM_ROUNDS:-60}
name=$(basename "$MODEL")
bad=0
for round in $(seq 1 "$ROUNDS"); do
  if ! start_server "$ACCULLM" --model "$MODEL" --max-num-seqs 16 --max-model-len 128 --kv-cache-mb 8; then
    fail "round $round: the server did not start"
    bad=$((bad + 1))
    continue
  fi
  clients=()
  for k in $(seq 1 16); do
    stream=false; (( k % 2 )) && stream=true
    max_time=10; (( k % 3 == 0 )) && max_time=0.0$((RANDOM % 9 + 1))
    curl -s -N -m "$max_time" -o /dev/null "http://127.0.0.1:$PORT/v1/completions" -H 'content-type: application/json' \
      -d "{\"model\":\"$name\",\"prompt\":\"Once upon a time $k\",\"max_tokens\":60,\"stream\":$stream}" &
    clients+=($!)
  done
  sleep "0.$((RANDOM % 7 + 2))"
  if stop_server; then
    if ! grep -q " info stopped" "$SERVER_LOG"; then
      fail "round $round: exit 0 without the 'stopped' line"
      bad=$((bad + 1))
    fi
  else
    rc=$?
    fail "round $round: exit status $rc on SIGTERM"
    grep -v " info request " "$SERVER_LOG" | tail -40
    bad=$((bad + 1))
  fi
  SERVER_PID=""
  wait "${clients[@]}" 2>/dev/null
  rm -f "$SERVER_LOG"
done
[ "$bad" -eq 0 ] && pass "$ROUNDS rounds: SIGTERM mid-burst, exit 0 and 'stopped' every time"
exit $(( failures > 0 ))
