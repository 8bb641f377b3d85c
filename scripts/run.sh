#!/usr/bin/env bash
# Installs what is needed, builds, and runs the main job: seldon-server serving
# the example models (examples/models) on REST 8080 and gRPC 8081.
#
# It answers a few requests to show it works, then serves until Ctrl-C.
# SELDON_RUN_ONCE=1 stops after the demonstration (for scripts and CI).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/install-deps.sh"
"$top/scripts/build.sh" release >/dev/null
http=${SELDON_HTTP_PORT:-8080}
grpc=${SELDON_GRPC_PORT:-8081}

out=$(mktemp)
"$top/build/daemons/server/seldon-server" --model-repository "$top/examples/models" \
  --runtime-path "$top/build/runtimes" --http-port "$http" --grpc-port "$grpc" >"$out" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do
  grep -q listening "$out" && break
  kill -0 $pid 2>/dev/null || { echo "seldon-server failed to start" >&2; exit 1; }
  sleep 0.1
done
until curl -fs "http://127.0.0.1:$http/v2/health/ready" >/dev/null; do sleep 0.1; done

show() {
  echo "\$ $*"
  "$@"
  echo
}
show curl -s "http://127.0.0.1:$http/v2/repository/index" -X POST
show curl -s "http://127.0.0.1:$http/v2/models/add10/infer" \
  -d '{"inputs":[{"name":"INPUT","datatype":"FP32","shape":[4],"data":[1,2,3,4]}]}'
show curl -s "http://127.0.0.1:$http/v2/models/tfsimple1/infer" \
  -d '{"inputs":[{"name":"INPUT0","datatype":"INT32","shape":[1,16],"data":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]},{"name":"INPUT1","datatype":"INT32","shape":[1,16],"data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}'

if [ "${SELDON_RUN_ONCE:-0}" = 1 ]; then
  exit 0
fi
echo "seldon-server is serving examples/models: REST http://127.0.0.1:$http, gRPC 127.0.0.1:$grpc."
echo "Press Ctrl-C to stop."
wait $pid
