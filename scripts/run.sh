#!/usr/bin/env bash
# Installs what is needed, builds, and runs the main job on the embedded default:
# `seldon up` (scheduler, a server replica and the ingress in one process, state in
# ./.seldon), then loads the example manifests (examples/manifests: add10, mul10,
# tfsimple1 and an xgboost iris classifier trained by examples/scripts) with the
# `seldon` CLI, waits until they are available, and infers through the ingress on
# :9000 over REST and gRPC, printing the answers.
#
# Then it serves until Ctrl-C. SELDON_RUN_ONCE=1 stops after the demonstration (for
# scripts and CI). Run it again: `seldon up` brings every model back from ./.seldon.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/install-deps.sh"
"$top/scripts/build.sh" release >/dev/null
port=${SELDON_PORT:-9000}
sched=${SELDON_SCHEDULER_PORT:-9004}
metrics=${SELDON_METRICS_PORT:-9006}
seldon="$top/build/daemons/cli/seldon"
export SELDON_SCHEDULE_HOST="127.0.0.1:$sched"
export SELDON_INFER_HOST="127.0.0.1:$port"

# Relative storageUris in examples/manifests resolve against the folder seldon up runs in.
cd "$top"
if [ ! -f examples/models/iris-xgb/model.json ]; then
  /usr/bin/python3 examples/scripts/train_iris_xgboost.py examples/models/iris-xgb >/dev/null
fi

log=$(mktemp)
up_pid=
cleanup() {
  if [ -n "$up_pid" ]; then
    kill -INT "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
  fi
  rm -f "$log"
}
trap cleanup EXIT

"$seldon" up --port "$port" --scheduler-port "$sched" --metrics-port "$metrics" >"$log" 2>&1 &
up_pid=$!
until grep -q '^listening' "$log"; do
  if ! kill -0 "$up_pid" 2>/dev/null; then
    cat "$log" >&2
    echo "seldon up failed to start" >&2
    exit 1
  fi
  sleep 0.05
done
grep '^listening' "$log"

show() {
  echo "\$ $*"
  "$@"
  echo
}

echo "# load the example models and wait until each is available"
show "$seldon" load -f examples/manifests/models.yaml
show "$seldon" load -f examples/manifests/iris-xgb.yaml
for m in add10 mul10 tfsimple1 iris-xgb; do
  "$seldon" model status "$m" -w ModelAvailable -t 60 >/dev/null
done
show "$seldon" model list

echo "# infer through the ingress (REST, then gRPC on the same port)"
show "$seldon" model infer add10 \
  '{"inputs":[{"name":"INPUT","datatype":"FP32","shape":[4],"data":[1,2,3,4]}]}'
show "$seldon" model infer mul10 --inference-mode grpc \
  '{"inputs":[{"name":"INPUT","datatype":"FP32","shape":[4],"data":[1,2,3,4]}]}'
show "$seldon" model infer tfsimple1 \
  '{"inputs":[{"name":"INPUT0","datatype":"INT32","shape":[1,16],"data":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]},{"name":"INPUT1","datatype":"INT32","shape":[1,16],"data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}'
show "$seldon" model infer iris-xgb --inference-mode grpc \
  '{"inputs":[{"name":"predict","datatype":"FP32","shape":[3,4],"data":[5.1,3.5,1.4,0.2,5.9,3.0,4.2,1.5,6.7,3.0,5.2,2.3]}]}'
echo "# the same with curl: the model comes from the path (or the seldon-model header)"
show curl -s "http://127.0.0.1:$port/v2/models/iris-xgb/infer" \
  -d '{"inputs":[{"name":"predict","datatype":"FP32","shape":[1,4],"data":[6.7,3.0,5.2,2.3]}]}'

if [ "${SELDON_RUN_ONCE:-0}" = 1 ]; then
  exit 0
fi
echo "seldon up: inference (REST and gRPC) on 127.0.0.1:$port, CLI on 127.0.0.1:$sched,"
echo "metrics http://127.0.0.1:$metrics/metrics. Try: $seldon model status add10"
echo "Press Ctrl-C to stop."
wait "$up_pid"
