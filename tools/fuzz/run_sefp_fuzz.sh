#!/usr/bin/env bash
# Coverage-guided fuzzing of the SEFP checkpoint / safetensors reader
# (sefp/fuzz/checkpoint_fuzz_target.cc) with libFuzzer + ASan/UBSan:
# run_all.sh's `sefp_checkpoint` target alone (seeds: valid checkpoints in
# tools/fuzz/corpus/sefp_checkpoint, written by sefp/fuzz/write_seeds.cc).
#   tools/fuzz/run_sefp_fuzz.sh [SECONDS]   (default 60)
# Env: as run_all.sh. Built outside Bazel because Bazel's toolchain here is
# gcc, which has no libFuzzer; the same entry point runs under gcc in
# //sefp/fuzz:checkpoint_fuzz_test.
exec env FUZZ_TARGETS=sefp_checkpoint "$(dirname "$0")/run_all.sh" "${1:-60}"
