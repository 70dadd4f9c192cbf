#!/bin/sh
# test_adamw_schedule.sh - AdamW and the learning-rate schedules against PyTorch.
#
# tests/parity/make_adamw_fixtures.py ran PyTorch once and saved:
#   - for each tests/parity/sched_NAME.fnn (sgd with schedule=..., 12 steps of
#     one row), the lr that torch.optim.lr_scheduler gives at each step
#     (StepLR, CosineAnnealingLR, LinearLR warmup chained by SequentialLR,
#     stepped once per optimizer step). The lr column fnnc logs with
#     --log-every 1 must be those values, and those of the formula in
#     docs/language.md (computed here);
#   - weights, a batch, and the weights after 5 steps on it of
#     torch.optim.AdamW (decoupled weight decay) under a warmup + cosine
#     schedule (adamw), SGD with momentum and weight decay under StepLR
#     (sgd_wd), and Adam with weight decay after a warmup (adam_wd); fnnc's
#     5 steps from the same weights must give them.
# Then: a run resumed in the middle of a schedule logs the same lr as one
# that was not stopped, --lr scales the whole schedule, and an --lr that is
# not above a cosine schedule's min_lr is an error.
# Needs /usr/bin/python3 (no numpy, no torch) to compare.
. "$(dirname "$0")/lib.sh"
need_python
need_fnnc
make_tmp
P=tests/parity

# lr_col LOG: the lr column (the last one) of every row.
lr_col() { tail -n +2 "$1" | awk -F, '{ print $NF }'; }

# formula KIND W S GAMMA MIN_LR: docs/language.md's lr of steps 0..11 (base 0.1, T = 12).
formula() {
	awk -v k="$1" -v W="$2" -v S="$3" -v g="$4" -v m="$5" 'BEGIN {
		L = 0.1; T = 12; pi = atan2(0, -1)
		for (t = 0; t < T; t++) {
			u = t - W
			if (t < W) lr = L * (t + 1) / W
			else if (k == "step") lr = L * g ^ int(u / S)
			else if (k == "cosine") lr = m + (L - m) * (1 + cos(pi * u / (T - W))) / 2
			else lr = L
			printf "%.12g\n", lr
		}
	}'
}

for case in step:0:3:0.5:0 step_warmup:2:4:0.3:0 cosine:0:0:0:0.001 cosine_warmup:3:0:0:0.01 constant_warmup:4:0:0:0; do
	name=${case%%:*}
	# shellcheck disable=SC2046 # the fields of $case
	formula $(echo "$case" | sed 's/_warmup//' | tr ':' ' ') >"$tmp/$name.formula"
	bin/fnnc run $P/sched_$name.fnn --data $P --threads 1 --quiet --log-every 1 --log "$tmp/$name.csv" \
		>/dev/null 2>"$tmp/err" || fail "sched_$name: exit $?: $(tail -n 5 "$tmp/err")"
	head -n 1 "$tmp/$name.csv" | grep -q ',lr$' || fail "sched_$name: no lr column: $(head -n 1 "$tmp/$name.csv")"
	lr_col "$tmp/$name.csv" >"$tmp/$name.got"
	[ "$(wc -l <"$tmp/$name.got")" -eq 12 ] || fail "sched_$name: expected 12 rows, got $(wc -l <"$tmp/$name.got")"
	paste -d' ' "$tmp/$name.got" $P/sched_$name.lr | awk -v n="$name" '
		{ d = $1 - $2; if (d < 0) d = -d; if (d > 1e-7 * $2) { printf "FAIL: sched_%s step %d: lr %s, PyTorch %s\n", n, NR, $1, $2; bad = 1 } }
		END { exit bad }' || exit 1
	paste -d' ' "$tmp/$name.got" "$tmp/$name.formula" | awk -v n="$name" '
		{ d = $1 - $2; if (d < 0) d = -d; if (d > 1e-7 * $2) { printf "FAIL: sched_%s step %d: lr %s, the formula %s\n", n, NR, $1, $2; bad = 1 } }
		END { exit bad }' || exit 1
	echo "ok   sched_$name: 12 steps, lr $(tr '\n' ' ' <"$tmp/$name.got")"
done

# Resuming at step 5 of 12 continues the schedule where it was.
bin/fnnc run $P/sched_cosine_warmup.fnn --data $P --threads 1 --quiet --steps 5 --save "$tmp/c5.st" \
	>/dev/null 2>"$tmp/err" || fail "--steps 5 --save: $(tail -n 3 "$tmp/err")"
bin/fnnc run $P/sched_cosine_warmup.fnn --data $P --threads 1 --quiet --resume "$tmp/c5.st" --log-every 1 \
	--log "$tmp/res.csv" >/dev/null 2>"$tmp/err" || fail "--resume: $(tail -n 3 "$tmp/err")"
[ "$(lr_col "$tmp/res.csv")" = "$(lr_col "$tmp/cosine_warmup.csv" | tail -n 7)" ] ||
	fail "a resumed run logs another lr: $(lr_col "$tmp/res.csv" | tr '\n' ' ')"
echo "ok   resumed at step 5: the same lr for steps 6-12"

# --lr 0.2 doubles every lr of the step schedule (min_lr aside, which is absolute).
bin/fnnc run $P/sched_step.fnn --data $P --threads 1 --quiet --lr 0.2 --log-every 1 --log "$tmp/lr2.csv" \
	>/dev/null 2>&1 || fail "--lr 0.2 failed"
lr_col "$tmp/lr2.csv" | paste -d' ' - "$tmp/step.got" | awk '{ d = $1 - 2 * $2; if (d < 0) d = -d; if (d > 1e-7 * $1) bad = 1 } END { exit bad }' ||
	fail "--lr 0.2 should double the step schedule's lr"
echo "ok   --lr scales the schedule"

# An Adam checkpoint does not resume under AdamW (the same state, another rule).
bin/fnnc run $P/adam_wd.fnn --data $P --threads 1 --quiet --steps 2 --save "$tmp/adam.st" >/dev/null 2>&1 ||
	fail "adam_wd --steps 2 --save failed"
sed 's/^optimizer adam(/optimizer adamw(/' $P/adam_wd.fnn >"$tmp/adamw_resume.fnn"
bin/fnnc run "$tmp/adamw_resume.fnn" --data $P --resume "$tmp/adam.st" --quiet >/dev/null 2>"$tmp/err"
st=$?
[ $st -eq 1 ] || fail "resuming an adam checkpoint with adamw: expected exit 1, got $st"
grep -q "optimizer 'adam', the model uses 'adamw'" "$tmp/err" || fail "adam -> adamw resume: $(cat "$tmp/err")"
echo "ok   an adam checkpoint does not resume under adamw"

# An --lr at or below the cosine schedule's floor is an error.
bin/fnnc run $P/sched_cosine.fnn --data $P --lr 0.001 --steps 0 >/dev/null 2>"$tmp/err" &&
	fail "--lr equal to min_lr should be an error"
grep -q "not above the cosine schedule's min_lr" "$tmp/err" || fail "--lr below min_lr: $(cat "$tmp/err")"
echo "ok   --lr at min_lr is refused"

# AdamW, and SGD and Adam with weight decay: 5 steps from PyTorch's weights on its batch.
for name in adamw sgd_wd adam_wd; do
	bin/fnnc run $P/$name.fnn --data $P --init $P/adamw.init.st --threads 1 --quiet --save "$tmp/$name.st" \
		>/dev/null 2>"$tmp/err" || fail "$name: exit $?: $(tail -n 5 "$tmp/err")"
	$PY - "$P/$name.steps.st" "$tmp/$name.st" "$name" <<'PYEOF' || exit 1
import sys
sys.path.insert(0, "tests/e2e")
from st_read import floats as load

want, got, name = load(sys.argv[1]), load(sys.argv[2]), sys.argv[3]
bad = 0
for k, w in want.items():
    g = got.get(k)
    if g is None or len(g) != len(w):
        print("FAIL: %s: tensor %s missing or of another size" % (name, k))
        bad += 1
        continue
    err = max(abs(a - b) / max(1e-2, abs(a)) for a, b in zip(w, g))
    ok = err <= 1e-4
    bad += not ok
    print("%s %-8s %-12s max rel diff %.1e" % ("ok  " if ok else "FAIL", name, k, err))
sys.exit(1 if bad else 0)
PYEOF
done
echo "PASS: AdamW, SGD and Adam with weight decay, and the schedules match PyTorch"
