#!/usr/bin/env bash
# Builds every libFuzzer target (clang -fsanitize=fuzzer,address,undefined) and
# runs each for a bounded time over its committed seed corpus
# tools/fuzz/corpus/<target>/ (CI runs it: .ci/run).
#
#   tools/fuzz/run_all.sh [SECONDS_EACH]     (default 10)
#
# Prints one line per target
#   fuzz <target>: N runs, M seconds, K new corpus items, C crashes
# and a last line "fuzz: T targets, C crashes". Exits non-zero when a target
# crashed (or timed out / ran out of memory, or failed to build); the crashing
# input is left in $FUZZ_WORK/<target>/ (printed). New corpus items go to
# $FUZZ_WORK/<target>/new, never into the repository.
# Env: FUZZ_WORK (default /tmp/otaro-fuzz-all; objects are reused from it when
# no source or header changed), FUZZ_JOBS (parallel compiles, default 2),
# FUZZ_TARGETS (space-separated subset), FUZZ_OPT (default -O1), OTARO_SHARED_DIR (extra GGUF seeds
# when present; default ../shared), CXX (default clang++).
set -uo pipefail
seconds="${1:-10}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
work="${FUZZ_WORK:-/tmp/otaro-fuzz-all}"
jobs="${FUZZ_JOBS:-2}"
shared="${OTARO_SHARED_DIR:-$repo/../shared}"
CXX="${CXX:-clang++}"
cd "$repo" || exit 1
# -O1: -O0 halves the cold build but runs 5-50x fewer inputs per second
# (nlohmann / Abseil templates under ASan); FUZZ_OPT=-O0 to build faster.
opt="${FUZZ_OPT:--O1}"

# The otaro.v1 messages, generated here by protoc (Bazel's copies may be absent
# or in another output tree).
# Files are replaced only when they change, so their objects are reused.
GEN="$work/gen"
rm -rf "$GEN.new" && mkdir -p "$GEN.new" "$GEN/otaro/v1"
if ! protoc -Iproto --cpp_out="$GEN.new" proto/otaro/v1/common.proto proto/otaro/v1/inference.proto; then
  echo "fuzz: protoc failed"
  echo "fuzz: 0 targets, 1 crashes"
  exit 1
fi
for f in "$GEN.new"/otaro/v1/*; do
  cmp -s "$f" "$GEN/otaro/v1/$(basename "$f")" || cp "$f" "$GEN/otaro/v1/"
done
CFLAGS=(-std=c++20 "$opt" -gline-tables-only -fno-omit-frame-pointer -ffp-contract=off -I. -I"$GEN"
        -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
        -DPCRE2_CODE_UNIT_WIDTH=8
        -DSPDLOG_SHARED_LIB -DSPDLOG_COMPILED_LIB -DSPDLOG_FMT_EXTERNAL)
# Objects of different flags live apart.
objdir="$work/obj$(echo "${CFLAGS[*]}" | md5sum | cut -c1-8)"
mkdir -p "$objdir"
read -r -a ABSL_LIBS <<<"$(sed -n 's/.*"\(-labsl_[a-z_0-9]*\)".*/\1/p' third_party/system.BUILD | tr '\n' ' ')"

# Targets: name | sources | extra link flags | -max_len
TOKENIZER_SRCS="engine/tokenizer/loaders.cc engine/tokenizer/tokenizer.cc engine/tokenizer/utf8.cc common/utf8.cc engine/formats/gguf.cc common/mapped_file.cc common/atomic_file.cc"
SEFP_SRCS="common/safetensors/safetensors.cc common/utf8.cc common/mapped_file.cc common/atomic_file.cc common/logging.cc common/page_buffer.cc sefp/format.cc sefp/layout.cc sefp/checkpoint.cc sefp/kernels/gemm.cc sefp/kernels/gemm_scalar.cc sefp/kernels/thread_pool.cc sefp/kernels/gemm_avx2.cc sefp/kernels/gemm_avx512.cc sefp/kernels/activations.cc sefp/kernels/activations_avx512.cc"
TARGETS=(
  "gguf|engine/formats/gguf_fuzz.cc engine/formats/gguf.cc common/mapped_file.cc||65536"
  "sefp_checkpoint|sefp/fuzz/checkpoint_fuzz_target.cc $SEFP_SRCS|-lspdlog -lfmt|8192"
  "tokenizer_json|engine/tokenizer/tokenizer_json_fuzz.cc $TOKENIZER_SRCS|-lpcre2-8|16384"
  "vocab_merges|tools/fuzz/targets/vocab_merges_fuzz.cc $TOKENIZER_SRCS|-lpcre2-8|16384"
  "tokenizer_files|tools/fuzz/targets/tokenizer_files_fuzz.cc $TOKENIZER_SRCS|-lpcre2-8|16384"
  "config_yaml|tools/fuzz/targets/config_yaml_fuzz.cc server/config/config.cc common/atomic_file.cc|-lyaml-cpp|8192"
  "dataset|tools/fuzz/targets/dataset_fuzz.cc trainer/data/dataset.cc trainer/data/data_source.cc trainer/data/examples.cc trainer/data/data_report.cc engine/tokenizer/chat_template.cc $TOKENIZER_SRCS|-lpcre2-8|16384"
  "chat_template|tools/fuzz/targets/chat_template_fuzz.cc engine/tokenizer/chat_template.cc $TOKENIZER_SRCS|-lpcre2-8|8192"
  "token_file|tools/fuzz/targets/token_file_fuzz.cc server/auth/token_file.cc common/atomic_file.cc|-lcrypto|8192"
  "openai_request|tools/fuzz/targets/openai_request_fuzz.cc server/openai/openai_api.cc $GEN/otaro/v1/inference.pb.cc $GEN/otaro/v1/common.pb.cc|-lprotobuf|16384"
  "http_request|tools/fuzz/targets/http_request_fuzz.cc server/http/http_listener.cc server/http/tls_terminator.cc common/logging.cc server/openai/openai_api.cc $GEN/otaro/v1/inference.pb.cc $GEN/otaro/v1/common.pb.cc|-lcivetweb -lssl -lcrypto -lprotobuf -lspdlog -lfmt|16384"
)
if [ -n "${FUZZ_TARGETS:-}" ]; then
  selected=()
  for t in "${TARGETS[@]}"; do
    for want in $FUZZ_TARGETS; do [ "${t%%|*}" = "$want" ] && selected+=("$t"); done
  done
  TARGETS=("${selected[@]}")
fi

obj_of() { echo "$objdir/$(echo "$1" | tr / _).o"; }
# Whether $1's object is missing or older than the source or any header it read.
stale() {
  local obj dep f
  obj="$(obj_of "$1")"; dep="${obj%.o}.d"
  [ -f "$obj" ] && [ -f "$dep" ] || return 0
  for f in $(sed -e 's/^[^:]*://' -e 's/\\$//' "$dep"); do
    [ "$f" -nt "$obj" ] && return 0
  done
  return 1
}
compile() {
  local src="$1" obj extra=()
  obj="$(obj_of "$src")"
  # Each SIMD kernel alone gets its ISA flags (as in sefp/kernels/BUILD); they
  # are only called after a cpuid check.
  case "$src" in
    *gemm_avx2.cc) extra=(-mavx2 -mfma) ;;
    *gemm_avx512.cc) extra=(-mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx512vbmi -mavx512bitalg -mgfni -mfma) ;;
    *activations_avx512.cc) extra=(-mavx512f -mavx512bw -mavx512vl -mavx512dq) ;;
  esac
  "$CXX" "${CFLAGS[@]}" "${extra[@]}" -MMD -MF "${obj%.o}.d" -c "$src" -o "$obj"
}

# Compile every distinct source once, $jobs at a time.
build_start=$SECONDS
declare -A seen=()
to_build=()
for t in "${TARGETS[@]}"; do
  IFS='|' read -r _ srcs _ _ <<<"$t"
  for s in $srcs; do
    [ -n "${seen[$s]:-}" ] && continue
    seen[$s]=1
    stale "$s" && to_build+=("$s")
  done
done
build_failed=0
running=0
for s in "${to_build[@]}"; do
  compile "$s" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n || build_failed=1; running=$((running - 1)); fi
done
while [ "$running" -gt 0 ]; do wait -n || build_failed=1; running=$((running - 1)); done
if [ "$build_failed" -ne 0 ]; then
  echo "fuzz: build failed (see the compiler errors above)"
  echo "fuzz: ${#TARGETS[@]} targets, 1 crashes"
  exit 1
fi
echo "fuzz: built ${#to_build[@]} objects in $((SECONDS - build_start)) seconds"

total_crashes=0
for t in "${TARGETS[@]}"; do
  IFS='|' read -r name srcs libs max_len <<<"$t"
  dir="$work/$name"
  mkdir -p "$dir"
  rm -rf "$dir/new" "$dir/seeds-shared" "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-*
  mkdir -p "$dir/new"
  objects=()
  for s in $srcs; do objects+=("$(obj_of "$s")"); done
  # shellcheck disable=SC2086
  if ! "$CXX" -fsanitize=fuzzer,address,undefined "${objects[@]}" -o "$dir/fuzzer" \
      "${ABSL_LIBS[@]}" $libs -lpthread; then
    echo "fuzz $name: link failed, 1 crashes"
    total_crashes=$((total_crashes + 1))
    continue
  fi
  corpora=("$dir/new" "$repo/tools/fuzz/corpus/$name")
  if [ "$name" = gguf ]; then  # the real small GGUF files, when the shared folder is here
    mkdir -p "$dir/seeds-shared"
    for f in "$shared"/data/models/stories260K-gguf/*.gguf "$shared"/data/tokenizer-vectors/*.gguf; do
      [ -f "$f" ] && head -c "$max_len" "$f" > "$dir/seeds-shared/$(basename "$f")"
    done
    corpora+=("$dir/seeds-shared")
  fi
  start=$SECONDS
  (cd "$dir" && ./fuzzer -max_total_time="$seconds" -max_len="$max_len" -rss_limit_mb=2048 \
      -timeout=10 -print_final_stats=1 -artifact_prefix="$dir/" "${corpora[@]}") \
      > "$dir/log" 2>&1
  rc=$?
  elapsed=$((SECONDS - start))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -n 1)
  new_items=$(find "$dir/new" -type f | wc -l)
  crashes=0
  if [ "$rc" -ne 0 ]; then
    crashes=1
    total_crashes=$((total_crashes + 1))
    tail -n 40 "$dir/log"
    for a in "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-*; do
      [ -f "$a" ] && echo "fuzz $name: crashing input left in $a"
    done
  fi
  echo "fuzz $name: ${runs:-0} runs, $elapsed seconds, $new_items new corpus items, $crashes crashes"
done
echo "fuzz: ${#TARGETS[@]} targets, $total_crashes crashes"
[ "$total_crashes" -eq 0 ]
