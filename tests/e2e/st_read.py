# st_read.py - reads a safetensors file (F32 tensors) for the end-to-end
# tests' inline Python checks, which run from the repository root with
#   sys.path.insert(0, "tests/e2e"); import st_read
import json
import struct


def raw(path):
    """{name: the tensor's bytes}, without __metadata__."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    head = json.loads(data[8:8 + n])
    head.pop("__metadata__", None)
    base = 8 + n
    return {k: data[base + v["data_offsets"][0]:base + v["data_offsets"][1]] for k, v in head.items()}


def floats(path):
    """{name: tuple of floats}, without __metadata__."""
    return {k: struct.unpack("<%df" % (len(b) // 4), b) for k, b in raw(path).items()}
