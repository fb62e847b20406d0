#!/usr/bin/env bash
# Coverage-guided fuzzing of tokenizer.json loading
# (engine/tokenizer/tokenizer_json_fuzz.cc) with libFuzzer + ASan/UBSan.
#   tools/fuzz/run_tokenizer_json_fuzz.sh [SECONDS]   (default 60)
# Env: FUZZ_WORK (default /tmp/otaro-fuzz/tokenizer_json).
set -euo pipefail
seconds="${1:-60}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
work="${FUZZ_WORK:-/tmp/otaro-fuzz/tokenizer_json}"
mkdir -p "$work/corpus"
"$repo/tools/fuzz/build_fuzzer.sh" "$work/tokenizer_json_fuzzer" \
  engine/tokenizer/tokenizer_json_fuzz.cc engine/tokenizer/loaders.cc \
  engine/tokenizer/tokenizer.cc engine/tokenizer/utf8.cc engine/formats/gguf.cc \
  common/mapped_file.cc common/atomic_file.cc
cat > "$work/corpus/seed-bytelevel.json" <<'JSON'
{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"Ġ":3,"Ġab":4,"1":5},"merges":["a b","Ġ ab"]},"added_tokens":[{"id":6,"content":"<s>","special":true}],"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Digits","individual_digits":true},{"type":"ByteLevel","add_prefix_space":false,"use_regex":true}]},"decoder":{"type":"ByteLevel"}}
JSON
cat > "$work/corpus/seed-spm.json" <<'JSON'
{"model":{"type":"BPE","vocab":{"<unk>":0,"<s>":1,"</s>":2,"<0x41>":3,"▁":4,"a":5,"b":6,"ab":7,"▁ab":8},"merges":[["a","b"],["▁","ab"]],"byte_fallback":true,"unk_token":"<unk>"},"pre_tokenizer":{"type":"Metaspace","prepend_scheme":"first"}}
JSON
cd "$work"
./tokenizer_json_fuzzer -max_total_time="$seconds" -max_len=16384 -rss_limit_mb=2048 \
  -timeout=10 -print_final_stats=1 corpus
