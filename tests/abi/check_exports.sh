#!/usr/bin/env bash
# The shared library's dynamic symbol table holds seldon_* alone, and its SONAME is the major.
set -euo pipefail
lib=$1 soname=$2
syms=$(nm -D --defined-only "$lib" | awk '$2 != "A" { print $3 }' | sed 's/@.*//')
count=$(printf '%s\n' "$syms" | grep -c '^seldon_' || true)
bad=$(printf '%s\n' "$syms" | grep -v '^seldon_' || true)
if [ -n "$bad" ]; then
  echo "exported symbols outside seldon_*:" >&2
  printf '%s\n' "$bad" >&2
  exit 1
fi
[ "$count" -gt 10 ] || { echo "only $count seldon_* symbols exported" >&2; exit 1; }
actual=$(objdump -p "$lib" | awk '/SONAME/ { print $2 }')
[ "$actual" = "$soname" ] || { echo "SONAME is '$actual', expected '$soname'" >&2; exit 1; }
echo "abi_exports: $count symbols, all seldon_*; SONAME $actual"
