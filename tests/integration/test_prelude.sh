# Shared by the shell integration tests (sourced; not a test itself): the binary under test,
# the embedded model, Debian's Python, a scratch directory removed on exit, and ok/FAIL
# reporting with a failure count. Usage: source tests/integration/test_prelude.sh "$@"
ACCULLM=${1:?usage: $(basename "$0") /path/to/accullm}
MODEL=models/tinystories-llama
PY=/usr/bin/python3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failures=0
pass() { echo "ok   - $1"; }
fail() { echo "FAIL - $1"; failures=$((failures + 1)); }
