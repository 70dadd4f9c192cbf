#!/bin/sh
# test_steps_zero.sh - `--steps 0` compiles and sets up without loading data.
#
# For models/mnist.fnn, models/mlp.fnn and models/regression.fnn, through
# `fnnc run` and through the built trainer: --steps 0 with --data pointing at a
# directory that does not exist (or holds garbage) exits 0, prints its set-up
# line (nothing with --quiet), and nothing on stderr. A model with no data
# section also sets up. And --steps 1 with the same missing directory does fail
# (so the data really was not looked at).
. "$(dirname "$0")/lib.sh"

need_fnnc
make_tmp
use_timeout 120

# check_zero DESC CMD...: CMD --steps 0 --data /nonexistent... exits 0 with a
# set-up line on stdout and nothing on stderr; with --quiet, no output at all.
check_zero() {
	desc=$1
	shift
	$TO "$@" --steps 0 --data "$tmp/nonexistent" >"$tmp/out" 2>"$tmp/err"
	st=$?
	if [ $st -ne 0 ]; then
		problem "$desc --steps 0 --data $tmp/nonexistent: expected exit 0, got $st; stderr: $(head -c 300 "$tmp/err")"
		return
	fi
	[ -s "$tmp/err" ] && problem "$desc --steps 0: expected nothing on stderr, found: $(head -c 300 "$tmp/err")"
	[ -s "$tmp/out" ] || problem "$desc --steps 0: expected a set-up line on stdout, found nothing"
	$TO "$@" --steps 0 --quiet --data "$tmp/nonexistent" >"$tmp/out" 2>"$tmp/err"
	st=$?
	if [ $st -ne 0 ]; then
		problem "$desc --steps 0 --quiet: expected exit 0, got $st; stderr: $(head -c 300 "$tmp/err")"
	elif [ -s "$tmp/out" ] || [ -s "$tmp/err" ]; then
		problem "$desc --steps 0 --quiet: expected no output, found: $(head -c 300 "$tmp/out" "$tmp/err")"
	fi
	# Garbage where the data should be is not read either.
	mkdir -p "$tmp/garbage/mnist" "$tmp/garbage/regression"
	for f in mnist/train-images-idx3-ubyte mnist/train-labels-idx1-ubyte mnist/t10k-images-idx3-ubyte \
		mnist/t10k-labels-idx1-ubyte regression/train.csv regression/test.csv; do
		echo garbage >"$tmp/garbage/$f"
	done
	$TO "$@" --steps 0 --quiet --data "$tmp/garbage" >"$tmp/out" 2>"$tmp/err" ||
		problem "$desc --steps 0 with garbage data files: expected exit 0, got $?; stderr: $(head -c 300 "$tmp/err")"
	# But a real step needs the data.
	$TO "$@" --steps 1 --quiet --data "$tmp/nonexistent" >"$tmp/out" 2>"$tmp/err"
	st=$?
	[ $st -eq 1 ] || problem "$desc --steps 1 --data $tmp/nonexistent: expected exit 1, got $st"
	echo "ok: $desc"
}

for m in mnist mlp regression; do
	check_zero "fnnc run models/$m.fnn" bin/fnnc run models/$m.fnn
	if bin/fnnc models/$m.fnn -o "$tmp/$m" >"$tmp/out" 2>"$tmp/err"; then
		check_zero "the $m trainer" "$tmp/$m"
		# Other flags still apply (and are checked) with --steps 0.
		"$tmp/$m" --steps 0 --quiet --batch 1 --epochs 1 --lr 0.5 --seed 9 --threads 1 --data "$tmp/nonexistent" \
			>/dev/null 2>"$tmp/err" || problem "the $m trainer --steps 0 with other flags: expected exit 0, got $?"
		"$tmp/$m" --steps 0 --batch 0 >/dev/null 2>&1
		st=$?
		[ $st -eq 1 ] || problem "the $m trainer --steps 0 --batch 0: expected exit 1 (flags are still checked), got $st"
	else
		problem "fnnc models/$m.fnn -o $tmp/$m: expected exit 0, got $?; $(head -c 300 "$tmp/err")"
	fi
done

# A model with no data section.
cat >"$tmp/nodata.fnn" <<'FNN'
model nodata {
    input  x: [3]
    target t: [2]
    loss mse(x -> dense(2), t)
}
FNN
check_zero "fnnc run (a model without data)" bin/fnnc run "$tmp/nodata.fnn"

end_if_problems
echo "PASS: --steps 0 sets up without data"
