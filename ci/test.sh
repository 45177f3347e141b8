#!/usr/bin/env bash
# Shoal's test command: real-mode tests, simulation tests, and bounded seed
# sweeps. Real and simulation builds use separate target directories
# (target/ and target/sim/) so neither rebuilds the other.
#
#   SHOAL_SEEDS   seed range for the scenario sweeps (default 1..=50; the
#                 situations scenarios require are sized for 50 seeds)
#   SHOAL_SESSION_CHURN_SEEDS  the same for the slow session-churn scenario
#                 (default 1..=20)
set -euo pipefail
cd "$(dirname "$0")/.."

seeds=${SHOAL_SEEDS:-1..=50}
started=$SECONDS
step() { printf '\n== %s (%ds)\n' "$*" $((SECONDS - started)); }

step "real-mode tests"
cargo test --workspace

step "another language: a Python gRPC client and the HTTP/JSON gateway against a sharded dev cluster"
bash ci/python-client.sh

step "simulation tests (--cfg madsim)"
cargo simtest --workspace

step "leader-kill simulation test, seeds 1..=20, each run twice and compared (MADSIM_TEST_CHECK_DETERMINISM)"
cargo simtest -p shoal-sim --test leader_kill --no-run
for seed in $(seq 1 20); do
  if ! MADSIM_TEST_SEED=$seed MADSIM_TEST_CHECK_DETERMINISM=1 \
      cargo simtest -q -p shoal-sim --test leader_kill >/tmp/shoal-leader-kill-$$.log 2>&1; then
    cat /tmp/shoal-leader-kill-$$.log
    echo "leader-kill test failed for seed $seed; replay: MADSIM_TEST_SEED=$seed cargo simtest -p shoal-sim --test leader_kill"
    exit 1
  fi
done
rm -f /tmp/shoal-leader-kill-$$.log
echo "leader-kill test: 20 seeds passed, deterministic"

step "the simulator's binaries (sim profile: runner, replay and the outside checker, linked side by side)"
cargo build --config "build.rustflags=['--cfg','madsim']" --target-dir target/sim --profile sim \
  -p shoal-sim --bin shoal-sim --example outside_check -p shoal-replay --bin shoal-replay

# Determinism is checked below, by the replay step (every scenario's seeds
# 1..=5, traces compared line by line across two processes) and above, by
# the leader-kill test; a sweep with --check-determinism over every seed is
# the nightly-style ci/deep-sweep.sh.
step "seed sweeps ($seeds) over every scenario, required situations reached"
for scenario in scenarios/*.toml; do
  scenario_seeds=$seeds
  # Thousands of sessions per seed: a third of the seeds keeps CI time about
  # the same (its situations and planted bugs are reached within 20).
  if [ "$scenario" = scenarios/session-churn.toml ]; then
    scenario_seeds=${SHOAL_SESSION_CHURN_SEEDS:-1..=20}
  fi
  cargo sim run "$scenario" --seeds "$scenario_seeds" --jobs 2
done

step "replay: traces of seeds 1..=5 of every scenario identical across two processes, line by line"
for scenario in scenarios/*.toml; do
  for seed in 1 2 3 4 5; do
    cargo replay --check-determinism "$scenario" --seed "$seed"
  done
done

step "planted-bug self-test: each planted bug must be caught within its stated seeds (ci/planted-bugs.sh)"
bash ci/planted-bugs.sh
# Two processes may now and then place the heap alike: any of three seeds will do.
caught=no
for seed in 3 4 5; do
  if ! SHOAL_PLANTED_BUGS=process-dependent cargo replay --check-determinism scenarios/leader-kill.toml --seed "$seed"; then
    caught=yes
    break
  fi
done
if [ "$caught" = no ]; then
  echo "replay --check-determinism missed the planted process-dependent non-determinism"
  exit 1
fi

step "coverage self-test: a sweep fails when a situation it requires is never reached"
if coverage=$(cargo sim run scenarios/happy-path.toml --seeds 1..=3 --must-reach torn-tail-cut); then
  echo "happy-path (no crashes, no disk faults) cannot cut a torn tail, yet the sweep passed"
  exit 1
fi
grep -F "never reached in 3 seeds, though required: torn-tail-cut" <<<"$coverage"

step "reproduction: a planted bug's replay command gives the same failure three times; shrinking makes it smaller"
bash ci/reproduce.sh skip-dedup scenarios/register-leader-kill.toml 1..=10

step "outside checkers: exported histories accepted (passing seeds) and rejected (a planted bug) by todc-utils; the EDN read by Python's edn_format"
bash ci/outside.sh

step "fan-out: a sweep in two slices, merged, covers its seeds once"
fanout=target/fanout
rm -rf "$fanout"
for k in 1 2; do
  cargo sim run scenarios/happy-path.toml --seeds 1..=4 --partition "$k/2" --json "$fanout/slice-$k.json" --junit "$fanout/slice-$k.xml"
done
cargo sim merge "$fanout"/slice-*.json --junit "$fanout/sweep.xml" | tee "$fanout/merge.txt"
grep -q '4 passed, 0 failed of 4 seeds' "$fanout/merge.txt"

step "all tests passed"
