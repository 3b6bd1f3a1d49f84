#!/usr/bin/env bash
# Golden mode in `serve`: `serve --model FP --draft PACK` (the default pack of the embedded
# model drafts on rank 0, the full-precision model verifies in the batched pass) and
# `--speculate ngram` answer a set of concurrent completions (greedy and seeded sampling with
# top-p, n = 2, stop strings, max_tokens, logprobs) exactly as `serve --model FP` does: the
# same choices (text, finish reason, token logprobs) and usage; the pack served alone differs
# on at least one (so the comparison can fail). The golden server's /metrics shows drafted and
# accepted tokens and lists exactly docs/metrics.md's `speculation` rows; the plain server has
# none of them. With mpirun (-np 3, two stages), the same identity through the pipeline.
# Usage: quantize_serve_golden_test.sh ACCULLM   (cwd: repository root)
set -uo pipefail
source tests/integration/test_prelude.sh "$@"
source tests/integration/serve_lib.sh
source tests/integration/mpi_lib.sh
SERVER_PID=""; MPI_PID=""
trap '[ -n "$SERVER_PID" ] && kill $SERVER_PID 2>/dev/null; [ -n "$MPI_PID" ] && kill -KILL -- -$MPI_PID 2>/dev/null
      rm -rf "$TMP"' EXIT

PACK="$TMP/pack"
"$ACCULLM" quantize --out "$PACK" >/dev/null 2>"$TMP/q.err" || { cat "$TMP/q.err"; exit 1; }

# ask PORT OUT: the request set, 32 at a time (so verification items share batches), the
# choices and usage of each response, in request order, as JSON lines. The set: 13 requests
# (three stories, ten valid.txt openings) with 24-40 tokens each, then GOLDEN_EXTRA_PROMPTS
# (default 288: "a few hundred prompts from valid.txt" with the first 13) more openings of
# valid.txt lines with 12-20 tokens each; every kind of request (greedy, seeded top-p at 0.8
# and 1.0, n = 2, stop strings, logprobs) recurs through the whole set.
ask() {
  $PY - "$1" "$MODEL" "${GOLDEN_EXTRA_PROMPTS:-288}" >"$2" <<'EOF'
import json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
port, model, extra = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = [l for l in open(f"{model}/valid.txt", encoding="utf-8") if len(l.split()) > 12]
prompts = ["Once upon a time", "Lily saw a little dog. The dog", "Tom and Sam went to the park"]
prompts += [" ".join(l.split()[:8]) for l in lines[:100:10]]
first = len(prompts)
prompts += [" ".join(l.split()[:4 + i % 9]) for i, l in enumerate(lines[101:101 + extra])]
assert len(prompts) == first + extra, "valid.txt has too few lines for GOLDEN_EXTRA_PROMPTS"
reqs = []
for i, p in enumerate(prompts):
    r = {"model": "m", "prompt": p, "max_tokens": 24 + 4 * (i % 5) if i < first else 12 + 4 * (i % 3)}
    if i % 3 == 0:
        r["temperature"] = 0
    else:
        r.update(temperature=0.8 if i % 3 == 1 else 1.0, top_p=0.9, seed=7 + i)
    if i % 4 == 1: r["n"] = 2
    if i % 5 == 2: r["stop"] = [" the", "."]
    if i % 4 == 3: r["logprobs"] = 2
    reqs.append(r)
out = [None] * len(reqs)
def go(i):
    q = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", json.dumps(reqs[i]).encode(),
                               {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(q, timeout=600) as resp:
            body = json.load(resp)
        for c in body["choices"]:
            if c.get("logprobs"):  # the values to 5 digits: JSON floats, same bits on both sides
                c["logprobs"]["token_logprobs"] = [round(x, 5) for x in c["logprobs"]["token_logprobs"]]
        out[i] = json.dumps({"choices": body["choices"], "usage": body["usage"]}, sort_keys=True)
    except Exception as e:
        out[i] = "FAILED " + str(e)
with ThreadPoolExecutor(32) as pool:
    list(pool.map(go, range(len(reqs))))
print("\n".join(out))
EOF
}
spec_names() { grep '^# TYPE accullm_spec_decode' "$1" | awk '{print $3}' | sort -u; }
doc_names() { grep -E '^\| `accullm_' docs/metrics.md | awk -F'|' -v w="$1" '{gsub(/[ `]/,"",$2); gsub(/ /,"",$4); if ($4==w) print $2}' | sort -u; }
value() { grep -E "^$2(\{|[[:space:]])" "$1" | awk '{s += $NF} END {print s + 0}'; }

# serve_and_ask NAME serve-flags...: one embedded server, the request set, its /metrics.
serve_and_ask() {
  local name=$1; shift
  start_server "$ACCULLM" --served-model-name m --max-num-seqs 32 "$@" || { fail "$name: server did not start"; return 1; }
  ask "$PORT" "$TMP/$name.out"
  curl -sf "http://127.0.0.1:$PORT/metrics" >"$TMP/$name.metrics"
  stop_server || fail "$name: server exit status"
  SERVER_PID=""
  grep -q FAILED "$TMP/$name.out" && { fail "$name: a request failed"; grep -m2 FAILED "$TMP/$name.out"; }
  return 0
}

serve_and_ask fp --model "$MODEL"
serve_and_ask golden --model "$MODEL" --draft "$PACK"
serve_and_ask ngram --model "$MODEL" --speculate ngram --draft-tokens 3
serve_and_ask pack --model "$PACK"
# A pack alone, served golden: its recorded source model answers, the pack drafts.
serve_and_ask golden_pack --model "$PACK" --golden
n=$(wc -l <"$TMP/fp.out")
[ "$n" -eq $((13 + ${GOLDEN_EXTRA_PROMPTS:-288})) ] && ! grep -q FAILED "$TMP/fp.out" && pass "the full-precision server answered all $n requests" ||
  fail "full-precision answers: $n lines"
cmp -s "$TMP/fp.out" "$TMP/golden.out" && pass "golden serve == full-precision serve ($n concurrent requests, n=2, stop, logprobs)" ||
  { fail "golden serve differs"; diff "$TMP/fp.out" "$TMP/golden.out" | head -4; }
cmp -s "$TMP/fp.out" "$TMP/golden_pack.out" && pass "serve --model PACK --golden == full-precision serve" ||
  { fail "serve --golden differs"; diff "$TMP/fp.out" "$TMP/golden_pack.out" | head -4; }
cmp -s "$TMP/fp.out" "$TMP/ngram.out" && pass "ngram serve == full-precision serve" ||
  { fail "ngram serve differs"; diff "$TMP/fp.out" "$TMP/ngram.out" | head -4; }
d=$(paste -d'\n' "$TMP/fp.out" "$TMP/pack.out" | awk 'NR % 2 { a = $0; next } a != $0' | wc -l)
[ "$d" -gt 0 ] && pass "the pack served alone differs on $d of $n requests: the identity is not trivial" ||
  fail "the pack alone never differs: the comparison could not have failed"

drafted=$(value "$TMP/golden.metrics" accullm_spec_decode_num_draft_tokens_total)
accepted=$(value "$TMP/golden.metrics" accullm_spec_decode_num_accepted_tokens_total)
$PY -c "import sys; sys.exit(0 if $accepted > 0 and $drafted >= $accepted else 1)" &&
  pass "golden /metrics: $accepted of $drafted draft tokens accepted ($(value "$TMP/golden.metrics" accullm_spec_decode_num_drafts_total) steps)" ||
  fail "golden /metrics: drafted $drafted, accepted $accepted"
[ "$(value "$TMP/ngram.metrics" accullm_spec_decode_num_draft_tokens_total)" != 0 ] && pass "ngram /metrics: drafts counted" ||
  fail "ngram /metrics: no drafts"
[ "$(spec_names "$TMP/golden.metrics")" = "$(doc_names speculation)" ] && [ -n "$(doc_names speculation)" ] &&
  pass "golden /metrics lists exactly docs/metrics.md's speculation rows" ||
  fail "speculation series: live [$(spec_names "$TMP/golden.metrics" | xargs)] vs docs [$(doc_names speculation | xargs)]"
[ -z "$(spec_names "$TMP/fp.metrics")" ] && pass "no speculation series without speculation" ||
  fail "the plain server exposes speculation series"

# Refusals: the draft must be a pack of --model; --speculate draft needs --draft.
refused() {  # what, expected substring, serve flags...
  local what=$1 needle=$2; shift 2
  timeout 60 "$ACCULLM" serve --port 0 "$@" >/dev/null 2>"$TMP/err"
  local rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -qi -- "$needle" "$TMP/err"; then pass "$what: $(tail -1 "$TMP/err")"
  else fail "$what (exit $rc): $(cat "$TMP/err")"; fi
}
refused "a checkpoint as the draft" "pack" --model "$MODEL" --draft "$MODEL"
refused "--speculate draft without --draft" "needs --draft" --model "$MODEL" --speculate draft
refused "--golden on a checkpoint" "needs --model PACK" --model "$MODEL" --golden
refused "--golden with a --reference that is another model" "another model" --model "$PACK" --golden --reference "$PACK"

# Under mpirun: rank 0 drafts, two stage ranks verify; the same answers.
if command -v mpirun >/dev/null; then
  if start_mpi_server 3 "$ACCULLM" --model "$MODEL" --draft "$PACK" --served-model-name m --max-num-seqs 32; then
    ask "$PORT" "$TMP/mpi.out"
    curl -sf "http://127.0.0.1:$PORT/metrics" >"$TMP/mpi.metrics"
    cmp -s "$TMP/fp.out" "$TMP/mpi.out" && pass "golden serve under mpirun -np 3 == full-precision serve" ||
      { fail "golden under mpirun differs"; diff "$TMP/fp.out" "$TMP/mpi.out" | head -4; }
    [ "$(value "$TMP/mpi.metrics" accullm_spec_decode_num_accepted_tokens_total)" != 0 ] &&
      pass "mpirun: accepted draft tokens counted" || fail "mpirun: no accepted tokens"
    kill -TERM "$MPI_PID" 2>/dev/null; wait "$MPI_PID" 2>/dev/null; MPI_PID=""
  else
    fail "golden pipeline did not start"
  fi
else
  echo "     (mpirun not installed: the pipeline case is skipped)"
fi

[ "$failures" -eq 0 ] && echo "all passed" || echo "$failures failed"
exit $((failures > 0))
