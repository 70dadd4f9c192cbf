#!/bin/sh
# test_regression_diabetes.sh - models/regression.fnn (y = Wx + b, mse, sgd
# with momentum, standardized features) on the real diabetes data set that
# `make data` builds from python3-sklearn's files (354 training and 88
# held-out patients, the target by name: target="progression").
#
#   - the log has one row per epoch with test_r2; train_loss falls;
#   - the held-out R^2 is above 0.40 (least squares on the same split gets
#     0.447: a linear model explains less than half of the variance here);
#   - --eval --init prints and logs the same test_r2 at epoch 0, step 0;
#   - the R^2 of --predict's output on the test CSV (target column included,
#     and ignored) against its targets is the logged test_r2.
. "$(dirname "$0")/lib.sh"

need_fnnc
for f in train test; do
	[ -f "data/diabetes/$f.csv" ] || fail "data/diabetes/$f.csv is missing (run 'make data')"
done
make_tmp
use_timeout 300

$TO bin/fnnc run models/regression.fnn --quiet --log "$tmp/log.csv" --save "$tmp/reg.st" >"$tmp/out" 2>"$tmp/err" ||
	fail "training: exit $?: $(tail -n 5 "$tmp/err")"
[ "$(head -n 1 "$tmp/log.csv")" = "epoch,step,train_loss,test_loss,test_acc,images_per_s,elapsed_s,test_r2" ] ||
	fail "unexpected log header '$(head -n 1 "$tmp/log.csv")'"
rows=$(($(wc -l <"$tmp/log.csv") - 1))
[ "$rows" -eq 60 ] || fail "expected 60 rows (epochs=60), found $rows"
[ "$(tail -n 1 "$tmp/log.csv" | cut -d, -f1,2)" = "60,720" ] || fail "expected the last row at epoch 60, step 720 (12 steps per epoch)"
first=$(awk -F, 'NR == 2 { print $3 }' "$tmp/log.csv")
last=$(awk -F, 'END { print $3 }' "$tmp/log.csv")
r2=$(awk -F, 'END { print $8 }' "$tmp/log.csv")
echo "train_loss $first -> $last; held-out R^2 $r2"
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b * 2 < a) }' || fail "train_loss should at least halve: $first -> $last"
awk -v r="$r2" 'BEGIN { exit !(r + 0 > 0.40 && r + 0 < 1) }' || fail "expected a held-out R^2 above 0.40, found '$r2'"

$TO bin/fnnc run models/regression.fnn --eval --init "$tmp/reg.st" --log "$tmp/ev.csv" >"$tmp/out" 2>"$tmp/err" ||
	fail "--eval: exit $?: $(tail -n 5 "$tmp/err")"
grep -q "test_r2" "$tmp/out" || fail "--eval should print test_r2: $(cat "$tmp/out")"
erow=$(tail -n 1 "$tmp/ev.csv")
case $erow in 0,0,,*) ;; *) fail "--eval --init: expected a row at epoch 0, step 0, found '$erow'" ;; esac
[ "$(echo "$erow" | cut -d, -f8)" = "$r2" ] || fail "--eval's test_r2 $(echo "$erow" | cut -d, -f8) differs from training's $r2"

$TO bin/fnnc run models/regression.fnn --init "$tmp/reg.st" --predict data/diabetes/test.csv >"$tmp/pred" 2>"$tmp/err" ||
	fail "--predict: exit $?: $(tail -n 5 "$tmp/err")"
[ "$(wc -l <"$tmp/pred")" -eq 88 ] || fail "expected 88 predictions, found $(wc -l <"$tmp/pred")"
pr2=$(tail -n +2 data/diabetes/test.csv | cut -d, -f11 | paste -d' ' "$tmp/pred" - |
	awk '{ p[NR] = $1; t[NR] = $2; s += $2 } END { m = s / NR; for (i = 1; i <= NR; i++) { r += (p[i] - t[i]) ^ 2; q += (t[i] - m) ^ 2 } printf "%.6f", 1 - r / q }')
echo "R^2 of the --predict output: $pr2"
awk -v a="$r2" -v b="$pr2" 'BEGIN { d = a - b; exit !(d < 1e-4 && d > -1e-4) }' ||
	fail "the R^2 of --predict's output ($pr2) should be the logged test_r2 ($r2)"
echo "PASS: diabetes held-out R^2 $r2"
