#!/usr/bin/env bash
# Shoal against etcd, side by side (a benchmark that prints figures, not a
# test): 3 etcd members and a standalone group of 3 `shoal-node` processes on
# this machine (loopback, fsync on, the same disk), the same loads from
# `shoal-bench` against each, back to back per row. Prints requests per
# second, latency percentiles, and requests per CPU-second of the three
# server processes, with Shoal's figures as a ratio of etcd's.
#
# etcd 3.4 comes from the distribution's packages (installed if missing).
# SHOAL_BENCH_SECONDS sets each row's duration (default 10);
# SHOAL_BENCH_DIR the disk (default: a directory under /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${SHOAL_BENCH_SECONDS:-10}
root=${SHOAL_BENCH_DIR:-$(mktemp -d /tmp/shoal-bench-etcd.XXXXXX)}
mkdir -p "$root"

if ! command -v etcd >/dev/null; then
  echo "== installing etcd from the distribution's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
fi

# shellcheck source=ci/bench-common.sh
source ci/bench-common.sh

echo "== starting 3 etcd members ($(etcd --version | head -1))"
cluster="e1=http://127.0.0.1:$((base + 10)),e2=http://127.0.0.1:$((base + 11)),e3=http://127.0.0.1:$((base + 12))"
etcd_pids=()
for i in 1 2 3; do
  client="http://127.0.0.1:$((base + 5 + i))"
  peer="http://127.0.0.1:$((base + 9 + i))"
  ETCD_UNSUPPORTED_ARCH=${ETCD_UNSUPPORTED_ARCH:-} etcd --name "e$i" --data-dir "$root/etcd-$i" \
    --listen-client-urls "$client" --advertise-client-urls "$client" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
    --initial-cluster "$cluster" --initial-cluster-state new \
    --initial-cluster-token "bench-$base" --log-level error --logger zap \
    >>"$root/etcd-$i.log" 2>&1 &
  etcd_pids+=($!); pids+=($!)
done
etcd_endpoints="127.0.0.1:$((base + 6)),127.0.0.1:$((base + 7)),127.0.0.1:$((base + 8))"

echo "== starting 3 shoal-node processes"
token="$root/cluster.token"
echo "bench-token-$base" >"$token"
peers="1=127.0.0.1:$base,2=127.0.0.1:$((base + 1)),3=127.0.0.1:$((base + 2))"
shoal_pids=()
for id in 1 2 3; do
  "$node" --id "$id" --listen "127.0.0.1:$((base + id - 1))" --peers "$peers" \
    --metrics-listen "127.0.0.1:$((base + 20 + id - 1))" \
    --data-dir "$root/shoal-$id" --token-file "$token" >>"$root/shoal-$id.log" 2>&1 &
  shoal_pids+=($!); pids+=($!)
done
shoal_endpoints="127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"

for id in 1 2 3; do
  until curl -sf -o /dev/null "http://127.0.0.1:$((base + 19 + id))/ready"; do sleep 0.1; done
done
until "$bench" --etcd "$etcd_endpoints" get --total 1 >/dev/null 2>&1; do sleep 0.2; done

# CPU seconds (user + system) the processes given have used so far.
cpu() {
  local ticks=0
  for pid in "$@"; do
    ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  python3 -c "import sys; print(int(sys.argv[1]) / int(sys.argv[2]))" "$ticks" "$(getconf CLK_TCK)"
}

# row LOAD CLIENTS: the load against each system, etcd first; appends one
# JSON object per system to $results, with the servers' CPU seconds.
results="$root/results.jsonl"
row() {
  local load=$1 clients=$2 system before out
  for system in etcd shoal; do
    if [ "$system" = etcd ]; then
      target=(--etcd "$etcd_endpoints"); servers=("${etcd_pids[@]}")
    else
      target=(--endpoints "$shoal_endpoints" --token-file "$token"); servers=("${shoal_pids[@]}")
    fi
    before=$(cpu "${servers[@]}")
    out=$("$bench" "${target[@]}" "$load" --clients "$clients" --duration "$seconds" --json)
    python3 -c 'import json, sys
r = json.loads(sys.argv[1]); r["server_cpu_s"] = float(sys.argv[3]) - float(sys.argv[2])
print(json.dumps(r))' "$out" "$before" "$(cpu "${servers[@]}")" >>"$results"
    echo "$system $load, $clients clients: $(python3 -c 'import json, sys; r = json.loads(sys.argv[1]); print("%.0f/s, %d errors" % (r["per_second"], r["errors"]))' "$out")"
  done
}

echo "== loads: $seconds s each, 16-byte keys, 256-byte values, 100,000 keys, one connection per client"
row put 1
row put 16
row put 100
row get 100
row get 1

echo
echo "== results on $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(free -g | awk '/Mem:/ {print $2}') GiB, $(df -T "$root" | awk 'NR == 2 {print $2}') at $root"
python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
def cell(r):
    l = r["latency_ms"]
    return f'{r["per_second"]:,.0f}/s, p50 {l["p50"]:.2f} p99 {l["p99"]:.1f} ms, {r["per_second"] * r["seconds"] / r["server_cpu_s"]:,.0f}/CPU-s'
print("| load | etcd | Shoal | Shoal / etcd (ops/s, ops per CPU-s) |")
print("|---|---|---|---|")
for etcd, shoal in zip(rows[0::2], rows[1::2]):
    name = ("linearizable get" if etcd["load"] == "get" else etcd["load"]) + f', {etcd["clients"]} client' + ("s" if etcd["clients"] > 1 else "")
    per_cpu = lambda r: r["per_second"] * r["seconds"] / r["server_cpu_s"]
    ratio = f'{shoal["per_second"] / etcd["per_second"]:.2f}, {per_cpu(shoal) / per_cpu(etcd):.2f}'
    errors = "".join(f' ({r["system"]}: {r["errors"]} errors)' for r in (etcd, shoal) if r["errors"])
    print(f"| {name} | {cell(etcd)} | {cell(shoal)} | {ratio}{errors} |")
PY
