#!/usr/bin/env bash
# Histories for outside checkers, checked from outside: exports the register
# histories of a few passing seeds and of one planted-bug failure
# (`cargo replay ... --export edn,json`), then reads the files back and
#  1. checks them with todc-utils' linearizability checker (not Shoal's
#     checker): the passing ones must be accepted, the planted one rejected;
#  2. parses the EDN with Python's edn_format (in a virtualenv under
#     target/venv, created once) and checks its shape.
set -euo pipefail
cd "$(dirname "$0")/.."

scenario=scenarios/register-leader-kill.toml
passing="1 3 5"
planted_bug=skip-dedup planted_seed=1
out=target/outside
rm -rf "$out"
mkdir -p "$out"

for seed in $passing; do
  cargo replay "$scenario" --seed "$seed" --out "$out/pass" --export edn,json >"$out/pass-$seed.log" 2>&1 || {
    cat "$out/pass-$seed.log"
    echo "seed $seed of $scenario failed: it was to give a passing history"
    exit 1
  }
  grep '^history for outside checkers' "$out/pass-$seed.log"
done
if SHOAL_PLANTED_BUGS=$planted_bug cargo replay "$scenario" --seed "$planted_seed" --out "$out/planted" \
    --export edn,json >"$out/planted.log" 2>&1; then
  echo "seed $planted_seed with $planted_bug planted passed: it was to fail"
  exit 1
fi
grep '^history for outside checkers\|^RESULT' "$out/planted.log"

# The example reads the JSON lines back and runs todc-utils over them.
cargo run -q --config "build.rustflags=['--cfg','madsim']" --target-dir target/sim --profile sim \
  -p shoal-sim --example outside_check -- \
  --accept "$out"/pass/*.history.jsonl --reject "$out"/planted/*.history.jsonl

venv=target/venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import edn_format' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q edn-format
fi
"$venv/bin/python" ci/edn_check.py "$out"/pass/*.history.edn "$out"/planted/*.history.edn
