#!/usr/bin/env python3
"""otaro beside llama.cpp on this machine, in one run: prints one Markdown table.

For each thread count, otaro's engine_bench and llama.cpp's llama-bench /
llama-batched-bench run one after the other on the same model (the quick-start
SmolLM2 GGUF; llama.cpp gets it requantized to Q4_0 and Q8_0), and every row
pairs a measure with its peer: E5M3 (4.125 bits per weight) with Q4_0 (4.5),
E5M7 (8.125) and E5M8 (9.125) with Q8_0 (8.5).

  decode, batch 1   engine_bench --batch 1 --prompt 128 --decode 64 (context
                    128..192)  vs  llama-bench -p 0 -n 64 -d 128 (the same)
  decode, batch B   engine_bench --batch B --prompt 64 --decode 32, all
                    sequences' tokens/s  vs  llama-batched-bench -npp 64 -ntg 32
                    -npl B, S_TG
  prefill           engine_bench --batch 1 --prompt 128  vs  llama-bench -p 128 -n 0

llama.cpp comes from ../shared/tools/llamacpp-peer/build.sh (built outside the
repository). Figures are only comparable within one run: the machines differ
from day to day and are shared.

  python3 tools/bench/peer_llamacpp.py [--model GGUF] [--threads 1,2] [--batches 8,16] [--rounds 3]

Each round runs otaro then llama.cpp for every thread count; a cell is the
median over the rounds (the rounds interleave the two programs, so a burst of
load on the shared machine hits both).
"""
import statistics
import argparse
import datetime
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAIRS = [(3, "Q4_0"), (7, "Q8_0"), (8, "Q8_0")]


def run(cmd, **kw):
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, **kw)
    return out.stdout


def engine_rows(text):
    """engine_bench's Markdown rows -> {(bits, threads, batch): (prefill, decode)}."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\| E5M(\d) \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \|", line)
        if m:
            bits, threads, batch = int(m[1]), int(m[2]), int(m[3])
            rows[(bits, threads, batch)] = (float(m[4]), float(m[5]))
    return rows


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="GGUF (default: the quick-start model)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batches", default="8,16")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; cells are medians")
    ap.add_argument("--peer-dir", default="/tmp/llamacpp-peer", help="where llama.cpp is built")
    args = ap.parse_args()
    os.chdir(ROOT)
    model = args.model or run(["bash", "tools/fetch_default_model.sh"]).strip().splitlines()[-1]
    shared = os.environ.get("OTARO_SHARED_DIR", os.path.join(os.path.dirname(ROOT), "shared"))
    peer = run(["bash", os.path.join(shared, "tools/llamacpp-peer/build.sh"), args.peer_dir]).strip().splitlines()[-1]
    run(["bazel", "build", "-c", "opt", "//engine/cpu:engine_bench"], stderr=subprocess.DEVNULL)
    engine = os.path.join(ROOT, "bazel-bin/engine/cpu/engine_bench")

    cache = os.path.join(ROOT, ".cache/peer")
    os.makedirs(cache, exist_ok=True)
    quantized = {}
    for fmt in sorted({f for _, f in PAIRS}):
        path = os.path.join(cache, os.path.basename(model).replace(".gguf", "") + "." + fmt + ".gguf")
        if not os.path.exists(path):
            run([os.path.join(peer, "llama-quantize"), "--allow-requantize", model, path, fmt],
                stderr=subprocess.DEVNULL)
        quantized[fmt] = path

    threads = [int(t) for t in args.threads.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    bits = ",".join(str(b) for b, _ in PAIRS)
    samples = {}  # (measure, threads, bits, peer format) -> ([otaro tok/s], [llama.cpp tok/s])
    isa = "?"

    def add(key, ours_rate, peer_rate):
        a, b = samples.setdefault(key, ([], []))
        a.append(ours_rate)
        b.append(peer_rate)

    for _ in range(args.rounds):
        for t in threads:
            single = run([engine, model, "--bits", bits, "--threads", str(t), "--batch", "1",
                          "--prompt", "128", "--decode", "64", "--stream_mib", "256"])
            m = re.search(r"SEFP kernels (\S+)", single)
            isa = m[1] if m else isa
            many = run([engine, model, "--bits", bits, "--threads", str(t), "--batch",
                        ",".join(map(str, batches)), "--prompt", "64", "--decode", "32",
                        "--stream_mib", "256"])
            ours = {**engine_rows(single), **engine_rows(many)}
            # Prefill from an empty context; decode from depth 128 (-d), the
            # context engine_bench decodes at after its 128-token prompt.
            bench = []
            for shape in (["-p", "128", "-n", "0"], ["-p", "0", "-n", "64", "-d", "128"]):
                bench += json.loads(run([os.path.join(peer, "llama-bench"), "-m", quantized["Q4_0"],
                                         "-m", quantized["Q8_0"], *shape, "-t", str(t),
                                         "-r", "1", "-o", "json"], stderr=subprocess.DEVNULL))
            peer_rate = {}
            for r in bench:
                fmt = "Q4_0" if r["model_filename"] == quantized["Q4_0"] else "Q8_0"
                kind = "prefill" if r["n_prompt"] > 0 else "decode1"
                peer_rate[(fmt, kind)] = r["avg_ts"]
            for fmt, path in quantized.items():
                out = run([os.path.join(peer, "llama-batched-bench"), "-m", path, "-c", "4096",
                           "-npp", "64", "-ntg", "32", "-npl", ",".join(map(str, batches)),
                           "-t", str(t), "--output-format", "jsonl"], stderr=subprocess.DEVNULL)
                for line in out.splitlines():
                    if line.startswith("{"):
                        r = json.loads(line)
                        peer_rate[(fmt, "decode%d" % r["pl"])] = r["speed_tg"]
            for b, fmt in PAIRS:
                add(("prefill (128-token prompt)", t, b, fmt), ours[(b, t, 1)][0], peer_rate[(fmt, "prefill")])
                add(("decode, batch 1", t, b, fmt), ours[(b, t, 1)][1], peer_rate[(fmt, "decode1")])
                for batch in batches:
                    add(("decode, batch %d (all sequences)" % batch, t, b, fmt), ours[(b, t, batch)][1],
                        peer_rate[(fmt, "decode%d" % batch)])
    table = [(k[0], k[1], k[2], statistics.median(v[0]), k[3], statistics.median(v[1]))
             for k, v in samples.items()]

    load = os.getloadavg()
    print("otaro vs llama.cpp, %s UTC; CPU: %s, %d hardware threads; otaro SEFP kernels: %s; "
          "load average at the end %.2f %.2f %.2f" % (
              datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"), cpu_model(), os.cpu_count(), isa, *load))
    print("model: %s (llama.cpp: requantized with llama-quantize); medians of %d interleaved rounds\n"
          % (os.path.basename(model), args.rounds))
    print("| measure | threads | otaro | tok/s | llama.cpp | tok/s | otaro / llama.cpp |")
    print("|---|---|---|---|---|---|---|")
    order = {"prefill": 0, "decode, batch 1": 1}
    table.sort(key=lambda r: (order.get(r[0].split(" (")[0], 2), r[0], r[1], r[2]))
    for measure, t, b, ours_rate, fmt, peer_rate in table:
        print("| %s | %d | E5M%d | %.1f | %s | %.1f | %.2f |" % (measure, t, b, ours_rate, fmt, peer_rate,
                                                             ours_rate / peer_rate))


if __name__ == "__main__":
    main()
