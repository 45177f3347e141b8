#!/usr/bin/env bash
# Mutation testing: cargo-mutants changes Shoal's risky code (storage, the
# key-value and shard state machines, the server's read, write and shard-move
# paths) one mutant at a time and runs a bounded simulation sweep against
# each (sim/tests/mutant_sweep.rs, in the madsim build). A mutant the sweep
# misses is a change the simulator cannot tell from correct code.
#
# Far too slow for CI: 5-60 s per mutant on two cores (about 25 s on
# average) and some 450 mutants, so three hours for all of them (every 4th
# took 45 minutes). Run it by hand, bounded, with cargo-mutants' own
# arguments passed through:
#
#   ci/mutants.sh --list                              # the mutants, none run
#   ci/mutants.sh --shard 0/4 --sharding round-robin  # every 4th mutant
#   ci/mutants.sh --file src/storage/wal.rs           # one file, not the default ones
#   ci/mutants.sh --timeout 300                       # not the default per-mutant timeout
#
# Builds go to target/mutants (kept between runs, so only the first run
# builds the dependencies); results to target/mutants.out (or under
# $CARGO_MUTANTS_OUTPUT). Ends with a summary by file and the missed mutants,
# and exits as cargo-mutants does: 0 every mutant caught, 2 some missed, 3 some
# timed out, 4 the unmutated sweep failed.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants

# The files whose mutants are tested, unless the arguments name some.
files=(
  src/storage/log_store.rs src/storage/wal.rs src/storage/state_machine.rs
  src/storage/snapshot.rs src/storage/frame.rs
  src/machine/kv.rs 'src/machine/shard/*.rs'
  src/server/replica.rs src/server/kv.rs src/server/mover.rs
)
test_timeout_s=180

given() { # given OPTION...: whether the arguments set any of these options
  local arg option
  for arg in "${args[@]}"; do
    for option in "$@"; do
      [[ $arg == "$option" || $arg == "$option="* ]] && return 0
    done
  done
  return 1
}
args=("$@")
defaults=()
given -f --file || for f in "${files[@]}"; do defaults+=(--file "$f"); done
given -t --timeout --timeout-multiplier || defaults+=(--timeout "$test_timeout_s")

# The simulation build, as `cargo simtest` makes it, in a target directory
# of its own; one compile job at a time on a shared machine.
export RUSTFLAGS="--cfg madsim"
export CARGO_TARGET_DIR="$PWD/target/mutants"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
export CARGO_MUTANTS_OUTPUT="${CARGO_MUTANTS_OUTPUT:-$PWD/target}"
export SHOAL_MUTANT_SWEEP=1

# Mutants come from shoal; every cargo command also names shoal-sim and the
# sweep, since cargo-mutants tests its baseline with the mutated package only.
status=0
nice -n 19 cargo mutants --package shoal --test-package shoal-sim \
  --cargo-arg=--package=shoal-sim --cargo-arg=--test=mutant_sweep \
  --jobserver-tasks 1 "${defaults[@]}" "${args[@]}" || status=$?

out="$CARGO_MUTANTS_OUTPUT"
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    -o | --output) out=${args[i + 1]:-} ;;
    --output=*) out=${args[i]#--output=} ;;
  esac
done
out="$out/mutants.out"
if [[ -f $out/outcomes.json ]] && ! given --list --list-files; then
  python3 - "$out" <<'EOF'
import collections, json, pathlib, sys

out = pathlib.Path(sys.argv[1])
kinds = {"CaughtMutant": "caught", "MissedMutant": "missed",
         "Unviable": "unviable", "Timeout": "timeout"}
counts = collections.defaultdict(collections.Counter)
for outcome in json.loads((out / "outcomes.json").read_text())["outcomes"]:
    if isinstance(outcome["scenario"], dict):
        mutant = outcome["scenario"]["Mutant"]
        counts[mutant["file"]][kinds.get(outcome["summary"], "other")] += 1
        counts[mutant["file"]]["tried"] += 1
columns = ["tried", "caught", "missed", "unviable", "timeout"]
print(f"\n{'file':<32}" + "".join(f"{c:>9}" for c in columns))
for file in sorted(counts) + ["total"]:
    row = counts[file] if file != "total" else sum(counts.values(), collections.Counter())
    print(f"{file:<32}" + "".join(f"{row[c]:>9}" for c in columns))
missed = (out / "missed.txt").read_text().strip()
print("\nmissed mutants:\n" + (missed or "none"))
print(f"\nlogs and diffs: {out}")
EOF
fi
exit "$status"
