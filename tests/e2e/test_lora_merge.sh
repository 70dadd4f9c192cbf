#!/bin/sh
# test_lora_merge.sh - LoRA fine-tuning from a checkpoint, and --merge-lora.
#
# tests/e2e/lora_base.fnn (a small CNN) trains 40 steps on 2000 MNIST images
# and is saved; lora_adapt.fnn (the same CNN with LoRA on the conv2d and the
# dense layer) starts from that checkpoint (--init --init-partial: the
# adapters keep their initialisation) and trains 30 steps. Then:
#   - the frozen base weights and biases are bitwise those of the base
#     checkpoint, and both adapters' A and B changed (B from zero);
#   - --merge-lora (with --steps 0 --init, which saves the loaded weights)
#     writes a checkpoint with exactly the base model's tensors, no adapters
#     and no optimizer state, that loads strictly (--init) into lora_base.fnn;
#     its conv1.weight and dense1.weight differ from the base checkpoint's;
#   - the base model with the merged weights and the adapter model give the
#     same predictions on 300 test images (class, and probability to 1e-5) and
#     the same --eval test loss (to 1e-5);
#   - --merge-lora without --save, or on a model without adapters, is an error.
# Needs /usr/bin/python3 to read the checkpoints.
. "$(dirname "$0")/lib.sh"
need_python
need_fnnc
need_mnist
make_tmp
use_timeout 300
D=$tmp/d
make_mnist "$D" 2000 300
B=tests/e2e/lora_base.fnn
A=tests/e2e/lora_adapt.fnn
run() { $TO bin/fnnc run "$@" --data "$D" --threads 1 --quiet 2>"$tmp/err" || fail "fnnc run $*: exit $?: $(tail -n 5 "$tmp/err")"; }

run $B --steps 40 --save "$tmp/base.st" >/dev/null
run $A --init "$tmp/base.st" --init-partial --steps 30 --save "$tmp/adapt.st" >/dev/null
grep -q "lora_A" "$tmp/err" || fail "--init-partial should list the adapters as missing: $(cat "$tmp/err")"
run $A --init "$tmp/adapt.st" --steps 0 --save "$tmp/merged.st" --merge-lora >/dev/null

$PY - "$tmp/base.st" "$tmp/adapt.st" "$tmp/merged.st" <<'PYEOF' || exit 1
import sys
sys.path.insert(0, "tests/e2e")
from st_read import raw as load

base, adapt, merged = (load(p) for p in sys.argv[1:4])
bad = []
weights = sorted(k for k in base if "__" not in k)
for k in weights:
    if adapt.get(k) != base[k]:
        bad.append("frozen %s changed in training" % k)
for layer in ("conv1", "dense1"):
    for ab in ("A", "B"):
        k = "%s.lora_%s.weight" % (layer, ab)
        if k not in adapt:
            bad.append("no %s in the adapter checkpoint" % k)
        elif ab == "B" and not any(adapt[k]):
            bad.append("%s is still zero after training" % k)
if sorted(merged) != weights:
    bad.append("the merged checkpoint holds %s, expected the base weights %s" % (sorted(merged), weights))
for k in ("conv1.weight", "dense1.weight"):
    if merged.get(k) == base[k]:
        bad.append("merged %s equals the base weight: nothing was folded in" % k)
for k in ("conv1.bias", "dense1.bias"):
    if merged.get(k) != base[k]:
        bad.append("merged %s differs from the base bias" % k)
for b in bad:
    print("FAIL: " + b)
print("checkpoints: %d base weights frozen, 4 adapters trained, merged file holds %s" % (len(weights), " ".join(sorted(merged))))
sys.exit(1 if bad else 0)
PYEOF

# The same outputs: --predict and --eval.
run $B --init "$tmp/merged.st" --predict "$D/mnist/t10k-images-idx3-ubyte" >"$tmp/pm"
run $A --init "$tmp/adapt.st" --predict "$D/mnist/t10k-images-idx3-ubyte" >"$tmp/pa"
[ "$(wc -l <"$tmp/pm")" -eq 300 ] || fail "expected 300 predictions, got $(wc -l <"$tmp/pm")"
paste -d' ' "$tmp/pm" "$tmp/pa" | awk '
	$1 != $3 { printf "FAIL: sample %d: class %s merged, %s with adapters\n", NR - 1, $1, $3; bad = 1 }
	{ d = $2 - $4; if (d < 0) d = -d; if (d > 1e-5) { printf "FAIL: sample %d: probability %s merged, %s with adapters\n", NR - 1, $2, $4; bad = 1 }
	  if (d > max) max = d }
	END { printf "predictions: 300 samples, same classes, max probability difference %.1e\n", max; exit bad }' || exit 1
run $B --init "$tmp/merged.st" --eval --log "$tmp/em.csv" >/dev/null
run $A --init "$tmp/adapt.st" --eval --log "$tmp/ea.csv" >/dev/null
lm=$(tail -n 1 "$tmp/em.csv" | cut -d, -f4)
la=$(tail -n 1 "$tmp/ea.csv" | cut -d, -f4)
awk -v a="$lm" -v b="$la" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= 1e-5 * (a > 1 ? a : 1)) }' ||
	fail "--eval test_loss: $lm merged, $la with adapters"
echo "eval: test_loss $lm merged, $la with adapters"

# Bad uses.
bin/fnnc run $A --data "$D" --steps 0 --merge-lora >/dev/null 2>"$tmp/e1" && fail "--merge-lora without --save should fail"
grep -q "needs '--save" "$tmp/e1" || fail "--merge-lora without --save: $(cat "$tmp/e1")"
bin/fnnc run $B --data "$D" --steps 0 --save "$tmp/x.st" --merge-lora >/dev/null 2>"$tmp/e2" &&
	fail "--merge-lora on a model without adapters should fail"
grep -q "no LoRA adapters" "$tmp/e2" || fail "--merge-lora without adapters: $(cat "$tmp/e2")"
echo "PASS: LoRA trains only its adapters, and the merged checkpoint gives the adapter model's outputs"
