#!/bin/sh
# test_threads.sh - results do not depend on the number of threads.
#
# The MLP, the CNN and an MLP with odd layer widths (tests/e2e/odd_widths.fnn)
# train for a few steps with --threads 1, 2 and 3 (more threads than cores is
# allowed); the logged train_loss, test_loss and test_acc must be identical to
# the last digit (the log prints 9 significant digits); so must a whole epoch
# of the MLP (a short last batch, then the test evaluation). Batch rows are split
# into fixed tasks and reductions over the batch are added in task order, and
# a dense layer split by its outputs computes each output whole, so this holds
# bitwise. The MLP's threads each read their own copy of the batch
# (input_copies), which this also checks: a copy left unfilled changes the loss.
. "$(dirname "$0")/lib.sh"

make_tmp

bin/fnnc models/mlp.fnn --emit=llvm | grep -qF '\0Ainput_copies\0A' ||
	fail "mlp: expected its train step to read one copy of the batch per thread (input_copies)"

for m in models/mlp:60 models/mnist:12 tests/e2e/odd_widths:30; do
	src=${m%%:*}.fnn
	model=$(basename "${m%%:*}")
	steps=${m##*:}
	bin/fnnc "$src" -o "$tmp/$model" || fail "cannot build $src"
	for t in 1 2 3; do
		"$tmp/$model" --steps "$steps" --batch 50 --threads $t --quiet --log "$tmp/$model.$t.csv" ||
			fail "$model --threads $t exited $?"
		cut -d, -f1-5 "$tmp/$model.$t.csv" >"$tmp/$model.$t.cut"
	done
	[ "$(wc -l <"$tmp/$model.1.cut")" -eq 2 ] || fail "$model: expected a header and one row in the log"
	for t in 2 3; do
		cmp -s "$tmp/$model.1.cut" "$tmp/$model.$t.cut" ||
			fail "$model: --threads 1 and --threads $t differ: $(tail -n1 "$tmp/$model.1.cut") vs $(tail -n1 "$tmp/$model.$t.cut")"
	done
	echo "$model: identical for 1, 2 and 3 threads: $(tail -n1 "$tmp/$model.1.cut")"
done

# A whole epoch of the MLP at batch 64: 937 full batches, a last one of 32
# rows, and the test evaluation after it; the copies of the batch hold the
# short batch at the same stride. (The trainer is the one built above.)
for t in 1 3; do
	"$tmp/mlp" --epochs 1 --batch 64 --threads $t --quiet --log "$tmp/epoch.$t.csv" || fail "mlp --epochs 1 --threads $t exited $?"
	cut -d, -f1-5 "$tmp/epoch.$t.csv" >"$tmp/epoch.$t.cut"
done
cmp -s "$tmp/epoch.1.cut" "$tmp/epoch.3.cut" ||
	fail "mlp, one epoch: --threads 1 and 3 differ: $(tail -n1 "$tmp/epoch.1.cut") vs $(tail -n1 "$tmp/epoch.3.cut")"
echo "mlp: one epoch identical for 1 and 3 threads: $(tail -n1 "$tmp/epoch.1.cut")"

# The threads' shares of the kernels split one block per thread (the MLP's
# dense layers, weight gradients and update) move with the threads' measured
# speeds, and so do the first tasks each thread takes of the other kernels
# (the CNN's); fixed skewed shares (FNNC_SPLIT_WEIGHTS) must give the same
# results as one thread, and a malformed value is an error.
for m in mlp:60 mnist:12 odd_widths:30; do
	model=${m%%:*}
	for w in 2:1,3 2:5,1 3:1,2,6; do
		t=${w%%:*}
		FNNC_SPLIT_WEIGHTS=${w#*:} "$tmp/$model" --steps "${m##*:}" --batch 50 --threads "$t" --quiet --log "$tmp/w.csv" ||
			fail "$model --threads $t with FNNC_SPLIT_WEIGHTS=${w#*:} exited $?"
		cut -d, -f1-5 "$tmp/w.csv" | cmp -s "$tmp/$model.1.cut" - ||
			fail "$model: FNNC_SPLIT_WEIGHTS=${w#*:} on $t threads differs from one thread: $(tail -n1 "$tmp/w.csv")"
	done
	echo "$model: identical with skewed shares 1:3, 5:1 and 1:2:6"
done
for bad in "1" "1,x" "0,1" "1,,2"; do
	FNNC_SPLIT_WEIGHTS=$bad "$tmp/mlp" --steps 1 --threads 2 --quiet >"$tmp/out" 2>&1
	rc=$?
	[ $rc -eq 1 ] && grep -q "error: FNNC_SPLIT_WEIGHTS" "$tmp/out" ||
		fail "FNNC_SPLIT_WEIGHTS='$bad': expected exit 1 and an error, got $rc: $(cat "$tmp/out")"
done
echo "FNNC_SPLIT_WEIGHTS: malformed values are errors"
