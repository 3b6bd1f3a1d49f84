#!/usr/bin/env bash
# Byte-for-byte parity of `accullm chat-template` with @huggingface/jinja (npm) on real chat
# templates (tests/fixtures/chat_templates/*.jinja) and a set of conversations, including
# unicode, empty content, tool calls, and role-order errors the templates raise on.
# Usage (ctest does this from the repository root): bash chat_template_parity_test.sh /path/to/accullm
set -euo pipefail

ACCULLM=${1:?usage: chat_template_parity_test.sh /path/to/accullm}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ORACLES="$ROOT/tests/oracles"

if [[ ! -f "$ORACLES/node_modules/@huggingface/jinja/package.json" ]]; then
  echo "FAIL: $ORACLES/node_modules/@huggingface/jinja is missing: run scripts/setup.sh (it runs 'npm ci' in tests/oracles)" >&2
  exit 1
fi
command -v node >/dev/null || { echo "FAIL: node is not installed: run scripts/setup.sh" >&2; exit 1; }

exec node "$ROOT/tests/integration/chat_template_oracle.mjs" "$ACCULLM" "$ROOT/tests/fixtures/chat_templates"
