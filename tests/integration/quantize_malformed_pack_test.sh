#!/usr/bin/env bash
# Malformed packs are refused with one clear line: a pack whose accullm.json claims format
# version 2. Usage: quantize_malformed_pack_test.sh /path/to/accullm   (cwd: repository root)
set -uo pipefail
source tests/integration/test_prelude.sh "$@"

# The format version is the same whatever the recipe: the quickest pack will do (round to
# nearest, every block INT4, no sensitivity run, a small calibration).
"$ACCULLM" quantize --out "$TMP/pack" --method rtn --fp16-layers none --calib-samples 2 --calib-seq-len 64 \
  >/dev/null 2>"$TMP/q.err" || { cat "$TMP/q.err"; exit 1; }
# The unedited pack loads, so a refusal below is the edit's doing.
"$ACCULLM" generate --model "$TMP/pack" --prompt-ids 1 --output-ids >/dev/null 2>"$TMP/err" \
  && pass "the unedited pack loads" || fail "unedited pack refused: $(cat "$TMP/err")"

cp -r "$TMP/pack" "$TMP/bad"
sed -i 's/"format_version":2/"format_version":3/' "$TMP/bad/accullm.json"
if "$ACCULLM" generate --model "$TMP/bad" --prompt-ids 1 --output-ids 2>"$TMP/err" >/dev/null; then fail "version 3 pack accepted"
else grep -q "^error: .*format version 3 is not supported" "$TMP/err" && pass "wrong pack version refused" || fail "version error: $(cat "$TMP/err")"; fi

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
