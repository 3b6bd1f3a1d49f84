#!/usr/bin/env bash
# The committed dashboard is its generator's output, and every query parses and uses only
# documented metrics (check_dashboard.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v promtool >/dev/null || { echo "FAIL: promtool not found: run scripts/setup.sh (Debian package prometheus)"; exit 1; }
/usr/bin/python3 monitoring/dashboards/make_dashboard.py | cmp - monitoring/dashboards/accullm.json \
  || { echo "FAIL: monitoring/dashboards/accullm.json is not make_dashboard.py's output: run it"; exit 1; }
/usr/bin/python3 tests/ops/check_dashboard.py .
