#!/bin/sh
# test_profile.sh - --profile reports every kernel of the training step.
#
# The MLP trains 5 steps with --profile on 2 threads. Every train_step kernel
# that --emit=fused lists must appear with 5 calls and a fastest call no
# longer than its average (within the rounding of the total to 0.1 ms), and
# the summary line must give the step's cost from the fastest calls and the
# time spent outside the kernels.
. "$(dirname "$0")/lib.sh"

need_fnnc
make_tmp

bin/fnnc models/mlp.fnn -o "$tmp/mlp" || fail "cannot build models/mlp.fnn"
"$tmp/mlp" --steps 5 --threads 2 --quiet --profile >/dev/null 2>"$tmp/prof" || fail "the trainer exited $?"
bin/fnnc models/mlp.fnn --emit=fused 2>/dev/null |
	awk '/^# train_step/ { on = 1; next } /^# / { on = 0 } on && /^kernel / { sub(/\(.*/, "", $2); print $2 }' >"$tmp/kernels"
[ -s "$tmp/kernels" ] || fail "--emit=fused listed no train_step kernels"
grep -q '^  entry .* min_us$' "$tmp/prof" || fail "no min_us column: $(head -2 "$tmp/prof")"
while read -r k; do
	line=$(awk -v k="$k" '$1 == "train_step" && $2 == k' "$tmp/prof")
	[ -n "$line" ] || fail "kernel $k is missing from the profile"
	echo "$line" | awk '{ if ($5 != 5 || $6 * $5 > $3 * 1000 + 50) exit 1 }' ||
		fail "kernel $k: expected 5 calls and min_us <= average: $line"
done <"$tmp/kernels"
grep -Eq '^profile: train_step: [0-9.]+ us per call from the fastest call of each kernel; outside kernels: [0-9.]+ ms before the first kernel, [0-9.]+ ms between kernels$' "$tmp/prof" ||
	fail "no summary line: $(tail -1 "$tmp/prof")"
echo "profile: $(wc -l <"$tmp/kernels") kernels, $(tail -1 "$tmp/prof")"
