#!/usr/bin/env bash
# Real mpirun on loopback: 1 coordinator + 1, 2 and 3 pipeline stages serve the embedded model
# over HTTP; every answer (greedy and seeded sampling, logprobs) must equal single-process
# `accullm serve`, whose texts must equal `accullm generate`'s for the same requests; the same holds with an int8 KV cache (2 stages); SIGTERM to the coordinator shuts the whole job down with status 0; a plan
# that does not match the ranks is refused at startup. Usage: mpi_pipeline_test.sh ACCULLM
set -euo pipefail
BIN="$(realpath "$1")"
cd "$(dirname "$0")/../.."
source tests/integration/serve_lib.sh
source tests/integration/mpi_lib.sh
command -v mpirun >/dev/null || { echo "SKIP: mpirun not installed (openmpi-bin)"; exit 0; }

start_server "$BIN" --threads 1
REF="$(answers "$PORT")"
stop_server
[ "$(echo "$REF" | wc -l)" = 3 ] || { echo "reference run failed"; exit 1; }
echo "single-process: $REF" | head -c 600; echo

# `accullm generate` with the API's sampling defaults (no top-k / top-p / min-p) gives the
# same text as the server for the greedy and the seeded request (with penalties).
GEN="$(mktemp -d)"
"$BIN" generate --prompt "Once upon a time" --max-tokens 24 --temperature 0 >"$GEN/1" 2>/dev/null
"$BIN" generate --prompt "Tom and Lily went to the park. They" --max-tokens 20 --temperature 0.7 --seed 123 \
  --top-k 0 --top-p 1 --min-p 0 --presence-penalty 0.3 --frequency-penalty 0.5 >"$GEN/3" 2>/dev/null
/usr/bin/python3 - "$REF" "$GEN/1" "$GEN/3" <<'PY' || exit 1
import json, sys
ref = [json.loads(line) for line in sys.argv[1].splitlines()]
for path, want, what in ((sys.argv[2], ref[0][0], "greedy"), (sys.argv[3], ref[2][0], "seeded")):
    got = open(path, encoding="utf-8").read()
    assert got.endswith("\n"), path  # generate ends its output with one newline of its own
    if got[:-1] != want:
        print(f"FAIL: generate ({what}) {got[:-1]!r} != serve {want!r}")
        sys.exit(1)
print("ok: generate equals single-process serve (greedy and seeded)")
PY
rm -rf "$GEN"

for workers in 1 2 3; do
  start_mpi_server $((workers + 1)) "$BIN"
  GOT="$(answers "$PORT")"
  if [ "$GOT" != "$REF" ]; then
    echo "FAIL: $workers stages differ from single-process"; diff <(echo "$REF") <(echo "$GOT") || true
    kill -KILL -- -"$MPI_PID" 2>/dev/null || true; exit 1
  fi
  grep -q "pipeline: $workers stages" "$MPI_LOG" || { cat "$MPI_LOG"; exit 1; }
  # Graceful stop: SIGTERM to the coordinator (rank 0) drains and stops every stage.
  kill -TERM "$(rank_pid 0)"
  wait_exit "$MPI_PID" 30; rc=$WAIT_RC
  if [ "$rc" != 0 ]; then cat "$MPI_LOG"; echo "FAIL: mpirun exited $rc after SIGTERM"; exit 1; fi
  grep -q "shutdown after" "$MPI_LOG" || { cat "$MPI_LOG"; echo "FAIL: stages did not shut down cleanly"; exit 1; }
  echo "ok: $workers stages identical to single-process, clean shutdown"
done

# The KV cache dtype reaches every stage in the hello (wire version 6): with --kv-cache-dtype
# int8 (rows rounded differently from the default f16, so the logprobs move) 2 stages answer
# exactly as single-process serve with int8, whose greedy text is generate's with int8.
start_server "$BIN" --threads 1 --kv-cache-dtype int8
REF8="$(answers "$PORT")"
grep -q "kv_cache_dtype=int8" "$SERVER_LOG" || { cat "$SERVER_LOG"; echo "FAIL: serve does not log its KV dtype"; exit 1; }
stop_server
[ "$(echo "$REF8" | wc -l)" = 3 ] || { echo "int8 reference run failed"; exit 1; }
[ "$REF8" != "$REF" ] || { echo "FAIL: an int8 KV cache answered exactly as f16 (logprobs included)"; exit 1; }
GEN8="$(mktemp)"
"$BIN" generate --prompt "Once upon a time" --max-tokens 24 --temperature 0 --kv-cache-dtype int8 >"$GEN8" 2>/dev/null
/usr/bin/python3 -c "import json,sys; want=json.loads(sys.argv[1].splitlines()[0])[0]; \
sys.exit(0 if open(sys.argv[2], encoding='utf-8').read() == want + '\n' else 1)" "$REF8" "$GEN8" \
  || { echo "FAIL: generate --kv-cache-dtype int8 differs from serve: $(cat "$GEN8")"; exit 1; }
rm -f "$GEN8"
start_mpi_server 3 "$BIN" --kv-cache-dtype int8
GOT8="$(answers "$PORT")"
if [ "$GOT8" != "$REF8" ]; then
  echo "FAIL: 2 stages with an int8 KV cache differ from single-process"; diff <(echo "$REF8") <(echo "$GOT8") || true
  kill -KILL -- -"$MPI_PID" 2>/dev/null || true; exit 1
fi
[ "$(grep -c "KV cache int8" "$MPI_LOG")" = 2 ] || { cat "$MPI_LOG"; echo "FAIL: not every stage stores int8"; exit 1; }
kill -TERM "$(rank_pid 0)"
wait_exit "$MPI_PID" 30; rc=$WAIT_RC
[ "$rc" = 0 ] || { cat "$MPI_LOG"; echo "FAIL: mpirun exited $rc after SIGTERM"; exit 1; }
echo "ok: int8 KV cache: 2 stages identical to single-process serve and generate"

# A plan for 2 stages under 3 worker ranks: refused with a clear message, non-zero exit.
PLAN="$(mktemp)"
"$BIN" plan --workers 2 --out "$PLAN" >/dev/null
LOG="$(mktemp)"
set +e
timeout 60 mpirun "${MPIRUN_FLAGS[@]}" -np 4 "$BIN" serve --port 0 --threads 1 --plan "$PLAN" >"$LOG" 2>&1
rc=$?
set -e
if [ "$rc" = 0 ] || ! grep -q "mpirun -np 3" "$LOG"; then cat "$LOG"; echo "FAIL: mismatched plan not refused (rc=$rc)"; exit 1; fi
echo "ok: mismatched plan refused (rc=$rc)"
rm -f "$PLAN" "$LOG"
echo PASS
