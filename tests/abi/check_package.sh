#!/usr/bin/env bash
# Installs the build into a scratch prefix, then builds a consumer against it
# twice: with CMake's find_package(seldon) and with pkg-config.
set -euo pipefail
build=$1 consumer=$2 cc=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
libdir=$(ls -d "$tmp"/prefix/lib*)

cmake -S "$consumer" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cmake" >/dev/null
LD_LIBRARY_PATH="$libdir" "$tmp/cmake/consumer"

pc=$(find "$tmp/prefix" -name libseldon.pc)
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$pc")
# shellcheck disable=SC2046
"$cc" -o "$tmp/pc-consumer" "$consumer/main.c" $(pkg-config --cflags --libs libseldon)
LD_LIBRARY_PATH="$libdir" "$tmp/pc-consumer"
echo "abi_package: find_package(seldon) and pkg-config libseldon both link and run"
