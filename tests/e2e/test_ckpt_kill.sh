#!/bin/sh
# test_ckpt_kill.sh - a checkpoint on disk is always whole.
#
# Trains models/mlp.fnn (a built trainer, 2000 MNIST images, 32 steps of 64
# per epoch) with --save-every 5, which rewrites the 2.8 MB checkpoint every
# few milliseconds, and kills it with SIGKILL at 6 random moments after the
# first save. Each time, the file on disk must load: it is at a step that is a
# multiple of 5, and a --resume with --steps bounded (3 more steps) runs and
# exits 0 and saves step + 3. Leftover temporary files are allowed (the rename
# never happened), the checkpoint itself never half-written.
. "$(dirname "$0")/lib.sh"

need_fnnc
need_mnist
make_tmp
pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$tmp"' EXIT
D=$tmp/d
mkdir -p "$D/mnist"
idx_head "$M/train-images-idx3-ubyte" "$M/train-labels-idx1-ubyte" 2000 \
	"$D/mnist/train-images-idx3-ubyte" "$D/mnist/train-labels-idx1-ubyte"
# No test set: a model file without one, so that evaluation does not slow the steps.
grep -v 't10k' models/mlp.fnn >"$tmp/mlp.fnn"
bin/fnnc "$tmp/mlp.fnn" -o "$tmp/mlp" >/dev/null 2>"$tmp/err" || fail "fnnc -o: $(cat "$tmp/err")"

# The sleeps: 6 pseudo-random delays in [0.05, 1.0) seconds (a fixed seed per day would also do).
delays=$(awk -v seed="$$" 'BEGIN { srand(seed); for (i = 0; i < 6; i++) printf "%.3f ", 0.05 + 0.95 * rand() }')
ck=$tmp/ck.st
k=0
for d in $delays; do
	k=$((k + 1))
	rm -f "$ck"
	"$tmp/mlp" --data "$D" --quiet --epochs 100000 --save-every 5 --save "$ck" >/dev/null 2>"$tmp/err" &
	pid=$!
	i=0
	while [ ! -f "$ck" ] && [ $i -lt 300 ]; do
		sleep 0.05
		i=$((i + 1))
	done
	[ -f "$ck" ] || fail "no checkpoint after 15 s: $(cat "$tmp/err")"
	sleep "$d"
	kill -9 $pid
	wait $pid 2>/dev/null
	pid=
	hl=$(od -An -tu1 -N8 "$ck" | awk '{ v = 0; for (i = NF; i >= 1; i--) v = v * 256 + $i; print v }')
	step=$(head -c $((8 + hl)) "$ck" | sed -n 's/.*"step":"\([0-9]*\)".*/\1/p')
	[ -n "$step" ] || fail "kill $k: no step in the checkpoint's header"
	[ $((step % 5)) -eq 0 ] || fail "kill $k: the checkpoint is at step $step, not a multiple of 5"
	"$tmp/mlp" --data "$D" --quiet --epochs 100000 --resume "$ck" --steps $((step + 3)) --save "$tmp/r.st" \
		>/dev/null 2>"$tmp/err" || fail "kill $k after ${d}s: resume from step $step failed (exit $?): $(cat "$tmp/err")"
	grep -q '"step":"'$((step + 3))'"' "$tmp/r.st" || fail "kill $k: the resumed run did not save step $((step + 3))"
	echo "kill -9 $k after ${d}s: checkpoint at step $step loads and resumes"
done
echo "PASS: 6 kills, every checkpoint on disk whole"
