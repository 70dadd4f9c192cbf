#!/bin/sh
# test_check_fails.sh - `fnnc check` must be able to fail.
#
# The compiler honours FNNC_BREAK_GRAD=OPNAME, which scales that op's gradient
# rule by 1.1 (a deliberately wrong gradient). With it, `fnnc check` on a model
# using the op must exit 1 and print FAIL; without it, the same check exits 0.
# Required: relu, tanh and conv2d on tests/gradcheck/{relu,tanh,conv2d}.fnn.
# Also checked: other ops on their gradcheck models (only those where the
# checker currently sees the 10% error with a clear margin; see the report for
# models where it does not), and that breaking an op a model does not use
# changes nothing.
. "$(dirname "$0")/lib.sh"

need_fnnc
unset FNNC_BREAK_GRAD
make_tmp
use_timeout 300

# must_pass MODEL: fnnc check MODEL exits 0 and prints "ok:".
must_pass() {
	$TO bin/fnnc check "$1" >"$tmp/out" 2>"$tmp/err"
	st=$?
	if [ $st -ne 0 ] || ! grep -q '^ok:' "$tmp/out"; then
		problem "fnnc check $1 (correct gradients): expected exit 0 and 'ok:', got exit $st: $(tail -n 3 "$tmp/out" "$tmp/err")"
	else
		echo "ok: fnnc check $1 passes: $(tail -n 1 "$tmp/out")"
	fi
}

# must_fail OP MODEL: FNNC_BREAK_GRAD=OP fnnc check MODEL exits 1 and prints FAIL.
must_fail() {
	FNNC_BREAK_GRAD=$1 $TO bin/fnnc check "$2" >"$tmp/out" 2>"$tmp/err"
	st=$?
	if [ $st -ne 1 ] || ! grep -q 'FAIL' "$tmp/out"; then
		problem "FNNC_BREAK_GRAD=$1 fnnc check $2: expected exit 1 and FAIL (a gradient scaled by 1.1), got exit $st: $(tail -n 1 "$tmp/out") $(tail -n 3 "$tmp/err")"
		[ $st -eq 0 ] && echo "    (is the FNNC_BREAK_GRAD hook in compiler/autodiff.c? did the checker miss the error?)"
	else
		echo "ok: FNNC_BREAK_GRAD=$1 fnnc check $2 fails: $(tail -n 1 "$tmp/out")"
	fi
}

G=tests/gradcheck
for op in relu tanh conv2d; do
	[ -f "$G/$op.fnn" ] || { problem "$G/$op.fnn is missing"; continue; }
	must_pass "$G/$op.fnn"
	must_fail "$op" "$G/$op.fnn"
done

# More ops, on the gradcheck model that exercises each.
for pair in exp:exp log:log sqrt:sqrt div:div mul:mul add:add concat:concat matmul:matmul xent:xent \
	maxpool:maxpool maxpool_overlap:maxpool conv2d_stride:conv2d reuse:matmul residual:tanh \
	model_regression:sigmoid; do
	model=${pair%%:*}
	op=${pair#*:}
	[ -f "$G/$model.fnn" ] || { echo "note: $G/$model.fnn is missing; skipped"; continue; }
	must_fail "$op" "$G/$model.fnn"
done

# Known misses of the checker today (see the report): a 1.1x (or 1.21x) scaled
# gradient that passes because most sampled coordinates have gradients below
# the checker's noise floor. Asserted only with FNNC_STRICT_CHECK=1.
if [ "${FNNC_STRICT_CHECK:-0}" = 1 ]; then
	must_fail relu "$G/model_mlp.fnn"
	FNNC_BREAK_GRAD=relu $TO bin/fnnc check "$G/relu.fnn" --batch 16 >"$tmp/out" 2>&1
	st=$?
	[ $st -eq 1 ] || problem "FNNC_BREAK_GRAD=relu fnnc check $G/relu.fnn --batch 16: expected exit 1, got $st: $(tail -n 1 "$tmp/out")"
fi

# Breaking an op the model does not use changes nothing.
FNNC_BREAK_GRAD=conv2d $TO bin/fnnc check "$G/relu.fnn" >"$tmp/out" 2>"$tmp/err" ||
	problem "FNNC_BREAK_GRAD=conv2d fnnc check $G/relu.fnn (no conv2d in it): expected exit 0, got $?"
bin/fnnc "$G/relu.fnn" --emit=grad >"$tmp/a" 2>&1
FNNC_BREAK_GRAD=conv2d bin/fnnc "$G/relu.fnn" --emit=grad >"$tmp/b" 2>&1
cmp -s "$tmp/a" "$tmp/b" || problem "FNNC_BREAK_GRAD=conv2d changed the --emit=grad output of $G/relu.fnn, which has no conv2d"
# ... and breaking one that it does use shows in the gradient IR.
FNNC_BREAK_GRAD=relu bin/fnnc "$G/relu.fnn" --emit=grad >"$tmp/c" 2>&1
cmp -s "$tmp/a" "$tmp/c" && problem "FNNC_BREAK_GRAD=relu did not change the --emit=grad output of $G/relu.fnn"

end_if_problems
echo "PASS: fnnc check catches gradients scaled by 1.1"
