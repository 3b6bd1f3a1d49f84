#!/usr/bin/env bash
# Golden mode: `generate --draft PACK` (the default pack of the embedded model drafts, the
# full-precision model verifies) and `--speculate ngram` give the full-precision model's own
# tokens, token for token, greedy and seeded sampling with top-p, on reference.json's prompts
# and openings of valid.txt; the pack alone differs on some (so the comparison can fail). A
# draft that is not a pack of --model is refused with a clear message.
# Usage: quantize_golden_test.sh /path/to/accullm   (cwd: repository root)
set -uo pipefail
source tests/integration/test_prelude.sh "$@"

PACK="$TMP/pack"
"$ACCULLM" quantize --out "$PACK" >/dev/null 2>"$TMP/q.err" || { cat "$TMP/q.err"; exit 1; }

# Prompts as ids: reference.json's three cases and 12 openings (8 words) of valid.txt lines.
$PY - "$MODEL" >"$TMP/prompts" <<'EOF'
import json, sys
m = sys.argv[1]
for c in json.load(open(f"{m}/reference.json"))["cases"]:
    print("ids", ",".join(map(str, c["prompt_ids"])))
lines = [l for l in open(f"{m}/valid.txt", encoding="utf-8") if len(l.split()) > 12]
for l in lines[:120:10]:
    print("text", " ".join(l.split()[:8]))
EOF
[ "$(wc -l <"$TMP/prompts")" -eq 15 ] || { fail "prompt list"; cat "$TMP/prompts"; }

# run OUT SAMPLING... -- generate's ids for every prompt into OUT (one line each), stats kept.
run() {
  local out=$1; shift
  : >"$out"
  while read -r kind prompt; do
    if [ "$kind" == ids ]; then set -- "$@" --prompt-ids "$prompt"; else set -- "$@" --prompt "$prompt"; fi
    "$ACCULLM" generate --output-ids --max-tokens 48 "$@" </dev/null >>"$out" 2>>"$out.err" || echo "FAILED" >>"$out"
    set -- "${@:1:$(($# - 2))}"
  done <"$TMP/prompts"
}

differs=0
for sampling in "--temperature 0" "--temperature 0.8 --top-p 0.9 --top-k 0 --min-p 0 --seed 7" \
  "--temperature 1 --top-p 0.95 --seed 42"; do
  # shellcheck disable=SC2086
  run "$TMP/alone" $sampling
  run "$TMP/golden" $sampling --draft "$PACK"
  run "$TMP/golden1" $sampling --draft "$PACK" --draft-tokens 1
  run "$TMP/ngram" $sampling --speculate ngram
  run "$TMP/golden_pack" --model "$PACK" --golden $sampling
  run "$TMP/pack_alone" --model "$PACK" $sampling
  grep -q FAILED "$TMP/alone" "$TMP/golden" "$TMP/ngram" && { fail "$sampling: a run failed"; head -3 "$TMP"/*.err; }
  cmp -s "$TMP/alone" "$TMP/golden" && pass "$sampling: golden == full precision alone (15 prompts)" \
    || { fail "$sampling: golden differs"; diff "$TMP/alone" "$TMP/golden" | head -6; }
  cmp -s "$TMP/alone" "$TMP/golden1" && pass "$sampling: golden with --draft-tokens 1 == alone" \
    || fail "$sampling: golden --draft-tokens 1 differs"
  cmp -s "$TMP/alone" "$TMP/golden_pack" && pass "$sampling: generate --model PACK --golden == full precision alone" \
    || { fail "$sampling: --golden differs"; diff "$TMP/alone" "$TMP/golden_pack" | head -6; }
  cmp -s "$TMP/alone" "$TMP/ngram" && pass "$sampling: ngram == full precision alone (15 prompts)" \
    || { fail "$sampling: ngram differs"; diff "$TMP/alone" "$TMP/ngram" | head -6; }
  n=$(paste -d'|' "$TMP/alone" "$TMP/pack_alone" | awk -F'|' '$1 != $2' | wc -l)
  echo "     the pack alone differs on $n of 15 prompts ($sampling)"
  differs=$((differs + n))
done
[ "$differs" -gt 0 ] && pass "the pack alone differs somewhere ($differs prompt runs): the identity is not trivial" \
  || fail "the pack alone never differs: the comparison could not have failed"
grep -q "acceptance rate: " "$TMP/golden.err" && grep -q "acceptance by draft position" "$TMP/golden.err" \
  && pass "statistics report the acceptance rate, per draft position too" || fail "acceptance statistics"
rate=$(grep -o "acceptance rate: [0-9.]*" "$TMP/golden.err" | awk '{s += $3; n++} END {print s / n}')
$PY -c "import sys; sys.exit(0 if $rate > 0.7 else 1)" && pass "mean acceptance rate of the pack's drafts: $rate" \
  || fail "acceptance rate $rate: the pack should agree with its model most of the time"

# Stop sequences and EOS end the golden run exactly as the plain one.
for args in "--prompt Once --temperature 0 --max-tokens 200" "--prompt Tom --temperature 0.9 --seed 3 --stop ." \
  "--prompt Lily --temperature 1 --seed 5 --stop park --stop dog --max-tokens 100"; do
  # shellcheck disable=SC2086
  a=$("$ACCULLM" generate $args 2>"$TMP/a.err"); b=$("$ACCULLM" generate $args --draft "$PACK" 2>"$TMP/b.err")
  fa=$(grep -o "finish: [a-z]*" "$TMP/a.err"); fb=$(grep -o "finish: [a-z]*" "$TMP/b.err")
  [ "$a" == "$b" ] && [ "$fa" == "$fb" ] && pass "$args: same text and $fa" || fail "$args: ($fa) $a | ($fb) $b"
done

# Refusals: one line, non-zero exit.
refused() {  # description, expected substring, generate arguments...
  local what=$1 needle=$2; shift 2
  "$ACCULLM" generate --prompt Once --max-tokens 4 "$@" >/dev/null 2>"$TMP/err"
  local rc=$?
  if [ $rc -ne 0 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -qi -- "$needle" "$TMP/err"; then
    pass "$what: $(cat "$TMP/err")"
  else
    fail "$what (rc=$rc)"; head -3 "$TMP/err"
  fi
}
refused "a draft that is not a pack" "not an AccuLLM pack" --draft "$MODEL"
cp -r "$PACK" "$TMP/other"
$PY - "$TMP/other/accullm.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
m["source_model"]["hash"] = "0123456789abcdef"
json.dump(m, open(sys.argv[1], "w"))
EOF
refused "a pack of another model" "quantized from another model" --draft "$TMP/other"
$PY - "$TMP/other/accullm.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
del m["source_model"]
json.dump(m, open(sys.argv[1], "w"))
EOF
refused "a pack without a source hash" "records no source model hash" --draft "$TMP/other"
refused "a pack as the target of its own draft" "quantized from another model" --model "$PACK" --draft "$PACK"
refused "--speculate draft without --draft" "needs --draft" --speculate draft
refused "--golden on a checkpoint" "needs --model PACK" --model "$MODEL" --golden
refused "--golden with --draft" "drop --draft" --model "$PACK" --golden --draft "$PACK"
refused "--golden with a --reference that is another model" "quantized from another model" --model "$PACK" --golden --reference "$PACK"
refused "--reference without --golden" "needs --golden" --reference "$MODEL"
"$ACCULLM" generate --help >"$TMP/help" 2>&1 && grep -q -- "--draft-tokens" "$TMP/help" && grep -q -- "--speculate" "$TMP/help" \
  && pass "generate --help documents --draft, --speculate, --draft-tokens" || fail "generate --help"

# bench --draft: the cost model's parts, measured (values are timing-dependent: only their
# presence and ranges are checked here; the figures live in docs/benchmarks.md).
"$ACCULLM" bench --draft "$PACK" --prompt-tokens 32 --gen-tokens 24 --repeat 1 --no-bandwidth --json \
  --assume-acceptance 0.9 >"$TMP/bench.json" 2>"$TMP/bench.err" || fail "bench --draft: $(cat "$TMP/bench.err")"
$PY - "$TMP/bench.json" <<'PY' && pass "bench --draft reports acceptance, verification passes and the cost model" ||
import json, sys
b = json.load(open(sys.argv[1]))
assert 0 < b["acceptance_rate"] <= 1, b
assert b["draft_decode_tokens_per_s"] > 0 and b["speculative_decode_tokens_per_s"] > 0, b
assert set(b["verify_pass_ms"]) == {"2", "3", "5", "9"}, b["verify_pass_ms"]
assert b["draft_step_sequences"] == 16 and b["draft_step_sequential_ms"] > 0 and b["draft_step_batched_ms"] > 0, b
assert [m["acceptance"] for m in b["cost_model_speedup"]][1:] == [0.9], b["cost_model_speedup"]
assert all(m["speedup"] > 0 for m in b["cost_model_speedup"]), b
PY
  fail "bench --draft JSON: $(head -c 600 "$TMP/bench.json")"
"$ACCULLM" bench --model "$PACK" --golden --prompt-tokens 16 --gen-tokens 8 --repeat 1 --no-bandwidth --json \
  >"$TMP/bench_golden.json" 2>"$TMP/bench.err" &&
  $PY -c "import json, sys; b = json.load(open(sys.argv[1])); sys.exit(0 if 0 < b['acceptance_rate'] <= 1 else 1)" \
    "$TMP/bench_golden.json" && pass "bench --model PACK --golden: the cost model with the pack's source as the target" ||
  fail "bench --golden: $(cat "$TMP/bench.err")"
"$ACCULLM" bench --draft "$MODEL" --gen-tokens 4 --no-bandwidth >/dev/null 2>"$TMP/bench_bad.err" &&
  fail "bench --draft with a checkpoint accepted" || pass "bench --draft refuses a draft that is not a pack of --model"

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
