#!/usr/bin/env bash
# Compiles each public header alone: as C99 with -pedantic, and as C++.
set -euo pipefail
inc=$1 cc=$2 cxx=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0
for h in "$inc"/seldon/*.h; do
  name=$(basename "$h")
  printf '#include <seldon/%s>\nint seldon_abi_probe_%s;\n' "$name" "${name%.h}" >"$tmp/t.c"
  "$cc" -std=c99 -pedantic -Wall -Wextra -Werror -I"$inc" -c "$tmp/t.c" -o "$tmp/t.o"
  cp "$tmp/t.c" "$tmp/t.cpp"
  "$cxx" -std=c++11 -pedantic -Wall -Wextra -Werror -I"$inc" -c "$tmp/t.cpp" -o "$tmp/t.o"
  n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "no headers under $inc/seldon" >&2; exit 1; }
echo "abi_headers: $n headers compile alone as C99 -pedantic and as C++"
