# Shared by the mpi_*_test.sh scripts (sourced; not a test itself).
MPIRUN_FLAGS=(--oversubscribe --mca btl self,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)
if [ "$(id -u)" = 0 ]; then MPIRUN_FLAGS+=(--allow-run-as-root); fi

# start_mpi_server NP ACCULLM [serve flags...]: sets MPI_PID, PORT, MPI_LOG; waits for /readyz.
start_mpi_server() {
  local np="$1" bin="$2"; shift 2
  start_mpi_job -np "$np" "$bin" serve --host 127.0.0.1 --port 0 --threads 1 "$@"
}

# start_mpi_job MPIRUN_ARGS...: as start_mpi_server, for any app context (MPMD: `-np 1 A : -np 1 B`)
# whose rank 0 is `accullm serve --host 127.0.0.1 --port 0`.
start_mpi_job() {
  MPI_LOG="$(mktemp)"
  # A tag in every rank's environment tells this test's processes from any other test's.
  # (Set for mpirun only, not exported: the checking tools must not carry it.)
  ACCULLM_TEST_TAG="mpi-test-$$-$RANDOM"
  ACCULLM_TEST_TAG="$ACCULLM_TEST_TAG" setsid mpirun "${MPIRUN_FLAGS[@]}" "$@" >"$MPI_LOG" 2>&1 &
  MPI_PID=$!
  PORT=""
  for _ in $(seq 1 600); do
    PORT="$(grep -o 'accullm serve: listening on 127.0.0.1:[0-9]*' "$MPI_LOG" | head -1 | sed 's/.*://' || true)"
    if [ -n "$PORT" ] && curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$MPI_PID" 2>/dev/null; then cat "$MPI_LOG" >&2; echo "mpirun exited early" >&2; return 1; fi
    sleep 0.05
  done
  cat "$MPI_LOG" >&2; echo "pipeline not ready" >&2
  kill -KILL -- -"$MPI_PID" 2>/dev/null || true
  return 1
}

# Pids of the processes this test started (by ACCULLM_TEST_TAG), still alive.
own_processes() {
  local p
  for p in /proc/[0-9]*; do
    { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qx "ACCULLM_TEST_TAG=$ACCULLM_TEST_TAG" && echo "${p#/proc/}"
  done
  return 0
}

# Our processes still alive after up to 5 s for them to finish exiting (a busy machine is slow
# to reap ranks); empty when none is left.
processes_left() {
  local left="" _
  for _ in $(seq 1 50); do
    left="$(own_processes)"
    [ -z "$left" ] && break
    sleep 0.1
  done
  echo "$left"
}

# The pid of world rank R among mpirun's children.
rank_pid() {
  local want="$1" p
  for p in $(pgrep -P "$MPI_PID"); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$want"; then echo "$p"; return 0; fi
  done
  return 1
}

# wait_exit PID SECONDS: sets WAIT_RC to the exit status, or 124 after killing the group
# when it overruns. (Not in a $(...) subshell: only this shell can wait for its child.)
wait_exit() {
  local pid="$1" secs="$2"
  WAIT_RC=0
  for _ in $(seq 1 $((secs * 10))); do
    if ! kill -0 "$pid" 2>/dev/null; then wait "$pid" || WAIT_RC=$?; return 0; fi
    sleep 0.1
  done
  kill -KILL -- -"$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  WAIT_RC=124
}

# Requests whose answers must match token for token (greedy, seeded sampling, logprobs,
# penalties: the last stage's history).
REQUESTS=(
  '{"model":"tinystories-llama","prompt":"Once upon a time","max_tokens":24,"temperature":0}'
  '{"model":"tinystories-llama","prompt":"The little dog","max_tokens":24,"temperature":0.9,"top_k":40,"seed":7,"logprobs":2}'
  '{"model":"tinystories-llama","prompt":"Tom and Lily went to the park. They","max_tokens":20,"temperature":0.7,"seed":123,"presence_penalty":0.3,"frequency_penalty":0.5}'
)

# answers PORT: one line per request: the choices' text and logprobs (ids and values).
answers() {
  local port="$1" r
  for r in "${REQUESTS[@]}"; do
    curl -sf -H 'Content-Type: application/json' -d "$r" "http://127.0.0.1:$port/v1/completions" |
      /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); c=d["choices"][0]; print(json.dumps([c["text"], c.get("logprobs"), c["finish_reason"]], sort_keys=True))'
  done
}
