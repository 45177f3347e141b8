#!/usr/bin/env bash
# Self-test of reproduction and shrinking, on a planted bug:
#  1. a sweep with the bug planted fails and prints a replay command;
#  2. that command, run three times, gives the same checker, the same history
#     excerpt and the same digests each time, and the digests the sweep saw;
#  3. `cargo replay --shrink` turns the failure into a strictly smaller run
#     that fails the same checker, and the file it writes reproduces it.
#
#   usage: ci/reproduce.sh BUG SCENARIO SEEDS
set -euo pipefail
cd "$(dirname "$0")/.."
bug=$1 scenario=$2 seeds=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sweep=$work/sweep.txt
cargo sim run "$scenario" --seeds "$seeds" --plant "$bug" --expect-failure | tee "$sweep"
command=$(grep -m1 '^replay: ' "$sweep" | sed 's/^replay: //')
seed=$(sed -n 's/.*--seed \([0-9]*\)$/\1/p' <<<"$command")
digests=$(grep -m1 '^  digests: ' "$sweep" | sed 's/^  digests: history \([0-9a-f]*\), trace \([0-9a-f]*\)/digest=\1 trace=\2/')
echo "reproducing seed $seed: $command"

# What must be identical: the violations with their history excerpts, the
# blamed operations and the RESULT line (checker, digests).
essence() { sed -n '/^VIOLATION/,$p'; }
for run in 1 2 3; do
  # The command is printed for a shell: VAR=value cargo replay ...
  env $command >"$work/replay-$run.txt" 2>/dev/null && {
    echo "replay $run of seed $seed passed: the failure did not reproduce"
    exit 1
  }
  essence <"$work/replay-$run.txt" >"$work/essence-$run.txt"
  grep -q "RESULT verdict=fail ${digests}" "$work/essence-$run.txt" || {
    echo "replay $run: digests differ from the sweep's ($digests):"
    grep RESULT "$work/essence-$run.txt"
    exit 1
  }
done
cmp "$work/essence-1.txt" "$work/essence-2.txt" && cmp "$work/essence-1.txt" "$work/essence-3.txt" || {
  echo "the three replays differ"
  exit 1
}
checker=$(sed -n 's/.*checkers=\([a-z-]*\).*/\1/p' "$work/essence-1.txt")
echo "replayed 3 times: identical [$checker] failure, history excerpt and digests ($digests)"
sed -n '/^VIOLATION/,/^RESULT/p' "$work/essence-1.txt" | head -30

shrunk=$work/shrink.txt
env ${command/cargo replay/cargo replay --shrink} | grep -v 'passes or fails otherwise' | tee "$shrunk"
minimal=$(sed -n 's/^written: //p' "$shrunk")
before=$(sed -n 's/^  (originally \(.*\))$/\1/p' "$shrunk")
after=$(sed -n 's/.*still fails with \(.*\)$/\1/p' "$shrunk")
[ "$before" != "$after" ] || { echo "shrinking found nothing smaller"; exit 1; }
planted=SHOAL_PLANTED_BUGS=$bug
if env $planted cargo replay "$minimal" --seed "$seed" >"$work/minimal.txt" 2>/dev/null; then
  echo "the shrunk scenario $minimal passes"
  exit 1
fi
grep -q "checkers=.*$checker" "$work/minimal.txt" || { echo "the shrunk run fails another checker"; exit 1; }
echo "shrunk and reproduced: [$checker] fails with $after (originally $before)"
