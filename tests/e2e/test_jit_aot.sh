#!/bin/sh
# test_jit_aot.sh - a trainer built with `fnnc FILE -o OUT` trains exactly like
# `fnnc run FILE`, and does not depend on LLVM.
#
# For models/mlp.fnn and models/mnist.fnn (the CNN), on small real-MNIST data
# sets whose sizes are not multiples of the batch (so the last training batch
# and the last evaluation batch are partial), with the same --seed and
# --threads 1: the epoch, step, train_loss, test_loss and test_acc columns of
# the --log CSVs must be identical (images_per_s and elapsed_s may differ).
# Also: `ldd OUT` mentions no LLVM library, the trainer's --help works, and a
# trainer run without --data from a directory holding ./data reads it.
. "$(dirname "$0")/lib.sh"

need_fnnc
need_mnist
make_tmp

# metrics CSV: the log without the timing columns.
metrics() { cut -d, -f1-5 "$1"; }

# compare NAME MODEL DATA ROWS FLAGS...: builds the trainer, runs both ways, compares.
compare() {
	name=$1 model=$2 data=$3 want_rows=$4
	shift 4
	bin/fnnc "$model" -o "$tmp/$name" >"$tmp/out" 2>"$tmp/err" ||
		fail "fnnc $model -o $tmp/$name: expected exit 0, got $?; stderr: $(tail -n 5 "$tmp/err")"
	[ -x "$tmp/$name" ] || fail "fnnc $model -o $tmp/$name exited 0 but wrote no executable"
	if command -v ldd >/dev/null 2>&1; then
		ldd "$tmp/$name" >"$tmp/ldd" 2>&1
		if grep -i llvm "$tmp/ldd" >/dev/null; then
			fail "the $name trainer should not depend on LLVM, but ldd shows: $(grep -i llvm "$tmp/ldd")"
		fi
	fi
	"$tmp/$name" --help >"$tmp/help" 2>"$tmp/err" || fail "$name --help: expected exit 0, got $?"
	grep -q -- --steps "$tmp/help" || fail "$name --help: expected the flags on stdout, found: $(head -n 3 "$tmp/help")"

	bin/fnnc run "$model" --data "$data" --threads 1 --quiet --log "$tmp/$name.jit.csv" "$@" \
		>/dev/null 2>"$tmp/err" || fail "fnnc run $model $*: expected exit 0, got $?; stderr: $(tail -n 5 "$tmp/err")"
	"$tmp/$name" --data "$data" --threads 1 --quiet --log "$tmp/$name.aot.csv" "$@" \
		>/dev/null 2>"$tmp/err" || fail "$name trainer $*: expected exit 0, got $?; stderr: $(tail -n 5 "$tmp/err")"
	echo "$name, fnnc run:"
	cat "$tmp/$name.jit.csv"
	echo "$name, built trainer:"
	cat "$tmp/$name.aot.csv"
	rows=$(($(wc -l <"$tmp/$name.jit.csv") - 1))
	[ "$rows" -eq "$want_rows" ] || fail "$name: expected $want_rows log rows from fnnc run, found $rows"
	# Every metric present and a number.
	bad=$(awk -F, 'NR > 1 { for (i = 1; i <= 5; i++) if ($i !~ /^[0-9.e+-]+$/) { print "row " NR-1 " column " i ": " $i; exit } }' "$tmp/$name.jit.csv")
	[ -z "$bad" ] || fail "$name: expected numbers in the first 5 log columns, found $bad"
	metrics "$tmp/$name.jit.csv" >"$tmp/j"
	metrics "$tmp/$name.aot.csv" >"$tmp/a"
	if ! cmp -s "$tmp/j" "$tmp/a"; then
		echo "diff (fnnc run vs built trainer):"
		diff "$tmp/j" "$tmp/a"
		fail "$name: expected identical epoch,step,train_loss,test_loss,test_acc from fnnc run and the built trainer"
	fi
}

# MLP: 1000 training images = 15 batches of 64 + one of 40; 300 test images.
make_mnist "$tmp/mlpdata" 1000 300
compare mlp models/mlp.fnn "$tmp/mlpdata" 2 --epochs 2 --batch 64 --seed 7

# The built trainer reads ./data by default, from any directory.
mkdir -p "$tmp/cwd"
ln -s "$tmp/mlpdata" "$tmp/cwd/data"
(cd "$tmp/cwd" && "$tmp/mlp" --threads 1 --quiet --log "$tmp/cwd.csv" --epochs 2 --batch 64 --seed 7) \
	>/dev/null 2>"$tmp/err" || fail "mlp trainer without --data, from a directory with ./data: exit $?; $(tail -n 3 "$tmp/err")"
metrics "$tmp/cwd.csv" >"$tmp/c"
metrics "$tmp/mlp.jit.csv" >"$tmp/j"
cmp -s "$tmp/j" "$tmp/c" || fail "mlp trainer with the default ./data: expected the same metrics as with --data, found: $(cat "$tmp/c")"

# A different seed must give different numbers (the comparison above is not vacuous).
"$tmp/mlp" --data "$tmp/mlpdata" --threads 1 --quiet --log "$tmp/seed8.csv" --epochs 2 --batch 64 --seed 8 \
	>/dev/null 2>&1 || fail "mlp trainer --seed 8 failed"
metrics "$tmp/seed8.csv" >"$tmp/s8"
cmp -s "$tmp/j" "$tmp/s8" && fail "mlp: --seed 7 and --seed 8 gave identical logs; the seed is ignored"

# CNN: 200 training images = 3 batches of 64 + one of 8, 2 epochs (8 steps); 100 test images.
make_mnist "$tmp/cnndata" 200 100
compare cnn models/mnist.fnn "$tmp/cnndata" 2 --epochs 2 --batch 64 --seed 3
# And a run that stops mid-epoch with --steps.
"$tmp/cnn" --data "$tmp/cnndata" --threads 1 --quiet --log "$tmp/cnn.steps.aot.csv" --steps 6 --batch 64 --seed 3 \
	>/dev/null 2>"$tmp/err" || fail "cnn trainer --steps 6: exit $?; $(tail -n 3 "$tmp/err")"
bin/fnnc run models/mnist.fnn --data "$tmp/cnndata" --threads 1 --quiet --log "$tmp/cnn.steps.jit.csv" --steps 6 \
	--batch 64 --seed 3 >/dev/null 2>"$tmp/err" || fail "fnnc run models/mnist.fnn --steps 6: exit $?; $(tail -n 3 "$tmp/err")"
metrics "$tmp/cnn.steps.jit.csv" >"$tmp/j"
metrics "$tmp/cnn.steps.aot.csv" >"$tmp/a"
cmp -s "$tmp/j" "$tmp/a" || fail "cnn --steps 6: expected identical metrics, fnnc run: $(cat "$tmp/j"), trainer: $(cat "$tmp/a")"
last=$(tail -n 1 "$tmp/j" | cut -d, -f1,2)
[ "$last" = "2,6" ] || fail "cnn --steps 6 with 4 steps per epoch: expected the last row at epoch 2, step 6, found '$last'"

echo "PASS: fnnc run and the built trainers agree (mlp, cnn)"
