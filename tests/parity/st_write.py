# st_write.py - writes torch tensors as a safetensors file (F32), for the
# scripts in tests/parity that make the committed fixtures.
import json
import struct


def write_st(path, tensors):
    """tensors: {name: torch tensor}, written in that order."""
    header, data = {}, b""
    for name, t in tensors.items():
        raw = t.detach().contiguous().float().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)
