#!/bin/sh
# bench/frozen.sh: the seed CNN (models/mnist.fnn) with both convolutions
# frozen against the same model fully trainable. bench/run.sh runs it and puts
# its table in the results; it also runs alone (after `make all data`):
# sh bench/frozen.sh [OUTDIR].
#
# The frozen model is models/mnist.fnn with 'freeze conv1..conv2' added: its
# training step runs the forward pass, the classifier's gradient and the
# update of the classifier only (no convolution gradients, no input gradient
# through the convolutions). Both are compiled into AOT trainers and train
# STEPS steps (batch 64) on --threads 1 and 2, the two alternating so they see
# the same load; for each: images/s (median and best of RUNS runs) and the
# ratio. From one --profile run of each on one thread: the milliseconds in
# train_step kernels (less sensitive to a busy machine than images/s).
# Settings (environment): BENCH_RUNS (3), BENCH_FROZEN_STEPS (150).
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${1:-build/bench}
RUNS=${BENCH_RUNS:-3}
STEPS=${BENCH_FROZEN_STEPS:-150}
FNNC=bin/fnnc
mkdir -p "$OUT"

. bench/lib.sh

sed 's/^\( *\)loss /\1freeze conv1..conv2\n\1loss /' models/mnist.fnn >"$OUT/mnist_frozen.fnn"
"$FNNC" models/mnist.fnn -o "$OUT/cnn_full" 2>"$OUT/cnn_full.err" &&
  "$FNNC" "$OUT/mnist_frozen.fnn" -o "$OUT/cnn_frozen" 2>"$OUT/cnn_frozen.err" ||
  { echo "frozen: fnnc failed: $(head -2 "$OUT/cnn_full.err" "$OUT/cnn_frozen.err")"; exit 1; }

printf '%-8s %14s %14s %16s %16s %12s %12s\n' threads "full img/s" "frozen img/s" "full best img/s" \
  "frozen best img/s" "ratio (med)" "ratio (best)"
for t in 1 2; do
  : >"$OUT/cnn_full_t$t.rates"
  : >"$OUT/cnn_frozen_t$t.rates"
  i=0
  while [ $i -lt "$RUNS" ]; do
    i=$((i + 1))
    for v in full frozen; do
      "$OUT/cnn_$v" --data data --steps "$STEPS" --threads $t --quiet --log "$OUT/cnn_${v}_t$t.csv" \
        >/dev/null 2>>"$OUT/cnn_$v.err" && csv_field "$OUT/cnn_${v}_t$t.csv" images_per_s >>"$OUT/cnn_${v}_t$t.rates"
    done
  done
  fm=$(median <"$OUT/cnn_full_t$t.rates") zm=$(median <"$OUT/cnn_frozen_t$t.rates")
  fb=$(best <"$OUT/cnn_full_t$t.rates") zb=$(best <"$OUT/cnn_frozen_t$t.rates")
  printf '%-8s %14s %14s %16s %16s %12s %12s\n' $t "$(num "$fm")" "$(num "$zm")" "$(num "$fb")" "$(num "$zb")" \
    "$(ratio "$zm" "$fm")" "$(ratio "$zb" "$fb")"
done
for v in full frozen; do
  "$OUT/cnn_$v" --data data --steps "$STEPS" --threads 1 --quiet --profile >/dev/null 2>"$OUT/cnn_$v.prof"
done
fms=$(profile_ms "$OUT/cnn_full.prof" '^train_step$' .) zms=$(profile_ms "$OUT/cnn_frozen.prof" '^train_step$' .)
echo "train_step kernels, --threads 1 --steps $STEPS --profile: full $fms ms, frozen $zms ms ($(ratio "$fms" "$zms") less)"
grep '^memory' "$OUT/cnn_frozen.prof" | sed 's/^/frozen /'
grep '^memory' "$OUT/cnn_full.prof" | sed 's/^/full   /'
