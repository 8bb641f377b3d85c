#!/usr/bin/env bash
# Builds and runs the scheduler benchmark (release build in ./build).
#   benchmarks/scheduler/run.sh [--reps R] [--dir DIR] [--smoke]
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
if [ ! -f "$top/build/CMakeCache.txt" ]; then
  cmake -S "$top" -B "$top/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$top/build" -j2 --target bench_scheduler >/dev/null
exec "$top/build/benchmarks/scheduler/bench_scheduler" "$@"
