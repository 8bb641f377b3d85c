#!/usr/bin/env bash
# Installs every Debian package that the build, the tests and the benchmarks
# need. Idempotent: packages already present are left alone, and apt is only
# asked when something is missing.
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config clang libclang-rt-14-dev
  # libraries
  libuv1-dev libhttp-parser-dev libnghttp2-dev liblmdb-dev libxxhash-dev libyaml-dev
  libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
  libgrpc-dev librdkafka-dev libxgboost-dev libjansson-dev
  # runtime plugins: embedded CPython (runtimes/python) and TorchScript (runtimes/pytorch)
  libpython3-dev libtorch-dev
  # tests
  libcriterion-dev python3 python3-pytest python3-numpy python3-grpcio
  python3-grpc-tools python3-protobuf python3-xgboost python3-sklearn curl kcat rclone
  # Python and PyTorch runtime tests: DataFrame models, joblib files, traced TorchScript models
  python3-pandas python3-joblib python3-torch
  # benchmarks
  wrk nghttp2-client nginx prometheus
  # per-request costs on a loaded machine (benchmarks/router/costs.py): instructions, syscalls
  valgrind strace
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  sudo_cmd=(sudo)
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
