#!/bin/sh
# test_log_every_plot.sh - --log-every N adds --log rows every N steps, and
# --plot FILE.svg draws the curves as a well-formed SVG chart.
#
# models/mlp.fnn on 500 MNIST training images (batch 64: 8 steps per epoch)
# for 3 epochs with --log-every 3:
#   - rows at steps 3 6 | 8 (epoch 1) | 9 12 15 | 16 (epoch 2) | 18 21 | 24
#     (epoch 3): the interval rows carry a fraction of the epochs and only a
#     train_loss, the epoch rows are as without --log-every;
#   - an interval's train_loss is the mean of its steps: with --log-every 1
#     the rows are the per-step losses, and the mean of steps 1-3 equals the
#     --log-every 3 row at step 3;
#   - the SVG parses (xmllint), has the model's name in its title, a polyline
#     per series (train loss with one point per interval row, test loss, test
#     accuracy), the legend's names, axis titles and tick labels;
#   - a built trainer writes the same log (but for speed and time) and a
#     chart with the same curves;
#   - --log-every without --log or --plot, and a --plot path that cannot be
#     written, are errors.
. "$(dirname "$0")/lib.sh"

need_fnnc
need_mnist
command -v xmllint >/dev/null 2>&1 || fail "xmllint is needed (libxml2-utils; sh scripts/install-deps.sh)"
make_tmp
use_timeout 300
make_mnist "$tmp/d" 500 200

$TO bin/fnnc run models/mlp.fnn --data "$tmp/d" --quiet --epochs 3 --log-every 3 --threads 1 \
	--log "$tmp/log.csv" --plot "$tmp/curves.svg" >"$tmp/out" 2>"$tmp/err" || fail "training: exit $?: $(cat "$tmp/err")"
cat "$tmp/log.csv"
steps=$(awk -F, 'NR > 1 { printf "%s%s", sep, $2; sep = " " }' "$tmp/log.csv")
[ "$steps" = "3 6 8 9 12 15 16 18 21 24" ] || fail "expected rows at steps '3 6 8 9 12 15 16 18 21 24', found '$steps'"
epochs=$(awk -F, 'NR > 1 { printf "%s%s", sep, $1; sep = " " }' "$tmp/log.csv")
[ "$epochs" = "0.375000 0.750000 1 1.125000 1.500000 1.875000 2 2.250000 2.625000 3" ] ||
	fail "expected the epoch column '0.375000 0.750000 1 1.125000 ...', found '$epochs'"
awk -F, 'NR > 1 && $1 !~ /^[0-9]+$/ && ($3 == "" || $4 != "" || $5 != "") { exit 1 }' "$tmp/log.csv" ||
	fail "an interval row should have a train_loss and no test columns"
awk -F, 'NR > 1 && $1 ~ /^[0-9]+$/ && ($3 == "" || $4 == "" || $5 == "") { exit 1 }' "$tmp/log.csv" ||
	fail "an epoch row should have train_loss, test_loss and test_acc"

# The same run without --log-every has exactly the epoch rows.
$TO bin/fnnc run models/mlp.fnn --data "$tmp/d" --quiet --epochs 3 --threads 1 --log "$tmp/plain.csv" \
	>/dev/null 2>"$tmp/err" || fail "training without --log-every: exit $?: $(cat "$tmp/err")"
[ "$(grep -E '^[0-9]+,' "$tmp/log.csv" | cut -d, -f1-5)" = "$(tail -n +2 "$tmp/plain.csv" | cut -d, -f1-5)" ] ||
	fail "the epoch rows differ with --log-every"

# Interval means.
$TO bin/fnnc run models/mlp.fnn --data "$tmp/d" --quiet --epochs 1 --log-every 1 --threads 1 --log "$tmp/one.csv" \
	>/dev/null 2>"$tmp/err" || fail "--log-every 1: exit $?: $(cat "$tmp/err")"
m3=$(awk -F, 'NR >= 2 && NR <= 4 { s += $3 } END { printf "%.5f", s / 3 }' "$tmp/one.csv")
r3=$(awk -F, 'NR == 2 { printf "%.5f", $3 }' "$tmp/log.csv")
echo "mean of steps 1-3: $m3; --log-every 3 row: $r3"
[ "$m3" = "$r3" ] || fail "the row at step 3 should be the mean loss of steps 1-3 ($m3), found $r3"

# The chart.
xmllint --noout "$tmp/curves.svg" 2>"$tmp/err" || fail "the SVG is not well-formed XML: $(head -n 5 "$tmp/err")"
svg=$tmp/curves.svg
head -c 200 "$svg" | grep -q '<svg xmlns="http://www.w3.org/2000/svg"' || fail "not an SVG document: $(head -c 200 "$svg")"
grep -q '<title>mlp: training curves</title>' "$svg" || fail "no <title> naming the model"
[ "$(grep -c '<polyline' "$svg")" -eq 3 ] || fail "expected 3 curves (train loss, test loss, test accuracy), found $(grep -c '<polyline' "$svg")"
for w in "train loss, every 3 steps" "test loss" "test accuracy" ">epoch<" ">loss<" ">accuracy<" ">2.0<" "%<"; do
	grep -qF -- "$w" "$svg" || fail "the chart has no '$w'"
done
# The first curve (train loss) has a point per interval row.
pts=$(grep -m 1 '<polyline' "$svg" | sed 's/.*points="\([^"]*\)".*/\1/' | wc -w)
nint=$(awk -F, 'NR > 1 && $1 !~ /^[0-9]+$/' "$tmp/log.csv" | wc -l)
[ "$pts" -eq "$nint" ] || fail "the train loss curve has $pts points, expected $nint (one per interval row)"

# A built trainer.
bin/fnnc models/mlp.fnn -o "$tmp/mlp" >/dev/null 2>"$tmp/err" || fail "fnnc -o: $(cat "$tmp/err")"
$TO "$tmp/mlp" --data "$tmp/d" --quiet --epochs 3 --log-every 3 --threads 1 --log "$tmp/aot.csv" --plot "$tmp/aot.svg" \
	>/dev/null 2>"$tmp/err" || fail "the built trainer: exit $?: $(cat "$tmp/err")"
[ "$(cut -d, -f1-5 "$tmp/aot.csv")" = "$(cut -d, -f1-5 "$tmp/log.csv")" ] || fail "the built trainer logs other rows"
cmp -s "$tmp/aot.svg" "$svg" || fail "the built trainer draws another chart"

# Errors.
$TO bin/fnnc run models/mlp.fnn --data "$tmp/d" --log-every 5 >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "needs '--log FILE' or '--plot FILE'" "$tmp/err" ||
	fail "--log-every alone: expected exit 1 and a message, found: $(cat "$tmp/err")"
$TO bin/fnnc run models/mlp.fnn --data "$tmp/d" --quiet --steps 2 --plot "$tmp/no/such/dir.svg" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "cannot write the plot" "$tmp/err" ||
	fail "an unwritable --plot: expected exit 1 and a message, found: $(cat "$tmp/err")"
$TO bin/fnnc run models/mlp.fnn --data "$tmp/d" --log-every 0 --log "$tmp/x.csv" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] || fail "--log-every 0: expected exit 1"

echo "PASS: --log-every rows at the expected steps, interval means, a well-formed chart"
