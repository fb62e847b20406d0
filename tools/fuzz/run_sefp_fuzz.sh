#!/usr/bin/env bash
# Builds the real libFuzzer + AddressSanitizer binary for the SEFP checkpoint /
# safetensors reader (sefp/fuzz/checkpoint_fuzz_target.cc) with clang, seeds a
# corpus with valid checkpoints, and fuzzes for a bounded time.
#
#   tools/fuzz/run_sefp_fuzz.sh [SECONDS=60] [WORKDIR=/tmp/otaro_sefp_fuzz]
#
# Exit status is libFuzzer's: non-zero (and a crash-* file in WORKDIR) on a finding.
# Built outside Bazel because Bazel's toolchain here is gcc, which has no libFuzzer;
# the same entry point runs under gcc in //sefp/fuzz:checkpoint_fuzz_test.
set -euo pipefail

SECONDS_TO_RUN="${1:-60}"
WORK="${2:-/tmp/otaro_sefp_fuzz}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
mkdir -p "$WORK/obj" "$WORK/corpus"

CXX="${CXX:-clang++}"
FLAGS=(-std=c++20 -O1 -g -fno-omit-frame-pointer -ffp-contract=off -I.
       -fsanitize=fuzzer-no-link,address,undefined
       -DSPDLOG_SHARED_LIB -DSPDLOG_COMPILED_LIB -DSPDLOG_FMT_EXTERNAL)
SOURCES=(common/safetensors/safetensors.cc common/utf8.cc common/mapped_file.cc common/atomic_file.cc
         common/logging.cc common/page_buffer.cc sefp/format.cc sefp/layout.cc sefp/checkpoint.cc
         sefp/kernels/gemm.cc sefp/kernels/gemm_scalar.cc sefp/kernels/thread_pool.cc
         sefp/kernels/activations.cc
         sefp/fuzz/checkpoint_fuzz_target.cc)

objects=()
for src in "${SOURCES[@]}"; do
  obj="$WORK/obj/$(echo "$src" | tr / _).o"
  "$CXX" "${FLAGS[@]}" -c "$src" -o "$obj"
  objects+=("$obj")
done
# The AVX2 kernels alone get -mavx2 -mfma (as in sefp/kernels/BUILD).
"$CXX" "${FLAGS[@]}" -mavx2 -mfma -c sefp/kernels/gemm_avx2.cc -o "$WORK/obj/gemm_avx2.o"
objects+=("$WORK/obj/gemm_avx2.o")
"$CXX" "${FLAGS[@]}" -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx512vbmi -mavx512bitalg -mgfni -mfma -c sefp/kernels/gemm_avx512.cc \
  -o "$WORK/obj/gemm_avx512.o"
"$CXX" "${FLAGS[@]}" -mavx512f -mavx512bw -mavx512vl -mavx512dq -c sefp/kernels/activations_avx512.cc \
  -o "$WORK/obj/activations_avx512.o"
objects+=("$WORK/obj/gemm_avx512.o" "$WORK/obj/activations_avx512.o")

ABSL_LIBS=$(sed -n 's/.*"\(-labsl_[a-z_]*\)".*/\1/p' third_party/system.BUILD | tr '\n' ' ')
# shellcheck disable=SC2086
"$CXX" -fsanitize=fuzzer,address,undefined "${objects[@]}" -o "$WORK/sefp_checkpoint_fuzzer" \
  $ABSL_LIBS -lspdlog -lfmt -lpthread

# Seed corpus: valid checkpoints written by the same code the tests use.
"$CXX" -std=c++20 -O1 -I. -DSPDLOG_SHARED_LIB -DSPDLOG_COMPILED_LIB -DSPDLOG_FMT_EXTERNAL \
  sefp/fuzz/write_seeds.cc sefp/fuzz/fuzz_seeds.cc common/safetensors/safetensors.cc \
  common/utf8.cc common/mapped_file.cc common/atomic_file.cc common/logging.cc sefp/format.cc \
  sefp/checkpoint.cc -o "$WORK/write_seeds" $ABSL_LIBS -lspdlog -lfmt -lpthread
"$WORK/write_seeds" "$WORK/corpus"

cd "$WORK"
exec ./sefp_checkpoint_fuzzer -max_total_time="$SECONDS_TO_RUN" -max_len=8192 -rss_limit_mb=2048 \
  -print_final_stats=1 corpus
