#!/usr/bin/env bash
# Installs what is needed, builds, and runs the main job: seldon-server serving
# the example models (examples/models) on REST 8080 and gRPC 8081, and
# seldon-router in front of it on 9000 (REST and gRPC on one port, routed by
# the seldon-model header or the REST path).
#
# It answers a few requests to show it works, then serves until Ctrl-C.
# SELDON_RUN_ONCE=1 stops after the demonstration (for scripts and CI).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/install-deps.sh"
"$top/scripts/build.sh" release >/dev/null
http=${SELDON_HTTP_PORT:-8080}
grpc=${SELDON_GRPC_PORT:-8081}
port=${SELDON_ROUTER_PORT:-9000}
metrics=${SELDON_ROUTER_METRICS_PORT:-9003}

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

wait_line() { # file pattern pid name
  for _ in $(seq 200); do
    grep -q "$2" "$1" && return 0
    kill -0 "$3" 2>/dev/null || { echo "$4 failed to start" >&2; exit 1; }
    sleep 0.05
  done
  echo "$4 did not start" >&2
  exit 1
}

# Runtime plugins (xgboost) are found beside the binary: no flag needed.
"$top/build/daemons/server/seldon-server" --model-repository "$top/examples/models" \
  --http-port "$http" --grpc-port "$grpc" >"$work/server.out" &
pids+=($!)
wait_line "$work/server.out" listening $! seldon-server
until curl -fs "http://127.0.0.1:$http/v2/health/ready" >/dev/null; do sleep 0.05; done

{
  echo "routes:"
  for d in "$top"/examples/models/*/; do
    echo "- name: $(basename "$d")"
    echo "  upstreams:"
    echo "  - {http: \"127.0.0.1:$http\", grpc: \"127.0.0.1:$grpc\"}"
  done
} >"$work/routes.yaml"
"$top/build/daemons/router/seldon-router" --routes "$work/routes.yaml" --port "$port" \
  --metrics-port "$metrics" >"$work/router.out" &
pids+=($!)
wait_line "$work/router.out" listening $! seldon-router

show() {
  echo "\$ $*"
  "$@"
  echo
}
show curl -s "http://127.0.0.1:$http/v2/repository/index" -X POST
echo "# through seldon-router: the model comes from the path, or from the seldon-model header"
show curl -s "http://127.0.0.1:$port/v2/models/add10/infer" \
  -d '{"inputs":[{"name":"INPUT","datatype":"FP32","shape":[4],"data":[1,2,3,4]}]}'
show curl -s "http://127.0.0.1:$port/v2/models/tfsimple1/infer" -H "seldon-model: tfsimple1" \
  -d '{"inputs":[{"name":"INPUT0","datatype":"INT32","shape":[1,16],"data":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]},{"name":"INPUT1","datatype":"INT32","shape":[1,16],"data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}'
echo "# gRPC on the same port (grpcio, seldon-model metadata)"
show /usr/bin/python3 -c "
import grpc
ch = grpc.insecure_channel('127.0.0.1:$port')
live = ch.unary_unary('/inference.GRPCInferenceService/ServerLive')
reply, call = live.with_call(b'', metadata=[('seldon-model', 'add10')], timeout=10)
print('ServerLive through seldon-router:', reply == b'\x08\x01' and 'live' or reply,
      dict(call.initial_metadata()))
"

if [ "${SELDON_RUN_ONCE:-0}" = 1 ]; then
  exit 0
fi
echo "seldon-server: REST http://127.0.0.1:$http, gRPC 127.0.0.1:$grpc"
echo "seldon-router: REST and gRPC on 127.0.0.1:$port, metrics http://127.0.0.1:$metrics/metrics"
echo "Press Ctrl-C to stop."
wait
