#!/usr/bin/env python3
"""A model exported by `otaro export --format hf`, loaded by Hugging Face
transformers (PyTorch, float32, CPU), scored by the protocol of `otaro eval ppl`
and set beside otaro's own score of the same folder (issue 15, part 3).

  python3 tools/experiments/hf_export_check.py MODEL OUT_DIR --python VENV_PYTHON
      [--tokens 8192] [--text wikitext-2-tokens/test.txt]

MODEL: anything otaro exports (a tuned run's master.safetensors, a GGUF, ...).
Exports it to OUT_DIR/hf (float32), runs `otaro eval ppl OUT_DIR/hf --fp` and,
with VENV_PYTHON (a Python with torch + transformers, e.g.
`python3 -m venv /tmp/refv && /tmp/refv/bin/pip install torch transformers`),
the same windows in transformers: the text read as otaro reads it (CRLF -> LF),
tokenized by the exported tokenizer.json, BOS as otaro adds it, the first
--tokens tokens, non-overlapping windows of 512 whose first token is not
scored. Prints both perplexities, their relative difference and whether the
token ids agreed, and writes OUT_DIR/hf_check.json.
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPT = os.path.join(ROOT, "bazel-out/k8-opt/bin")

# Runs inside VENV_PYTHON: argv = folder, text, tokens, window, bos id or -1.
TRANSFORMERS_SIDE = r"""
import json, math, sys
import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
folder, text_path, n, window, bos = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(2)
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
model.eval()
tokenizer = PreTrainedTokenizerFast(tokenizer_file=folder + "/tokenizer.json")
text = open(text_path, encoding="utf-8", newline="").read().replace("\r\n", "\n")
ids = ([bos] if bos >= 0 else []) + tokenizer(text, add_special_tokens=False)["input_ids"]
ids = ids[:n]
nll, count = 0.0, 0
with torch.no_grad():
    for begin in range(0, len(ids), window):
        chunk = ids[begin:begin + window]
        if len(chunk) < 2:
            break
        logits = model(torch.tensor([chunk])).logits[0].double()
        logp = torch.log_softmax(logits[:-1], dim=-1)
        target = torch.tensor(chunk[1:])
        nll -= logp[torch.arange(len(chunk) - 1), target].sum().item()
        count += len(chunk) - 1
print(json.dumps({"perplexity": math.exp(nll / count), "scored": count,
                  "tokens": len(ids), "torch": torch.__version__,
                  "transformers": __import__("transformers").__version__}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--python", required=True, help="a Python with torch and transformers")
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--text", default="wikitext-2-tokens/test.txt")
    args = ap.parse_args()
    shared = os.environ.get("OTARO_SHARED_DIR", os.path.join(os.path.dirname(ROOT), "shared"))
    text = os.path.join(shared, "data/corpora", args.text)
    subprocess.run(["bazel", "build", "-c", "opt", "//tools/eval:otaro-eval", "//tools/export:otaro-export"],
                   check=True, cwd=ROOT, stderr=subprocess.DEVNULL)
    folder = os.path.join(args.out, "hf")
    if not os.path.exists(os.path.join(folder, "config.json")):
        subprocess.run([os.path.join(OPT, "tools/export/otaro-export"), args.model, folder, "--format", "hf",
                        "--dtype", "f32"], check=True)
    otaro = json.loads(subprocess.run(
        [os.path.join(OPT, "tools/eval/otaro-eval"), "ppl", folder, text, "--max_tokens", str(args.tokens),
         "--bits", "", "--fp", "--json"], check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True).stdout)
    otaro_ppl = {r["precision"]: r["perplexity"] for r in otaro["results"]}["fp32"]
    config = json.load(open(os.path.join(folder, "config.json")))
    bos = config.get("bos_token_id", -1) if otaro.get("bos_added") else -1
    reference = json.loads(subprocess.run(
        [args.python, "-c", TRANSFORMERS_SIDE, folder, text, str(args.tokens), "512", str(bos)],
        check=True, stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()[-1])
    result = {
        "model": args.model, "exported": folder, "text": args.text, "tokens": args.tokens,
        "otaro_fp32_perplexity": otaro_ppl, "transformers_fp32_perplexity": reference["perplexity"],
        "relative_difference": abs(otaro_ppl - reference["perplexity"]) / reference["perplexity"],
        "transformers_tokens": reference["tokens"], "otaro_bos_added": otaro.get("bos_added"),
        "torch": reference["torch"], "transformers": reference["transformers"],
    }
    with open(os.path.join(args.out, "hf_check.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(main())
