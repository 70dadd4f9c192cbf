#!/bin/sh
# test_csv_columns.sh - CSV data sets with named columns, a validation split
# and standardized features.
#
#   - A classifier reads csv("...", label="kind") where the class column sits
#     between the features; it reaches a high accuracy, and the same data with
#     the class column last and no name give the same log.
#   - validation=0.2 holds out 400 of 2000 training rows, chosen by the seed:
#     50 steps of 32 per epoch; the log has val_loss and val_acc columns and
#     the epoch lines print val_acc; the same seed gives the same run, another
#     seed another split.
#   - A regression target="price" with features on very different scales
#     (thousands, and thousandths) learns with standardize(): test_r2 > 0.95,
#     and the R^2 of its --predict output against the test targets is the
#     logged test_r2.
#   - Errors name the file and line: a missing column, a missing header, a
#     word among the numbers, a class out of range.
. "$(dirname "$0")/lib.sh"

need_fnnc
make_tmp
use_timeout 300
mkdir -p "$tmp/d/c"

# genc N SEED: columns x1,x2,kind,x3,x4; the kind is which of 3 fixed
# directions x points most along.
genc() {
	awk -v n="$1" -v seed="$2" 'BEGIN {
		srand(seed)
		print "x1,x2,kind,x3,x4"
		for (i = 0; i < n; i++) {
			for (j = 1; j <= 4; j++) x[j] = 2 * rand() - 1
			s[0] = x[1] + x[2]; s[1] = x[3] - x[1]; s[2] = x[4] - x[2]
			c = 0
			if (s[1] > s[c]) c = 1
			if (s[2] > s[c]) c = 2
			printf "%.5f,%.5f,%d,%.5f,%.5f\n", x[1], x[2], c, x[3], x[4]
		}
	}'
}
genc 2000 21 >"$tmp/d/c/train.csv"
genc 500 22 >"$tmp/d/c/test.csv"
# The same rows with the class last.
for f in train test; do
	awk -F, -v OFS=, '{ print $1, $2, $4, $5, $3 }' "$tmp/d/c/$f.csv" >"$tmp/d/c/${f}_last.csv"
done

# model NAME TRAIN_ARGS TEST_ARGS: a classifier reading the given sources.
model() {
	cat >"$tmp/$1.fnn" <<FNN
model cls {
    input  x: [4]
    target y: class(3)
    logits = x -> dense(16) -> relu -> dense(3)
    loss cross_entropy(logits, y)
}
optimizer adam(lr=0.01)
data {
    train = csv($2)
    test  = csv($3)
}
train { batch=32, epochs=4, shuffle=true, seed=1 }
FNN
}
model named '"c/train.csv", label="kind"' '"c/test.csv", label="kind"'
model last '"c/train_last.csv"' '"c/test_last.csv"'
model val '"c/train.csv", label="kind", validation=0.2' '"c/test.csv", label="kind"'

run() {
	$TO bin/fnnc run "$@" >"$tmp/out" 2>"$tmp/err" || fail "fnnc run $*: exit $?: $(tail -n 5 "$tmp/err")"
}
run "$tmp/named.fnn" --data "$tmp/d" --quiet --threads 1 --log "$tmp/named.csv"
run "$tmp/last.fnn" --data "$tmp/d" --quiet --threads 1 --log "$tmp/last.csv"
acc=$(awk -F, 'END { print $5 }' "$tmp/named.csv")
echo "named label column: test_acc $acc"
awk -v a="$acc" 'BEGIN { exit !(a + 0 >= 0.9) }' || fail "expected test_acc >= 0.9 with label=\"kind\", found '$acc'"
[ "$(cut -d, -f1-5 "$tmp/named.csv")" = "$(cut -d, -f1-5 "$tmp/last.csv")" ] ||
	fail "label=\"kind\" in the middle and an unnamed last class column should train alike"

# The validation split.
run "$tmp/val.fnn" --data "$tmp/d" --threads 1 --log "$tmp/val.csv"
cat "$tmp/out"
[ "$(head -n 1 "$tmp/val.csv")" = "epoch,step,train_loss,test_loss,test_acc,images_per_s,elapsed_s,val_loss,val_acc" ] ||
	fail "expected val_loss,val_acc columns, found the header '$(head -n 1 "$tmp/val.csv")'"
steps=$(awk -F, 'NR > 1 { printf "%s%s", sep, $2; sep = " " }' "$tmp/val.csv")
[ "$steps" = "50 100 150 200" ] || fail "1600 training rows in batches of 32: expected steps '50 100 150 200', found '$steps'"
grep -q "val_acc" "$tmp/out" || fail "the epoch lines should print val_acc: $(cat "$tmp/out")"
vacc=$(awk -F, 'END { print $9 }' "$tmp/val.csv")
awk -v a="$vacc" 'BEGIN { exit !(a + 0 >= 0.85 && a + 0 <= 1) }' || fail "expected val_acc >= 0.85, found '$vacc'"
run "$tmp/val.fnn" --data "$tmp/d" --quiet --threads 1 --log "$tmp/val2.csv"
[ "$(cut -d, -f1-5,8,9 "$tmp/val.csv")" = "$(cut -d, -f1-5,8,9 "$tmp/val2.csv")" ] || fail "the same seed gave another run"
run "$tmp/val.fnn" --data "$tmp/d" --quiet --threads 1 --seed 2 --log "$tmp/val3.csv"
[ "$(awk -F, 'NR == 2 { print $8 }' "$tmp/val.csv")" != "$(awk -F, 'NR == 2 { print $8 }' "$tmp/val3.csv")" ] ||
	fail "another seed should hold out other rows (and give another val_loss)"

# Regression with a named target and standardized features:
# price = 3 (a - 5000)/1000 - 2 (b - 0.004)/0.001 + 10 + noise.
awk 'BEGIN {
	srand(5)
	print "a,price,b"
	for (i = 0; i < 1500; i++) {
		a = 5000 + 1000 * (2 * rand() - 1); b = 0.004 + 0.001 * (2 * rand() - 1)
		printf "%.2f,%.5f,%.7f\n", a, 3 * (a - 5000) / 1000 - 2 * (b - 0.004) / 0.001 + 10 + 0.1 * (rand() - 0.5), b
	}
}' >"$tmp/d/c/reg.csv"
head -n 1 "$tmp/d/c/reg.csv" >"$tmp/d/c/reg_test.csv"
tail -n 300 "$tmp/d/c/reg.csv" >>"$tmp/d/c/reg_test.csv"
head -n 1201 "$tmp/d/c/reg.csv" >"$tmp/d/c/reg_train.csv"
cat >"$tmp/reg.fnn" <<'FNN'
model reg {
    input  x: [2]
    target t: [1]
    y = x -> dense(1)
    loss mse(y, t)
}
optimizer sgd(lr=0.05, momentum=0.9)
data {
    train = csv("c/reg_train.csv", target="price")
    test  = csv("c/reg_test.csv", target="price")
    standardize()
}
train { batch=32, epochs=10, seed=1 }
FNN
run "$tmp/reg.fnn" --data "$tmp/d" --log "$tmp/reg.csv" --save "$tmp/reg.st"
tail -n 1 "$tmp/out"
[ "$(head -n 1 "$tmp/reg.csv")" = "epoch,step,train_loss,test_loss,test_acc,images_per_s,elapsed_s,test_r2" ] ||
	fail "a regression log should end with test_r2, found the header '$(head -n 1 "$tmp/reg.csv")'"
r2=$(awk -F, 'END { print $8 }' "$tmp/reg.csv")
awk -v r="$r2" 'BEGIN { exit !(r + 0 > 0.95 && r + 0 <= 1) }' || fail "expected test_r2 > 0.95 with standardize(), found '$r2'"
grep -q "test_r2" "$tmp/out" || fail "the epoch lines should print test_r2"
run "$tmp/reg.fnn" --data "$tmp/d" --init "$tmp/reg.st" --predict "$tmp/d/c/reg_test.csv"
pr2=$(tail -n +2 "$tmp/d/c/reg_test.csv" | cut -d, -f2 | paste -d' ' "$tmp/out" - |
	awk '{ p[NR] = $1; t[NR] = $2; s += $2 } END { m = s / NR; for (i = 1; i <= NR; i++) { r += (p[i] - t[i]) ^ 2; q += (t[i] - m) ^ 2 } printf "%.6f", 1 - r / q }')
echo "test_r2 $r2; R^2 of the --predict output $pr2"
awk -v a="$r2" -v b="$pr2" 'BEGIN { d = a - b; exit !(d < 1e-4 && d > -1e-4) }' ||
	fail "the R^2 of --predict's output ($pr2) should be the logged test_r2 ($r2)"

# Errors.
# expect_bad FNN WHERE WORD: training exits 1, stderr names WHERE and says WORD.
expect_bad() {
	$TO bin/fnnc run "$1" --data "$tmp/d" --steps 1 --quiet >"$tmp/out" 2>"$tmp/err"
	st=$?
	[ $st -eq 1 ] || fail "$1 with $3: expected exit status 1, got $st; $(head -c 300 "$tmp/err")"
	grep -qF -- "$2" "$tmp/err" || fail "expected the error to name '$2', found: $(head -c 300 "$tmp/err")"
	grep -qiF -- "$3" "$tmp/err" || fail "expected the error to say '$3', found: $(head -c 300 "$tmp/err")"
	echo "ok: $(head -n 1 "$tmp/err")"
}
model nocol '"c/train.csv", label="knd"' '"c/test.csv", label="kind"'
expect_bad "$tmp/nocol.fnn" "c/train.csv:1" "no column 'knd'"
tail -n +2 "$tmp/d/c/train.csv" >"$tmp/d/c/nohead.csv"
model nohead '"c/nohead.csv", label="kind"' '"c/test.csv", label="kind"'
expect_bad "$tmp/nohead.fnn" "c/nohead.csv:1" "header"
sed '7s/^[^,]*,/0.5x,/' "$tmp/d/c/train.csv" >"$tmp/d/c/word.csv"
model word '"c/word.csv", label="kind"' '"c/test.csv", label="kind"'
expect_bad "$tmp/word.fnn" "c/word.csv:7" "0.5x"
sed '9s/,[0-9],/,3,/' "$tmp/d/c/train.csv" >"$tmp/d/c/range.csv"
model range '"c/range.csv", label="kind"' '"c/test.csv", label="kind"'
expect_bad "$tmp/range.fnn" "c/range.csv:9" "class in 0..2"
model toomany '"c/train.csv", label="kind", validation=0.9999' '"c/test.csv", label="kind"'
expect_bad "$tmp/toomany.fnn" "validation" "no training samples"

echo "PASS: named columns, validation split, standardize, R^2 from --predict, CSV errors"
