#!/usr/bin/env bash
# Runs the libFuzzer targets of a sanitizer build tree (tests/fuzz/README.md) and prints one
# line per target: executions, coverage (cov: edges, ft: features, from libFuzzer's final
# stats), corpus size, and crashes (inputs that crashed, leaked, timed out (60 s) or ran out of
# memory (2.5 GB); each is saved under the work directory), and the plateau: the edges at half
# the run time and the second of the last edge found (WORK/TARGET/coverage.tsv has the whole
# curve: seconds, executions, edges, features). Exit status 1 when any target crashed.
#
#   tests/fuzz/run_fuzzers.sh [--build-dir DIR] [--time SECONDS | --runs N] [--work DIR] [--fresh] [TARGET...]
#
# --build-dir  the tree configured with -DACCULLM_FUZZ=ON (default build-asan)
# --time       seconds of fuzzing per target after its seeds (default 60)
# --runs       executions per target instead of a time
# --work       where each target's grown corpus, log and crash files go (default BUILD/fuzz-work)
# --fresh      start from the seeds only (forget what earlier runs in --work found): the CI smoke
# TARGET       names as in tests/fuzz/*_fuzzer.cc (default: all)
#
# Each run starts from the seeds in tests/fuzz/corpus/TARGET (valid files, the malformed cases
# of the unit tests, and every past finding) plus what earlier runs in --work found, with
# tests/fuzz/dict/TARGET.dict when present.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build=build-asan
seconds=60
runs=""
work=""
fresh=0
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build="$2"; shift 2 ;;
    --time) seconds="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --fresh) fresh=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "run_fuzzers.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ -n "$work" ] || work="$build/fuzz-work"
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$here"/*_fuzzer.cc; do n="$(basename "$f" _fuzzer.cc)"; targets+=("$n"); done
fi

# Per-target libFuzzer options: inputs as large as the door's limits need.
extra_options() {
  case "$1" in
    http_request) echo "-max_len=80000" ;;   # a 64 KiB trailer field must be reachable
    tokenizer_json|pack) echo "-max_len=131072" ;;
    chat_template) echo "-max_len=16384" ;;
    *) echo "-max_len=8192" ;;
  esac
}

# Reads libFuzzer's output; prints "seconds-since-START execs cov ft" for each status line.
stamp_coverage() {
  local line n c f
  while IFS= read -r line; do
    [[ "$line" =~ ^#([0-9]+).*\ cov:\ ([0-9]+)\ ft:\ ([0-9]+) ]] || continue
    n=${BASH_REMATCH[1]} c=${BASH_REMATCH[2]} f=${BASH_REMATCH[3]}
    printf '%s\t%s\t%s\t%s\n' "$(( EPOCHSECONDS - $1 ))" "$n" "$c" "$f"
  done
}

failed=0
for t in "${targets[@]}"; do
  bin="$build/tests/fuzz/${t}_fuzzer"
  if [ ! -x "$bin" ]; then
    echo "$t: no binary $bin (configure with -DACCULLM_FUZZ=ON and build it)" >&2
    failed=1
    continue
  fi
  dir="$work/$t"
  [ $fresh -eq 1 ] && rm -rf "$dir/corpus"
  mkdir -p "$dir/corpus" "$dir/crashes"
  log="$dir/last.log"
  opts=(-print_final_stats=1 -timeout=60 -rss_limit_mb=2560 -artifact_prefix="$dir/crashes/" $(extra_options "$t"))
  if [ -n "$runs" ]; then opts+=(-runs="$runs"); else opts+=(-max_total_time="$seconds"); fi
  [ -f "$here/dict/$t.dict" ] && opts+=(-dict="$here/dict/$t.dict")
  # Crash, leak, timeout (-timeout) and out-of-memory inputs count; slow-unit-* (over 10 s but
  # under the timeout) are kept for a look but do not.
  count_crashes() { find "$dir/crashes" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l; }
  before=$(count_crashes)
  start=$(date +%s)
  # Every status line with the second it was printed at ($dir/coverage.tsv: seconds, execs,
  # cov, ft), so a long run shows where coverage stopped growing (the plateau).
  "$bin" "${opts[@]}" "$dir/corpus" "$here/corpus/$t" 2>&1 | tee "$log" | stamp_coverage "$start" >"$dir/coverage.tsv"
  rc=${PIPESTATUS[0]}
  elapsed=$(( $(date +%s) - start ))
  crashes=$(( $(count_crashes) - before ))
  [ $rc -ne 0 ] && [ $crashes -eq 0 ] && crashes=1  # a crash libFuzzer could not save still counts
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  # The last status line ("#N  DONE/pulse/NEW ... cov: C ft: F corp: K/...").
  status=$(grep -E '^#[0-9]+' "$log" | grep -E 'cov: ' | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$status")
  # The plateau: the second of the last coverage (edge) increase, and the edges at half time.
  last_new=$(awk -F'\t' 'NR == 1 || $3 > c { c = $3; t = $1 } END { print (NR ? t : "?") }' "$dir/coverage.tsv")
  half_cov=$(awk -F'\t' -v h=$(( elapsed / 2 )) '$1 <= h { c = $3 } END { print (c == "" ? "?" : c) }' "$dir/coverage.tsv")
  printf '%-16s execs=%-9s cov=%-6s ft=%-6s corpus=%-5s time=%ss crashes=%s cov_at_half_time=%s last_cov_increase_at=%ss\n' \
    "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$elapsed" "$crashes" "$half_cov" "$last_new"
  if [ $crashes -gt 0 ]; then
    failed=1
    echo "  $t: see $log and $dir/crashes/" >&2
    grep -m3 -E 'ERROR: |runtime error|invariant broken|deadly signal' "$log" | sed 's/^/  /' >&2
  fi
done
exit $failed
