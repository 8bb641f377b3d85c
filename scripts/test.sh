#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test through CTest:
# first the sanitizer build (AddressSanitizer + UndefinedBehaviorSanitizer),
# then the release build, whose CTest summary closes the output.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/install-deps.sh"
jobs=$(nproc 2>/dev/null || echo 2)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

"$top/scripts/build.sh" asan
echo "== sanitizer build (address + undefined): tests"
ctest --test-dir "$top/build-asan" --output-on-failure -V -j "$jobs"

"$top/scripts/build.sh" release
echo "== release build: tests"
ctest --test-dir "$top/build" --output-on-failure -V -j "$jobs"
