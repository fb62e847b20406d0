#!/usr/bin/env bash
# Coverage-guided fuzzing of tokenizer.json loading
# (engine/tokenizer/tokenizer_json_fuzz.cc) with libFuzzer + ASan/UBSan:
# run_all.sh's `tokenizer_json` target alone.
#   tools/fuzz/run_tokenizer_json_fuzz.sh [SECONDS]   (default 60)
# Env: as run_all.sh.
exec env FUZZ_TARGETS=tokenizer_json "$(dirname "$0")/run_all.sh" "${1:-60}"
