#!/usr/bin/env bash
# `accullm quantize --out DIR` killed (SIGKILL) at several points, or out of space (a file size
# limit: writes fail with EFBIG as on a full disk), never leaves a half-written pack at DIR:
# DIR holds the old pack byte for byte (or nothing, when there was none), which still loads,
# unless the new pack was already complete; the next successful run replaces the old pack
# and removes what the interrupted runs left beside it; an --out that is neither empty nor a
# pack is refused before any work. (quant/pack_staging.h.) Usage: pack_write_fault_test.sh ACCULLM
set -uo pipefail
source tests/integration/test_prelude.sh "$@"

# The quickest recipe (round to nearest, all INT4, a small calibration): ~1 s of CPU.
quantize() {  # OUT [FP16_LAYERS]: in the background, sets QPID
  "$ACCULLM" quantize --out "$1" --method rtn --fp16-layers "${2:-none}" --calib-samples 2 --calib-seq-len 64 \
    >"$TMP/q.out" 2>"$TMP/q.err" &
  QPID=$!
}
digest() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16; }
loads() { "$ACCULLM" generate --model "$1" --prompt-ids 1 --max-tokens 2 --output-ids >/dev/null 2>"$TMP/load.err"; }
leftovers() { find "$TMP" -maxdepth 1 -name ".$1.partial-*" | wc -l; }

# The old pack: layer 0 kept in FP16, so that it differs from every pack written below.
quantize "$TMP/pack" layers:0
wait "$QPID" || { cat "$TMP/q.err"; exit 1; }
OLD="$(digest "$TMP/pack")"
loads "$TMP/pack" && pass "the old pack loads ($OLD)" || { fail "old pack: $(cat "$TMP/load.err")"; exit 1; }

# check_out WHAT SEEN: DIR holds the old pack byte for byte and it loads, or (a kill that came
# after the rename) the complete new pack, which then becomes the old one.
check_out() {
  local now; now="$(digest "$TMP/pack" 2>/dev/null || echo none)"
  if [ "$now" = "$OLD" ] && loads "$TMP/pack"; then
    pass "$1: the old pack is intact and loads ($2)"
  elif [ "$now" != "$OLD" ] && [ -f "$TMP/pack/accullm.json" ] && loads "$TMP/pack"; then
    pass "$1: the new pack was already complete and loads ($2)"
    OLD="$now"
  else
    fail "$1: $TMP/pack is neither the old pack nor a complete new one ($now; $(ls "$TMP/pack" 2>&1 | tr '\n' ' '))"
  fi
}
staged() {  # what the staging directory of pid $1 holds
  local d="$TMP/.pack.partial-$1"
  [ -d "$d" ] && echo "staged: $(cd "$d" && find . -type f -printf '%f %s B, ' | sed 's/, $//')" || echo "nothing staged"
}

# kill_when DESCRIPTION CONDITION: SIGKILL once CONDITION (a shell test; $S is the staging
# directory) holds, polled every 5 ms. The write lasts tens of ms: on a busy machine the poll
# can miss it, so up to 3 tries (a miss completes the new pack, which is checked too).
kill_when() {
  local what="$1" cond="$2" S hit=0 try
  for try in 1 2 3; do
    quantize "$TMP/pack"
    S="$TMP/.pack.partial-$QPID"
    for _ in $(seq 1 6000); do
      if eval "$cond"; then kill -KILL "$QPID" 2>/dev/null && hit=1; break; fi
      kill -0 "$QPID" 2>/dev/null || break
      sleep 0.005
    done
    wait "$QPID" 2>/dev/null
    if [ "$hit" = 1 ]; then break; fi
    check_out "missed the kill $what (try $try)" "quantize completed"
  done
  if [ "$hit" = 0 ]; then fail "$what: quantize finished before the kill, 3 times"; return; fi
  check_out "SIGKILL $what" "$(staged "$QPID")"
}
kill_when "while quantizing the layers" 'grep -q "quantize: [0-9]" "$TMP/q.err"'
kill_when "as the pack's directory appeared" '[ -d "$S" ]'
kill_when "once the manifest was staged" '[ -e "$S/accullm.json" ]'

# Killed in the middle of writing the weights, deterministically: a 2 MiB file size limit
# with SIGXFSZ's default action ends the process (status 128 + 25) when its write of the
# ~6 MB model.safetensors crosses 2 MiB, as a kill at that instant would.
limited_quantize() {  # OUT: quantize under the limit; sets RC, LPID
  ( ulimit -f 2048; "$ACCULLM" quantize --out "$1" --method rtn --fp16-layers none --calib-samples 2 \
      --calib-seq-len 64 >/dev/null 2>"$TMP/limited.err" & echo $! >"$TMP/limited.pid"; wait $! ) 2>/dev/null
  RC=$?
  LPID="$(cat "$TMP/limited.pid")"
}
limited_quantize "$TMP/pack"
[ "$RC" = 153 ] && pass "killed mid-write by SIGXFSZ (exit $RC): $(staged "$LPID")" || fail "SIGXFSZ: exit $RC ($(staged "$LPID"))"
check_out "killed mid-write" "$(staged "$LPID")"
[ "$(leftovers pack)" -ge 1 ] && pass "the kills left staging directories beside the pack ($(leftovers pack)), never in it"

# Out of space: the same limit with SIGXFSZ ignored: the write fails with EFBIG, as with
# ENOSPC on a full disk: a clear error, the old pack intact.
( ulimit -f 2048; trap '' XFSZ; exec "$ACCULLM" quantize --out "$TMP/pack" --method rtn --fp16-layers none \
    --calib-samples 2 --calib-seq-len 64 ) >/dev/null 2>"$TMP/full.err"
rc=$?
if [ "$rc" != 0 ] && grep -q "^error: failed writing .*model.safetensors: File too large" "$TMP/full.err"; then
  pass "out of space: refused (exit $rc): $(grep '^error' "$TMP/full.err")"
else
  fail "out of space: exit $rc, $(tail -2 "$TMP/full.err")"
fi
check_out "out of space" "refused"
[ "$(leftovers pack)" = 0 ] && pass "out of space: the failed run removed its staging directory (and the killed runs')" \
  || fail "out of space: $(leftovers pack) staging directories left"

# A first write killed mid-way: no pack at all.
limited_quantize "$TMP/fresh"
[ "$RC" = 153 ] && [ ! -e "$TMP/fresh" ] && pass "a first write killed mid-write: no pack at all" \
  || fail "a first write killed (exit $RC): $TMP/fresh holds $(ls "$TMP/fresh" 2>&1 | tr '\n' ' ')"

# The next successful run replaces the old pack and clears what the interrupted runs left.
# Layer 1 in FP16: a pack unlike both the first one (layer 0) and the all-INT4 packs that a
# missed kill above may already have swapped in (then OLD is that pack's digest).
quantize "$TMP/pack" layers:1
if wait "$QPID"; then
  NEW="$(digest "$TMP/pack")"
  [ "$NEW" != "$OLD" ] && loads "$TMP/pack" && pass "a complete run replaced the pack ($NEW)" || fail "replacement: $NEW"
  [ "$(leftovers pack)" = 0 ] && pass "no staging directory left beside the pack" || fail "$(leftovers pack) staging dirs left"
else
  fail "the replacing run failed: $(tail -2 "$TMP/q.err")"
fi

# An --out that holds something else is refused before any work, and left alone.
mkdir -p "$TMP/other" && echo keep >"$TMP/other/notes.txt"
quantize "$TMP/other"
if wait "$QPID"; then fail "a non-pack --out directory was overwritten"
else grep -q "exists and is not an AccuLLM pack" "$TMP/q.err" && pass "a non-pack --out is refused: $(head -1 "$TMP/q.err" | cut -c1-100)" \
  || fail "non-pack --out: $(cat "$TMP/q.err")"; fi
[ "$(cat "$TMP/other/notes.txt")" = keep ] && [ "$(ls "$TMP/other")" = notes.txt ] || fail "the non-pack directory changed"

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
