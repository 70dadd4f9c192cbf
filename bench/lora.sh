#!/bin/sh
# bench/lora.sh: the LoRA fine-tuning demo (models/lora.fnn) against full
# fine-tuning of the same network, from the same MNIST-pretrained weights, on
# Fashion-MNIST (`make lora-demo`, and part of `make bench`).
#
#   1. pretrain models/mlp.fnn (784-256-128-10) on MNIST for PRE_EPOCHS epochs
#      (kept in build/bench/mnist_mlp.st; delete it to pretrain again);
#   2. LoRA: models/lora.fnn, --init the pretrained weights --init-partial
#      (the adapters start as initialised: B = 0), every base weight and bias
#      frozen;
#   3. full fine-tuning: the same file without its lora=... arguments (every
#      parameter trains), same optimizer, schedule, epochs, seed.
# Both are AOT trainers run under /usr/bin/time: peak RSS (the largest of
# RUNS runs), training images/s (median), the final test accuracy (first run).
# The trainable fraction counts the parameters `--emit=ir` does not mark frozen.
# Prints one table. Settings (environment): BENCH_RUNS (1), LORA_EPOCHS (the
# file's 5), PRE_EPOCHS (1), LORA_THREADS (2). Needs `make all data`.
set -u
cd "$(dirname "$0")/.." || exit 1
RUNS=${BENCH_RUNS:-1}
PRE=${PRE_EPOCHS:-1}
THR=${LORA_THREADS:-2}
OUT=build/bench
mkdir -p "$OUT"
TIME=/usr/bin/time
[ -x $TIME ] || { echo "bench/lora.sh: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }
. bench/lib.sh
EP=${LORA_EPOCHS:+--epochs $LORA_EPOCHS}

sed -e 's/, lora=lora([^)]*)//' -e 's/^model lora/model lora_full/' models/lora.fnn >"$OUT/lora_full.fnn"
bin/fnnc models/lora.fnn -o "$OUT/lora" && bin/fnnc "$OUT/lora_full.fnn" -o "$OUT/lora_full" || exit 1
if ! [ -f "$OUT/mnist_mlp.st" ]; then
  bin/fnnc models/mlp.fnn -o "$OUT/mlp" || exit 1
  "$OUT/mlp" --data data --epochs "$PRE" --threads "$THR" --quiet --save "$OUT/mnist_mlp.st" \
    --log "$OUT/lora_pre.csv" || exit 1
fi
pre_acc=$(csv_field "$OUT/lora_pre.csv" test_acc)

# params FILE: "trainable total" parameter counts from the --emit=ir header.
params() {
  bin/fnnc "$1" --emit=ir | awk '/^# param / {
      s = $0; sub(/^[^[]*\[/, "", s); sub(/\].*/, "", s); k = split(s, d, ", ")
      n = 1; for (i = 1; i <= k; i++) n *= d[i]
      t += n; if ($NF != "frozen") tr += n }
    END { print tr + 0, t + 0 }'
}

for m in lora lora_full; do
  init="--init $OUT/mnist_mlp.st"
  [ $m = lora ] && init="$init --init-partial"
  : >"$OUT/$m.rss"
  for r in $(seq "$RUNS"); do
    # shellcheck disable=SC2086 # $init and $EP are lists of flags
    $TIME -f '%M' -o "$OUT/$m.time" "$OUT/$m" --data data $init $EP --threads "$THR" --quiet \
      --log "$OUT/${m}_r$r.csv" 2>"$OUT/$m.err" >/dev/null || { cat "$OUT/$m.err" >&2; exit 1; }
    tail -n 1 "$OUT/$m.time" >>"$OUT/$m.rss"
  done
done

echo "LoRA fine-tuning (models/lora.fnn) against full fine-tuning, MNIST-pretrained MLP -> Fashion-MNIST"
echo "  pretrained: models/mlp.fnn, $PRE epoch(s) on MNIST, test_acc ${pre_acc:--}; threads $THR; runs $RUNS"
printf '  %-10s %12s %10s %9s %10s %9s %9s\n' run trainable total fraction test_acc img/s "RSS MB"
# row MODEL FILE NAME: one line of the table; sets acc and rss.
row() {
  counts=$(params "$2")
  acc=$(csv_field "$OUT/${1}_r1.csv" test_acc)
  rate=$(for r in $(seq "$RUNS"); do csv_mean "$OUT/${1}_r$r.csv" images_per_s; done | median)
  rss=$(awk '$1 ~ /^[0-9]+$/ && $1 > r { r = $1 } END { print r / 1024 }' "$OUT/$1.rss")
  echo "$counts" | awk -v n="$3" -v acc="$acc" -v rate="$rate" -v rss="$rss" '{
    printf "  %-10s %12s %10s %8.2f%% %9.2f%% %9.0f %9.1f\n", n, $1, $2, 100 * $1 / $2, 100 * acc, rate, rss }'
}
row lora models/lora.fnn LoRA
acc_l=$acc rss_l=$rss
row lora_full "$OUT/lora_full.fnn" full
awk -v a="$acc_l" -v b="$acc" -v ra="$rss_l" -v rb="$rss" 'BEGIN {
  printf "  LoRA - full: test_acc %+.2f points (target: within 1), peak RSS %+.1f MB (target: below)\n", 100 * (a - b), ra - rb }'
