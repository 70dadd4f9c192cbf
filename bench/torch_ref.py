"""PyTorch reference for the fnnc benchmark.

Trains the same models as models/mnist.fnn, models/mlp.fnn and
models/seqmnist.fnn (same layers,
cross-entropy loss, Adam lr 1e-3, batch 64) on the real MNIST training set in
data/mnist, and prints the training rate in images/s.

    python3 bench/torch_ref.py --model cnn --steps 150 --threads 1 --runs 3

Data loading is not timed: the images are read from the IDX files, normalised
(mean 0.1307, std 0.3081), shuffled with a fixed seed and cut into batch
tensors before the clock starts. Each run builds a fresh model, does a few
warm-up steps, then times --steps training steps (forward, loss, backward,
optimizer step). The output is one line per run and a final line

    model=cnn threads=1 steps=150 runs=3 images_per_s=1234.5 loss=0.1234

with the median of the runs. --budget caps the time: after the first run, a
further run starts only if it is likely to end within the budget, and if the
warm-up steps say that even one run of --steps would take longer, the runs time
only as many steps as fit (at least 20); the final line gives the steps timed.
"""
import argparse
import os
import statistics
import struct
import sys
import time

import numpy as np
import torch
from torch import nn


def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class SeqMnist(nn.Module):
    """models/seqmnist.fnn: the image's 28 rows as steps, lstm(128), last step, dense(10)."""

    def __init__(self):
        super().__init__()
        self.lstm1 = nn.LSTM(28, 128, batch_first=True)
        self.dense1 = nn.Linear(128, 10)

    def forward(self, x):
        out, _ = self.lstm1(x.reshape(-1, 28, 28))
        return self.dense1(out[:, -1, :])


def make_model(name):
    if name == "seqmnist":
        return SeqMnist()
    if name == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 10))
    if name == "mlp":
        return nn.Sequential(
            nn.Flatten(), nn.Linear(784, 256), nn.ReLU(),
            nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    raise ValueError(name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["cnn", "mlp", "seqmnist"], required=True)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--budget", type=float, default=0,
                    help="seconds: start no further run (after the first) that would "
                         "likely end past this; 0 = no limit")
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "data", "mnist"))
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    # What PyTorch runs on, for the record: oneDNN (mkldnn) does the
    # convolutions when it is available; ATen's own kernels use the CPU
    # capability it reports (AVX2 on this Debian build, even with AVX-512).
    cap = "?"
    for line in torch.__config__.show().splitlines():
        if "CPU capability usage:" in line:
            cap = line.split(":", 1)[1].strip()
    print(f"config: torch={torch.__version__} mkldnn={int(torch.backends.mkldnn.is_available())} "
          f"threads={torch.get_num_threads()} aten_capability={cap}")

    images = read_idx(os.path.join(a.data, "train-images-idx3-ubyte"))
    labels = read_idx(os.path.join(a.data, "train-labels-idx1-ubyte"))
    x = (torch.from_numpy(images.astype(np.float32) / 255.0) - 0.1307) / 0.3081
    x = x.reshape(-1, 1, 28, 28)
    y = torch.from_numpy(labels.astype(np.int64))

    nbatches = a.warmup + a.steps
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(1))
    need = nbatches * a.batch
    idx = perm.repeat((need + len(perm) - 1) // len(perm))[:need]
    xb = [x[idx[i * a.batch:(i + 1) * a.batch]].contiguous() for i in range(nbatches)]
    yb = [y[idx[i * a.batch:(i + 1) * a.batch]].contiguous() for i in range(nbatches)]

    rates, loss, steps = [], float("nan"), a.steps
    start = time.perf_counter()
    for run in range(a.runs):
        spent = time.perf_counter() - start
        if run > 0 and a.budget > 0 and spent + spent / run > a.budget:
            break
        model = make_model(a.model)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        lossf = nn.CrossEntropyLoss()

        def step(i):
            opt.zero_grad(set_to_none=True)
            l = lossf(model(xb[i]), yb[i])
            l.backward()
            opt.step()
            return l

        tw = time.perf_counter()
        for i in range(a.warmup):
            if i == 1:
                tw = time.perf_counter()
            step(i)
        t0 = time.perf_counter()
        if run == 0 and a.budget > 0 and a.warmup > 1:
            # Too slow for the budget even once: time fewer steps (at least 20).
            per_step = (t0 - tw) / (a.warmup - 1)
            if per_step * steps > a.budget:
                steps = min(steps, max(20, int(a.budget / per_step)))
        for i in range(a.warmup, a.warmup + steps):
            l = step(i)
        sec = time.perf_counter() - t0
        loss = l.item()
        rate = steps * a.batch / sec
        rates.append(rate)
        print(f"run={run + 1} images_per_s={rate:.1f} seconds={sec:.3f} loss={loss:.4f}",
              file=sys.stderr)

    print(f"model={a.model} threads={a.threads} steps={steps} runs={len(rates)} "
          f"images_per_s={statistics.median(rates):.1f} loss={loss:.4f}")


if __name__ == "__main__":
    main()
