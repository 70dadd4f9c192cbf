#!/bin/sh
# test_regression_csv.sh - tests/e2e/sigmoid_regression.fnn (y = sigmoid(Wx + b), mse,
# sgd) learns a function it can represent, from CSV files.
#
# The data: 8 features ~ U(-1, 1) (awk, fixed seeds), target sigmoid(w.x + b)
# for fixed w, b; 2000 training rows and 500 test rows in
# DATA/regression/train.csv and DATA/regression/test.csv. Checks from the --log
# CSV that:
#   - one row per epoch (20 epochs of ceil(2000/32) = 63 steps), no test_acc;
#   - the initial test loss (one step with lr 1e-30) is about what predicting
#     with random weights gives, and the final one is far below both it (by
#     1000x) and the variance of the target (the loss of the best constant);
#   - train_loss went down over training.
# Then a CSV classifier (class ids in the last column) reaches a high accuracy.
. "$(dirname "$0")/lib.sh"

need_fnnc
make_tmp

# gen N SEED: N rows "x1,...,x8,sigmoid(w.x + b)".
gen() {
	awk -v n="$1" -v seed="$2" 'BEGIN {
		srand(seed)
		split("0.8 -1.2 0.5 1.5 -0.7 0.3 -1.0 0.9", w, " ")
		b = 0.2
		for (i = 0; i < n; i++) {
			z = b
			line = ""
			for (j = 1; j <= 8; j++) {
				x = 2 * rand() - 1
				z += w[j] * x
				line = line sprintf("%.6f,", x)
			}
			print line sprintf("%.6f", 1 / (1 + exp(-z)))
		}
	}'
}
mkdir -p "$tmp/d/regression"
gen 2000 11 >"$tmp/d/regression/train.csv"
gen 500 12 >"$tmp/d/regression/test.csv"
[ "$(wc -l <"$tmp/d/regression/train.csv")" -eq 2000 ] || fail "could not make the training CSV"

# Half the variance of the test targets: the mse (with its 1/2) of predicting their mean.
base=$(awk -F, '{ s += $9; ss += $9 * $9 } END { m = s / NR; printf "%.6g", (ss / NR - m * m) / 2 }' "$tmp/d/regression/test.csv")

bin/fnnc run tests/e2e/sigmoid_regression.fnn --data "$tmp/d" --quiet --steps 1 --lr 1e-30 --log "$tmp/init.csv" \
	>/dev/null 2>"$tmp/err" || fail "the initial-loss run failed (exit $?): $(tail -n 5 "$tmp/err")"
init=$(awk -F, 'END { print $4 }' "$tmp/init.csv")

bin/fnnc run tests/e2e/sigmoid_regression.fnn --data "$tmp/d" --quiet --log "$tmp/log.csv" >"$tmp/out" 2>"$tmp/err" ||
	fail "fnnc run tests/e2e/sigmoid_regression.fnn: expected exit 0, got $?; $(tail -n 5 "$tmp/err")"
echo "log:"
cat "$tmp/log.csv"

rows=$(($(wc -l <"$tmp/log.csv") - 1))
[ "$rows" -eq 20 ] || fail "expected 20 log rows (epochs=20 in the model file), found $rows"
last=$(tail -n 1 "$tmp/log.csv")
steps=$(echo "$last" | cut -d, -f1,2)
[ "$steps" = "20,1260" ] || fail "expected the last row at epoch 20, step 1260 (63 steps per epoch), found '$steps'"
acc=$(echo "$last" | cut -d, -f5)
[ -z "$acc" ] || fail "a regression model has no accuracy: expected an empty test_acc column, found '$acc'"
final=$(echo "$last" | cut -d, -f4)
first_train=$(awk -F, 'NR == 2 { print $3 }' "$tmp/log.csv")
last_train=$(echo "$last" | cut -d, -f3)

echo "test loss: initial $init, final $final; constant-prediction loss $base; train_loss $first_train -> $last_train"
awk -v i="$init" -v b="$base" 'BEGIN { exit !(i + 0 > b / 4 && i + 0 < 2) }' ||
	fail "expected an initial test loss of the order of the target variance ($base), found '$init'"
awk -v f="$final" -v i="$init" 'BEGIN { exit !(f != "" && f + 0 >= 0 && f * 1000 < i) }' ||
	fail "expected the final test loss to be below 1/1000 of the initial $init, found '$final'"
awk -v f="$final" -v b="$base" 'BEGIN { exit !(f * 100 < b) }' ||
	fail "expected the final test loss to be below 1/100 of the constant-prediction loss $base, found '$final'"
awk -v a="$first_train" -v z="$last_train" 'BEGIN { exit !(z * 100 < a) }' ||
	fail "expected train_loss to drop by 100x from the first to the last epoch, found $first_train -> $last_train"

# The built trainer gives the same numbers.
bin/fnnc tests/e2e/sigmoid_regression.fnn -o "$tmp/reg" >/dev/null 2>"$tmp/err" || fail "fnnc -o failed: $(tail -n 3 "$tmp/err")"
"$tmp/reg" --data "$tmp/d" --quiet --threads 1 --epochs 3 --log "$tmp/aot.csv" >/dev/null 2>"$tmp/err" ||
	fail "the regression trainer failed (exit $?): $(tail -n 3 "$tmp/err")"
bin/fnnc run tests/e2e/sigmoid_regression.fnn --data "$tmp/d" --quiet --threads 1 --epochs 3 --log "$tmp/jit.csv" \
	>/dev/null 2>"$tmp/err" || fail "fnnc run --epochs 3 failed (exit $?): $(tail -n 3 "$tmp/err")"
[ "$(cut -d, -f1-5 "$tmp/aot.csv")" = "$(cut -d, -f1-5 "$tmp/jit.csv")" ] ||
	fail "expected the same metrics from the trainer and fnnc run; trainer: $(tail -n 1 "$tmp/aot.csv"), run: $(tail -n 1 "$tmp/jit.csv")"

# A CSV classifier: 3 classes by which of 3 fixed directions x points most
# along; with a header line.
cat >"$tmp/cls.fnn" <<'FNN'
model cls {
    input  x: [4]
    target y: class(3)
    logits = x -> dense(16) -> relu -> dense(3)
    loss cross_entropy(logits, y)
}
optimizer adam(lr=0.01)
data {
    train = csv("cls/train.csv")
    test  = csv("cls/test.csv")
}
train { batch=32, epochs=10, shuffle=true, seed=1 }
FNN
# genc N SEED
genc() {
	awk -v n="$1" -v seed="$2" 'BEGIN {
		srand(seed)
		print "x1,x2,x3,x4,class"
		for (i = 0; i < n; i++) {
			for (j = 1; j <= 4; j++) x[j] = 2 * rand() - 1
			s[0] = x[1] + x[2]; s[1] = x[3] - x[1]; s[2] = x[4] - x[2]
			c = 0
			if (s[1] > s[c]) c = 1
			if (s[2] > s[c]) c = 2
			printf "%.5f,%.5f,%.5f,%.5f,%d\n", x[1], x[2], x[3], x[4], c
		}
	}'
}
mkdir -p "$tmp/d/cls"
genc 2000 21 >"$tmp/d/cls/train.csv"
genc 500 22 >"$tmp/d/cls/test.csv"
bin/fnnc run "$tmp/cls.fnn" --data "$tmp/d" --quiet --log "$tmp/cls.csv" >/dev/null 2>"$tmp/err" ||
	fail "fnnc run of a CSV classifier: expected exit 0, got $?; $(tail -n 5 "$tmp/err")"
cacc=$(awk -F, 'END { print $5 }' "$tmp/cls.csv")
echo "CSV classifier test_acc $cacc"
awk -v a="$cacc" 'BEGIN { exit !(a != "" && a + 0 >= 0.9 && a + 0 <= 1) }' ||
	fail "expected the CSV classifier to reach test_acc >= 0.9, found '$cacc'"

echo "PASS: regression test loss $init -> $final; CSV classifier $cacc"
