#!/bin/sh
# test_conv_algorithms.sh - the two convolution algorithms compute the same
# training run.
#
# Stride-1 convolutions and their gradients run direct (padded planes read by
# the tap micro-kernel); FNNC_CONV=im2col makes the compiler use im2col + GEMM
# for all of them instead. The gradient checks only compare the backward pass
# with the compiled forward pass; this compares two independent forward and
# backward implementations: 30 steps of the CNN on real MNIST must give the
# same train and test loss to a relative 1e-4 (only the order of float
# additions differs) and the same test accuracy to 0.2 %.
. "$(dirname "$0")/lib.sh"

need_fnnc
need_mnist
make_tmp
make_mnist "$tmp/d" 1920 500

train_quiet models/mnist.fnn "$tmp/direct.csv" --steps 30 --batch 64 --seed 3
FNNC_CONV=im2col train_quiet models/mnist.fnn "$tmp/im2col.csv" --steps 30 --batch 64 --seed 3
bin/fnnc models/mnist.fnn --emit=fused | grep -q "conv2d_dx (direct" || fail "the CNN does not use the direct path"
FNNC_CONV=im2col bin/fnnc models/mnist.fnn --emit=fused | grep -q "(direct" && fail "FNNC_CONV=im2col is ignored"

# close A B TOL: |A - B| <= TOL * max(|A|, |B|)
close() {
	awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; m = a < 0 ? -a : a;
		n = b < 0 ? -b : b; if (n > m) m = n; exit !(d <= t * m) }'
}
set -- $(tail -n1 "$tmp/direct.csv" | tr , ' ')
d_train=$3 d_test=$4 d_acc=$5
set -- $(tail -n1 "$tmp/im2col.csv" | tr , ' ')
i_train=$3 i_test=$4 i_acc=$5
close "$d_train" "$i_train" 1e-4 || fail "train_loss: direct $d_train, im2col $i_train"
close "$d_test" "$i_test" 1e-4 || fail "test_loss: direct $d_test, im2col $i_test"
awk -v a="$d_acc" -v b="$i_acc" 'BEGIN { d = a - b; exit !(d <= 0.002 && d >= -0.002) }' ||
	fail "test_acc: direct $d_acc, im2col $i_acc"
echo "direct and im2col agree: train_loss $d_train / $i_train, test_loss $d_test / $i_test, test_acc $d_acc / $i_acc"
