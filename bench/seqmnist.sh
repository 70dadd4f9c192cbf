#!/bin/sh
# bench/seqmnist.sh: training speed of models/seqmnist.fnn (an LSTM over the
# 28 rows of each MNIST image) next to PyTorch's nn.LSTM with the same
# settings (bench/torch_ref.py --model seqmnist: lstm(128), last step,
# dense(10), Adam, batch 64).
#
# A benchmark, not a test. For --threads 1 and 2: the AOT trainer's training
# images/s over SEQ_STEPS steps (median of RUNS runs, from the --log CSV),
# then PyTorch's (median of its runs, data preloaded, warm-up excluded).
# Settings (environment): BENCH_RUNS (3), SEQ_STEPS (100), SEQ_TORCH_STEPS (20),
# BENCH_TORCH (1; 0 skips PyTorch). Needs `make all data`.
set -u
cd "$(dirname "$0")/.." || exit 1
RUNS=${BENCH_RUNS:-3}
STEPS=${SEQ_STEPS:-100}
TSTEPS=${SEQ_TORCH_STEPS:-20}
OUT=build/bench
mkdir -p "$OUT"
. bench/lib.sh

bin/fnnc models/seqmnist.fnn -o "$OUT/seqmnist" || exit 1
for t in 1 2; do
  for r in $(seq "$RUNS"); do
    "$OUT/seqmnist" --threads "$t" --steps "$STEPS" --quiet --log "$OUT/seq_t$t.csv" >/dev/null 2>&1 || exit 1
    csv_field "$OUT/seq_t$t.csv" images_per_s
  done | median >"$OUT/seq_t$t.txt"
  echo "fnnc    seqmnist threads=$t steps=$STEPS images_per_s=$(cat "$OUT/seq_t$t.txt")"
  if [ "${BENCH_TORCH:-1}" != 0 ] && torch_py -c 'import torch' 2>/dev/null; then
    torch_py bench/torch_ref.py --model seqmnist \
      --threads "$t" --steps "$TSTEPS" --runs "$RUNS" 2>/dev/null | sed 's/^/pytorch /'
  fi
done
