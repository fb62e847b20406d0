"""Generates optim_reference.json: a few float32 steps of torch.optim.SGD and
torch.optim.AdamW, the reference optimizer_test.cc checks trainer/optim against.

Run: /tmp/refvenv/bin/python trainer/optim/testdata/make_optim_reference.py
"""
import json
import os

import torch

CASES = [
    ("sgd_plain", "sgd", dict(momentum=0.0, weight_decay=0.0)),
    ("sgd_momentum_wd", "sgd", dict(momentum=0.9, weight_decay=0.01)),
    ("adamw_default", "adamw", dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)),
    ("adamw_custom", "adamw", dict(betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)),
]
LRS = [1e-2, 5e-3, 2e-2, 1e-3, 1e-2, 0.0, 3e-2]  # per step; includes lr = 0
NUM_PARAMS = 9


def floats(t):
    return [float(x) for x in t.detach().to(torch.float32).tolist()]


def main():
    gen = torch.Generator().manual_seed(20240611)
    out = {"generator": "trainer/optim/testdata/make_optim_reference.py",
           "torch": torch.__version__, "cases": []}
    for name, kind, opts in CASES:
        p0 = torch.randn(NUM_PARAMS, generator=gen, dtype=torch.float32)
        # Mixed magnitudes, a zero gradient element, and a sign flip over steps.
        grads = [torch.randn(NUM_PARAMS, generator=gen) * (10.0 ** (k % 3 - 1)) for k in range(len(LRS))]
        for g in grads:
            g[0] = 0.0
        param = torch.nn.Parameter(p0.clone())
        if kind == "sgd":
            opt = torch.optim.SGD([param], lr=LRS[0], **opts, foreach=False)
        else:
            opt = torch.optim.AdamW([param], lr=LRS[0], **opts, foreach=False)
        steps = []
        for lr, g in zip(LRS, grads):
            for group in opt.param_groups:
                group["lr"] = lr
            param.grad = g.clone()
            opt.step()
            steps.append({"lr": lr, "grad": floats(g), "params": floats(param)})
        options = {"kind": kind, "weight_decay": opts["weight_decay"]}
        if kind == "sgd":
            options["momentum"] = opts["momentum"]
        else:
            options.update(beta1=opts["betas"][0], beta2=opts["betas"][1], eps=opts["eps"])
        out["cases"].append({"name": name, "options": options, "params0": floats(p0), "steps": steps})
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optim_reference.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
