#!/usr/bin/python3
# tests/parity/make_adamw_fixtures.py - writes the PyTorch reference numbers for
# tests/e2e/test_adamw_schedule.sh. Run once, by hand, where PyTorch is
# installed (Debian's python3-torch); the test itself needs only python3.
#
#   adamw.csv        a batch of 6 rows: 3 features, then the class (of 3)
#   adamw.init.st    the weights of Linear(3,4) -> ReLU -> Linear(4,3) (fc1, fc2)
#   adamw.steps.st   the weights after 5 steps of torch.optim.AdamW on that batch
#                    (lr 0.05, betas (0.8, 0.99), eps 1e-6, weight_decay 0.1), the
#                    learning rate following SequentialLR(LinearLR warmup of 2
#                    steps, CosineAnnealingLR to 0.005), stepped after every step
#   sgd_wd.steps.st  the same with SGD (momentum 0.9, weight_decay 0.05) under
#                    StepLR(step_size=2, gamma=0.5)
#   adam_wd.steps.st the same with Adam (weight_decay 0.1, added to the
#                    gradient) after a 3-step LinearLR warmup
#   sched_NAME.lr    the learning rate of each of 12 steps under torch's
#                    schedulers, one per line, for the schedules of
#                    tests/parity/sched_NAME.fnn
import math
import os
import sys

import torch

from st_write import write_st

HERE = os.path.dirname(os.path.abspath(__file__))


def scheduler(opt, kind, total, warmup=0, step_size=1, gamma=0.1, min_lr=0.0):
    """torch's schedulers for fnnc's schedule=KIND(...), stepped once per step."""
    if kind == "step":
        main = torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=gamma)
    elif kind == "cosine":
        main = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=min_lr)
    else:
        main = torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
    if not warmup:
        return main
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0 / warmup, end_factor=1.0,
                                             total_iters=max(warmup - 1, 1))
    return torch.optim.lr_scheduler.SequentialLR(opt, [warm, main], milestones=[warmup])


def lrs(kind, base, total, **kw):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base)
    s = scheduler(opt, kind, total, **kw)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        s.step()
    return out


# The schedules of tests/parity/sched_*.fnn: base lr 0.1, 12 steps.
SCHEDS = {
    "step": dict(kind="step", step_size=3, gamma=0.5),
    "step_warmup": dict(kind="step", warmup=2, step_size=4, gamma=0.3),
    "cosine": dict(kind="cosine", min_lr=0.001),
    "cosine_warmup": dict(kind="cosine", warmup=3, min_lr=0.01),
    "constant_warmup": dict(kind="constant", warmup=4),
}
for name, kw in SCHEDS.items():
    kw = dict(kw)
    seq = lrs(kw.pop("kind"), 0.1, 12, **kw)
    with open(os.path.join(HERE, "sched_%s.lr" % name), "w") as f:
        f.write("".join("%.12g\n" % v for v in seq))
    print(name, " ".join("%.4g" % v for v in seq), file=sys.stderr)

# The optimizers on a small network: 5 steps on one batch, from the same weights.
torch.manual_seed(7)
net = torch.nn.Sequential()
net.add_module("fc1", torch.nn.Linear(3, 4))
net.add_module("relu", torch.nn.ReLU())
net.add_module("fc2", torch.nn.Linear(4, 3))
x = torch.randn(6, 3)
y = torch.randint(0, 3, (6,))
with open(os.path.join(HERE, "adamw.csv"), "w") as f:
    for i in range(6):
        f.write(",".join("%.9g" % v for v in x[i].tolist()) + ",%d\n" % int(y[i]))
init = {k: v.clone() for k, v in net.state_dict().items()}
write_st(os.path.join(HERE, "adamw.init.st"), init)


def run(name, make_opt, **sched):
    net.load_state_dict(init)
    opt = make_opt(net.parameters())
    s = scheduler(opt, total=5, **sched)
    for step in range(5):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        s.step()
        print("%s step %d loss %.6f" % (name, step + 1, loss.item()), file=sys.stderr)
    write_st(os.path.join(HERE, name + ".steps.st"), net.state_dict())


# tests/parity/NAME.fnn says the same.
run("adamw", lambda p: torch.optim.AdamW(p, lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
    kind="cosine", warmup=2, min_lr=0.005)
run("sgd_wd", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.05),
    kind="step", step_size=2, gamma=0.5)
run("adam_wd", lambda p: torch.optim.Adam(p, lr=0.05, weight_decay=0.1), kind="constant", warmup=3)
