#!/usr/bin/env bash
# Builds one libFuzzer binary with clang (-fsanitize=fuzzer,address,undefined).
# Used by run_gguf_fuzz.sh and run_tokenizer_json_fuzz.sh; not by Bazel (the
# gcc cc_tests run the same entry points over seeds + mutations instead).
#   build_fuzzer.sh OUT SOURCE...
set -euo pipefail
out="$1"
shift
repo="$(cd "$(dirname "$0")/../.." && pwd)"
CXX="${CXX:-clang++}"
absl_libs=(
  -labsl_statusor -labsl_status -labsl_cord -labsl_cord_internal -labsl_cordz_info
  -labsl_cordz_handle -labsl_cordz_functions -labsl_str_format_internal
  -labsl_synchronization -labsl_graphcycles_internal -labsl_time -labsl_civil_time
  -labsl_time_zone -labsl_hash -labsl_city -labsl_low_level_hash -labsl_raw_hash_set
  -labsl_strings -labsl_strings_internal -labsl_int128 -labsl_throw_delegate -labsl_base
  -labsl_spinlock_wait -labsl_raw_logging_internal -labsl_log_severity
  -labsl_malloc_internal -labsl_stacktrace -labsl_symbolize -labsl_debugging_internal
  -labsl_demangle_internal -labsl_bad_optional_access -labsl_bad_variant_access
  -labsl_strerror -lpthread
)
srcs=()
for s in "$@"; do srcs+=("$repo/$s"); done
"$CXX" -std=c++20 -O1 -g -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -DPCRE2_CODE_UNIT_WIDTH=8 -I"$repo" \
  "${srcs[@]}" -o "$out" "${absl_libs[@]}" -lpcre2-8
echo "built $out"
