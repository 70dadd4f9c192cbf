#!/usr/bin/python3
# tests/parity/make_fixtures.py - writes the PyTorch reference numbers for
# tests/e2e/test_torch_parity.sh. Run once, by hand, where PyTorch is
# installed (Debian's python3-torch); the test itself needs only python3.
#
# For each case NAME (a recurrent layer, the last step, a linear layer and the
# mean cross-entropy, as tests/parity/NAME.fnn writes it), it writes the
# following; with bptt=K, the gradient flows through the last K steps only
# (the states before them are detached); with clip=C, the gradients are
# clipped to the global norm C first (torch.nn.utils.clip_grad_norm_):
#   NAME.csv          the batch: T*F features per row, then the class
#   NAME.init.st      the weights (safetensors, state_dict names)
#   NAME.step.st      the weights after one SGD step with lr=1: w - dL/dw
#   NAME.loss         the loss before the step
# The text case (text_case) is an embedding, an lstm and a linear layer on
# every step with the per-step cross-entropy, on NAME.txt (instead of the CSV)
# cut into sequences as fnnc's text(..., vocab="file") cuts it.
# `make_fixtures.py NAME...` writes only the cases named.
import os
import sys

import torch

from st_write import write_st

T, F, H, K, N = 5, 3, 4, 3, 6
HERE = os.path.dirname(os.path.abspath(__file__))


class Net(torch.nn.Module):
    def __init__(self, kind, layers, bidir, nonlin):
        super().__init__()
        args = dict(num_layers=layers, bidirectional=bidir, batch_first=True)
        if kind == "rnn":
            args["nonlinearity"] = nonlin
        self.rnn = getattr(torch.nn, kind.upper())(F, H, **args)
        self.fc = torch.nn.Linear(H * (2 if bidir else 1), K)

    def forward(self, x, bptt=0):
        if bptt:
            with torch.no_grad():
                _, state = self.rnn(x[:, : T - bptt])
            out, _ = self.rnn(x[:, T - bptt :], state)
        else:
            out, _ = self.rnn(x)
        return self.fc(out[:, -1, :])


def case(name, kind, layers=1, bidir=False, nonlin="tanh", seed=0, bptt=0, clip=0):
    if only and name not in only:
        return
    torch.manual_seed(seed)
    net = Net(kind, layers, bidir, nonlin)
    x = torch.randn(N, T, F)
    y = torch.randint(0, K, (N,))
    with open(os.path.join(HERE, name + ".csv"), "w") as f:
        for i in range(N):
            f.write(",".join("%.9g" % v for v in x[i].flatten().tolist()) + ",%d\n" % int(y[i]))
    write_st(os.path.join(HERE, name + ".init.st"), net.state_dict())
    loss = torch.nn.functional.cross_entropy(net(x, bptt), y)
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
    write_st(os.path.join(HERE, name + ".step.st"), {n: p - p.grad for n, p in net.named_parameters()})
    with open(os.path.join(HERE, name + ".loss"), "w") as f:
        f.write("%.9g\n" % loss.item())
    print(name, "loss %.6f" % loss.item(), file=sys.stderr)


class TextNet(torch.nn.Module):
    def __init__(self, vocab, dim, hidden):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, dim)
        self.rnn = torch.nn.LSTM(dim, hidden, batch_first=True)
        self.fc = torch.nn.Linear(hidden, vocab)

    def forward(self, x):
        out, _ = self.rnn(self.emb(x))
        return self.fc(out)


def text_case(name, text, steps, vocab, seed):
    if only and name not in only:
        return
    torch.manual_seed(seed)
    net = TextNet(vocab, 3, 4)
    with open(os.path.join(HERE, name + ".txt"), "wb") as f:
        f.write(text)
    ids = {c: i for i, c in enumerate(sorted(set(text)))}
    n = (len(text) - 1) // steps
    seq = torch.tensor([ids[c] for c in text])
    x = torch.stack([seq[i * steps : i * steps + steps] for i in range(n)])
    y = torch.stack([seq[i * steps + 1 : i * steps + steps + 1] for i in range(n)])
    write_st(os.path.join(HERE, name + ".init.st"), net.state_dict())
    loss = torch.nn.functional.cross_entropy(net(x).reshape(-1, vocab), y.reshape(-1))
    loss.backward()
    write_st(os.path.join(HERE, name + ".step.st"), {k: p - p.grad for k, p in net.named_parameters()})
    with open(os.path.join(HERE, name + ".loss"), "w") as f:
        f.write("%.9g\n" % loss.item())
    print(name, "loss %.6f" % loss.item(), file=sys.stderr)


only = set(sys.argv[1:])  # the cases named on the command line, or all
text_case("charlm", b"the cat sat on the mat; the dog ran to the cat.", 6, 20, seed=9)
case("rnn_tanh", "rnn", seed=1)
case("rnn_relu", "rnn", nonlin="relu", seed=2)
case("lstm", "lstm", seed=3)
case("gru", "gru", seed=4)
case("lstm_2layer_bidir", "lstm", layers=2, bidir=True, seed=5)
case("gru_bidir", "gru", bidir=True, seed=6)
case("lstm_bptt2", "lstm", seed=7, bptt=2)
case("gru_clip", "gru", seed=8, clip=0.05)
