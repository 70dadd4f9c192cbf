#!/bin/sh
# test_conv_algorithms.sh - the three convolution algorithms compute the same
# training run.
#
# Stride-1 3x3 convolutions with channels enough, and their input gradients,
# run as Winograd F(2x2,3x3); other stride-1 ones (and all weight gradients)
# direct (padded planes read by the tap micro-kernel). FNNC_CONV=direct turns
# Winograd off, and FNNC_CONV=im2col makes the compiler use im2col + GEMM for
# every convolution. The gradient checks only compare the backward pass with
# the compiled forward pass; this compares three independent forward and
# backward implementations: 30 steps of the CNN on real MNIST must give the
# same train and test loss, to a relative 1e-4 between direct and im2col
# (only the order of float additions differs) and 1e-3 for Winograd (its
# transforms round differently), and the same test accuracy to 0.2 %.
. "$(dirname "$0")/lib.sh"

need_fnnc
need_mnist
make_tmp
make_mnist "$tmp/d" 1920 500

train_quiet models/mnist.fnn "$tmp/wino.csv" --steps 30 --batch 64 --seed 3
FNNC_CONV=direct train_quiet models/mnist.fnn "$tmp/direct.csv" --steps 30 --batch 64 --seed 3
FNNC_CONV=im2col train_quiet models/mnist.fnn "$tmp/im2col.csv" --steps 30 --batch 64 --seed 3
bin/fnnc models/mnist.fnn --emit=fused >"$tmp/fused"
grep -q "conv2d (Winograd" "$tmp/fused" || fail "conv2's forward does not use Winograd"
grep -q "conv2d_dx (Winograd" "$tmp/fused" || fail "conv2's input gradient does not use Winograd"
grep -q "conv2d (direct" "$tmp/fused" || fail "conv1 (one input channel) does not run direct"
FNNC_CONV=direct bin/fnnc models/mnist.fnn --emit=fused | grep -q "Winograd" && fail "FNNC_CONV=direct is ignored"
FNNC_CONV=direct bin/fnnc models/mnist.fnn --emit=fused | grep -q "conv2d_dx (direct" ||
	fail "FNNC_CONV=direct does not use the direct path"
FNNC_CONV=im2col bin/fnnc models/mnist.fnn --emit=fused | grep -q "(direct\|Winograd" && fail "FNNC_CONV=im2col is ignored"

# close A B TOL: |A - B| <= TOL * max(|A|, |B|)
close() {
	awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; m = a < 0 ? -a : a;
		n = b < 0 ? -b : b; if (n > m) m = n; exit !(d <= t * m) }'
}
# agree NAME_A NAME_B TOL
agree() {
	set -- "$1" "$2" "$3" $(tail -n1 "$tmp/$1.csv" | tr , ' ') $(tail -n1 "$tmp/$2.csv" | tr , ' ')
	# $4..$10: A's epoch,step,train_loss,test_loss,test_acc,...; B's from ${11}
	a_train=$6 a_test=$7 a_acc=$8
	b_train=${13} b_test=${14} b_acc=${15}
	close "$a_train" "$b_train" "$3" || fail "train_loss: $1 $a_train, $2 $b_train"
	close "$a_test" "$b_test" "$3" || fail "test_loss: $1 $a_test, $2 $b_test"
	awk -v a="$a_acc" -v b="$b_acc" 'BEGIN { d = a - b; exit !(d <= 0.002 && d >= -0.002) }' ||
		fail "test_acc: $1 $a_acc, $2 $b_acc"
	echo "$1 and $2 agree: train_loss $a_train / $b_train, test_loss $a_test / $b_test, test_acc $a_acc / $b_acc"
}
agree direct im2col 1e-4
agree wino direct 1e-3
