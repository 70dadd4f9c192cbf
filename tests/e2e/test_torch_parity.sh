#!/bin/sh
# test_torch_parity.sh - rnn, lstm and gru (and stacked, bidirectional lstm and
# gru) compute what torch.nn.RNN / LSTM / GRU compute, forwards and backwards.
#
# tests/parity/make_fixtures.py ran PyTorch once and saved, per case, the
# weights, a batch (CSV), the loss and the weights after one SGD step with
# lr=1 (w - dL/dw). Here fnnc starts from those weights (--init), trains one
# step on that batch and saves; the loss it logs must match PyTorch's and
# every saved tensor must match w - dL/dw, so both the forward pass and every
# gradient agree. lstm_bptt2 checks truncated backpropagation through time
# (train { bptt=2 }: PyTorch detaches the states before the last 2 steps),
# gru_clip gradient clipping by global norm (sgd(clip=0.05)), charlm an
# embedding, an lstm and a linear layer on every step of a text with the
# per-step cross-entropy (nn.Embedding, cross_entropy over the reshaped steps).
# Needs /usr/bin/python3 (no numpy, no torch) to compare.
. "$(dirname "$0")/lib.sh"
need_python
need_fnnc
make_tmp

P=tests/parity
for name in rnn_tanh rnn_relu lstm gru lstm_2layer_bidir gru_bidir lstm_bptt2 gru_clip charlm; do
	bin/fnnc run $P/$name.fnn --data $P --init $P/$name.init.st --steps 1 --threads 1 --quiet \
		--save "$tmp/$name.st" --log "$tmp/$name.csv" >/dev/null 2>"$tmp/err" ||
		fail "$name: fnnc run: exit $?: $(tail -n 5 "$tmp/err")"
	loss=$(sed -n 2p "$tmp/$name.csv" | cut -d, -f3)
	$PY - "$P/$name.step.st" "$tmp/$name.st" "$(cat $P/$name.loss)" "$loss" "$name" <<'PYEOF' || exit 1
import sys
sys.path.insert(0, "tests/e2e")
from st_read import floats as load

want, got = load(sys.argv[1]), load(sys.argv[2])
wl, gl, name = float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
bad = 0
if abs(wl - gl) > 1e-5 * max(1.0, abs(wl)):
    print("FAIL: %s: loss %.9g, PyTorch %.9g" % (name, gl, wl))
    bad += 1
for k, w in want.items():
    g = got.get(k)
    if g is None or len(g) != len(w):
        print("FAIL: %s: tensor %s missing or of another size" % (name, k))
        bad += 1
        continue
    err = max(abs(a - b) / max(1.0, abs(a)) for a, b in zip(w, g))
    ok = err <= 2e-5
    bad += not ok
    print("%s %s %-28s max rel diff %.1e" % ("ok  " if ok else "FAIL", name, k, err))
print("%s: loss %.7f (PyTorch %.7f)" % (name, gl, wl))
sys.exit(1 if bad else 0)
PYEOF
done
echo "PASS: forward and gradients match PyTorch for all cases"
