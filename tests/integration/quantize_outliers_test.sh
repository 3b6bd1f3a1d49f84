#!/usr/bin/env bash
# Outliers made by a function-preserving rescaling (s = 50 on three channels of layers 1, 5):
# the rescaled model keeps its function, uniform RTN INT4 degrades on it, the default plan does
# not. Usage: quantize_outliers_test.sh /path/to/accullm   (cwd: repository root)
set -uo pipefail
source tests/integration/test_prelude.sh "$@"
source tests/integration/quantize_lib.sh

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

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
