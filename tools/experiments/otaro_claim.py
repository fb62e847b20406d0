#!/usr/bin/env python3
"""The OTARo claim at small scale (OTARO.md, last section; issue 10).

Tunes one model on one text with every strategy -- otaro, bps, uniform, fp and
fixed:m for every m of the bit set -- with identical data order (same seed),
step count and hyperparameters, in both SEFP reconstruction modes, using the
project's own `otaro tune`. Each run evaluates held-out perplexity at fp32 and
E5M8..E5M2 before and after tuning. Prints markdown tables and writes all
numbers to OUT/results.json.

Usage (paths relative to the repository; bazel build //tools/tune:otaro-tune):
  tools/experiments/otaro_claim.py --tune BIN --model M --train T --eval E --out DIR \
      [--steps 150] [--batch 8] [--seq-len 128] [--optimizer sgd] [--lr 0.3] \
      [--modes midpoint,truncate] [--threads 2]
"""
import argparse
import json
import os
import subprocess
import sys
import time

BITS = [3, 4, 5, 6, 7, 8]
EVAL_BITS = "2,3,4,5,6,7,8"


def strategies(selected):
    every = ["otaro", "bps", "uniform", "fp"] + [f"fixed:{m}" for m in BITS]
    return every if not selected else [s for s in every if s in selected.split(",")]


def run(args, strategy, mode):
    out = os.path.join(args.out, mode, strategy.replace(":", "_"))
    if os.path.exists(os.path.join(out, "evaluation.json")) and not args.force:
        return out, 0.0
    cmd = [args.tune, "--model", args.model, "--data", args.train, "--eval-data", args.eval,
           "--out", out, "--strategy", strategy, "--bits", ",".join(map(str, BITS)),
           "--eval-bits", EVAL_BITS, "--steps", str(args.steps), "--batch", str(args.batch),
           "--seq-len", str(args.seq_len), "--optimizer", args.optimizer, "--lr", str(args.lr),
           "--reconstruction", mode, "--seed", str(args.seed), "--threads", str(args.threads),
           "--eval-batches", str(args.eval_batches), "--eval-at-start", "--quiet"]
    start = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out, time.time() - start


def ppl_row(evaluation):
    return {p["bits"]: p["perplexity"] for p in evaluation["points"]}


def table(rows, title):
    cols = [0, 8, 7, 6, 5, 4, 3, 2]
    head = "| " + title + " | " + " | ".join("fp32" if c == 0 else f"E5M{c}" for c in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for name, row in rows:
        cells = []
        for c in cols:
            v = row.get(c)
            cells.append("-" if v is None else (f"{v:.3f}" if v < 1e4 else f"{v:.3g}"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tune", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--eval", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--lr", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-batches", type=int, default=16)
    p.add_argument("--modes", default="midpoint,truncate")
    p.add_argument("--strategies", default="",
                   help="comma-separated subset (default: all); rerun with more to fill in")
    p.add_argument("--force", action="store_true")
    args = p.parse_args()

    results = {"settings": vars(args), "runs": {}}
    for mode in args.modes.split(","):
        rows = []
        for strategy in strategies(args.strategies):
            out, seconds = run(args, strategy, mode)
            with open(os.path.join(out, "evaluation.json")) as f:
                after = json.load(f)
            with open(os.path.join(out, "evaluation_start.json")) as f:
                before = json.load(f)
            if not rows:
                rows.append(("untuned", ppl_row(before)))
            rows.append((strategy, ppl_row(after)))
            results["runs"][f"{mode}/{strategy}"] = {"before": before, "after": after,
                                                     "seconds": seconds}
            print(f"[{mode}] {strategy}: {seconds:.0f} s", file=sys.stderr, flush=True)
        print(f"\n### Held-out perplexity, reconstruction {mode}\n")
        print(table(rows, "strategy"))
        # fixed:m evaluated at its own m, next to otaro at that m.
        done = dict(rows)
        own = [("fixed:m at its own m",
                {m: done[f"fixed:{m}"][m] for m in BITS if f"fixed:{m}" in done})]
        if "otaro" in done:
            own.append(("otaro", {m: done["otaro"][m] for m in BITS}))
        print()
        print(table(own, "at own m"))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
