#!/bin/sh
# bench/act.sh: the inline transcendentals (compiler/vmath.c) against the libm
# calls they replace. bench/run.sh runs it and puts its table in the results;
# it also runs alone (after `make all data`): sh bench/act.sh [OUTDIR].
#
# Two models, each compiled twice into an AOT trainer: as usual (inline) and
# with FNNC_LIBM=1 (llvm.exp / llvm.log, a libm call per element):
#   bench/act.fnn     an MLP 784-256-256-256-10 with tanh and sigmoid layers
#                     (the contractions dominate; the activations ride in their
#                     epilogues)
#   bench/act_ew.fnn  tanh, sigmoid, exp and log of every pixel, then one dense
#                     layer (the transcendentals dominate)
# For each: training images/s on one thread (median of RUNS runs, the two builds
# alternating so they see the same load), and from one --profile run each, the
# time of the kernels that hold a transcendental (names with tanh, sigmoid, exp
# or log). Settings (environment): BENCH_RUNS (3), BENCH_ACT_STEPS (300).
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${1:-build/bench}
RUNS=${BENCH_RUNS:-3}
STEPS=${BENCH_ACT_STEPS:-300}
FNNC=bin/fnnc
mkdir -p "$OUT"

. bench/lib.sh
# The milliseconds of the transcendental kernels in a --profile report.
kernel_ms() { profile_ms "$1" '^(train|eval)_step$' 'tanh|sigmoid|exp|log'; }

printf '%-7s %12s %12s %7s %14s %14s %7s\n' model "libm img/s" "inline img/s" ratio "libm kern ms" "inline kern ms" ratio
for m in act act_ew; do
  ok=1
  "$FNNC" "bench/$m.fnn" -o "$OUT/${m}_inline" 2>"$OUT/${m}_inline.err" || ok=0
  FNNC_LIBM=1 "$FNNC" "bench/$m.fnn" -o "$OUT/${m}_libm" 2>"$OUT/${m}_libm.err" || ok=0
  if [ $ok = 0 ]; then
    echo "$m: fnnc failed: $(head -2 "$OUT/${m}_inline.err" "$OUT/${m}_libm.err")"
    continue
  fi
  : >"$OUT/${m}_inline.rates"
  : >"$OUT/${m}_libm.rates"
  i=0
  while [ $i -lt "$RUNS" ]; do
    i=$((i + 1))
    for v in libm inline; do
      "$OUT/${m}_$v" --steps "$STEPS" --threads 1 --quiet --log "$OUT/${m}_$v.csv" >/dev/null 2>>"$OUT/${m}_$v.err" &&
        csv_field "$OUT/${m}_$v.csv" images_per_s >>"$OUT/${m}_$v.rates"
    done
  done
  for v in libm inline; do
    "$OUT/${m}_$v" --steps "$STEPS" --threads 1 --quiet --profile --log "$OUT/${m}_${v}_prof.csv" \
      >/dev/null 2>"$OUT/${m}_$v.prof" || :
  done
  rl=$(median <"$OUT/${m}_libm.rates")
  ri=$(median <"$OUT/${m}_inline.rates")
  kl=$(kernel_ms "$OUT/${m}_libm.prof")
  ki=$(kernel_ms "$OUT/${m}_inline.prof")
  printf '%-7s %12s %12s %7s %14s %14s %7s\n' "$m" "$(num "$rl")" "$(num "$ri")" "$(ratio "$ri" "$rl")" "$kl" "$ki" "$(ratio "$kl" "$ki")"
done
echo "  1 thread, batch 64, $STEPS steps, AOT trainers; img/s: median of $RUNS runs; kern ms: the"
echo "  kernels holding tanh/sigmoid/exp/log in one --profile run (train and final eval); ratio: inline/libm"
echo "  for img/s, libm/inline for time (above 1 means the inline code is faster)"
