#!/usr/bin/env bash
# Renders helm/accullm for default values, embedded mode and multi-worker GPU groups
# (scripts/render-chart.sh), validates every object strictly (validate_chart.py) and lints
# the YAML. Usage: helm_chart_test.sh ACCULLM_BINARY
set -euo pipefail
cd "$(dirname "$0")/../.."
binary=${1:?usage: helm_chart_test.sh ACCULLM_BINARY}
for tool in go yamllint; do
  command -v $tool >/dev/null || { echo "FAIL: $tool not found: run scripts/setup.sh (Debian packages golang-go, yamllint)"; exit 1; }
done
/usr/bin/python3 -c 'import kubernetes, yaml' || { echo "FAIL: python3-kubernetes not installed: run scripts/setup.sh"; exit 1; }
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
# The chart ships copies of the monitoring files (Helm reads only the chart's own files).
cmp monitoring/alerts/accullm.yml helm/accullm/files/alerts/accullm.yml
cmp monitoring/dashboards/accullm.json helm/accullm/files/dashboards/accullm.json
yamllint -c tests/ops/yamllint.yml monitoring/alerts helm/accullm/Chart.yaml helm/accullm/values.yaml helm/accullm/ci
for values in "" helm/accullm/ci/embedded-values.yaml helm/accullm/ci/gpu-values.yaml; do
  name=$(basename "${values:-default}" .yaml)
  scripts/render-chart.sh "$out/$name" $values
  yamllint -c tests/ops/yamllint.yml "$out/$name"
  /usr/bin/python3 tests/ops/validate_chart.py "$out/$name" . "$binary" $values
done
# A wrong chart must fail: an unknown field, a flag the server lacks, a probe on a wrong path.
sed -e 's/imagePullPolicy:/imagePullPolisy:/' "$out/default/accullm/templates/leaderworkerset.yaml" > "$out/bad1.yaml"
sed -e 's/--max-queue=/--max-waiting=/; s#path: /readyz#path: /ready#' "$out/embedded-values/accullm/templates/deployment.yaml" > "$out/bad2.yaml"
for bad in bad1 bad2; do
  mkdir "$out/$bad.d"; mv "$out/$bad.yaml" "$out/$bad.d/"
  if /usr/bin/python3 tests/ops/validate_chart.py "$out/$bad.d" . "$binary" >"$out/$bad.log" 2>&1; then
    echo "FAIL: the validator accepted $bad"; cat "$out/$bad.log"; exit 1
  fi
  grep FAIL "$out/$bad.log"
done
echo "helm chart: 3 renders valid"
