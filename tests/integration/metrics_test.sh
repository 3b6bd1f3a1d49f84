#!/usr/bin/env bash
# /metrics on every rank: promtool-clean output from rank 0 (embedded, serving a pack) and
# from the coordinator and both stage ranks under mpirun -np 3 (--metrics-port P: rank r on
# P + r); docs/metrics.md lists exactly the names the live processes expose; a real
# Prometheus server (Debian's package, loopback, temporary storage) scrapes the three ranks
# and its query API returns request and token counters equal to what this test sent, and a
# compute-seconds series for each stage.
# Usage: metrics_test.sh ACCULLM   (cwd: repository root)
set -uo pipefail
source tests/integration/test_prelude.sh "$@"
source tests/integration/serve_lib.sh
source tests/integration/mpi_lib.sh
for tool in promtool prometheus mpirun; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool not installed (scripts/setup.sh installs it)"; exit 1; }
done

PROM_PID=""; MPI_PID=""; SERVER_PID=""
trap '[ -n "$PROM_PID" ] && kill $PROM_PID 2>/dev/null; [ -n "$SERVER_PID" ] && kill $SERVER_PID 2>/dev/null
      [ -n "$MPI_PID" ] && kill -KILL -- -$MPI_PID 2>/dev/null; rm -rf "$TMP"' EXIT

# A base port with P .. P+2 free (and Prometheus's on P+3).
BASE=$(free_port_base 4)
[ -n "$BASE" ] || { echo "FAIL: no free ports"; exit 1; }

# names FILE: the metric family names in an exposition (from its TYPE lines).
names() { grep '^# TYPE ' "$1" | awk '{print $3}' | sort -u; }
# doc_names WHERE: the names docs/metrics.md lists for that column value.
doc_names() { grep -E '^\| `accullm_' docs/metrics.md | awk -F'|' -v w="$1" '{gsub(/[ `]/,"",$2); gsub(/ /,"",$4); if ($4==w) print $2}' | sort -u; }
value() {  # FILE NAME [LABEL-FILTER]: the sum of the samples of that series
  grep -E "^$2(\{|[[:space:]])" "$1" | grep -- "${3:-}" | awk '{s += $NF} END {print s + 0}'
}
check_promtool() {  # FILE WHAT
  if out=$(promtool check metrics <"$1" 2>&1); then pass "promtool check metrics: $2"
  else fail "promtool check metrics: $2: $out"; fi
}
complete() {  # PORT MODEL PROMPT MAX_TOKENS: prints "prompt_tokens completion_tokens"
  curl -sf -H 'Content-Type: application/json' \
    -d "{\"model\":\"$2\",\"prompt\":\"$3\",\"max_tokens\":$4,\"temperature\":0}" "http://127.0.0.1:$1/v1/completions" |
    $PY -c 'import json,sys; u=json.load(sys.stdin)["usage"]; print(u["prompt_tokens"], u["completion_tokens"])'
}

# A real Prometheus (Debian's package) on loopback with temporary storage, scraping TARGETS
# every second; PROM_PID is its pid.
start_prometheus() {  # NAME TARGET...
  local name="$1" targets=""; shift
  for t in "$@"; do targets="$targets${targets:+, }\"$t\""; done
  printf 'global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n  - job_name: accullm\n    static_configs:\n      - targets: [%s]\n' \
    "$targets" >"$TMP/$name.yml"
  prometheus --config.file="$TMP/$name.yml" --storage.tsdb.path="$TMP/$name-tsdb" \
    --web.listen-address="127.0.0.1:$((BASE + 3))" >"$TMP/$name.log" 2>&1 &
  PROM_PID=$!
  PROM_NAME=$name
}
query() {  # PROMQL: the first result's value, or empty
  curl -sfG "http://127.0.0.1:$((BASE + 3))/api/v1/query" --data-urlencode "query=$1" |
    $PY -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null
}
# prom_counters WANT_PROMPT WANT_GEN [WANT_STAGES]: waits (60 s at most) until Prometheus's
# sums equal them; sets got_prompt, got_gen, got_stages.
prom_counters() {
  got_gen=""; got_prompt=""; got_stages=""
  for _ in $(seq 1 120); do
    got_gen=$(query 'sum(accullm_generation_tokens_total)'); got_prompt=$(query 'sum(accullm_prompt_tokens_total)')
    got_stages=$(query 'count(accullm_stage_compute_seconds_total > 0)')
    [ "$got_gen" = "$2" ] && [ "$got_prompt" = "$1" ] && [ -z "${3:-}" -o "$got_stages" = "${3:-}" ] && return 0
    sleep 0.5
  done
  # Why not: is Prometheus up, and what does it say of its targets?
  echo "# Prometheus ready: $(curl -s "http://127.0.0.1:$((BASE + 3))/-/ready" || echo 'no answer')"
  echo "# targets: $(curl -s "http://127.0.0.1:$((BASE + 3))/api/v1/targets" | head -c 1500)"
  echo "# Prometheus log:"; tail -15 "$TMP/$PROM_NAME.log"
  return 1
}

# ---- Embedded, serving a pack (canaries), --metrics-port BASE ----
"$ACCULLM" quantize --out "$TMP/pack" --method rtn --fp16-layers none --calib-samples 2 --calib-seq-len 64 \
  >/dev/null 2>"$TMP/q.err" || { cat "$TMP/q.err"; exit 1; }
start_server "$ACCULLM" --model "$TMP/pack" --metrics-port "$BASE" --reference "$MODEL" --drift-sample-rate 1 || exit 1
prompt_sum=0; gen_sum=0
for p in "Once upon a time" "The cat sat" "Lily liked"; do
  read -r pt ct < <(complete "$PORT" pack "$p" 6)
  prompt_sum=$((prompt_sum + pt)); gen_sum=$((gen_sum + ct))
done
curl -s "http://127.0.0.1:$PORT/no/such/route" >/dev/null
curl -sf "http://127.0.0.1:$BASE/metrics" >"$TMP/embedded.txt" || fail "no /metrics on --metrics-port $BASE"
start_prometheus embedded "127.0.0.1:$BASE"
prom_counters "$prompt_sum" "$gen_sum" &&
  pass "Prometheus scraped the embedded server's token counters ($prompt_sum prompt, $gen_sum generated)" ||
  fail "Prometheus, embedded: generation '$got_gen' (want $gen_sum), prompt '$got_prompt' (want $prompt_sum)"
got_req=$(query 'sum(accullm_http_responses_total{endpoint="/v1/completions",code="200"})')
[ "$got_req" = 3 ] && pass "Prometheus counts the 3 embedded completions by endpoint and code" || fail "completions '$got_req'"
kill $PROM_PID 2>/dev/null; wait $PROM_PID 2>/dev/null
curl -sf -o /dev/null "http://127.0.0.1:$BASE/v1/completions" && fail "the metrics port answers API routes" ||
  pass "the metrics port serves /metrics only"
stop_server || true
check_promtool "$TMP/embedded.txt" "embedded serve of a pack"
[ "$(value "$TMP/embedded.txt" accullm_prompt_tokens_total)" = "$prompt_sum" ] &&
  [ "$(value "$TMP/embedded.txt" accullm_generation_tokens_total)" = "$gen_sum" ] &&
  pass "token counters equal the usage the API reported ($prompt_sum prompt, $gen_sum generated)" ||
  fail "token counters: $(grep -E '^accullm_(prompt|generation)_tokens_total' "$TMP/embedded.txt") vs $prompt_sum/$gen_sum"
[ "$(value "$TMP/embedded.txt" accullm_http_responses_total 'endpoint="/v1/completions"' | tr -d ' ')" = 3 ] &&
  [ "$(value "$TMP/embedded.txt" accullm_http_responses_total 'endpoint="other"')" = 1 ] &&
  pass "responses counted by endpoint (3 completions, 1 unknown route as \"other\")" ||
  fail "responses by endpoint: $(grep '^accullm_http_responses_total' "$TMP/embedded.txt")"
grep -q '^accullm_build_info{.*isa="[a-z0-9]*"' "$TMP/embedded.txt" && grep -q 'format="pack"' "$TMP/embedded.txt" &&
  [ "$(value "$TMP/embedded.txt" accullm_model_low_bit_weight_fraction)" = 1 ] &&
  [ "$(value "$TMP/embedded.txt" accullm_canary_passing)" = 1 ] &&
  pass "build info (ISA), model info (pack, all low-bit) and a passing canary" ||
  fail "build/model/canary series: $(grep -E '^accullm_(build|model|canary)' "$TMP/embedded.txt")"

# ---- mpirun -np 3: coordinator + 2 stages, each on BASE + rank; Prometheus scrapes them ----
start_mpi_server 3 "$ACCULLM" --model "$TMP/pack" --metrics-port "$BASE" --metrics-no-auth --reference "$MODEL" \
  --drift-sample-rate 1 || exit 1
start_prometheus mpirun "127.0.0.1:$BASE" "127.0.0.1:$((BASE + 1))" "127.0.0.1:$((BASE + 2))"
prompt_sum=0; gen_sum=0
for p in "Once upon a time" "The dog ran" "Tom and Lily" "A big red ball"; do
  read -r pt ct < <(complete "$PORT" pack "$p" 5)
  prompt_sum=$((prompt_sum + pt)); gen_sum=$((gen_sum + ct))
done
curl -sf "http://127.0.0.1:$BASE/metrics" >"$TMP/coordinator.txt"
curl -sf "http://127.0.0.1:$PORT/metrics" >"$TMP/coordinator_api.txt"
for r in 1 2; do curl -sf "http://127.0.0.1:$((BASE + r))/metrics" >"$TMP/stage$r.txt" || fail "no /metrics on rank $r"; done
check_promtool "$TMP/coordinator.txt" "coordinator under mpirun"
check_promtool "$TMP/stage1.txt" "stage rank 1"
check_promtool "$TMP/stage2.txt" "stage rank 2"
# The canaries ran through the pipeline (2 stages) and measured exactly what the embedded
# server measured: the same bits, since a request's logits do not depend on the mode.
canaries() { grep -E '^accullm_canary_(kl_divergence|top1_match)\{' "$1" | sort; }
[ -n "$(canaries "$TMP/embedded.txt")" ] && [ "$(canaries "$TMP/coordinator.txt")" = "$(canaries "$TMP/embedded.txt")" ] &&
  pass "canaries through the mpirun pipeline equal the embedded ones: $(canaries "$TMP/coordinator.txt" | awk '{print $2}' | tr '\n' ' ')" ||
  fail "canaries under mpirun: $(canaries "$TMP/coordinator.txt") vs embedded $(canaries "$TMP/embedded.txt")"
[ "$(value "$TMP/coordinator.txt" accullm_stage_up)" = 2 ] &&
  pass "the coordinator reports both stages up" || fail "accullm_stage_up: $(grep '^accullm_stage_up' "$TMP/coordinator.txt")"
[ "$(names "$TMP/coordinator.txt")" = "$(names "$TMP/coordinator_api.txt")" ] &&
  pass "rank 0's metrics port and API port expose the same families" || fail "metrics port and API port differ"
for r in 1 2; do
  s=$((r - 1))
  $PY -c "import sys; sys.exit(0 if $(value "$TMP/stage$r.txt" accullm_stage_compute_seconds_total "stage=\"$s\"") > 0 else 1)" &&
    [ "$(value "$TMP/stage$r.txt" accullm_stage_batches_total)" -gt 0 ] &&
    pass "stage $s (rank $r) counts its batches and compute seconds" ||
    fail "stage $s series: $(grep -E '^accullm_stage_(batches|compute)' "$TMP/stage$r.txt")"
done

# Sampled layer error: each stage compares exactly its own layers (the plan splits 0..7).
layers_of() { grep '^accullm_layer_relative_error{' "$1" | grep -o 'layer="[0-9]*"' | sort -u | tr -d 'layer="' | sort -n | tr '\n' ' '; }
l1=$(layers_of "$TMP/stage1.txt"); l2=$(layers_of "$TMP/stage2.txt")
[ -n "$l1" ] && [ -n "$l2" ] && [ -z "$(comm -12 <(tr ' ' '\n' <<<"$l1" | sort) <(tr ' ' '\n' <<<"$l2" | sort) | grep .)" ] &&
  [ "$(echo $l1 $l2 | wc -w)" = "$(grep -o '"num_hidden_layers": *[0-9]*' $MODEL/config.json | grep -o '[0-9]*$')" ] &&
  pass "each stage samples the layer error of its own layers: [$l1] and [$l2]" ||
  fail "stage layer errors: rank 1 [$l1], rank 2 [$l2]"

# Prometheus's view (the query API), once it has scraped after the requests.
prom_counters "$prompt_sum" "$gen_sum" 2
[ "$got_gen" = "$gen_sum" ] && [ "$got_prompt" = "$prompt_sum" ] &&
  pass "Prometheus scraped the token counters the API reported ($prompt_sum prompt, $gen_sum generated)" ||
  fail "Prometheus: generation '$got_gen' (want $gen_sum), prompt '$got_prompt' (want $prompt_sum)"
[ "$got_stages" = 2 ] && pass "Prometheus has a compute-seconds series for each stage" ||
  fail "Prometheus stage compute series: '$got_stages'; $(tail -5 "$TMP/mpirun.log")"
got_req=$(query 'sum(accullm_http_responses_total{endpoint="/v1/completions",code="200"})')
[ "$got_req" = 4 ] && pass "Prometheus counts the 4 completions by endpoint and code" || fail "completions '$got_req'"
kill $PROM_PID 2>/dev/null
kill -TERM "$MPI_PID" 2>/dev/null; wait_exit "$MPI_PID" 60

# docs/metrics.md == the live names, both ways, per place.
cmp_names() {  # WHAT LIVE-NAMES DOC-NAMES
  if [ "$2" = "$3" ]; then pass "docs/metrics.md lists exactly the live names: $1"
  else fail "docs/metrics.md vs live ($1): $(diff <(echo "$3") <(echo "$2") | grep '^[<>]' | tr '\n' ' ')"; fi
}
all_doc=$(doc_names all); pack_doc=$(doc_names pack); mpi_doc=$(doc_names mpirun); stage_doc=$(doc_names stage)
ref_doc=$(doc_names reference)
cmp_names "embedded pack with --reference (all + pack + reference)" "$(names "$TMP/embedded.txt")" \
  "$(printf '%s\n%s\n%s\n' "$all_doc" "$pack_doc" "$ref_doc" | sort -u)"
cmp_names "coordinator under mpirun, a pack (all + pack + mpirun)" "$(names "$TMP/coordinator.txt")" \
  "$(printf '%s\n%s\n%s\n' "$all_doc" "$pack_doc" "$mpi_doc" | sort -u)"
cmp_names "stage ranks with --reference (stage + reference)" \
  "$(cat "$TMP/stage1.txt" "$TMP/stage2.txt" | grep '^# TYPE ' | awk '{print $3}' | sort -u)" \
  "$(printf '%s\n%s\n' "$stage_doc" "$ref_doc" | sort -u)"

[ "$failures" = 0 ] || { echo "$failures check(s) failed"; exit 1; }
echo "all metrics checks passed"
