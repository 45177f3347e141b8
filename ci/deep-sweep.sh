#!/usr/bin/env bash
# A nightly-style sweep, longer than CI's: every scenario over more seeds,
# each seed run twice in separate processes with histories and traces
# compared (--check-determinism), required situations reached.
#
#   SHOAL_SEEDS   seed range (default 1..=200)
#   SHOAL_SESSION_CHURN_SEEDS  the same for the slow session-churn scenario
#                 (default 1..=60)
set -euo pipefail
cd "$(dirname "$0")/.."

seeds=${SHOAL_SEEDS:-1..=200}
for scenario in scenarios/*.toml; do
  scenario_seeds=$seeds
  if [ "$scenario" = scenarios/session-churn.toml ]; then
    scenario_seeds=${SHOAL_SESSION_CHURN_SEEDS:-1..=60}
  fi
  cargo sim run "$scenario" --seeds "$scenario_seeds" --jobs 2 --check-determinism
done
echo "deep sweep: every scenario passed over $seeds, deterministic"
