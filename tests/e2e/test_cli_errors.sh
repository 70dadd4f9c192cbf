#!/bin/sh
# test_cli_errors.sh - bad command lines for fnnc and for built trainers.
#
# Every bad flag, value or file must make the program exit with status exactly 1
# (not a crash or a signal: no status > 128) and print "error" (or the usage)
# and the offending flag or file on stderr. --help and --version exit 0 and print to
# stdout. All failures are listed, then the script exits 1 if there were any.
. "$(dirname "$0")/lib.sh"

need_fnnc
ROOT=$(pwd)
FNNC=$ROOT/bin/fnnc
make_tmp
use_timeout 120
ntest=0

# expect_ok WANT_ON_STDOUT CMD...: exit 0, WANT_ON_STDOUT on stdout, stderr empty.
expect_ok() {
	want=$1
	shift
	run_status 0 "$@" || return
	if [ -n "$want" ] && ! grep -qF -- "$want" "$tmp/out"; then
		problem "'$*': expected '$want' on stdout, found: $(head -c 300 "$tmp/out")"
	elif [ -s "$tmp/err" ]; then
		problem "'$*': expected nothing on stderr, found: $(head -c 300 "$tmp/err")"
	fi
}

# A small model (fast to compile) with CSV data, so that the trainers have
# something valid to reject flags for.
# It lives in $tmp/w, the working directory for what follows; the captured
# output goes to $tmp.
mkdir -p "$tmp/w"
cd "$tmp/w" || exit 1
mkdir -p data/tiny
cat >tiny.fnn <<'FNN'
model tiny {
    input  x: [4]
    target y: class(3)
    logits = x -> dense(8) -> relu -> dense(3)
    loss cross_entropy(logits, y)
}
optimizer sgd(lr=0.1)
data {
    train = csv("tiny/train.csv")
    test  = csv("tiny/test.csv")
}
train { batch=4, epochs=1, shuffle=true, seed=1 }
FNN
printf '0.1,0.2,0.3,0.4,0\n0.5,0.1,0.2,0.3,1\n-0.2,0.3,0.1,0.9,2\n0.0,0.0,0.0,1.0,1\n0.3,-0.4,0.5,0.1,0\n' >data/tiny/train.csv
cp data/tiny/train.csv data/tiny/test.csv

"$FNNC" tiny.fnn -o tiny >"$tmp/out" 2>"$tmp/err" || {
	echo "FAIL: fnnc tiny.fnn -o tiny: expected exit 0, got $?; $(head -c 500 "$tmp/err")"
	exit 1
}
# The tiny model trains (so the failures below are about the flags).
expect_ok "" ./tiny --quiet
expect_ok "" "$FNNC" run tiny.fnn --quiet --epochs 2

#
# fnnc itself
#
expect_ok "usage" "$FNNC" --help
expect_ok "usage" "$FNNC" -h
expect_ok "fnnc" "$FNNC" --version
expect_fail "" "$FNNC"
expect_fail "--bogus" "$FNNC" --bogus
expect_fail "--bogus" "$FNNC" tiny.fnn --bogus
expect_fail "--bogus" "$FNNC" tiny.fnn -o out --bogus
expect_fail "bogus" "$FNNC" tiny.fnn --emit=bogus
expect_fail "emit" "$FNNC" tiny.fnn --emit=
expect_fail "--emit" "$FNNC" tiny.fnn --emit
expect_fail "-o" "$FNNC" tiny.fnn -o
expect_fail "model file" "$FNNC" -o out
expect_fail "model file" "$FNNC" --emit=ir
expect_fail "tiny.fnn" "$FNNC" tiny.fnn
expect_fail "tiny.fnn" "$FNNC" tiny.fnn tiny.fnn -o out
expect_fail "nonexistent.fnn" "$FNNC" nonexistent.fnn -o out
expect_fail "nonexistent.fnn" "$FNNC" nonexistent.fnn --emit=ir
expect_fail "nonexistent.fnn" "$FNNC" run nonexistent.fnn
expect_fail "nonexistent.fnn" "$FNNC" check nonexistent.fnn
expect_fail "$tmp/w" "$FNNC" run "$tmp/w"
expect_fail "run" "$FNNC" run
expect_fail "run" "$FNNC" run --epochs 3
expect_fail "check" "$FNNC" check
expect_fail "" "$FNNC" tiny.fnn -o "$tmp/w/no/such/dir/out"
[ -e out ] && problem "a failed 'fnnc ... -o out' left a file 'out' behind"
# A model file that is not a model.
: >empty.fnn
expect_fail "" "$FNNC" empty.fnn -o out
head -c 2000 "$FNNC" >binary.fnn
expect_fail "binary.fnn" "$FNNC" binary.fnn -o out
printf 'model m {\n    input x: [4]\n' >unclosed.fnn
expect_fail "unclosed.fnn" "$FNNC" run unclosed.fnn

# fnnc check flags.
expect_fail "--tol" "$FNNC" check tiny.fnn --tol abc
expect_fail "--tol" "$FNNC" check tiny.fnn --tol -1
expect_fail "--batch" "$FNNC" check tiny.fnn --batch 0
expect_fail "--bogus" "$FNNC" check tiny.fnn --bogus

#
# Trainer flags: every case on the built trainer; fnnc run shares the flag
# parser (and compiles the model first, which takes a while), so it gets a
# sample of them, for the small model and the MLP.
#
expect_ok "usage" "$FNNC" run tiny.fnn --help
expect_ok "--steps 0" "$FNNC" run tiny.fnn --steps 0
expect_fail "--bogus" "$FNNC" run tiny.fnn --bogus
expect_fail "--epochs" "$FNNC" run tiny.fnn --epochs abc
expect_fail "--epochs" "$FNNC" run tiny.fnn --epochs
expect_fail "--batch" "$FNNC" run tiny.fnn --batch 0
expect_fail "--lr" "$FNNC" run tiny.fnn --lr -1
expect_fail "--quiet" "$FNNC" run tiny.fnn --quiet=1
expect_fail "stray" "$FNNC" run tiny.fnn stray
expect_fail "$tmp/w/no/such/dir/log.csv" "$FNNC" run tiny.fnn --quiet --log "$tmp/w/no/such/dir/log.csv"

T=./tiny
expect_ok "usage" "$T" --help
expect_ok "usage" "$T" -h
expect_ok "--steps 0" "$T" --steps 0
expect_fail "--bogus" "$T" --bogus
expect_fail "--epochs" "$T" --epoch 3
expect_fail "--epochs" "$T" --epochs abc
expect_fail "--epochs" "$T" --epochs=abc
expect_fail "--epochs" "$T" --epochs 1.5
expect_fail "--epochs" "$T" --epochs 0
expect_fail "--epochs" "$T" --epochs -1
expect_fail "--epochs" "$T" --epochs 99999999999999999999999
expect_fail "--epochs" "$T" --epochs
expect_fail "--epochs" "$T" --epochs=
expect_fail "--epochs" "$T" --epochs --quiet
expect_fail "--batch" "$T" --batch 0
expect_fail "--batch" "$T" --batch -3
expect_fail "--batch" "$T" --batch abc
expect_fail "--batch" "$T" --batch 99999999
expect_fail "--lr" "$T" --lr -1
expect_fail "--lr" "$T" --lr 0
expect_fail "--lr" "$T" --lr abc
expect_fail "--lr" "$T" --lr nan
expect_fail "--lr" "$T" --lr inf
expect_fail "--lr" "$T" --lr 1e999
expect_fail "--lr" "$T" --lr
expect_fail "--seed" "$T" --seed -1
expect_fail "--seed" "$T" --seed x
expect_fail "--threads" "$T" --threads 0
expect_fail "--steps" "$T" --steps -1
expect_fail "--steps" "$T" --steps many
expect_fail "--data" "$T" --data
expect_fail "--log" "$T" --log
expect_fail "--quiet" "$T" --quiet=1
expect_fail "stray" "$T" stray
expect_fail "-x" "$T" -x
# A bad flag after good ones is still an error.
expect_fail "--bogus" "$T" --quiet --epochs 1 --bogus
# The log file cannot be written.
expect_fail "$tmp/w/no/such/dir/log.csv" "$T" --quiet --log "$tmp/w/no/such/dir/log.csv"

# A real model through fnnc run, and its built trainer.
cd "$ROOT" || exit 1
expect_fail "--epochs" "$FNNC" run models/mlp.fnn --epochs abc
expect_fail "--batch" "$FNNC" run models/mlp.fnn --batch 0
expect_fail "--lr" "$FNNC" run models/mlp.fnn --lr -1
expect_fail "--epochs" "$FNNC" run models/mlp.fnn --quiet --epochs
expect_fail "--bogus" "$FNNC" run models/mlp.fnn --bogus
"$FNNC" models/mlp.fnn -o "$tmp/mlp" >"$tmp/out" 2>"$tmp/err" ||
	problem "fnnc models/mlp.fnn -o $tmp/mlp: expected exit 0, got $?; $(head -c 300 "$tmp/err")"
if [ -x "$tmp/mlp" ]; then
	expect_ok "usage" "$tmp/mlp" --help
	expect_fail "--epochs" "$tmp/mlp" --epochs abc
	expect_fail "--batch" "$tmp/mlp" --batch 0
	expect_fail "--lr" "$tmp/mlp" --lr -1
	expect_fail "--steps" "$tmp/mlp" --steps
	expect_fail "--bogus" "$tmp/mlp" --bogus
	# A batch whose workspace cannot be allocated is an error, not a crash.
	# (Limited address space so that the allocation fails for certain.)
	# shellcheck disable=SC3045 # probed first: skipped where ulimit -v is missing
	if (ulimit -v 1000000) 2>/dev/null; then
		ntest=$((ntest + 1))
		# shellcheck disable=SC3045
		(ulimit -v 1000000 && exec "$tmp/mlp" --batch 16777216 --steps 0) >"$tmp/out" 2>"$tmp/err"
		st=$?
		if [ $st -ne 1 ] || ! grep -q 'cannot allocate' "$tmp/err"; then
			problem "mlp --batch 16777216 --steps 0 with 1 GB of address space: expected exit 1 and 'cannot allocate', got $(why $st): $(head -c 300 "$tmp/err")"
		fi
	fi
fi

end_if_problems
echo "PASS: $ntest command-line checks"
