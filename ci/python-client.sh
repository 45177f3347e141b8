#!/usr/bin/env bash
# Shoal from Python: generates a client from proto/shoal.proto with
# grpcio-tools (installed from PyPI into a virtualenv under target/), starts
# a real sharded dev cluster (a shard controller, two data groups and a
# standby group) and a three-process standalone group, and runs
# ci/python/test_client.py against them: every data call, routing with the
# documented shard function, every error kind decoded with grpc_status, a
# shard move while writing, forwarding for clients that do not route, and
# the HTTP/JSON gateway.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/venv
if ! "$venv/bin/python" -c 'import grpc, grpc_tools, grpc_status' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet grpcio grpcio-tools grpcio-status protobuf
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$venv/bin/python" -m grpc_tools.protoc -I proto --python_out="$work" \
  --grpc_python_out="$work" proto/shoal.proto

cargo build --quiet --bin shoal-node
node=target/debug/shoal-node

base=7501 # controller 7501-7503, groups 1-3 on 7504-7512, HTTP 1000 above
RUST_LOG=warn "$node" --dev --dev-groups 2 --dev-standby-groups 1 \
  --dev-base-port $base --data-dir "$work/dev" >"$work/dev.log" 2>&1 &
pids+=($!)

lone_pids=()
lone=127.0.0.1:7601,127.0.0.1:7602,127.0.0.1:7603
echo "lone-token-$RANDOM$RANDOM" >"$work/lone.token"
for id in 1 2 3; do
  RUST_LOG=warn "$node" --id $id --listen 127.0.0.1:760$id \
    --peers 1=127.0.0.1:7601,2=127.0.0.1:7602,3=127.0.0.1:7603 \
    --token-file "$work/lone.token" \
    --data-dir "$work/lone-$id" >"$work/lone-$id.log" 2>&1 &
  pids+=($!)
  lone_pids+=($!)
  disown $! # the test kills two of them: no job notices
done

# Ready once the dev cluster has joined its groups (it says so on stdout).
for _ in $(seq 1 100); do
  grep -q "group 2:" "$work/dev.log" && break
  sleep 0.2
done
grep -q "group 2:" "$work/dev.log" || { cat "$work/dev.log"; echo "dev cluster did not start"; exit 1; }

export PYTHONPATH="$work"
export SHOAL_CONTROLLER=127.0.0.1:7501,127.0.0.1:7502,127.0.0.1:7503
export SHOAL_STANDBY="3=1=127.0.0.1:7510,2=127.0.0.1:7511,3=127.0.0.1:7512"
export SHOAL_HTTP=127.0.0.1:8504
export SHOAL_LONE=$lone
export SHOAL_TOKEN_FILE="$work/dev/cluster.token"
SHOAL_LONE_PIDS=$(IFS=,; echo "${lone_pids[*]}")
export SHOAL_LONE_PIDS
"$venv/bin/python" ci/python/test_client.py
