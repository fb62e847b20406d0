// libFuzzer entry point for tokenizer.json parsing: load arbitrary bytes as a
// tokenizer.json; when they load, encode and decode a few strings.
// Built by tools/fuzz/run_tokenizer_json_fuzz.sh and :tokenizer_json_fuzz_test.
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/tokenizer/loaders.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace otaro::engine::tokenizer;
  if (size > (1u << 20)) return 0;
  absl::string_view text(reinterpret_cast<const char*>(data), size);
  auto tok = LoadFromHfTokenizerJson(text);
  if (!tok.ok()) return 0;
  for (const char* s : {"", "Hello world", " ab\n\n c 123 é🦙", "<s>x</s>"}) {
    auto ids = (*tok)->Encode(s, {.add_special = true, .parse_special = true});
    (void)(*tok)->Decode(ids, {.render_special = true});
    StreamingDecoder dec(tok->get());
    for (TokenId id : ids) (void)dec.Push(id);
    (void)dec.Flush();
  }
  (void)(*tok)->Decode({-1, 0, (*tok)->vocab_size(), 1 << 30});
  return 0;
}
