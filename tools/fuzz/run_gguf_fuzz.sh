#!/usr/bin/env bash
# Coverage-guided fuzzing of the GGUF reader (engine/formats/gguf_fuzz.cc) with
# libFuzzer + ASan/UBSan, for a bounded time: run_all.sh's `gguf` target alone
# (its sources, flags, seeds and report live there, once).
#   tools/fuzz/run_gguf_fuzz.sh [SECONDS]        (default 60)
# Env: as run_all.sh (FUZZ_WORK, OTARO_SHARED_DIR for the real GGUF seeds, CXX).
exec env FUZZ_TARGETS=gguf "$(dirname "$0")/run_all.sh" "${1:-60}"
