#!/bin/sh
# test_ckpt_python.sh - fnnc's checkpoints are ordinary safetensors files with
# PyTorch's names and layouts.
#
# With /usr/bin/python3 and numpy (skipped without them): trains models/mlp.fnn
# briefly and saves; the Python side parses the file with json + struct +
# numpy (torch 1.13 has no safetensors reader), checks the names, dtypes,
# shapes and the FNV-1a checksum, runs the MLP forward in numpy with
# PyTorch's conventions (y = x W^T + b, W [out, in]) and gets the accuracy
# fnnc's --eval reports. If torch imports, the tensors are also loaded by name
# (strict) into the equivalent nn.Module, which gives the same predictions.
# Then Python writes its own safetensors file (other tensor order, no
# metadata, weights scaled) that fnnc loads with --init, and fnnc's --eval
# accuracy equals numpy's for those weights.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
if ! [ -x $PY ] || ! $PY -c 'import numpy' 2>/dev/null; then
	echo "SKIP: $PY with numpy is not available"
	exit 0
fi
need_fnnc
need_mnist
make_tmp
D=$tmp/d
make_mnist "$D" 2000 1000

bin/fnnc run models/mlp.fnn --data "$D" --quiet --epochs 1 --save "$tmp/mlp.st" 2>"$tmp/err" ||
	fail "training: exit $?: $(cat "$tmp/err")"
bin/fnnc run models/mlp.fnn --data "$D" --eval --init "$tmp/mlp.st" --log "$tmp/ev.csv" >/dev/null 2>"$tmp/err" ||
	fail "--eval: exit $?: $(cat "$tmp/err")"
acc=$(tail -n 1 "$tmp/ev.csv" | cut -d, -f5)

cat >"$tmp/check.py" <<'PY'
import json, struct, sys
import numpy as np

src, dst, d, acc = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])

def load(path):
    b = open(path, "rb").read()
    (n,) = struct.unpack("<Q", b[:8])
    h = json.loads(b[8:8 + n].decode("utf-8"))
    data = b[8 + n:]
    meta = h.pop("__metadata__", {})
    t = {}
    for k, v in h.items():
        assert v["dtype"] == "F32", (k, v["dtype"])
        s, e = v["data_offsets"]
        t[k] = np.frombuffer(data[s:e], dtype="<f4").reshape(v["shape"])
    return t, meta, data

def save(path, tensors):
    h, off, parts = {}, 0, []
    for k, a in tensors:
        a = np.ascontiguousarray(a, dtype="<f4")
        h[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
        parts.append(a.tobytes())
    hb = json.dumps(h).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + b"".join(parts))

t, meta, data = load(src)
want = {"dense1.weight": (256, 784), "dense1.bias": (256,), "dense2.weight": (128, 256), "dense2.bias": (128,),
        "dense3.weight": (10, 128), "dense3.bias": (10,)}
for k, s in want.items():
    assert t[k].shape == s, (k, t[k].shape, s)
    assert t[k + ".__adam_m"].shape == s and t[k + ".__adam_v"].shape == s
assert len(t) == 18, sorted(t)
assert meta["model"] == "mlp" and meta["optimizer"] == "adam" and meta["step"] == "32", meta
hsh = 0xcbf29ce484222325
for c in data:
    hsh = ((hsh ^ c) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
assert meta["checksum"] == "fnv1a64:%016x" % hsh, (meta["checksum"], hsh)

img = np.fromfile(d + "/mnist/t10k-images-idx3-ubyte", dtype=np.uint8, offset=16).reshape(-1, 784)
lab = np.fromfile(d + "/mnist/t10k-labels-idx1-ubyte", dtype=np.uint8, offset=8)
x = ((img.astype(np.float32) / 255 - np.float32(0.1307)) / np.float32(0.3081)).astype(np.float32)

def forward(t):
    h = np.maximum(x @ t["dense1.weight"].T + t["dense1.bias"], 0)
    h = np.maximum(h @ t["dense2.weight"].T + t["dense2.bias"], 0)
    return h @ t["dense3.weight"].T + t["dense3.bias"]

def accuracy(t):
    return float((forward(t).argmax(1) == lab).mean())

a = accuracy(t)
print("numpy accuracy %.4f, fnnc --eval %.4f" % (a, acc))
assert abs(a - acc) <= 0.002, (a, acc)

try:
    import torch
except Exception:
    torch = None
if torch is not None:
    class MLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dense1 = torch.nn.Linear(784, 256)
            self.dense2 = torch.nn.Linear(256, 128)
            self.dense3 = torch.nn.Linear(128, 10)
        def forward(self, x):
            return self.dense3(torch.relu(self.dense2(torch.relu(self.dense1(x)))))
    m = MLP()
    m.load_state_dict({k: torch.from_numpy(t[k].copy()) for k in want}, strict=True)
    with torch.no_grad():
        p = m(torch.from_numpy(x)).argmax(1).numpy()
    ta = float((p == lab).mean())
    print("torch accuracy %.4f" % ta)
    assert abs(ta - acc) <= 0.002
    sd = [(k, v.numpy()) for k, v in m.state_dict().items()]
else:
    print("torch is not available: skipped the nn.Module check")
    sd = [(k, t[k]) for k in want]

# A file of Python's own: reversed order, no metadata, other weights.
mine = [(k, v * (0.5 if k == "dense1.weight" else 1.0)) for k, v in reversed(sd)]
save(dst, mine)
print("%.6f" % accuracy(dict(mine)), file=open(dst + ".acc", "w"))
PY
$PY "$tmp/check.py" "$tmp/mlp.st" "$tmp/py.st" "$D" "$acc" || fail "the Python side rejected fnnc's file"
bin/fnnc run models/mlp.fnn --data "$D" --eval --init "$tmp/py.st" --log "$tmp/ev2.csv" >/dev/null 2>"$tmp/err" ||
	fail "--init of Python's file: exit $?: $(cat "$tmp/err")"
acc2=$(tail -n 1 "$tmp/ev2.csv" | cut -d, -f5)
pacc=$(cat "$tmp/py.st.acc")
echo "Python's file: fnnc --eval test_acc $acc2, numpy $pacc"
awk -v a="$acc2" -v b="$pacc" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= 0.002) }' ||
	fail "fnnc's accuracy with Python's weights ($acc2) differs from numpy's ($pacc)"
echo "PASS: safetensors interchange with Python (test_acc $acc, Python's file $acc2)"
