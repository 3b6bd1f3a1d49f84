#!/usr/bin/env bash
# promtool check rules + promtool test rules on monitoring/alerts (each alert fires on
# synthetic series and stays silent otherwise: monitoring/alerts/accullm_test.yml).
set -euo pipefail
cd "$(dirname "$0")/../../monitoring/alerts"
command -v promtool >/dev/null || { echo "FAIL: promtool not found: run scripts/setup.sh (Debian package prometheus)"; exit 1; }
rules=$(ls *.yml | grep -v '_test\.yml$')
promtool check rules $rules
promtool test rules *_test.yml
