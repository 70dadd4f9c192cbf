#!/bin/sh
# test_fashion_accuracy.sh - models/fashion.fnn learns Fashion-MNIST (the
# Debian package's gzipped IDX files, linked into data/fashion-mnist by
# `make data`).
#
# Kept short: one epoch on the first 6000 training images, tested on the
# first 1000 test images, read as .gz files. Checks that the data are real
# (the first training labels), that an untrained model is near chance, and
# that one epoch (47 steps of 128) reaches at least 70% (77% here; the full 3
# epochs on all the data reach about 91%).
. "$(dirname "$0")/lib.sh"

need_fnnc
F=data/fashion-mnist
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
	[ -f "$F/$f.gz" ] || fail "$F/$f.gz is missing (run 'make data')"
done
make_tmp
use_timeout 600

first=$(gzip -dc "$F/train-labels-idx1-ubyte.gz" | od -An -tu1 -j8 -N10 | tr -s ' \n' '  ' | sed 's/^ //; s/ $//')
[ "$first" = "9 0 0 3 0 2 7 2 5 5" ] || fail "not Fashion-MNIST: the first labels are '$first'"

# gz_head SRC_IMAGES SRC_LABELS N DST_IMAGES DST_LABELS: the first N samples, gzipped.
gz_head() {
	{ be32 2051; be32 "$3"; be32 28; be32 28; gzip -dc "$1" | tail -c +17 | head -c $(($3 * 784)); } | gzip -1 >"$4.gz"
	{ be32 2049; be32 "$3"; gzip -dc "$2" | tail -c +9 | head -c "$3"; } | gzip -1 >"$5.gz"
}
D=$tmp/d/fashion-mnist
mkdir -p "$D"
gz_head "$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz" 6000 \
	"$D/train-images-idx3-ubyte" "$D/train-labels-idx1-ubyte"
gz_head "$F/t10k-images-idx3-ubyte.gz" "$F/t10k-labels-idx1-ubyte.gz" 1000 \
	"$D/t10k-images-idx3-ubyte" "$D/t10k-labels-idx1-ubyte"

untrained_near_chance models/fashion.fnn "$tmp/d"
train_quiet models/fashion.fnn "$tmp/log.csv" --epochs 1
final_metrics "$tmp/log.csv"
echo "1 epoch on 6000 images: test_acc $acc, test_loss $tl (${secs}s)"
check_final 0.70 0.8
echo "PASS: fashion test_acc $acc"
