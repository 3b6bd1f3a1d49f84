#!/usr/bin/env bash
# One-time setup of a fresh Debian 12 machine for AccuLLM: installs every Debian package the
# project needs, the npm test oracles (into tests/oracles/node_modules), then configures and
# builds into ./build. Safe to run again: it only installs what is missing.
#
#   scripts/setup.sh            # packages + npm oracles + build
#   scripts/setup.sh --no-build # packages + npm oracles only
#   scripts/setup.sh --sanitizers  # packages, then the sanitizer tree ./build-asan: clang, ASan +
#                                  # UBSan, the libFuzzer targets (tests/fuzz/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates curl
  libboost1.81-dev libboost-json1.81-dev
  libabsl-dev libcli11-dev libspdlog-dev libfmt-dev
  libopenmpi-dev openmpi-bin iproute2 bc
  prometheus-cpp-dev libhwy-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libeigen3-dev  # quant/: the FFN guesser's linear algebra (header-only)
  python3 python3-numpy libopenblas0-pthread
  # the sanitizer tree and fuzz targets (tests/fuzz): clang, and libFuzzer + the sanitizer runtimes
  clang libclang-rt-14-dev
  # ops tests (tests/ops): promtool, the chart renderer (Go + sprig + yaml), its validator, yamllint
  prometheus golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v2-dev python3-kubernetes yamllint
)
# Node.js runs the npm test oracles; a machine that already has node and npm (e.g. from
# NodeSource, whose nodejs conflicts with Debian's npm) keeps them.
if ! command -v npm >/dev/null 2>&1; then PACKAGES+=(nodejs npm); fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# npm oracles: independent implementations the tests compare against (installed from the
# lockfile so every machine tests against the same versions).
if [ -f tests/oracles/package.json ] && [ ! -d tests/oracles/node_modules ]; then
  echo "setup: installing npm test oracles"
  (cd tests/oracles && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ "${1:-}" = "--sanitizers" ]; then
  # Debug (assertions on) at -O1, CUDA off (nvcc does not take the sanitizer flags), no benchmarks;
  # only what ctest -L 'sanitize|fuzz' runs there (docs/fuzzing.md; every unit test:
  # cmake --build build-asan --target accullm_checks, then ctest -L 'unit|fuzz').
  CC=clang CXX=clang++ cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DACCULLM_FUZZ=ON \
    -DACCULLM_BUILD_BENCH=OFF -DACCULLM_ENABLE_CUDA=OFF
  cmake --build build-asan -j "${ACCULLM_JOBS:-2}" --target accullm_sanitizer_checks
elif [ "${1:-}" != "--no-build" ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
  cmake --build build -j "${ACCULLM_JOBS:-2}"
fi
echo "setup: done"
