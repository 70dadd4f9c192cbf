#!/bin/sh
# test_predict.sh - --predict runs the compiled model on a file of inputs.
#
# A classifier (models/mlp.fnn, 1 epoch on 1000 MNIST images) is saved, then:
#   - --eval --init logs one row at epoch 0, step 0 with no train_loss;
#   - --predict on the test images alone (no label file next to them, raw and
#     gzip) prints one "CLASS PROBABILITY" line per image; the classes agree
#     with the labels for exactly as many images as --eval counted correct;
#   - --out FILE.csv writes the same predictions as CSV with a header, and a
#     built trainer writes the same bytes as fnnc run;
#   - a known case: a linear regression y = w.x + b with weights written by
#     hand (a safetensors file made here) predicts w.x + b for CSV rows with
#     and without the target column;
#   - bad uses and bad files are errors with exit status 1.
. "$(dirname "$0")/lib.sh"

need_fnnc
need_mnist
make_tmp
use_timeout 300
D=$tmp/d
make_mnist "$D" 1000 300

$TO bin/fnnc run models/mlp.fnn --data "$D" --quiet --epochs 1 --save "$tmp/mlp.st" 2>"$tmp/err" ||
	fail "training: exit $?: $(cat "$tmp/err")"
$TO bin/fnnc run models/mlp.fnn --data "$D" --eval --init "$tmp/mlp.st" --log "$tmp/ev.csv" >"$tmp/ev.out" 2>"$tmp/err" ||
	fail "--eval: exit $?: $(cat "$tmp/err")"
row=$(tail -n 1 "$tmp/ev.csv")
acc=$(echo "$row" | cut -d, -f5)
case $row in
0,0,,*) ;;
*) fail "--eval --init: expected a log row at epoch 0, step 0 with an empty train_loss, found '$row'" ;;
esac
grep -q "test_acc" "$tmp/ev.out" || fail "--eval printed no test_acc: $(cat "$tmp/ev.out")"

# The images alone, in another directory.
mkdir -p "$tmp/in"
cp "$D/mnist/t10k-images-idx3-ubyte" "$tmp/in/images"
gzip -c "$tmp/in/images" >"$tmp/in/images.gz"
od -An -tu1 -j8 -v "$D/mnist/t10k-labels-idx1-ubyte" | tr -s ' ' '\n' | grep -v '^$' >"$tmp/labels"
[ "$(wc -l <"$tmp/labels")" -eq 300 ] || fail "could not read the 300 test labels"

$TO bin/fnnc run models/mlp.fnn --init "$tmp/mlp.st" --predict "$tmp/in/images" >"$tmp/pred" 2>"$tmp/err" ||
	fail "--predict: exit $?: $(cat "$tmp/err")"
[ "$(wc -l <"$tmp/pred")" -eq 300 ] || fail "--predict: expected 300 lines, found $(wc -l <"$tmp/pred")"
bad=$(awk 'NF != 2 || $1 !~ /^[0-9]$/ || !($2 > 0.1 && $2 <= 1) { print NR ": " $0; exit }' "$tmp/pred")
[ -z "$bad" ] || fail "--predict: expected 'CLASS PROBABILITY' lines (a class 0..9, a probability in (0.1, 1]), found line $bad"
right=$(cut -d' ' -f1 "$tmp/pred" | paste -d' ' - "$tmp/labels" | awk '$1 == $2 { c++ } END { print c + 0 }')
want=$(awk -v a="$acc" 'BEGIN { printf "%d", a * 300 + 0.5 }')
echo "--predict: $right of 300 right; --eval test_acc $acc ($want of 300)"
[ "$right" -eq "$want" ] || fail "--predict classes agree with $right labels, --eval counted $want correct"

$TO bin/fnnc run models/mlp.fnn --init "$tmp/mlp.st" --predict "$tmp/in/images.gz" >"$tmp/pred.gz.txt" 2>"$tmp/err" ||
	fail "--predict on a .gz file: exit $?: $(cat "$tmp/err")"
cmp -s "$tmp/pred" "$tmp/pred.gz.txt" || fail "--predict gives other predictions for the gzip copy"

$TO bin/fnnc run models/mlp.fnn --init "$tmp/mlp.st" --predict "$tmp/in/images" --out "$tmp/pred.csv" \
	>"$tmp/out" 2>"$tmp/err" || fail "--predict --out: exit $?: $(cat "$tmp/err")"
[ -s "$tmp/out" ] && fail "--predict --out: expected nothing on stdout, found $(head -n 2 "$tmp/out")"
[ "$(head -n 1 "$tmp/pred.csv")" = "sample,class,probability" ] ||
	fail "--out: expected the header 'sample,class,probability', found '$(head -n 1 "$tmp/pred.csv")'"
tail -n +2 "$tmp/pred.csv" | awk -F, '{ print $2 " " $3 }' >"$tmp/pred.csv.txt"
cmp -s "$tmp/pred" "$tmp/pred.csv.txt" || fail "--out: the CSV's classes and probabilities differ from stdout's"
awk -F, 'NR > 1 && $1 != NR - 2 { exit 1 }' "$tmp/pred.csv" || fail "--out: the sample column does not count from 0"

bin/fnnc models/mlp.fnn -o "$tmp/mlp" >/dev/null 2>"$tmp/err" || fail "fnnc -o: $(cat "$tmp/err")"
$TO "$tmp/mlp" --init "$tmp/mlp.st" --predict "$tmp/in/images" --out "$tmp/aot.csv" 2>"$tmp/err" ||
	fail "the built trainer's --predict: exit $?: $(cat "$tmp/err")"
cmp -s "$tmp/pred.csv" "$tmp/aot.csv" || fail "the built trainer predicts differently from fnnc run"

# A known case: y = 1 x1 - 2 x2 + 0.5 x3 + 0.25, from a hand-made checkpoint.
cat >"$tmp/lin.fnn" <<'FNN'
model lin {
    input  x: [3]
    target t: [1]
    y = x -> dense(1) as lin
    loss mse(y, t)
}
optimizer sgd(lr=0.1)
data {
    train = csv("lin/train.csv", target="t")
}
FNN
{
	hdr='{"lin.weight":{"dtype":"F32","shape":[1,3],"data_offsets":[0,12]},"lin.bias":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}'
	while [ $((${#hdr} % 8)) -ne 0 ]; do hdr="$hdr "; done
	n=${#hdr}
	# 8-byte little-endian length, the header, then 1, -2, 0.5, 0.25 as F32.
	printf "\\$(printf %03o $((n & 255)))\\$(printf %03o $((n >> 8 & 255)))\\000\\000\\000\\000\\000\\000"
	printf '%s' "$hdr"
	printf '\000\000\200\077\000\000\000\300\000\000\000\077\000\000\200\076'
} >"$tmp/lin.st"
printf 'a,b,c\n1,2,3\n0.5,0,-4\n' >"$tmp/feat.csv"
printf 'a,t,b,c\n1,9,2,3\n0.5,9,0,-4\n' >"$tmp/withtarget.csv"
for f in feat withtarget; do
	$TO bin/fnnc run "$tmp/lin.fnn" --init "$tmp/lin.st" --predict "$tmp/$f.csv" >"$tmp/lin.$f" 2>"$tmp/err" ||
		fail "--predict $f.csv: exit $?: $(cat "$tmp/err")"
	# 1 - 4 + 1.5 + 0.25 = -1.25 and 0.5 - 0 - 2 + 0.25 = -1.25
	[ "$(cat "$tmp/lin.$f")" = "$(printf -- '-1.25\n-1.25')" ] ||
		fail "--predict $f.csv: expected -1.25 and -1.25 (w.x + b), found: $(cat "$tmp/lin.$f")"
done
printf '1,2,3\n4,5,6\n' >"$tmp/plain.csv"
$TO bin/fnnc run "$tmp/lin.fnn" --init "$tmp/lin.st" --predict "$tmp/plain.csv" --out "$tmp/plain.out" 2>"$tmp/err" ||
	fail "--predict plain.csv: exit $?: $(cat "$tmp/err")"
[ "$(cat "$tmp/plain.out")" = "$(printf 'sample,value\n0,-1.25\n1,-2.75')" ] ||
	fail "--predict plain.csv --out: expected rows -1.25 and -2.75, found: $(cat "$tmp/plain.out")"

# Errors.
# expect_err WORD ARGS...: fnnc run exits 1 and stderr says WORD.
expect_err() {
	word=$1
	shift
	$TO bin/fnnc run "$@" >"$tmp/out" 2>"$tmp/err"
	st=$?
	[ $st -eq 1 ] || fail "'$*': expected exit status 1, got $st; stderr: $(head -c 300 "$tmp/err")"
	grep -qiF -- "$word" "$tmp/err" || fail "'$*': expected the message to say '$word', found: $(head -c 300 "$tmp/err")"
	echo "ok: $(head -n 1 "$tmp/err")"
}
expect_err "needs '--init" models/mlp.fnn --predict "$tmp/in/images"
expect_err "needs '--predict" models/mlp.fnn --init "$tmp/mlp.st" --out "$tmp/x.csv"
expect_err "no such file" models/mlp.fnn --init "$tmp/mlp.st" --predict "$tmp/in/nothing"
expect_err "label file" models/mlp.fnn --init "$tmp/mlp.st" --predict "$D/mnist/t10k-labels-idx1-ubyte"
expect_err "does not train" models/mlp.fnn --init "$tmp/mlp.st" --predict "$tmp/in/images" --eval
printf '1,2\n' >"$tmp/short.csv"
expect_err "short.csv:1" "$tmp/lin.fnn" --init "$tmp/lin.st" --predict "$tmp/short.csv"
printf '1,2,3\n4,x,6\n' >"$tmp/word.csv"
expect_err "word.csv:2" "$tmp/lin.fnn" --init "$tmp/lin.st" --predict "$tmp/word.csv"
head -c 100 "$tmp/in/images" >"$tmp/cut"
expect_err "truncated" models/mlp.fnn --init "$tmp/mlp.st" --predict "$tmp/cut"

echo "PASS: --predict agrees with --eval ($right/300), known linear predictions, errors"
