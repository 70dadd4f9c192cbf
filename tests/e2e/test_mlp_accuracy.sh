#!/bin/sh
# test_mlp_accuracy.sh - models/mlp.fnn really learns MNIST under `fnnc run`.
#
# Trains on the first 6400 real training images (100 steps of 64 per epoch) for
# 3 epochs and evaluates on the first 2000 real test images, then checks from
# the --log CSV that:
#   - there is one row per epoch with steps 100, 200, 300;
#   - train_loss goes down every epoch and ends well below ln(10) = 2.30;
#   - test_acc reaches a floor (0.85) far above chance (0.10);
#   - the same model with an effectively zero learning rate stays near chance,
#     so the accuracy really comes from training.
. "$(dirname "$0")/lib.sh"

need_fnnc
need_mnist
make_tmp

NTRAIN=6400
NTEST=2000
FLOOR=0.85
make_mnist "$tmp/d" $NTRAIN $NTEST
[ "$(wc -c <"$tmp/d/mnist/train-images-idx3-ubyte")" -eq $((16 + NTRAIN * 784)) ] ||
	fail "could not make the reduced training set"

log=$tmp/mlp.csv
train_quiet models/mlp.fnn "$log" --epochs 3 --batch 64 --seed 1

echo "log:"
cat "$log"

head -n 1 "$log" | grep -qx 'epoch,step,train_loss,test_loss,test_acc,images_per_s,elapsed_s' ||
	fail "log header: expected 'epoch,step,train_loss,test_loss,test_acc,images_per_s,elapsed_s', found '$(head -n 1 "$log")'"
log_epochs "$log" "1:100 2:200 3:300"

# train_loss strictly decreasing, and the last one well below ln(10).
train_loss_falls "$log" 0.7

final_metrics "$log"
echo "final test_acc $acc (floor $FLOOR), test_loss $tl, on $NTEST test images after $NTRAIN x 3 training images"
check_final $FLOOR 0.6

# Control: one step with a learning rate of 1e-30 leaves the random weights
# as they were: the accuracy must be near chance, far below the floor.
untrained_near_chance models/mlp.fnn "$tmp/d"

echo "PASS: mlp reaches test_acc $acc (untrained $uacc)"
