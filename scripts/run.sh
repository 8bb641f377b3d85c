#!/usr/bin/env bash
# Installs what is needed, builds, and runs the main job.
# Today the main job is the Open Inference Protocol codec: a request in REST
# JSON goes to protobuf and back through oip-convert.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/install-deps.sh"
"$top/scripts/build.sh" release
conv=$top/build/examples/oip-convert
req=$top/examples/data/request.json
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
"$conv" --to pb "$req" >"$tmp"
echo "request.json: $(wc -c <"$req") bytes of JSON -> $(wc -c <"$tmp") bytes of inference.ModelInferRequest"
echo "and back to JSON:"
"$conv" --from pb --to json "$tmp"
