#!/usr/bin/env bash
# Coverage-guided fuzzing of the GGUF reader (engine/formats/gguf_fuzz.cc)
# with libFuzzer + ASan/UBSan, for a bounded time.
#   tools/fuzz/run_gguf_fuzz.sh [SECONDS]        (default 60)
# Env: OTARO_SHARED_DIR (seed GGUF files; default ../shared), FUZZ_WORK (work
# dir; default /tmp/otaro-fuzz/gguf). Crashing inputs are left in FUZZ_WORK.
set -euo pipefail
seconds="${1:-60}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
shared="${OTARO_SHARED_DIR:-$repo/../shared}"
work="${FUZZ_WORK:-/tmp/otaro-fuzz/gguf}"
mkdir -p "$work/corpus"
"$repo/tools/fuzz/build_fuzzer.sh" "$work/gguf_fuzzer" \
  engine/formats/gguf_fuzz.cc engine/formats/gguf.cc common/mapped_file.cc
# Seeds: the real small GGUF files (the fuzzer keeps what adds coverage).
for f in "$shared"/data/models/stories260K-gguf/*.gguf "$shared"/data/tokenizer-vectors/*.gguf; do
  [ -f "$f" ] && head -c 65536 "$f" > "$work/corpus/seed-$(basename "$f")"
done
cd "$work"
./gguf_fuzzer -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 \
  -timeout=10 -print_final_stats=1 corpus
