#!/usr/bin/env bash
# Configures and builds one variant into a build folder.
#   scripts/build.sh [release|asan|fuzz]   (default release)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
variant=${1:-release}
jobs=$(nproc 2>/dev/null || echo 2)
case "$variant" in
  release) dir=$top/build; opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
  asan) dir=$top/build-asan; opts=(-DCMAKE_BUILD_TYPE=Debug -DSELDON_SANITIZE=ON -DSELDON_BENCHMARKS=OFF -DSELDON_EXAMPLES=OFF) ;;
  fuzz) dir=$top/build-fuzz; opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DSELDON_FUZZ=ON -DSELDON_BENCHMARKS=OFF -DSELDON_EXAMPLES=OFF
          -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++) ;;
  *) echo "usage: $0 [release|asan|fuzz]" >&2; exit 2 ;;
esac
if [ "${CI:-}" = true ] || [ "${SELDON_WERROR:-}" = 1 ]; then
  opts+=(-DSELDON_WERROR=ON)
fi
cmake -S "$top" -B "$dir" "${opts[@]}" >/dev/null
if [ "$variant" = fuzz ]; then
  # Only the fuzz targets: plugins and daemons do not link against clang's sanitizer runtimes.
  cmake --build "$dir" -j "$jobs" --target fuzz_json fuzz_pb fuzz_routes fuzz_settings fuzz_manifest fuzz_http fuzz_http_response fuzz_h2 fuzz_pipeline fuzz_sched_store fuzz_agent fuzz_control fuzz_kafka fuzz_pbjson
else
  cmake --build "$dir" -j "$jobs"
fi
