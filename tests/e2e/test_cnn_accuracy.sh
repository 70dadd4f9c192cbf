#!/bin/sh
# test_cnn_accuracy.sh - models/mnist.fnn (the CNN) really learns MNIST under
# `fnnc run`.
#
# Kept small so that it stays fast even with slow kernels: trains on the first
# 1280 real training images (20 steps of 64 per epoch) for 2 epochs and
# evaluates on the first 500 real test images (evaluation runs every epoch, over
# the whole test set). Checks from the --log CSV that:
#   - there are two rows, at steps 20 and 40;
#   - train_loss goes down and ends well below ln(10) = 2.30;
#   - test_acc reaches a floor (0.75; measured 0.86-0.88 over seeds 1-5) far
#     above chance (0.10);
#   - the same model after one step with an effectively zero learning rate is
#     near chance, so the accuracy comes from training.
. "$(dirname "$0")/lib.sh"

need_fnnc
need_mnist
make_tmp

NTRAIN=1280
NTEST=500
FLOOR=0.75
make_mnist "$tmp/d" $NTRAIN $NTEST
[ "$(wc -c <"$tmp/d/mnist/t10k-images-idx3-ubyte")" -eq $((16 + NTEST * 784)) ] ||
	fail "could not make the reduced test set"

log=$tmp/cnn.csv
train_quiet models/mnist.fnn "$log" --epochs 2 --batch 64 --seed 1

echo "log (${secs}s):"
cat "$log"

log_epochs "$log" "1:20 2:40"

train_loss_falls "$log" 1.0

final_metrics "$log"
echo "final test_acc $acc (floor $FLOOR), test_loss $tl, on $NTEST test images after 40 steps of 64"
check_final $FLOOR 1.0

# Control: one step with a learning rate of 1e-30 leaves the random weights.
untrained_near_chance models/mnist.fnn "$tmp/d"

echo "PASS: cnn reaches test_acc $acc (untrained $uacc)"
