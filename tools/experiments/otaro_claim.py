#!/usr/bin/env python3
"""The OTARo claim at small scale (OTARO.md, last section; issues 10 and 15).

Tunes one model on one text with every strategy, with identical data order
(per seed), step count and hyperparameters, in the requested SEFP
reconstruction modes, using the project's own `otaro tune`. Each run evaluates
held-out perplexity at fp32 and E5M8..E5M2 after tuning (the untuned model is
evaluated once per mode). Prints markdown tables (mean +- sd over the seeds)
and writes every number to OUT/results.json and the tables to OUT/tables.md,
after every run, so a partial sweep is usable and a rerun skips finished runs
(a run is finished when its evaluation.json exists).

Order: for each mode, seed by seed, every strategy -- so a sweep cut short has
whole seeds.

--lr-sweep LRS first tunes `fp` for --sweep-steps steps at each lr with
clipping off; a run is stable when it finishes and its training loss never
exceeds the first step's. Without --lr, the sweep's largest stable lr divided
by --laa-n (LAA's N: a summed flush of N gradients is then no larger a step
than one stable step) is used for every strategy.

The fair test of issue 15 (docs/RESULTS.md), from the repository root:
  bazel build -c opt --config=cpu //tools/tune:otaro-tune
  cp bazel-out/k8-opt/bin/tools/tune/otaro-tune /tmp/fair/otaro-tune
  tools/experiments/otaro_claim.py --tune /tmp/fair/otaro-tune \\
      --model ../shared/data/models/stories260K-gguf/stories260K.gguf \\
      --train ../shared/data/corpora/wikitext-2-tokens/valid.txt \\
      --eval ../shared/data/corpora/wikitext-2-tokens/test.txt --eval-bytes 102400 \\
      --out /work/runs/small --lr-sweep 0.1,0.2,0.3,0.5,1,3,10 --clip 0 \\
      --steps 1000 --seeds 1,2,3 --modes truncate,midpoint --threads 1
The old one-seed run (2026-11-23): --steps 150 --lr 0.3 --clip 1 --eval-settle 0
--eval-batches 16 --eval-bytes 100000 and --train the first 400,000 bytes of
valid.txt (that trainer clipped before accumulating, and had no settle steps).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

BITS = [3, 4, 5, 6, 7, 8]
EVAL_BITS = "2,3,4,5,6,7,8"
COLS = [0, 8, 7, 6, 5, 4, 3, 2]  # 0 = fp32
DEFAULT_STRATEGIES = "otaro,bps,uniform,fp,fixed:3,fixed:3+laa,fixed:4,fixed:4+laa"


def tune_cmd(args, out, strategy, mode, seed, lr, steps, eval_bits, clip, at_start):
    cmd = [args.tune, "--model", args.model, "--data", args.train, "--eval-data", args.heldout,
           "--out", out, "--strategy", strategy, "--bits", ",".join(map(str, BITS)),
           "--eval-bits", eval_bits, "--steps", str(steps), "--batch", str(args.batch),
           "--seq-len", str(args.seq_len), "--optimizer", args.optimizer, "--lr", repr(lr),
           "--clip", repr(clip), "--laa-n", str(args.laa_n),
           "--eval-settle", str(args.eval_settle), "--reconstruction", mode,
           "--seed", str(seed), "--threads", str(args.threads),
           "--eval-batches", str(args.eval_batches), "--quiet"]
    return cmd + (["--eval-at-start"] if at_start else [])


def execute(cmd, out, force, skip_failed=False):
    """Runs cmd unless out/evaluation.json exists (or, with skip_failed, an
    earlier attempt failed: a diverged lr); returns (seconds, ok)."""
    if os.path.exists(os.path.join(out, "evaluation.json")) and not force:
        return 0.0, True
    if skip_failed and os.path.exists(out + ".failed") and not force:
        return 0.0, False
    os.makedirs(os.path.dirname(out), exist_ok=True)
    start = time.time()
    with open(out + ".log", "w") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
    seconds = time.time() - start
    with open(out + ".seconds", "w") as f:
        f.write(f"{seconds:.1f}\n")
    if rc != 0:
        with open(out + ".failed", "w") as f:
            f.write(f"exit status {rc}\n")
    return seconds, rc == 0


def read_seconds(out):
    try:
        with open(out + ".seconds") as f:
            return float(f.read())
    except OSError:
        return None


def steps_of(out):
    with open(os.path.join(out, "steps.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def ppl_row(evaluation):
    return {p["bits"]: p["perplexity"] for p in evaluation["points"]}


def lr_sweep(args):
    sweep = []
    for lr in [float(x) for x in args.lr_sweep.split(",")]:
        out = os.path.join(args.out, "lr_sweep", f"fp_lr{lr:g}")
        cmd = tune_cmd(args, out, "fp", "truncate", args.sweep_seed, lr, args.sweep_steps, "8",
                       0.0, False)
        execute(cmd, out, args.force, skip_failed=True)
        entry = {"lr": lr, "steps": args.sweep_steps, "clip": 0, "finished": False}
        if os.path.exists(os.path.join(out, "steps.jsonl")):
            losses = [s["loss"] for s in steps_of(out)]
            entry["steps_run"] = len(losses)
            entry["first_loss"] = losses[0] if losses else None
            entry["max_loss_after_first"] = max(losses[1:]) if len(losses) > 1 else None
            if len(losses) == args.sweep_steps:
                entry["last20_mean_loss"] = sum(losses[-20:]) / 20
        if os.path.exists(os.path.join(out, "evaluation.json")):
            with open(os.path.join(out, "evaluation.json")) as f:
                entry["heldout_ppl_fp32"] = ppl_row(json.load(f))[0]
            entry["finished"] = True
        entry["stable"] = bool(entry["finished"] and entry.get("max_loss_after_first") is not None
                               and entry["max_loss_after_first"] <= entry["first_loss"])
        sweep.append(entry)
        print(f"[lr sweep] fp lr {lr:g}: finished {entry['finished']}, stable {entry['stable']}",
              file=sys.stderr, flush=True)
    return sweep


def flush_summary(steps, evaluation):
    """LAA flushes from steps.jsonl: the loss change each one caused on its own batch."""
    regular = [s for s in steps if s.get("laa_flush") and not s.get("laa_drain")]
    drains = [s for s in steps if s.get("laa_drain")]
    deltas = [s["flush_loss_delta"] for s in regular]
    out = {"flushes": len(regular), "drains": len(drains),
           "steps_since_laa_flush_at_eval": evaluation.get("steps_since_laa_flush"),
           "laa_pending_at_eval": evaluation.get("laa_pending")}
    if deltas:
        out["mean_loss_delta"] = sum(deltas) / len(deltas)
        out["max_loss_delta"] = max(deltas)
        out["fraction_loss_up"] = sum(d > 0 for d in deltas) / len(deltas)
        out["mean_flush_norm"] = sum(s["flush_norm"] for s in regular) / len(regular)
        # The loss change a plain step makes on its own batch is not logged;
        # as a scale, the mean per-step training-loss change over the run's
        # last half (typically ~0 at a plateau) is not comparable, so omitted.
    if drains:
        out["drain_loss_delta"] = drains[-1]["flush_loss_after"] - drains[-1]["flush_loss_before"]
        out["drain_step"] = drains[-1]["step"]
    return out


def mean_sd(values):
    n = len(values)
    if n == 0:
        return None, None
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return mean, sd


def fmt(mean, sd):
    if mean is None:
        return "-"
    text = f"{mean:.2f}" if mean < 1e3 else f"{mean:.4g}"
    if sd is not None:
        text += f" ± {sd:.2f}" if sd < 1e3 else f" ± {sd:.3g}"
    return text


def mode_tables(mode, entry, strategies):
    lines = [f"\n### Held-out perplexity, reconstruction {mode} (mean ± sd over seeds; n = seeds)\n"]
    lines.append("| strategy | n | " + " | ".join("fp32" if c == 0 else f"E5M{c}" for c in COLS)
                 + " |")
    lines.append("|" + "---|" * (len(COLS) + 2))
    if entry.get("untuned"):
        u = entry["untuned"]
        lines.append("| untuned | - | " + " | ".join(fmt(u.get(str(c)), None) for c in COLS) + " |")
    for s in strategies:
        st = entry["strategies"].get(s)
        if not st:
            continue
        cells = [fmt(*st["ppl"][str(c)]) for c in COLS]
        lines.append(f"| {s} | {st['n']} | " + " | ".join(cells) + " |")
    own = [(f"fixed:{m}", m) for m in BITS if f"fixed:{m}" in entry["strategies"]]
    own += [(f"fixed:{m}+laa", m) for m in BITS if f"fixed:{m}+laa" in entry["strategies"]]
    if own:
        lines.append(f"\n`fixed:m` at its own m ({mode}), next to the multi-precision runs there:\n")
        ms = sorted({m for _, m in own}, reverse=True)
        lines.append("| | " + " | ".join(f"E5M{m}" for m in ms) + " |")
        lines.append("|" + "---|" * (len(ms) + 1))
        for name in ["fixed:m", "fixed:m+laa"]:
            cells = []
            for m in ms:
                st = entry["strategies"].get(name.replace("m", str(m), 1))
                cells.append(fmt(*st["ppl"][str(m)]) if st else "-")
            lines.append(f"| {name} at m | " + " | ".join(cells) + " |")
        for s in ["otaro", "bps", "uniform", "fp"]:
            st = entry["strategies"].get(s)
            if st:
                lines.append(f"| {s} | " + " | ".join(fmt(*st["ppl"][str(m)]) for m in ms) + " |")
    if entry["strategies"]:
        lines.append(f"\nTraining loss ({mode}; mean over seeds) over the last two 100-step "
                     "windows (a plateau: the two agree), and the bit-widths used per run:\n")
        lines.append("| strategy | loss, steps -200..-101 | loss, last 100 steps | bit-widths per run |")
        lines.append("|---|---|---|---|")
        for s in strategies:
            st = entry["strategies"].get(s)
            if st:
                bits = ", ".join(f"{k} {v:.0f}" for k, v in sorted(st["bit_selections"].items()))
                lines.append(f"| {s} | {st['train_loss_prev100']:.3f} | "
                             f"{st['train_loss_last100']:.3f} | {bits} |")
    laa = [(s, st) for s, st in entry["strategies"].items() if st.get("flush")]
    if laa:
        lines.append(f"\nLAA flushes ({mode}; per run, then mean over seeds): loss change on the "
                     "flush step's own batch, before vs after applying the accumulator\n")
        lines.append("| strategy | flushes/run | mean Δloss | max Δloss | share Δloss > 0 "
                     "| mean flush norm | drain Δloss | steps since flush at eval |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for s, st in laa:
            f = st["flush"]

            def g(key, spec):
                return "-" if f.get(key) is None else format(f[key], spec)
            drain = ("none" if f.get("drain_loss_delta") is None else
                     f"{f['drain_loss_delta']:+.4f} ({f['drains']:.1f}/run)")
            lines.append(f"| {s} | {g('flushes', '.1f')} | {g('mean_loss_delta', '+.4f')} | "
                         f"{g('max_loss_delta', '+.4f')} | {g('fraction_loss_up', '.2f')} | "
                         f"{g('mean_flush_norm', '.2f')} | {drain} | "
                         f"{f['steps_since_flush_at_eval']} |")
    return "\n".join(lines)


def collect(args, strategies, seeds, modes, sweep, lr):
    results = {"settings": {k: v for k, v in vars(args).items() if k != "force"},
               "lr": lr, "lr_sweep": sweep, "modes": {}, "runs": {}}
    for mode in modes:
        entry = {"untuned": None, "strategies": {}}
        start_path = os.path.join(args.out, mode, "untuned", "evaluation_start.json")
        if os.path.exists(start_path):
            with open(start_path) as f:
                entry["untuned"] = {str(k): v for k, v in ppl_row(json.load(f)).items()}
        for s in strategies:
            rows, flushes, plateau = [], [], []
            for seed in seeds:
                out = run_dir(args, mode, s, seed)
                path = os.path.join(out, "evaluation.json")
                if not os.path.exists(path):
                    continue
                with open(path) as f:
                    evaluation = json.load(f)
                steps = steps_of(out)
                row = ppl_row(evaluation)
                rows.append(row)
                losses = [x["loss"] for x in steps]
                run = {"ppl": {str(k): v for k, v in row.items()}, "seconds": read_seconds(out),
                       "bit_selections": {}, "train_loss_last100": sum(losses[-100:]) / 100,
                       "train_loss_prev100": sum(losses[-200:-100]) / 100,
                       "steps_since_laa_flush_at_eval": evaluation.get("steps_since_laa_flush"),
                       "laa_pending_at_eval": evaluation.get("laa_pending")}
                for x in steps:
                    key = "fp32" if x["bits"] == 0 else f"E5M{x['bits']}"
                    run["bit_selections"][key] = run["bit_selections"].get(key, 0) + 1
                if any(x.get("laa_flush") for x in steps):
                    run["flush"] = flush_summary(steps, evaluation)
                    flushes.append(run["flush"])
                results["runs"][f"{mode}/{s}/seed-{seed}"] = run
            if not rows:
                continue
            st = {"n": len(rows), "ppl": {str(c): mean_sd([r[c] for r in rows]) for c in COLS}}
            these = [results["runs"][f"{mode}/{s}/seed-{seed}"] for seed in seeds
                     if f"{mode}/{s}/seed-{seed}" in results["runs"]]
            st["train_loss_prev100"] = mean_sd([r["train_loss_prev100"] for r in these])[0]
            st["train_loss_last100"] = mean_sd([r["train_loss_last100"] for r in these])[0]
            keys = sorted({k for r in these for k in r["bit_selections"]})
            st["bit_selections"] = {k: mean_sd([r["bit_selections"].get(k, 0) for r in these])[0]
                                    for k in keys}
            if flushes:
                def avg(key):  # over the runs that have it (a drain only when something is pending)
                    have = [f[key] for f in flushes if key in f]
                    return sum(have) / len(have) if have else None
                st["flush"] = {"flushes": avg("flushes"), "drains": avg("drains"), "mean_loss_delta": avg("mean_loss_delta"),
                               "max_loss_delta": max((f["max_loss_delta"] for f in flushes
                                                      if "max_loss_delta" in f), default=None),
                               "fraction_loss_up": avg("fraction_loss_up"),
                               "mean_flush_norm": avg("mean_flush_norm"),
                               "drain_loss_delta": avg("drain_loss_delta"),
                               "steps_since_flush_at_eval": sorted({
                                   f["steps_since_laa_flush_at_eval"] for f in flushes})}
            entry["strategies"][s] = st
        results["modes"][mode] = entry
    return results


def run_dir(args, mode, strategy, seed):
    return os.path.join(args.out, mode, strategy.replace(":", "_"), f"seed-{seed}")


def report(args, strategies, seeds, modes, sweep, lr):
    results = collect(args, strategies, seeds, modes, sweep, lr)
    text = []
    if sweep:
        text.append("\n### lr sweep: `fp`, clipping off, "
                    f"{args.sweep_steps} steps, seed {args.sweep_seed}\n")
        text.append("| lr | finished | first loss | max loss after step 1 | mean loss, last 20 "
                    "| held-out ppl fp32 | stable |")
        text.append("|---|---|---|---|---|---|---|")
        for e in sweep:
            def g(key, f="{:.3f}"):
                v = e.get(key)
                return "-" if v is None else f.format(v)
            text.append(f"| {e['lr']:g} | {'yes' if e['finished'] else 'diverged'} | "
                        f"{g('first_loss')} | {g('max_loss_after_first', '{:.4g}')} | "
                        f"{g('last20_mean_loss')} | {g('heldout_ppl_fp32')} | "
                        f"{'yes' if e['stable'] else 'no'} |")
        text.append(f"\nlr used for every strategy: {lr:g}")
    for mode in modes:
        text.append(mode_tables(mode, results["modes"][mode], strategies))
    text = "\n".join(text) + "\n"
    with open(os.path.join(args.out, "tables.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    return text


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tune", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--eval", required=True)
    p.add_argument("--eval-bytes", type=int, default=0,
                   help="hold out only the first N bytes of --eval (0 = all)")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--lr", type=float, default=None,
                   help="default: the lr sweep's largest stable lr / --laa-n")
    p.add_argument("--clip", type=float, default=0.0, help="clip applied updates (0 = off)")
    p.add_argument("--laa-n", type=int, default=10)
    p.add_argument("--eval-settle", type=int, default=20)
    p.add_argument("--seeds", default="1")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-batches", type=int, default=0)
    p.add_argument("--modes", default="truncate,midpoint")
    p.add_argument("--strategies", default=DEFAULT_STRATEGIES,
                   help="comma-separated (any the CLI accepts); rerun with more to fill in")
    p.add_argument("--lr-sweep", default="", help="comma-separated lrs for `fp`, clipping off")
    p.add_argument("--sweep-steps", type=int, default=200)
    p.add_argument("--sweep-seed", type=int, default=1)
    p.add_argument("--report-only", action="store_true",
                   help="tables from finished runs only (the lr sweep still runs if unfinished)")
    p.add_argument("--force", action="store_true", help="rerun finished runs")
    args = p.parse_args()

    os.makedirs(args.out, exist_ok=True)
    args.heldout = args.eval
    if args.eval_bytes:
        args.heldout = os.path.join(args.out, "heldout.txt")
        with open(args.eval, "rb") as f:
            data = f.read(args.eval_bytes)
        if not os.path.exists(args.heldout) or open(args.heldout, "rb").read() != data:
            with open(args.heldout, "wb") as f:
                f.write(data)
    strategies = args.strategies.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    modes = args.modes.split(",")

    sweep = lr_sweep(args) if args.lr_sweep else []
    lr = args.lr
    if lr is None:
        stable = [e["lr"] for e in sweep if e["stable"]]
        if not stable:
            sys.exit("no --lr and no stable lr in --lr-sweep")
        lr = max(stable) / args.laa_n
    print(f"lr {lr:g} for every strategy", file=sys.stderr, flush=True)

    if not args.report_only:
        for mode in modes:
            # The untuned model, once per mode (it does not depend on strategy or seed).
            out = os.path.join(args.out, mode, "untuned")
            if not os.path.exists(os.path.join(out, "evaluation_start.json")):
                execute(tune_cmd(args, out, "fp", mode, 1, lr, 1, EVAL_BITS, args.clip, True),
                        out, True)
            for seed in seeds:
                for s in strategies:
                    out = run_dir(args, mode, s, seed)
                    seconds, ok = execute(
                        tune_cmd(args, out, s, mode, seed, lr, args.steps, EVAL_BITS, args.clip,
                                 False), out, args.force)
                    if seconds:
                        print(f"[{mode}] {s} seed {seed}: {seconds:.0f} s"
                              + ("" if ok else f" FAILED (see {out}.log)"),
                              file=sys.stderr, flush=True)
                        report(args, strategies, seeds, modes, sweep, lr)
    print(report(args, strategies, seeds, modes, sweep, lr))


if __name__ == "__main__":
    main()
