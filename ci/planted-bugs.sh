#!/usr/bin/env bash
# The planted-bug catalogue: each deliberate bug (simulation builds only; see
# `PlantedBug` in src/runtime.rs) with the scenario that must catch it.
#
#   bash ci/planted-bugs.sh          CI: each bug must fail some seed of its
#                                    stated range (--expect-failure)
#   bash ci/planted-bugs.sh --table  the bug-finding table: every bug over
#                                    seeds 1..=50, with the first failing seed
#                                    and how many seeds caught it (minutes)
set -euo pipefail
cd "$(dirname "$0")/.."

# bug, scenario, CI seeds (1..=N), extra sweep flags
catalogue=(
  "ack-before-fsync unsynced-acks 10"
  "skip-dedup register-leader-kill 10"
  "stale-read leader-isolation 10"
  "serve-while-leaving sharding 5"
  "snapshot-drops-dedup snapshot-restarts 20"
  "leader-survives-restart leader-bounce 10"
  "scan-includes-end throughput 3"
  "read-before-apply apply-lag 50"
  "delete-always-existed register-leader-kill 3"
  "cas-answers-new-value register-leader-kill 3"
  "shard-handed-over-empty sharding 3"
  "controller-ignores-move sharding 3"
  "shard-moves-without-sessions sharding 10"
  "torn-tail-kept disk-faults 20"
  "expired-session-reapplied session-churn 3"
  "moved-horizon-dropped session-churn 30"
  "checkpoint-not-durable snapshot-restarts 3"
  "batch-answers-rotated register-leader-kill 10"
  "snapshot-install-merges snapshot-deletes 5"
  "process-dependent leader-kill 3 --check-determinism"
)

if [[ "${1:-}" != --table ]]; then
  for entry in "${catalogue[@]}"; do
    read -r bug scenario seeds flags <<<"$entry"
    # shellcheck disable=SC2086 # flags are words
    cargo sim run "scenarios/$scenario.toml" --seeds "1..=$seeds" --plant "$bug" \
      --expect-failure $flags
  done
  exit 0
fi

out=target/planted-bugs
mkdir -p "$out"
printf '| bug | scenario | seeds caught of 1..=50 | first failing seed | CI range |\n'
printf '|---|---|---|---|---|\n'
firsts=()
for entry in "${catalogue[@]}"; do
  read -r bug scenario seeds flags <<<"$entry"
  # shellcheck disable=SC2086 # flags are words
  cargo sim run "scenarios/$scenario.toml" --seeds 1..=50 --plant "$bug" $flags \
    --json "$out/$bug.json" >"$out/$bug.txt" 2>&1 || true
  read -r caught first < <(python3 - "$out/$bug.json" <<'EOF'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
failed = [r["seed"] for r in results if r["verdict"] != "pass"]
print(len(failed), failed[0] if failed else "-")
EOF
  )
  firsts+=("${first/-/51}")
  printf '| %s | %s | %s | %s | 1..=%s |\n' "$bug" "$scenario" "$caught" "$first" "$seeds"
done
median=$(printf '%s\n' "${firsts[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
printf '\nmedian first failing seed: %s (a bug never caught counts as 51)\n' "$median"
