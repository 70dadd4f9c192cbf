#!/bin/sh
# scripts/finetune-demo.sh: the transfer-learning demo (`make finetune-demo`).
#
#   1. the seed CNN (models/mnist.fnn) trained on MNIST for one epoch, saved to
#      build/finetune/mnist.st (kept: delete it to train it again);
#   2. models/finetune.fnn: its convolutions loaded with --init --init-partial
#      and frozen, a new head trained on Fashion-MNIST;
#   3. the same network and settings trained from scratch (no --init, nothing
#      frozen) for the same number of steps.
# Prints the test accuracy and the step time of 2 and 3, and writes the table
# to build/finetune/results.txt. Settings (environment): FINETUNE_THREADS
# (default: fnnc's, the online cores).
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=build/finetune
FNNC=bin/fnnc
THR=${FINETUNE_THREADS:+--threads $FINETUNE_THREADS}
mkdir -p "$OUT"
# The trainer reads FILE.gz when FILE is missing (Fashion-MNIST comes gzipped).
for f in "$FNNC" data/mnist/train-images-idx3-ubyte data/fashion-mnist/train-images-idx3-ubyte; do
  [ -e "$f" ] || [ -e "$f.gz" ] || { echo "finetune-demo: $f is missing: run 'make all data' first" >&2; exit 1; }
done

if [ ! -s "$OUT/mnist.st" ]; then
  echo "finetune-demo: training the seed CNN on MNIST (1 epoch) -> $OUT/mnist.st" >&2
  # shellcheck disable=SC2086
  "$FNNC" run models/mnist.fnn --data data --epochs 1 --quiet $THR --save "$OUT/mnist.st" ||
    { echo "finetune-demo: training the seed CNN failed" >&2; exit 1; }
fi

echo "finetune-demo: fine-tuning with the convolutions frozen" >&2
# shellcheck disable=SC2086
"$FNNC" run models/finetune.fnn --data data --init "$OUT/mnist.st" --init-partial $THR \
  --log "$OUT/frozen.csv" 2>"$OUT/frozen.err" || { cat "$OUT/frozen.err" >&2; exit 1; }
sed '/^ *freeze /d; s/^model finetune/model scratch/' models/finetune.fnn >"$OUT/scratch.fnn"
echo "finetune-demo: the same network from scratch, everything trainable" >&2
# shellcheck disable=SC2086
"$FNNC" run "$OUT/scratch.fnn" --data data $THR --log "$OUT/scratch.csv" 2>"$OUT/scratch.err" ||
  { cat "$OUT/scratch.err" >&2; exit 1; }

# The last row of a log: steps, test accuracy (%), and the step time (ms) from
# the mean images/s over the epochs.
row() {
  awk -F, -v what="$2" -v batch=128 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
    { s = $c["step"]; a = $c["test_acc"]; r += $c["images_per_s"]; n++ }
    END { printf "%-34s %6d %9.2f%% %9.0f %10.1f\n", what, s, 100 * a, r / n, 1000 * batch * n / r }' "$1"
}
{
  printf '%-34s %6s %10s %9s %10s\n' "Fashion-MNIST, batch 128" steps "test acc" "img/s" "ms/step"
  row "$OUT/frozen.csv" "MNIST convs frozen, new head"
  row "$OUT/scratch.csv" "from scratch, all trainable"
} | tee "$OUT/results.txt"
