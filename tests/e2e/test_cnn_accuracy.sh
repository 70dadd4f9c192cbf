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
set -u
cd "$(dirname "$0")/../.." || exit 1
export LC_ALL=C

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

[ -x bin/fnnc ] || fail "bin/fnnc is missing (run 'make all')"
M=data/mnist
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
	[ -f "$M/$f" ] || fail "$M/$f is missing (run 'sh scripts/fetch-mnist.sh data')"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fnnc-e2e.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# be32 N: N as 4 big-endian bytes.
be32() {
	# shellcheck disable=SC2059 # the format is the 4 octal escapes
	printf "\\$(printf %03o $(($1 >> 24 & 255)))\\$(printf %03o $(($1 >> 16 & 255)))\\$(printf %03o $(($1 >> 8 & 255)))\\$(printf %03o $(($1 & 255)))"
}
# idx_head SRC_IMAGES SRC_LABELS N DST_IMAGES DST_LABELS: the first N samples
# of a 28x28 MNIST pair, with headers that say N.
idx_head() {
	{ be32 2051; be32 "$3"; be32 28; be32 28; tail -c +17 "$1" | head -c $(($3 * 784)); } >"$4"
	{ be32 2049; be32 "$3"; tail -c +9 "$2" | head -c "$3"; } >"$5"
}

NTRAIN=1280
NTEST=500
FLOOR=0.75
mkdir -p "$tmp/d/mnist"
idx_head "$M/train-images-idx3-ubyte" "$M/train-labels-idx1-ubyte" $NTRAIN \
	"$tmp/d/mnist/train-images-idx3-ubyte" "$tmp/d/mnist/train-labels-idx1-ubyte"
idx_head "$M/t10k-images-idx3-ubyte" "$M/t10k-labels-idx1-ubyte" $NTEST \
	"$tmp/d/mnist/t10k-images-idx3-ubyte" "$tmp/d/mnist/t10k-labels-idx1-ubyte"
[ "$(wc -c <"$tmp/d/mnist/t10k-images-idx3-ubyte")" -eq $((16 + NTEST * 784)) ] ||
	fail "could not make the reduced test set"

log=$tmp/cnn.csv
start=$(date +%s)
bin/fnnc run models/mnist.fnn --data "$tmp/d" --epochs 2 --batch 64 --seed 1 --quiet --log "$log" \
	>"$tmp/out" 2>"$tmp/err"
st=$?
secs=$(($(date +%s) - start))
[ $st -eq 0 ] || fail "fnnc run models/mnist.fnn: expected exit 0, got $st; stderr: $(tail -n 5 "$tmp/err")"
[ -s "$tmp/out" ] && fail "--quiet: expected no stdout, found: $(head -n 3 "$tmp/out")"

echo "log (${secs}s):"
cat "$log"

rows=$(($(wc -l <"$log") - 1))
[ "$rows" -eq 2 ] || fail "expected 2 log rows (one per epoch), found $rows"
steps=$(awk -F, 'NR > 1 { printf "%s%s", sep, $1 ":" $2; sep = " " }' "$log")
[ "$steps" = "1:20 2:40" ] || fail "expected epoch:step '1:20 2:40', found '$steps'"

msg=$(awk -F, 'NR > 1 {
	if ($3 !~ /^[0-9.e+-]+$/) { print "row " NR-1 ": train_loss is not a number: " $3; exit }
	if (NR > 2 && !($3 < prev)) { print "train_loss did not decrease: epoch " NR-2 " " prev ", epoch " NR-1 " " $3; exit }
	prev = $3; last = $3 }
	END { if (last != "" && !(last < 1.0)) print "final train_loss " last " is not below 1.0" }' "$log")
[ -z "$msg" ] || fail "$msg"

acc=$(awk -F, 'END { print $5 }' "$log")
tl=$(awk -F, 'END { print $4 }' "$log")
echo "final test_acc $acc (floor $FLOOR), test_loss $tl, on $NTEST test images after 40 steps of 64"
awk -v a="$acc" -v f="$FLOOR" 'BEGIN { exit !(a != "" && a + 0 >= f && a + 0 <= 1) }' ||
	fail "expected test_acc >= $FLOOR, found '$acc'"
awk -v l="$tl" 'BEGIN { exit !(l != "" && l + 0 > 0 && l + 0 < 1.0) }' ||
	fail "expected a test_loss in (0, 1.0) after training, found '$tl'"

# Control: one step with a learning rate of 1e-30 leaves the random weights.
bin/fnnc run models/mnist.fnn --data "$tmp/d" --steps 1 --lr 1e-30 --seed 1 --quiet --log "$tmp/untrained.csv" \
	>/dev/null 2>"$tmp/err" || fail "untrained run failed: $(tail -n 5 "$tmp/err")"
uacc=$(awk -F, 'END { print $5 }' "$tmp/untrained.csv")
uloss=$(awk -F, 'END { print $4 }' "$tmp/untrained.csv")
echo "untrained test_acc $uacc, test_loss $uloss"
awk -v a="$uacc" 'BEGIN { exit !(a != "" && a + 0 < 0.3) }' ||
	fail "an untrained model should be near chance (test_acc < 0.3), found '$uacc'"
awk -v l="$uloss" 'BEGIN { exit !(l + 0 > 1.8) }' ||
	fail "an untrained model should have a test_loss near ln(10) = 2.30 (> 1.8), found '$uloss'"

echo "PASS: cnn reaches test_acc $acc (untrained $uacc)"
