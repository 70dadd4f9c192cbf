#!/bin/sh
# test_freeze.sh - training with frozen layers, end to end, on 512 MNIST images.
#
# A CNN whose convolutions are frozen (freeze conv1..conv2), whose dense1
# trains its bias only (trainable=bias) and whose dense2 trains at half the
# learning rate (lr_mult=0.5), with Adam:
#   - the start-up summary counts the trainable and frozen parameters;
#   - after 20 steps the frozen tensors are bitwise the initial ones and every
#     trainable one has changed (checkpoints of --steps 0 and --steps 20);
#   - the checkpoint holds Adam's m and v for the trainable tensors only;
#   - --threads 1 and 2 log identical losses and save identical weights;
#   - --resume from step 20 to 30 matches 30 steps in one run; resuming with
#     other layers frozen is refused with a hint;
#   - --init-partial into a model with a new head skips the file's old head
#     and leaves the new one at its initialisation, naming both;
#   - lr_mult=0.25 on one layer of an MLP (SGD, one step from the same
#     initialisation): that layer moves a quarter as far, the others as far.
# Needs /usr/bin/python3 (no numpy) to read the checkpoints.
. "$(dirname "$0")/lib.sh"
need_python
need_fnnc
need_mnist
make_tmp
make_mnist "$tmp/d" 512 200

cat >"$tmp/fz.fnn" <<'FNN'
model fz {
    input  x: [1, 28, 28]
    target y: class(10)
    h = x -> conv2d(4, kernel=3, pad=1) -> relu -> maxpool(2)
    h = h -> conv2d(8, kernel=3, pad=1) -> relu -> maxpool(2)
    h = h -> flatten -> dense(32, trainable=bias) -> relu
    logits = h -> dense(10, lr_mult=0.5)
    loss cross_entropy(logits, y)
    freeze conv1..conv2
}
optimizer adam(lr=0.01)
data {
    train = idx("mnist/train-images-idx3-ubyte", "mnist/train-labels-idx1-ubyte")
    test  = idx("mnist/t10k-images-idx3-ubyte",  "mnist/t10k-labels-idx1-ubyte")
    normalize(mean=0.1307, std=0.3081)
}
train { batch=32, epochs=4, shuffle=true, seed=3 }
FNN

# The summary: frozen 40 + 296 + 12544 (dense1.weight), trainable 32 + 320 + 10.
bin/fnnc run "$tmp/fz.fnn" --data "$tmp/d" --steps 0 --save "$tmp/init.st" >"$tmp/out" 2>"$tmp/err" ||
	fail "--steps 0: exit $?: $(cat "$tmp/err")"
cat "$tmp/out"
grep -q '^fz: 13242 parameters: 362 trainable, 12880 frozen$' "$tmp/out" ||
	fail "expected the trainable and frozen counts in the summary"
grep -q '^memory: parameters .*, gradients .*, optimizer state .*, activations .* (batch 32)' "$tmp/out" ||
	fail "expected the memory line in the summary"

for t in 1 2; do
	bin/fnnc run "$tmp/fz.fnn" --data "$tmp/d" --steps 20 --threads $t --quiet --save "$tmp/t$t.st" \
		--log "$tmp/t$t.csv" >/dev/null 2>"$tmp/err" || fail "--threads $t: exit $?: $(cat "$tmp/err")"
	cut -d, -f1-5 "$tmp/t$t.csv" >"$tmp/t$t.cut"
done
cmp -s "$tmp/t1.cut" "$tmp/t2.cut" || fail "--threads 1 and 2 differ: $(tail -n1 "$tmp/t1.cut") vs $(tail -n1 "$tmp/t2.cut")"
echo "threads 1 and 2: $(tail -n1 "$tmp/t1.cut")"

$PY - "$tmp/init.st" "$tmp/t1.st" "$tmp/t2.st" <<'PYEOF' || exit 1
import sys
sys.path.insert(0, "tests/e2e")
from st_read import raw as load

init, t1, t2 = (load(p) for p in sys.argv[1:4])
frozen = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "dense1.weight"]
trainable = ["dense1.bias", "dense2.weight", "dense2.bias"]
bad = 0
for k in frozen:
    if t1[k] != init[k]:
        print("FAIL: frozen %s changed" % k)
        bad = 1
for k in trainable:
    if t1[k] == init[k]:
        print("FAIL: trainable %s did not change" % k)
        bad = 1
state = sorted(k for k in t1 if ".__" in k)
want = sorted(k + s for k in trainable for s in (".__adam_m", ".__adam_v"))
if state != want:
    print("FAIL: optimizer state tensors %s, expected %s" % (state, want))
    bad = 1
if t1 != t2:
    print("FAIL: the checkpoints of --threads 1 and 2 differ")
    bad = 1
if not bad:
    print("frozen tensors unchanged, trainable ones changed; state only for %s" % ", ".join(trainable))
sys.exit(bad)
PYEOF

# --resume from step 20 to 30 against 30 steps in one run.
bin/fnnc run "$tmp/fz.fnn" --data "$tmp/d" --steps 30 --quiet --log "$tmp/s30.csv" >/dev/null 2>"$tmp/err" ||
	fail "--steps 30: exit $?: $(cat "$tmp/err")"
bin/fnnc run "$tmp/fz.fnn" --data "$tmp/d" --steps 30 --quiet --resume "$tmp/t1.st" --log "$tmp/r30.csv" \
	>/dev/null 2>"$tmp/err" || fail "--resume: exit $?: $(cat "$tmp/err")"
[ "$(tail -n1 "$tmp/s30.csv" | cut -d, -f2-5)" = "$(tail -n1 "$tmp/r30.csv" | cut -d, -f2-5)" ] ||
	fail "--resume differs: $(tail -n1 "$tmp/s30.csv") vs $(tail -n1 "$tmp/r30.csv")"
echo "resume: ok"
# Resuming with other layers frozen: refused, naming the state tensors, with a hint.
sed '/freeze conv1..conv2/d' "$tmp/fz.fnn" >"$tmp/unfrozen.fnn"
bin/fnnc run "$tmp/unfrozen.fnn" --data "$tmp/d" --steps 30 --quiet --resume "$tmp/t1.st" >/dev/null 2>"$tmp/err" &&
	fail "--resume with other layers frozen: expected exit 1"
grep -q 'missing tensor conv1.weight.__adam_m' "$tmp/err" && grep -q 'hint: only the optimizer state differs' "$tmp/err" ||
	fail "--resume with other layers frozen: expected the missing state and a hint, got: $(cat "$tmp/err")"

# A new head: --init-partial skips dense2 of the file and leaves head at its initialisation.
sed 's/dense(10, lr_mult=0.5)/dense(10) as head/' "$tmp/fz.fnn" >"$tmp/nh.fnn"
bin/fnnc run "$tmp/nh.fnn" --data "$tmp/d" --steps 0 --init "$tmp/t1.st" >/dev/null 2>"$tmp/err" &&
	fail "--init without --init-partial: expected exit 1"
grep -q 'unexpected tensor dense2.weight' "$tmp/err" || fail "expected dense2.weight to be unexpected: $(cat "$tmp/err")"
bin/fnnc run "$tmp/nh.fnn" --data "$tmp/d" --steps 0 --init "$tmp/t1.st" --init-partial >/dev/null 2>"$tmp/err" ||
	fail "--init-partial: exit $?: $(cat "$tmp/err")"
cat "$tmp/err"
grep -q 'not in the file, left at their initialisation' "$tmp/err" && grep -q '  head.weight \[10,32\]' "$tmp/err" &&
	grep -q 'not in the model, not loaded' "$tmp/err" && grep -q '  dense2.weight \[10,32\]' "$tmp/err" ||
	fail "--init-partial: expected the new and the skipped tensors to be named"
echo "init-partial with a new head: ok"

# lr_mult: one SGD step with and without lr_mult=0.25 on dense2.
cat >"$tmp/lm.fnn" <<'FNN'
model lm {
    input  x: [1, 28, 28]
    target y: class(10)
    h = x -> flatten -> dense(16) -> relu
    logits = h -> dense(10)
    loss cross_entropy(logits, y)
}
optimizer sgd(lr=0.1)
data {
    train = idx("mnist/train-images-idx3-ubyte", "mnist/train-labels-idx1-ubyte")
    test  = idx("mnist/t10k-images-idx3-ubyte",  "mnist/t10k-labels-idx1-ubyte")
    normalize(mean=0.1307, std=0.3081)
}
train { batch=64, epochs=1, shuffle=true, seed=5 }
FNN
sed 's/dense(10)/dense(10, lr_mult=0.25)/' "$tmp/lm.fnn" >"$tmp/lm4.fnn"
for m in lm lm4; do
	bin/fnnc run "$tmp/$m.fnn" --data "$tmp/d" --steps 0 --save "$tmp/$m.0.st" >/dev/null 2>"$tmp/err" &&
		bin/fnnc run "$tmp/$m.fnn" --data "$tmp/d" --steps 1 --quiet --save "$tmp/$m.1.st" >/dev/null 2>"$tmp/err" ||
		fail "$m: exit $?: $(cat "$tmp/err")"
done
$PY - "$tmp/lm.0.st" "$tmp/lm.1.st" "$tmp/lm4.0.st" "$tmp/lm4.1.st" <<'PYEOF' || exit 1
import sys
sys.path.insert(0, "tests/e2e")
from st_read import floats as load

a0, a1, b0, b1 = (load(p) for p in sys.argv[1:5])
bad = 0
for k in ("dense1.weight", "dense1.bias", "dense2.weight", "dense2.bias"):
    if a0[k] != b0[k]:
        print("FAIL: %s: the two models start differently" % k)
        bad = 1
        continue
    da = sum(abs(x - y) for x, y in zip(a1[k], a0[k]))
    db = sum(abs(x - y) for x, y in zip(b1[k], b0[k]))
    want = 0.25 if k.startswith("dense2") else 1.0
    r = db / da if da > 0 else float("nan")
    ok = abs(r - want) < 0.01 * want
    print("%-14s moved %.6g with lr_mult, %.6g without: ratio %.4f (want %g) %s" % (k, db, da, r, want, "ok" if ok else "FAIL"))
    bad |= not ok
sys.exit(bad)
PYEOF

# models/finetune.fnn (make finetune-demo): its training step has no convolution
# gradient kernels, and the summary counts the frozen convolutions.
bin/fnnc models/finetune.fnn --emit=fused >"$tmp/ft.fused" 2>"$tmp/err" || fail "finetune.fnn: $(cat "$tmp/err")"
sed -n '/^# train_step/,/^# eval_step/p' "$tmp/ft.fused" | grep '^kernel' >"$tmp/ft.k"
grep -q 'conv2d_dw\|conv2d_dx' "$tmp/ft.k" && fail "finetune.fnn: convolution gradients in the training step: $(grep conv2d_d "$tmp/ft.k")"
grep -q 'grad fc.weight' "$tmp/ft.k" && grep -q 'grad head.weight' "$tmp/ft.k" || fail "finetune.fnn: expected the head's gradients"
bin/fnnc run models/finetune.fnn --steps 0 >"$tmp/out" 2>"$tmp/err" || fail "finetune.fnn --steps 0: $(cat "$tmp/err")"
grep -q '^finetune: 421642 parameters: 402826 trainable, 18816 frozen$' "$tmp/out" ||
	fail "finetune.fnn: unexpected summary: $(cat "$tmp/out")"
echo "models/finetune.fnn: no convolution gradients, 18816 frozen parameters"
