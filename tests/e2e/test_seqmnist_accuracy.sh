#!/bin/sh
# test_seqmnist_accuracy.sh - models/seqmnist.fnn (an LSTM reading MNIST row by
# row, 28 steps of 28 pixels) really learns, in `fnnc run` and in a built
# trainer.
#
# Trains on the first 3200 real training images (50 steps of 64 per epoch) for
# 2 epochs and evaluates on the first 1000 real test images, then checks from
# the --log CSV that train_loss goes down every epoch and that test_acc reaches
# a floor (0.5) far above chance (0.10); the same model with an effectively
# zero learning rate stays near chance. Then a trainer built with -o runs 20
# steps on 2 threads and logs the same metrics as `fnnc run` with the same
# flags (the loop and its reverse loop run the same way in both).
. "$(dirname "$0")/lib.sh"

need_fnnc
need_mnist
make_tmp

NTRAIN=3200
NTEST=1000
FLOOR=0.5
make_mnist "$tmp/d" $NTRAIN $NTEST

log=$tmp/seq.csv
train_quiet models/seqmnist.fnn "$log" --epochs 2 --batch 64 --seed 1

echo "log:"
cat "$log"
log_epochs "$log" "1:50 2:100"
train_loss_falls "$log" 1.9
final_metrics "$log"
echo "final test_acc $acc (floor $FLOOR), test_loss $tl, on $NTEST test images after $NTRAIN x 2 training images"
check_final $FLOOR 1.9

untrained_near_chance models/seqmnist.fnn "$tmp/d"

# The built trainer: the same metrics as the JIT.
bin/fnnc models/seqmnist.fnn -o "$tmp/seqmnist" >"$tmp/out" 2>"$tmp/err" ||
	fail "fnnc models/seqmnist.fnn -o: expected exit 0, got $?; stderr: $(tail -n 5 "$tmp/err")"
bin/fnnc run models/seqmnist.fnn --data "$tmp/d" --threads 2 --steps 20 --quiet --log "$tmp/jit.csv" \
	>/dev/null 2>"$tmp/err" || fail "fnnc run --steps 20: expected exit 0, got $?; stderr: $(tail -n 5 "$tmp/err")"
"$tmp/seqmnist" --data "$tmp/d" --threads 2 --steps 20 --quiet --log "$tmp/aot.csv" \
	>/dev/null 2>"$tmp/err" || fail "trainer --steps 20: expected exit 0, got $?; stderr: $(tail -n 5 "$tmp/err")"
cut -d, -f1-5 "$tmp/jit.csv" >"$tmp/jit5"
cut -d, -f1-5 "$tmp/aot.csv" >"$tmp/aot5"
cmp -s "$tmp/jit5" "$tmp/aot5" || fail "the trainer and fnnc run log different metrics:
$(cat "$tmp/jit5")
---
$(cat "$tmp/aot5")"

echo "PASS: seqmnist reaches test_acc $acc (untrained $uacc); trainer and JIT agree"
