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
# free_port_base COUNT: prints a port P with P .. P+COUNT-1 free on 127.0.0.1, below the
# kernel's ephemeral range: there no client connection or --port 0 listener (this test's or a
# concurrent test's) can take one of them between this check and the bind.
free_port_base() {
  $PY - "$1" <<'PYEOF'
import random, socket, sys
count = int(sys.argv[1])
try:
    ephemeral_low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    ephemeral_low = 32768
for _ in range(200):
    p = random.randint(20000, max(20001, ephemeral_low - count - 1))
    try:
        for q in range(p, p + count):
            s = socket.socket(); s.bind(("127.0.0.1", q)); s.close()
        print(p); break
    except OSError:
        pass
PYEOF
}
