#!/usr/bin/env bash
# The state machine's on-disk engine at scale, in real processes (a
# benchmark that prints figures, not a test; it takes a while):
#
# 1. A standalone group of 3 `shoal-node` processes is loaded with
#    SHOAL_BENCH_KEYS keys of 1 KiB values (default 2,200,000: over 2 GiB).
#    Reported: the data size, each replica's engine file and resident memory,
#    the time for a replica killed with SIGKILL to restart and serve, and the
#    time and bytes for a new, empty replica to catch up by snapshot.
# 2. A sharded `--dev` cluster (2 data groups, 64 shards) is loaded the same
#    way; one shard moves from group 1 to group 2. Reported: the bytes the
#    engines of group 1 read to give the shard away, against the group's data.
#
# SHOAL_BENCH_DIR chooses the disk (default: a directory under /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."

keys=${SHOAL_BENCH_KEYS:-2200000}
clients=${SHOAL_BENCH_CLIENTS:-64}
value_size=1024
root=${SHOAL_BENCH_DIR:-$(mktemp -d /tmp/shoal-bench-engine.XXXXXX)}
mkdir -p "$root"

# shellcheck source=ci/bench-common.sh
source ci/bench-common.sh

now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }
rss_mib() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
mib() { python3 -c "import sys; print(f'{int(sys.argv[1]) / 2**20:.0f}')" "$1"; }
metric() { # metric PORT NAME: the sum of a metric's samples
  curl -sf "http://127.0.0.1:$1/metrics" | awk -v name="$2" '$1 ~ "^"name"(_total)?$" {sum += $2} END {printf "%.0f", sum}'
}
# Waits until the node whose metrics listen on PORT is ready; prints seconds.
wait_ready() {
  local started=$1 port=$2
  for _ in $(seq 1 6000); do
    if curl -sf -o /dev/null "http://127.0.0.1:$port/ready"; then since "$started"; return; fi
    sleep 0.05
  done
  echo "never ready" >&2; return 1
}

echo "== 1. standalone group of 3 processes, $keys keys of $value_size bytes"
token="$root/cluster.token"
echo "bench-token-$base" >"$token"
peers="1=127.0.0.1:$base,2=127.0.0.1:$((base + 1)),3=127.0.0.1:$((base + 2))"
start_node() { # start_node ID [EXTRA...]: prints its pid
  local id=$1; shift
  "$node" --id "$id" --listen "127.0.0.1:$((base + id - 1))" --peers "$peers" \
    --metrics-listen "127.0.0.1:$((base + 20 + id - 1))" \
    --data-dir "$root/standalone/$id" --token-file "$token" "$@" \
    >>"$root/node-$id.log" 2>&1 &
  echo $!
}
declare -A node_pid
for id in 1 2 3; do node_pid[$id]=$(start_node "$id"); pids+=("${node_pid[$id]}"); done
for id in 1 2 3; do wait_ready "$(now)" $((base + 20 + id - 1)) >/dev/null; done
endpoints="127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"
"$bench" --endpoints "$endpoints" --token-file "$token" fill \
  --keys "$keys" --key-size 14 --val-size "$value_size" --clients "$clients"

data=$(metric $((base + 20)) shoal_key_value_bytes)
echo "data: $(mib "$data") MiB in $(metric $((base + 20)) shoal_keys) keys"
for id in 1 2 3; do
  file=$(stat -c %s "$root/standalone/$id/engine.redb")
  rss=$(rss_mib "${node_pid[$id]}")
  echo "replica $id: engine file $(mib "$file") MiB, resident memory $rss MiB ($(python3 -c "print(f'{$rss * 2**20 / $data:.1%}')") of the data)"
done

# A replica killed and restarted: the time until it serves again.
victim=3
kill -9 "${node_pid[$victim]}"
while kill -0 "${node_pid[$victim]}" 2>/dev/null; do sleep 0.02; done
started=$(now)
node_pid[$victim]=$(start_node "$victim"); pids+=("${node_pid[$victim]}")
restart=$(wait_ready "$started" $((base + 20 + victim - 1)))
echo "restart: replica $victim killed with SIGKILL, serving again after $restart s"

# A new, empty replica catches up by snapshot: the time until it has
# applied what the group had applied when it was added.
peers="$peers,4=127.0.0.1:$((base + 3))"
target=$(metric $((base + 20)) shoal_raft_applied_index)
started=$(now)
node_pid[4]=$(start_node 4 --join); pids+=("${node_pid[4]}")
"$cli" --endpoints "$endpoints" --token-file "$token" admin add-replica --node 4 --addr "127.0.0.1:$((base + 3))" >/dev/null
until [ "$(metric $((base + 23)) shoal_raft_applied_index)" -ge "$target" ]; do sleep 0.05; done
seconds=$(since "$started")
received=$(metric $((base + 23)) shoal_snapshot_size_bytes_sum)
installed=$(metric $((base + 23)) shoal_snapshots_installed)
echo "catch-up: a new replica applied the group's $target entries after $seconds s, by $installed snapshot(s) of $(mib "$received") MiB in all"

for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
pids=()
rm -rf "$root/standalone"

echo
echo "== 2. sharded --dev cluster (2 data groups of 3, 64 shards), $keys keys; one shard moves"
dev_base=$((base + 40))
"$node" --dev --dev-groups 2 --dev-base-port "$dev_base" --data-dir "$root/dev" >"$root/dev.log" 2>&1 &
pids+=($!)
for port in $(seq "$dev_base" $((dev_base + 8))); do wait_ready "$(now)" $((port + 2000)) >/dev/null; done
controller="127.0.0.1:$dev_base,127.0.0.1:$((dev_base + 1)),127.0.0.1:$((dev_base + 2))"
dev_token="$root/dev/cluster.token"
"$bench" --controller "$controller" --token-file "$dev_token" fill \
  --keys "$keys" --key-size 14 --val-size "$value_size" --clients "$clients"
group1_metrics=$(seq $((dev_base + 3 + 2000)) $((dev_base + 5 + 2000)))
sum_group1() { local total=0; for port in $group1_metrics; do total=$((total + $(metric "$port" "$1"))); done; echo "$total"; }
group_data=$(metric $((dev_base + 3 + 2000)) shoal_key_value_bytes)
group_keys=$(metric $((dev_base + 3 + 2000)) shoal_keys)
shard=$("$cli" --controller "$controller" --token-file "$dev_token" admin status |
  grep 'group 1:' | grep -oE '\[[0-9, ]+\]' | head -1 | grep -oE '[0-9]+' | head -1)
before=$(sum_group1 shoal_engine_read_bytes)
started=$(now)
"$cli" --controller "$controller" --token-file "$dev_token" admin move --shard "$shard" --group 2 >/dev/null
# Moved once every replica of group 1 has dropped the shard's keys.
for _ in $(seq 1 3000); do
  dropped=yes
  for port in $group1_metrics; do
    [ "$(metric "$port" shoal_keys)" -lt "$group_keys" ] || dropped=no
  done
  [ $dropped = yes ] && break
  sleep 0.1
done
read_bytes=$(( ($(sum_group1 shoal_engine_read_bytes) - before) / 3 ))
echo "shard move: shard $shard moved in $(since "$started") s; each replica of group 1 read $(mib "$read_bytes") MiB of its $(mib "$group_data") MiB ($(python3 -c "print(f'{$read_bytes / $group_data:.2%}')"); one shard of the group's 32 is 3.1%)"
