#!/bin/sh
# test_ckpt_resume.sh - safetensors checkpoints: --save, --save-every, --resume,
# --init, --init-partial, --eval, and SIGTERM, on models/mlp.fnn with the first
# 2000 MNIST training images (32 steps of 64 per epoch) and 500 test images.
#
#   - 2 epochs in one run give bitwise the same weights and Adam state (the
#     data section of the file) as 1 epoch + save + resume to --epochs 2, as a
#     stop at step 20 (mid-epoch) + resume, and as a resume from a
#     --save-every file; the resumed logs match too; in fnnc run and a built
#     trainer, with different --threads;
#   - the header has the PyTorch names and shapes and the metadata;
#   - resuming with another --batch is refused, other --threads only warned;
#   - --init loads the weights (its --eval equals the --resume --eval), and a
#     model of other shapes is refused, listing every offending tensor with
#     both shapes; --init-partial loads a file with missing tensors and names them;
#   - --eval prints loss, accuracy, the confusion matrix and per-class
#     accuracy, and writes one log row;
#   - SIGTERM during training saves and exits 143; the file resumes.
. "$(dirname "$0")/lib.sh"
need_fnnc
need_mnist
make_tmp
D=$tmp/d
make_mnist "$D" 2000 500

# hlen FILE: the safetensors header length; data FILE: the data section.
hlen() { od -An -tu1 -N8 "$1" | awk '{ v = 0; for (i = NF; i >= 1; i--) v = v * 256 + $i; print v }'; }
data() { tail -c +$((9 + $(hlen "$1"))) "$1"; }
header() { head -c $((8 + $(hlen "$1"))) "$1" | tail -c +9; }
same_data() { data "$1" >"$tmp/d1" && data "$2" >"$tmp/d2" && cmp -s "$tmp/d1" "$tmp/d2"; }

run() { bin/fnnc run models/mlp.fnn --data "$D" --quiet "$@"; }

run --epochs 2 --threads 2 --save "$tmp/full.st" --log "$tmp/full.csv" 2>"$tmp/err" ||
	fail "2 epochs with --save: exit $?: $(tail -n 3 "$tmp/err")"
[ -s "$tmp/full.st" ] || fail "--save wrote no file"
ls "$tmp" | grep -q '\.tmp' && fail "a temporary file was left behind: $(ls "$tmp")"

# The header: names, shapes, dtype, metadata.
h=$(header "$tmp/full.st")
for want in '"dense1.weight":{"dtype":"F32","shape":[256,784]' '"dense1.bias":{"dtype":"F32","shape":[256]' \
	'"dense3.weight":{"dtype":"F32","shape":[10,128]' '"dense2.bias.__adam_m":' '"dense2.bias.__adam_v":' \
	'"format":"fnnc-checkpoint 1"' '"model":"mlp"' '"step":"64"' '"epoch":"2"' '"position":"0"' '"seed":"1"' \
	'"batch":"64"' '"optimizer":"adam"' '"checksum":"fnv1a64:'; do
	case "$h" in *"$want"*) ;; *) fail "expected $want in the header, found: $(echo "$h" | head -c 600)" ;; esac
done
[ $(($(hlen "$tmp/full.st") % 8)) -eq 0 ] || fail "the header length is not a multiple of 8"
# 3 tensors of 784*256+256+256*128+128+128*10+10 floats: params, m, v.
[ "$(data "$tmp/full.st" | wc -c)" -eq $((3 * 4 * 235146)) ] || fail "unexpected data size"

# 1 epoch, save, resume to 2 epochs (with another thread count).
run --epochs 1 --threads 2 --save "$tmp/e1.st" --log "$tmp/e1.csv" 2>"$tmp/err" || fail "1 epoch: exit $?"
run --epochs 2 --threads 1 --resume "$tmp/e1.st" --save "$tmp/e2.st" --log "$tmp/e2.csv" 2>"$tmp/err" ||
	fail "resume to 2 epochs: exit $?: $(tail -n 3 "$tmp/err")"
grep -q 'warning:.*--threads 2.*--threads 1' "$tmp/err" || fail "expected a warning about --threads, got: $(cat "$tmp/err")"
same_data "$tmp/full.st" "$tmp/e2.st" || fail "1 epoch + resume differs from 2 epochs in one run"
[ "$(tail -n 1 "$tmp/e2.csv" | cut -d, -f1-5)" = "$(tail -n 1 "$tmp/full.csv" | cut -d, -f1-5)" ] ||
	fail "resumed log row $(tail -n 1 "$tmp/e2.csv") differs from $(tail -n 1 "$tmp/full.csv")"
echo "epoch-boundary resume: bitwise identical"

# Stop mid-epoch (step 20 of 32), resume.
run --epochs 2 --steps 20 --save "$tmp/s20.st" 2>"$tmp/err" || fail "--steps 20: exit $?"
case "$(header "$tmp/s20.st")" in *'"step":"20","epoch":"0","position":"20"'*) ;; *) fail "expected step 20, epoch 0, position 20 in $(header "$tmp/s20.st" | head -c 300)" ;; esac
run --epochs 2 --resume "$tmp/s20.st" --save "$tmp/s20r.st" --log "$tmp/s20r.csv" 2>"$tmp/err" ||
	fail "resume from step 20: exit $?: $(tail -n 3 "$tmp/err")"
same_data "$tmp/full.st" "$tmp/s20r.st" || fail "stop at step 20 + resume differs from 2 epochs in one run"
[ "$(cut -d, -f1-5 "$tmp/s20r.csv")" = "$(cut -d, -f1-5 "$tmp/full.csv")" ] ||
	fail "the log after a mid-epoch resume differs: $(cat "$tmp/s20r.csv") vs $(cat "$tmp/full.csv")"
echo "mid-epoch resume: bitwise identical"

# --save-every 7 with --steps 45: saves at steps 7, 14, ..., 42, then at the end.
run --epochs 2 --steps 45 --save-every 7 --save "$tmp/every.st" 2>"$tmp/err" || fail "--save-every: exit $?"
case "$(header "$tmp/every.st")" in *'"step":"45"'*) ;; *) fail "expected the final save at step 45" ;; esac
run --epochs 2 --resume "$tmp/every.st" --save "$tmp/everyr.st" 2>"$tmp/err" || fail "resume from --save-every: exit $?"
same_data "$tmp/full.st" "$tmp/everyr.st" || fail "resume at step 45 differs from 2 epochs in one run"

# A built trainer resumes a checkpoint of fnnc run, with the same result.
bin/fnnc models/mlp.fnn -o "$tmp/mlp" >/dev/null 2>"$tmp/err" || fail "fnnc -o: $(tail -n 3 "$tmp/err")"
"$tmp/mlp" --data "$D" --quiet --epochs 2 --resume "$tmp/s20.st" --save "$tmp/aot.st" 2>"$tmp/err" ||
	fail "the built trainer could not resume: exit $?: $(tail -n 3 "$tmp/err")"
same_data "$tmp/full.st" "$tmp/aot.st" || fail "the built trainer's resume differs"
echo "built trainer resume: bitwise identical"

# --epochs counts the total: resuming a 2-epoch file to --epochs 2 trains nothing.
run --epochs 2 --resume "$tmp/full.st" --save "$tmp/again.st" 2>"$tmp/err" || fail "resume of a finished run: exit $?"
same_data "$tmp/full.st" "$tmp/again.st" || fail "resuming a finished run changed the weights"

# Refusals.
run --epochs 2 --batch 32 --resume "$tmp/e1.st" >/dev/null 2>"$tmp/err" && fail "resume with another --batch: expected exit 1"
grep -q 'error: .*--batch 64.*--batch 32' "$tmp/err" || fail "expected an error naming both batch sizes, got: $(cat "$tmp/err")"
bin/fnnc run models/regression.fnn --steps 1 --resume "$tmp/e1.st" >/dev/null 2>"$tmp/err" &&
	fail "resume of another model: expected exit 1"
grep -q "error: .*model 'mlp'" "$tmp/err" || fail "expected an error naming the model, got: $(cat "$tmp/err")"
run --init "$tmp/e1.st" --resume "$tmp/e1.st" >/dev/null 2>"$tmp/err" && fail "--init with --resume: expected exit 1"
run --save-every 5 >/dev/null 2>"$tmp/err" && fail "--save-every without --save: expected exit 1"
run --eval >/dev/null 2>"$tmp/err" && fail "--eval without weights: expected exit 1"
# An unwritable --save fails before training.
run --save "$tmp/no/such/dir/x.st" >/dev/null 2>"$tmp/err" && fail "--save into a missing directory: expected exit 1"
grep -q "error: cannot write the checkpoint '$tmp/no/such/dir/x.st" "$tmp/err" ||
	fail "--save into a missing directory: got $(cat "$tmp/err")"

# --eval with --resume and with --init agree; the output has the confusion matrix.
run --eval --resume "$tmp/full.st" --log "$tmp/ev1.csv" >"$tmp/ev1" 2>"$tmp/err" || fail "--eval --resume: exit $?: $(cat "$tmp/err")"
run --eval --init "$tmp/full.st" --log "$tmp/ev2.csv" >"$tmp/ev2" 2>"$tmp/err" || fail "--eval --init: exit $?: $(cat "$tmp/err")"
cat "$tmp/ev1"
grep -q 'test_loss' "$tmp/ev1" && grep -q 'confusion matrix' "$tmp/ev1" && grep -q 'class 9: ' "$tmp/ev1" ||
	fail "--eval: expected the loss, a confusion matrix and per-class accuracy"
[ "$(head -n 1 "$tmp/ev1")" = "$(head -n 1 "$tmp/ev2")" ] || fail "--eval with --init and --resume differ"
[ "$(wc -l <"$tmp/ev1.csv")" -eq 2 ] || fail "--eval --log: expected a header and one row"
acc=$(tail -n 1 "$tmp/ev1.csv" | cut -d, -f5)
acc2=$(tail -n 1 "$tmp/full.csv" | cut -d, -f5)
[ "$acc" = "$acc2" ] || fail "--eval test_acc $acc differs from the training run's final $acc2"
# The confusion matrix adds up to 500 and its diagonal to the accuracy.
awk -v acc="$acc" '/^confusion/ { on = 1; getline; next } /^per-class/ { on = 0 }
	on { for (i = 2; i <= NF; i++) { t += $i; if (i - 2 == $1) d += $i } }
	END { if (t != 500 || d != acc * 500) { print "matrix total " t " diagonal " d; exit 1 } }' "$tmp/ev1" ||
	fail "the confusion matrix does not add up"

# --init with other shapes: every offending tensor, with both shapes.
sed 's/dense(256)/dense(200)/; s/dense(10)$/dense(10) -> relu/' models/mlp.fnn >"$tmp/mlp200.fnn"
bin/fnnc run "$tmp/mlp200.fnn" --data "$D" --steps 0 --init "$tmp/full.st" >/dev/null 2>"$tmp/err" &&
	fail "--init with other shapes: expected exit 1"
cat "$tmp/err"
grep -q 'dense1.weight: the model has \[200,784\], the file has \[256,784\]' "$tmp/err" &&
	grep -q 'dense1.bias: the model has \[200\], the file has \[256\]' "$tmp/err" &&
	grep -q 'dense2.weight: the model has \[128,200\], the file has \[128,256\]' "$tmp/err" ||
	fail "expected every mismatched tensor with both shapes"
# A model with one more layer: missing tensors; --init-partial loads the rest.
sed 's/logits = h -> dense(10)/h = h -> dense(64) -> relu\n    logits = h -> dense(10)/' models/mlp.fnn >"$tmp/mlp4.fnn"
bin/fnnc run "$tmp/mlp4.fnn" --data "$D" --steps 0 --init "$tmp/full.st" >/dev/null 2>"$tmp/err" &&
	fail "--init with missing tensors: expected exit 1"
grep -q 'missing tensor dense4' "$tmp/err" || fail "expected the missing tensors to be named, got: $(cat "$tmp/err")"
grep -q 'shape mismatch for dense3.weight' "$tmp/err" || fail "expected dense3.weight's shape mismatch, got: $(cat "$tmp/err")"
# A file with a tensor the model lacks.
bin/fnnc run "$tmp/mlp4.fnn" --data "$D" --steps 0 --save "$tmp/m4.st" >/dev/null 2>&1 || fail "--steps 0 --save"
bin/fnnc run models/mlp.fnn --data "$D" --steps 0 --init "$tmp/m4.st" >/dev/null 2>"$tmp/err" &&
	fail "--init with unexpected tensors: expected exit 1"
grep -q 'unexpected tensor dense4.weight \[10,64\]' "$tmp/err" || fail "expected the unexpected tensor, got: $(cat "$tmp/err")"
# --init-partial: a model whose dense1..dense3 match the file and dense4 is new.
sed 's/h = h -> dense(128) -> relu/h = h -> dense(128) -> relu\n    h = h -> dense(10) -> relu/' models/mlp.fnn >"$tmp/mlpx.fnn"
bin/fnnc run "$tmp/mlpx.fnn" --data "$D" --steps 0 --init "$tmp/full.st" --init-partial --save "$tmp/px.st" \
	>/dev/null 2>"$tmp/err" || fail "--init-partial: exit $?: $(cat "$tmp/err")"
grep -q 'left at their initialisation' "$tmp/err" && grep -q 'dense4.weight \[10,10\]' "$tmp/err" ||
	fail "--init-partial: expected the tensors left at their initialisation, got: $(cat "$tmp/err")"
echo "--init checks: ok"

# SIGTERM during training: finishes the step, saves, exits 143; the file resumes.
# The log's header is written just before training starts.
bin/fnnc run models/mlp.fnn --data "$D" --quiet --epochs 1000 --save "$tmp/sig.st" --log "$tmp/sig.csv" \
	>/dev/null 2>"$tmp/err" &
pid=$!
i=0
while [ $i -lt 600 ] && ! [ -s "$tmp/sig.csv" ]; do
	sleep 0.1
	i=$((i + 1))
done
sleep 0.5
kill -TERM $pid
wait $pid
st=$?
[ $st -eq 143 ] || fail "SIGTERM: expected exit 143, got $st: $(cat "$tmp/err")"
grep -q "terminated at step .*saved to" "$tmp/err" || fail "SIGTERM: expected a message, got: $(cat "$tmp/err")"
run --epochs 1000 --steps 1 --resume "$tmp/sig.st" 2>"$tmp/err" >/dev/null || fail "resume after SIGTERM: exit $?: $(cat "$tmp/err")"
# SIGINT likewise, with exit 130 (and without --save: nothing is written).
bin/fnnc run models/mlp.fnn --data "$D" --quiet --epochs 1000 --log "$tmp/int.csv" >/dev/null 2>"$tmp/err" &
pid=$!
i=0
while [ $i -lt 600 ] && ! [ -s "$tmp/int.csv" ]; do
	sleep 0.1
	i=$((i + 1))
done
sleep 0.5
kill -INT $pid
wait $pid
st=$?
[ $st -eq 130 ] || fail "SIGINT: expected exit 130, got $st: $(cat "$tmp/err")"
grep -q "interrupted at step [0-9]*$" "$tmp/err" || fail "SIGINT: expected a message, got: $(cat "$tmp/err")"
echo "SIGTERM and SIGINT: ok"
echo "PASS: checkpoints round-trip, resume is bitwise exact"
