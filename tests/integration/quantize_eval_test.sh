#!/usr/bin/env bash
# Quantization end to end on the embedded model: the default pack, its accuracy under the
# evaluation protocol, AXE's overflow guarantee, function-preserving outliers, malformed packs.
# Usage: quantize_eval_test.sh /path/to/accullm   (cwd: repository root)
# Evaluations use the first 40 chunks of valid.txt to keep CI short; docs/accuracy.md has the
# full-text figures.
set -uo pipefail
source tests/integration/test_prelude.sh "$@"
json() { $PY -c "import json,sys; print(json.load(open('$1'))['$2'])"; }
# check FILE FIELD OP LIMIT DESCRIPTION
check() {
  local v; v=$(json "$1" "$2")
  if $PY -c "import sys; sys.exit(0 if $v $3 $4 else 1)"; then pass "$5: $2 = $v $3 $4"; else fail "$5: $2 = $v, want $3 $4"; fi
}
evaluate() {  # PACK REFERENCE OUT.json
  "$ACCULLM" eval --model "$1" --reference "$2" --data $MODEL/valid.txt --max-chunks 40 --json >"$3" 2>"$TMP/eval.err" \
    || { cat "$TMP/eval.err"; return 1; }
}

# 1. The default pack: >= 75% INT4, accuracy close to full precision.
"$ACCULLM" quantize --out "$TMP/default" >"$TMP/q.out" 2>"$TMP/q.err" || { cat "$TMP/q.err"; exit 1; }
grep -q "^layer" "$TMP/q.out" && pass "quantize prints the measured plan" || fail "plan table"
grep -q "^quantize: " "$TMP/q.err" && pass "plain progress lines when not on a terminal" || fail "progress lines"
evaluate "$TMP/default" $MODEL "$TMP/default.json" || exit 1
cat "$TMP/default.json"; echo
check "$TMP/default.json" int4_weight_fraction ">=" 0.75 "default pack"
check "$TMP/default.json" ppl_ratio "<=" 1.005 "default pack"
check "$TMP/default.json" kl_mean "<=" 0.0015 "default pack"
check "$TMP/default.json" top1_agreement ">=" 0.98 "default pack"
got=$("$ACCULLM" generate --model "$TMP/default" --prompt "Once upon a time" --temperature 0 --max-tokens 16 2>/dev/null)
[ -n "$got" ] && pass "generate runs on the pack: $got" || fail "generate on the pack"

# 2. AXE: 16-bit accumulators can provably not overflow, at a small accuracy cost.
"$ACCULLM" quantize --out "$TMP/axe" --accumulator-bits 16 --group 128 --tile 32 --fp16-layers none --calib-samples 16 \
  >"$TMP/axe.out" 2>"$TMP/axe.err" || { cat "$TMP/axe.err"; exit 1; }
grep "accumulator check" "$TMP/axe.out"
grep -q "accumulator check: 0 of [0-9]* output channels can overflow a signed 16-bit" "$TMP/axe.out" \
  && pass "AXE: no channel can overflow 16 bits" || fail "AXE overflow check"
evaluate "$TMP/axe" $MODEL "$TMP/axe.json" || exit 1
check "$TMP/axe.json" ppl_ratio "<=" 1.02 "AXE 16-bit pack"

# 3. Outliers made by a function-preserving rescaling (s = 50 on three channels of layers 1, 5).
$PY tests/tools/make_outlier_model.py --model $MODEL --out "$TMP/outlier-model" --scale 50 >/dev/null
ids=1,420,435,261,394,1988,391,282,261,382,439,463,396,1982
"$ACCULLM" logits --model $MODEL --prompt-ids $ids --out "$TMP/a.bin" 2>/dev/null
"$ACCULLM" logits --model "$TMP/outlier-model" --prompt-ids $ids --out "$TMP/b.bin" 2>/dev/null
err=$($PY -c "
import numpy as np
a=np.fromfile('$TMP/a.bin',dtype=np.float32); b=np.fromfile('$TMP/b.bin',dtype=np.float32)
print(float(np.abs(a-b).max()/np.abs(a).max()))")
$PY -c "import sys; sys.exit(0 if $err <= 1e-4 else 1)" && pass "rescaled model keeps its function (rel err $err)" \
  || fail "rescaled model changed its output (rel err $err)"
# Plain round-to-nearest INT4, group 128, symmetric, every block (the issue's floor).
"$ACCULLM" quantize --model "$TMP/outlier-model" --out "$TMP/outlier-rtn" --method rtn --group 128 --symmetric \
  --grid-search off --no-outliers --fp16-layers none --calib-samples 8 >/dev/null 2>&1 || fail "rtn quantize of the outlier model"
evaluate "$TMP/outlier-rtn" "$TMP/outlier-model" "$TMP/outlier-rtn.json" || exit 1
"$ACCULLM" quantize --model "$TMP/outlier-model" --out "$TMP/outlier-default" >/dev/null 2>&1 || fail "default quantize of the outlier model"
evaluate "$TMP/outlier-default" "$TMP/outlier-model" "$TMP/outlier-default.json" || exit 1
echo "uniform RTN: $(cat "$TMP/outlier-rtn.json")"
echo "default:     $(cat "$TMP/outlier-default.json")"
check "$TMP/outlier-rtn.json" kl_mean ">=" 0.01 "uniform RTN INT4 on the outlier model degrades"
rtn_kl=$(json "$TMP/outlier-rtn.json" kl_mean)
check "$TMP/outlier-default.json" kl_mean "<=" "$rtn_kl / 5" "default plan: at least 5x below uniform RTN"
check "$TMP/outlier-default.json" kl_mean "<=" 0.0015 "default plan on the outlier model"
check "$TMP/outlier-default.json" top1_agreement ">=" 0.98 "default plan on the outlier model"
check "$TMP/outlier-default.json" ppl_ratio "<=" 1.005 "default plan on the outlier model"

# 4. Size-matched against llama.cpp's Q4_K_M on this model (4,568,544 bytes, mean KL 0.00357,
# top-1 96.58%): the issue's target is half its KL (<= 0.0018) and more top-1 at no more bytes.
# Mixed code widths: every block linear gets 3..8 bits by measured sensitivity within 4.70 bits
# per weight (8-bit group steps), 5-bit embeddings, a 6-bit group-wise LM head.
"$ACCULLM" quantize --out "$TMP/small" --avg-bits 4.70 --embeddings int5 --lm-head int6 --no-outliers \
  --scale-bits 8 >"$TMP/small.out" 2>"$TMP/small.err" || { cat "$TMP/small.err"; exit 1; }
grep "^wrote" "$TMP/small.out"
grep -q "bits: \[.*:3,.*:5" "$TMP/small.out" && pass "size-matched plan mixes 3- and 5-bit linears" || fail "mixed widths in the plan"
evaluate "$TMP/small" $MODEL "$TMP/small.json" || exit 1
cat "$TMP/small.json"; echo
check "$TMP/small.json" weight_bytes "<=" 4568544 "size-matched pack: no larger than Q4_K_M"
check "$TMP/small.json" kl_mean "<=" 0.0018 "size-matched pack: half of Q4_K_M's KL"
check "$TMP/small.json" top1_agreement ">" 0.9658 "size-matched pack: above Q4_K_M's top-1"
check "$TMP/small.json" block_bits_per_weight "<=" 4.70 "size-matched pack: within its bit budget"

# 5. Malformed packs are refused with one clear line.
cp -r "$TMP/default" "$TMP/bad"
sed -i 's/"format_version":1/"format_version":2/' "$TMP/bad/accullm.json"
if "$ACCULLM" generate --model "$TMP/bad" --prompt-ids 1 --output-ids 2>"$TMP/err" >/dev/null; then fail "version 2 pack accepted"
else grep -q "^error: .*format version 2 is not supported" "$TMP/err" && pass "wrong pack version refused" || fail "version error: $(cat "$TMP/err")"; fi

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
