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

NTRAIN=6400
NTEST=2000
FLOOR=0.85
mkdir -p "$tmp/d/mnist"
idx_head "$M/train-images-idx3-ubyte" "$M/train-labels-idx1-ubyte" $NTRAIN \
	"$tmp/d/mnist/train-images-idx3-ubyte" "$tmp/d/mnist/train-labels-idx1-ubyte"
idx_head "$M/t10k-images-idx3-ubyte" "$M/t10k-labels-idx1-ubyte" $NTEST \
	"$tmp/d/mnist/t10k-images-idx3-ubyte" "$tmp/d/mnist/t10k-labels-idx1-ubyte"
[ "$(wc -c <"$tmp/d/mnist/train-images-idx3-ubyte")" -eq $((16 + NTRAIN * 784)) ] ||
	fail "could not make the reduced training set"

log=$tmp/mlp.csv
bin/fnnc run models/mlp.fnn --data "$tmp/d" --epochs 3 --batch 64 --seed 1 --quiet --log "$log" \
	>"$tmp/out" 2>"$tmp/err"
st=$?
[ $st -eq 0 ] || fail "fnnc run models/mlp.fnn: expected exit 0, got $st; stderr: $(tail -n 5 "$tmp/err")"
[ -s "$tmp/out" ] && fail "--quiet: expected no stdout, found: $(head -n 3 "$tmp/out")"

echo "log:"
cat "$log"

head -n 1 "$log" | grep -qx 'epoch,step,train_loss,test_loss,test_acc,images_per_s,elapsed_s' ||
	fail "log header: expected 'epoch,step,train_loss,test_loss,test_acc,images_per_s,elapsed_s', found '$(head -n 1 "$log")'"
rows=$(($(wc -l <"$log") - 1))
[ "$rows" -eq 3 ] || fail "expected 3 log rows (one per epoch), found $rows"
steps=$(awk -F, 'NR > 1 { printf "%s%s", sep, $1 ":" $2; sep = " " }' "$log")
[ "$steps" = "1:100 2:200 3:300" ] || fail "expected epoch:step '1:100 2:200 3:300', found '$steps'"

# train_loss strictly decreasing, and the last one well below ln(10).
msg=$(awk -F, 'NR > 1 {
	if ($3 !~ /^[0-9.e+-]+$/) { print "row " NR-1 ": train_loss is not a number: " $3; exit }
	if (NR > 2 && !($3 < prev)) { print "train_loss did not decrease: epoch " NR-2 " " prev ", epoch " NR-1 " " $3; exit }
	prev = $3; last = $3 }
	END { if (last != "" && !(last < 0.7)) print "final train_loss " last " is not below 0.7" }' "$log")
[ -z "$msg" ] || fail "$msg"

acc=$(awk -F, 'END { print $5 }' "$log")
tl=$(awk -F, 'END { print $4 }' "$log")
echo "final test_acc $acc (floor $FLOOR), test_loss $tl, on $NTEST test images after $NTRAIN x 3 training images"
awk -v a="$acc" -v f="$FLOOR" 'BEGIN { exit !(a != "" && a + 0 >= f && a + 0 <= 1) }' ||
	fail "expected test_acc >= $FLOOR, found '$acc'"
awk -v l="$tl" 'BEGIN { exit !(l != "" && l + 0 > 0 && l + 0 < 0.6) }' ||
	fail "expected a test_loss in (0, 0.6) after training, found '$tl'"

# Control: one step with a learning rate of 1e-30 leaves the random weights
# as they were: the accuracy must be near chance, far below the floor.
bin/fnnc run models/mlp.fnn --data "$tmp/d" --steps 1 --lr 1e-30 --seed 1 --quiet --log "$tmp/untrained.csv" \
	>/dev/null 2>"$tmp/err" || fail "untrained run failed: $(tail -n 5 "$tmp/err")"
uacc=$(awk -F, 'END { print $5 }' "$tmp/untrained.csv")
uloss=$(awk -F, 'END { print $4 }' "$tmp/untrained.csv")
echo "untrained test_acc $uacc, test_loss $uloss"
awk -v a="$uacc" 'BEGIN { exit !(a != "" && a + 0 < 0.3) }' ||
	fail "an untrained model should be near chance (test_acc < 0.3), found '$uacc'"
awk -v l="$uloss" 'BEGIN { exit !(l + 0 > 1.8) }' ||
	fail "an untrained model should have a test_loss near ln(10) = 2.30 (> 1.8), found '$uloss'"

echo "PASS: mlp reaches test_acc $acc (untrained $uacc)"
