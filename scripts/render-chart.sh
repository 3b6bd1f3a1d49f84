#!/usr/bin/env bash
# Renders the Helm chart without Helm (helm/render: Go text/template + sprig, Helm's built-ins),
# like `helm template --output-dir`. Builds offline from Debian's Go packages.
#   scripts/render-chart.sh OUT_DIR [VALUES_FILE...] [-- RELEASE [NAMESPACE]]
#   scripts/render-chart.sh /tmp/out helm/accullm/ci/gpu-values.yaml   # -> /tmp/out/accullm/templates/*.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/render-chart.sh OUT_DIR [VALUES_FILE...]}; shift
args=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do args+=(-f "$1"); shift; done
[ "${1:-}" = "--" ] && shift
release=${1:-accullm}; namespace=${2:-default}
command -v go >/dev/null || { echo "render-chart: go not found (Debian package golang-go; scripts/setup.sh installs it)" >&2; exit 1; }
[ -d /usr/share/gocode/src/github.com/Masterminds/sprig ] || { echo "render-chart: sprig not found (golang-github-masterminds-sprig-dev)" >&2; exit 1; }
bin=${ACCULLM_HELM_RENDER:-${TMPDIR:-/tmp}/accullm-helm-render-$(id -u)}
# GOPATH mode over Debian's packaged sources: nothing is fetched from the network.
GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOPROXY=off go build -o "$bin" ./helm/render
"$bin" -chart helm/accullm "${args[@]}" -release "$release" -namespace "$namespace" -out "$out"
