#!/usr/bin/env bash
# Size-matched against llama.cpp's Q4_K_M on this model (4,568,544 bytes, mean KL 0.00357,
# top-1 96.58%): the target is half its KL (<= 0.0018) and more top-1 at no more bytes.
# Mixed code widths: every block linear gets 3..8 bits by measured sensitivity within 4.70 bits
# per weight (8-bit group steps), 5-bit embeddings, a 6-bit group-wise LM head.
# Usage: quantize_size_matched_test.sh /path/to/accullm   (cwd: repository root)
set -uo pipefail
source tests/integration/test_prelude.sh "$@"
source tests/integration/quantize_lib.sh

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

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
