// libFuzzer entry point for the GPT-2 style vocab.json + merges.txt loader
// (LoadFromVocabAndMerges): the input is vocab.json, NUL, merges.txt, NUL,
// tokenizer_config.json. When they load, encode and decode a few strings.
// Built and run by tools/fuzz/run_all.sh.
#include <cstddef>
#include <cstdint>

#include "engine/tokenizer/loaders.h"
#include "tools/fuzz/targets/fuzz_split.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace otaro::engine::tokenizer;
  if (size > (1u << 20)) return 0;
  static const PreTokenizer* pre = new PreTokenizer(*PreTokenizerByName("qwen2"));
  auto f = otaro::fuzz::SplitFields(data, size, 3);
  auto tok = LoadFromVocabAndMerges(f[0], f[1], *pre, f[2]);
  if (!tok.ok()) return 0;
  for (const char* s : {"", "Hello world", " ab\n\n c 123 é🦙", "<|endoftext|>x"}) {
    auto ids = (*tok)->Encode(s, {.add_special = true, .parse_special = true});
    (void)(*tok)->Decode(ids, {.render_special = true});
    StreamingDecoder dec(tok->get());
    for (TokenId id : ids) (void)dec.Push(id);
    (void)dec.Flush();
  }
  (void)(*tok)->Decode({-1, 0, (*tok)->vocab_size(), 1 << 30});
  return 0;
}
