#!/usr/bin/env python3
"""OTARo on the real model (issue 15, part 2 and 3): SmolLM2-135M-Instruct tuned
with each strategy from one recipe, every result scored by one protocol.

  python3 tools/experiments/smollm2_otaro.py run   --out DIR [--strategies otaro,uniform,fp] [--seed 1] [--threads N]
                                                   [--lr X] [--steps N] [--tag T] [--bits B] [--schedule S --min-lr X]
  python3 tools/experiments/smollm2_otaro.py score --out DIR [--peer-dir /tmp/llamacpp-peer]
  python3 tools/experiments/smollm2_otaro.py table --out DIR [--json docs/results/smollm2.json]

run    tunes one model per strategy with `otaro tune --recipe
       deploy/recipes/smollm2-otaro.yaml` (data: wikitext-2-tokens/valid.txt,
       same seed, so the same batches in the same order), overriding only the
       strategy and the reconstruction. An interrupted run is resumed from its
       last checkpoint (--resume), never restarted. Results as they come:
       DIR/<strategy>-s<seed>/ (steps.jsonl, evaluation.json, model.sefp,
       checkpoints/). --lr / --steps override the recipe's; --tag T names
       the folder <strategy>-T-s<seed> so a variant never resumes another's
       checkpoints.
score  scores every result with `otaro eval ppl` on the held-out text
       (wikitext-2-tokens/test.txt, first --tokens tokens, windows of 512): the
       untuned model and each tuned model at fp32 and E5M8..E5M2; the fp-tuned
       model also exported to GGUF (`otaro export`), requantized by llama.cpp to
       Q8_0 and Q4_0, and scored by the same command, so every number shares one
       protocol. Writes DIR/scores.json (kept between calls: only what is missing
       is scored).
zeroshot  zero-shot accuracy (`otaro eval zeroshot`: arc_easy, piqa, hellaswag,
       winogrande, the first --items questions of each) of the untuned model
       and of each run with --tag-prefix's tag (default: the Alpaca runs) at
       E5M8, E5M4 and E5M3, and of those fp runs' llama.cpp Q4_0 (made by
       score) in float32. Writes DIR/zeroshot.json, resumable like score.
table  prints the Markdown tables and writes the machine-readable summary.

--corpus alpaca trains on alpaca-subset-2k (instruction data, the recipe's
settings otherwise) and names the folders <strategy>-alpaca[-TAG]-s<seed>;
their perplexity is scored on WikiText-2 like every other run.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPE = "deploy/recipes/smollm2-otaro.yaml"
BITS = [8, 7, 6, 5, 4, 3, 2]
# Training data by --corpus: (path under data/corpora, format). "auto" reads
# each file by its kind: the held-out WikiText stays text.
CORPORA = {"wikitext": ("wikitext-2-tokens/valid.txt", "text"),
           "alpaca": ("alpaca-subset-2k/alpaca_data_2000.json", "auto")}
ZERO_SHOT_TASKS = ["arc_easy", "piqa", "hellaswag", "winogrande"]
ZERO_SHOT_BITS = [8, 4, 3]
OPT = "bazel-out/k8-opt/bin"
# Bits per weight of each format, for the pipeline table (SEFP.md: (m + 1) + 1/8
# per linear weight; llama.cpp: Q8_0 8.5, Q4_0 4.5).
BPW = {**{"E5M%d" % m: m + 1 + 1 / 8 for m in BITS}, "fp32": 32.0, "Q8_0": 8.5, "Q4_0": 4.5}


def sh(cmd, **kw):
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, **kw)


def default_model():
    out = subprocess.run(["bash", "tools/fetch_default_model.sh"], check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout.strip().splitlines()[-1]


def shared_dir():
    return os.environ.get("OTARO_SHARED_DIR", os.path.join(os.path.dirname(ROOT), "shared"))


def run_tag(args):
    return "-".join(t for t in (args.corpus if args.corpus != "wikitext" else "", args.tag) if t)


def run_dir(out, strategy, seed, tag=""):
    name = strategy.replace(":", "_").replace("+", "_") + ("-" + tag if tag else "")
    return os.path.join(out, "%s-s%d" % (name, seed))


def cmd_run(args):
    sh(["bazel", "build", "-c", "opt", "//tools/tune:otaro-tune"], stderr=subprocess.DEVNULL)
    model = default_model()
    for strategy in args.strategies.split(","):
        out = run_dir(args.out, strategy, args.seed, run_tag(args))
        if os.path.exists(os.path.join(out, "model.sefp")):
            print("done already: " + out, file=sys.stderr)
            continue
        cmd = [os.path.join(OPT, "tools/tune/otaro-tune"), "--recipe", RECIPE, "--model", model,
               "--data-dir", os.path.join(shared_dir(), "data/corpora"), "--out", out,
               "--strategy", strategy, "--seed", str(args.seed), "--reconstruction", args.reconstruction,
               "--eval-bits", ",".join(map(str, BITS)), "--quiet"]
        if args.steps:
            cmd += ["--steps", str(args.steps)]
        if args.lr:
            cmd += ["--lr", repr(args.lr)]
        if args.bits:
            cmd += ["--bits", args.bits]
        if args.schedule:
            cmd += ["--schedule", args.schedule, "--min-lr", repr(args.min_lr)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if args.corpus != "wikitext":
            path, fmt = CORPORA[args.corpus]
            cmd += ["--data", os.path.join(shared_dir(), "data/corpora", path), "--format", fmt]
        if os.path.exists(os.path.join(out, "checkpoints", "LATEST")):
            cmd.append("--resume")
        sh(cmd)


def ppl(model, args, bits, fp):
    text = os.path.join(shared_dir(), "data/corpora/wikitext-2-tokens/test.txt")
    cmd = [os.path.join(OPT, "tools/eval/otaro-eval"), "ppl", model, text, "--max_tokens", str(args.tokens),
           "--bits", ",".join(map(str, bits)), "--json"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if fp:
        cmd.append("--fp")
    out = sh(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    return {r["precision"]: r["perplexity"] for r in json.loads(out)["results"]}


def cmd_score(args):
    sh(["bazel", "build", "-c", "opt", "//tools/eval:otaro-eval", "//tools/export:otaro-export"],
       stderr=subprocess.DEVNULL)
    path = os.path.join(args.out, "scores.json")
    scores = json.load(open(path)) if os.path.exists(path) else {}

    def save():
        with open(path + ".tmp", "w") as f:
            json.dump(scores, f, indent=1, sort_keys=True)
        os.replace(path + ".tmp", path)

    model = default_model()
    if "untuned" not in scores:
        scores["untuned"] = ppl(model, args, BITS, fp=True)
        save()
    for name in sorted(os.listdir(args.out)):
        run = os.path.join(args.out, name)
        sefp = os.path.join(run, "model.sefp")
        if not os.path.exists(sefp) or name in scores:
            continue
        result = ppl(sefp, args, BITS, fp=False)
        latest = open(os.path.join(run, "checkpoints", "LATEST")).read().strip()
        master = os.path.join(run, "checkpoints", latest, "master.safetensors")
        result.update(ppl(master, args, [], fp=True))
        scores[name] = result
        save()
    # The standard pipeline: the fp-tuned model, exported, quantized by llama.cpp
    # (and, for reference, the untuned model requantized the same way).
    peer = None

    def quantize(source, name, allow_requantize):
        nonlocal peer
        if peer is None:
            peer = subprocess.run(["bash", os.path.join(shared_dir(), "tools/llamacpp-peer/build.sh"),
                                   args.peer_dir], check=True, stdout=subprocess.PIPE,
                                  text=True).stdout.strip().splitlines()[-1]
        result = {}
        for fmt in ["Q8_0", "Q4_0"]:
            q = os.path.join(args.out, "%s.%s.gguf" % (name, fmt))
            sh([os.path.join(peer, "llama-quantize")] + (["--allow-requantize"] if allow_requantize else []) +
               [source, q, fmt], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # otaro's float path scores the GGUF as llama.cpp stores it (Q8_0 /
            # Q4_0 dequantized), through the same evaluator and windows.
            result[fmt] = ppl(q, args, [], fp=True)["fp32"]
        return result

    if "pipeline:untuned" not in scores:
        scores["pipeline:untuned"] = quantize(model, "untuned", allow_requantize=True)
        save()
    # Every fp run (each lr / schedule variant) gets its own pipeline row, so
    # each otaro-tuned variant can be set against the fp model tuned alike.
    for fp_run in sorted(n for n in scores if n.startswith("fp-")):
        if "pipeline:" + fp_run in scores:
            continue
        run = os.path.join(args.out, fp_run)
        latest = open(os.path.join(run, "checkpoints", "LATEST")).read().strip()
        master = os.path.join(run, "checkpoints", latest, "master.safetensors")
        # fp-s1 (the first run) keeps its original file names.
        stem = "fp-tuned" if fp_run == "fp-s1" else fp_run + "-tuned"
        f16 = os.path.join(args.out, stem + ".f16.gguf")
        sh([os.path.join(OPT, "tools/export/otaro-export"), master, f16, "--format", "gguf", "--dtype", "f16"])
        scores["pipeline:" + fp_run] = quantize(f16, stem, allow_requantize=False)
        save()


def cmd_zeroshot(args):
    sh(["bazel", "build", "-c", "opt", "//tools/eval:otaro-eval"], stderr=subprocess.DEVNULL)
    path = os.path.join(args.out, "zeroshot.json")
    scores = json.load(open(path)) if os.path.exists(path) else {}
    models = {"untuned": default_model()}
    for name in sorted(os.listdir(args.out)):
        sefp = os.path.join(args.out, name, "model.sefp")
        if "-%s-" % args.tag_prefix in name and os.path.exists(sefp):
            models[name] = sefp
    # The standard pipeline's Q4_0 of those fp runs (written by `score`), in
    # float32 as llama.cpp stores it: the same questions through the same code.
    pipeline_tasks = args.pipeline_tasks.split(",") if args.pipeline_tasks else ZERO_SHOT_TASKS
    for name in sorted(list(models)):
        q4 = os.path.join(args.out, "%s-tuned.Q4_0.gguf" % name)
        if name.startswith("fp-") and os.path.exists(q4):
            models["pipeline:%s:Q4_0" % name] = q4
    for name, model in models.items():
        if name in scores:
            continue
        pipeline = name.startswith("pipeline:")
        out = sh([os.path.join(OPT, "tools/eval/otaro-eval"), "zeroshot", "--model", model,
                  "--task", ",".join(pipeline_tasks if pipeline else ZERO_SHOT_TASKS),
                  "--bits", "" if pipeline else ",".join(map(str, ZERO_SHOT_BITS))] +
                 (["--fp"] if pipeline else []) +
                 ["--limit", str(args.items), "--data-dir", os.path.join(shared_dir(), "data/eval"),
                  "--threads", str(args.threads), "--json"],
                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
        scores[name] = json.loads(out)
        with open(path + ".tmp", "w") as f:
            json.dump(scores, f, indent=1, sort_keys=True)
        os.replace(path + ".tmp", path)


def cmd_table(args):
    scores = json.load(open(os.path.join(args.out, "scores.json")))
    precisions = ["fp32"] + ["E5M%d" % m for m in BITS]
    print("| model | " + " | ".join(precisions) + " |")
    print("|---|" + "---|" * len(precisions))
    summary = {"date": datetime.date.today().isoformat(), "protocol": {
        "text": "wikitext-2-tokens/test.txt", "tokens": args.tokens, "window": 512,
        "tool": "otaro eval ppl"}, "recipe": RECIPE, "strategies": {}}
    for name in sorted(k for k in scores if not k.startswith("pipeline")):
        row = scores[name]
        fp = row.get("fp32")
        cells = []
        entry = {}
        for p in precisions:
            v = row.get(p)
            if v is None:
                cells.append("")
                continue
            ratio = v / fp if fp else None
            cells.append("%.2f" % v + (" (%.2fx)" % ratio if ratio and p != "fp32" else ""))
            entry[p] = {"perplexity": v, "ratio_to_fp32": ratio}
        summary["strategies"][name] = entry
        print("| %s | %s |" % (name, " | ".join(cells)))
    for name in sorted(k for k in scores if k.startswith("pipeline")):
        base = name.split(":", 1)[1]
        fp = scores[base]["fp32"]
        print("\nStandard pipeline (%s exported, quantized by llama.cpp), same protocol:\n" % base)
        print("| format | bits per weight | perplexity | ratio to that model's fp32 |\n|---|---|---|---|")
        entry = {}
        for fmt, v in scores[name].items():
            print("| %s | %.3g | %.2f | %.2fx |" % (fmt, BPW[fmt], v, v / fp))
            entry[fmt] = {"perplexity": v, "ratio_to_fp32": v / fp, "bits_per_weight": BPW[fmt]}
        summary.setdefault("pipelines", {})[base] = entry
    zpath = os.path.join(args.out, "zeroshot.json")
    if os.path.exists(zpath):
        zero = json.load(open(zpath))
        print("\nZero-shot accuracy, acc / acc_norm in %% (first %d questions of each set; "
              "standard error up to ~2.2 points):\n" % args.items)
        cols = ["%s E5M%d" % (t, m) for t in ZERO_SHOT_TASKS for m in ZERO_SHOT_BITS]
        print("| model | " + " | ".join(cols) + " |")
        print("|---|" + "---|" * len(cols))
        for name in sorted(zero):
            cells = {(r["task"], r["precision"]): r for r in zero[name]["results"]}
            row, entry = [], {}
            for t in ZERO_SHOT_TASKS:
                for m in ZERO_SHOT_BITS:
                    # A pipeline row (float32 of llama.cpp's Q4_0) fills the E5M3 column, its
                    # neighbour in bits per weight (4.5 against 4.125).
                    key = "fp32" if name.startswith("pipeline:") and m == 3 else "E5M%d" % m
                    r = cells.get((t, key))
                    row.append("%.1f / %.1f" % (100 * r["acc"], 100 * r["acc_norm"]) if r else "")
                    if r:
                        entry.setdefault(t, {})[key] = {
                            "acc": r["acc"], "acc_norm": r["acc_norm"], "count": r["count"]}
            print("| %s | %s |" % (name, " | ".join(row)))
            summary.setdefault("zero_shot", {})[name] = entry
    summary["recipe_run"] = args.recipe_run
    if args.json:
        os.makedirs(os.path.dirname(args.json), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1, sort_keys=True)
            f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["run", "score", "zeroshot", "table"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--strategies", default="otaro,uniform,fp")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=0, help="override the recipe's steps")
    ap.add_argument("--lr", type=float, default=0.0, help="override the recipe's learning rate")
    ap.add_argument("--bits", default="", help="override the recipe's bit set B (e.g. 3,4,8)")
    ap.add_argument("--schedule", default="", help="override the recipe's lr schedule (constant|cosine)")
    ap.add_argument("--min-lr", type=float, default=0.0, help="final lr of a cosine --schedule")
    ap.add_argument("--tag", default="", help="variant name in the run folder (<strategy>-TAG-s<seed>)")
    ap.add_argument("--corpus", default="wikitext", choices=sorted(CORPORA), help="training data")
    ap.add_argument("--items", type=int, default=500, help="zero-shot questions per task")
    ap.add_argument("--tag-prefix", default="alpaca", help="zeroshot scores the runs with this tag")
    ap.add_argument("--pipeline-tasks", default="",
                    help="zeroshot: the sets scored for the fp runs' llama.cpp Q4_0 (default: all four)")
    ap.add_argument("--reconstruction", default="midpoint")
    ap.add_argument("--threads", type=int, default=0, help="trainer / evaluator threads (0 = all cores)")
    ap.add_argument("--tokens", type=int, default=8192, help="held-out tokens scored")
    ap.add_argument("--peer-dir", default="/tmp/llamacpp-peer")
    ap.add_argument("--json", default="")
    ap.add_argument("--recipe-run", default="uniform-s1",
                    help="the run whose settings the recipe holds (marked in the summary)")
    args = ap.parse_args()
    os.chdir(ROOT)
    {"run": cmd_run, "score": cmd_score, "zeroshot": cmd_zeroshot, "table": cmd_table}[args.command](args)


if __name__ == "__main__":
    main()
