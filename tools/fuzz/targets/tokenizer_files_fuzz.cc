// libFuzzer entry point for the other tokenizer files: the first byte picks
// llama2.c's tokenizer.bin (LoadFromLlama2cTokenizer), a tiktoken file
// (LoadFromTiktoken, LLaMA 3 settings) or tokenizer.json NUL
// tokenizer_config.json (LoadFromHfTokenizerJson with its config: special
// tokens, bos / eos, chat template); the rest is the file. When it loads,
// encode and decode a few strings. Built and run by tools/fuzz/run_all.sh.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/tokenizer/loaders.h"
#include "tools/fuzz/targets/fuzz_split.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace otaro::engine::tokenizer;
  if (size < 1 || size > (1u << 20)) return 0;
  absl::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok;
  switch (data[0] % 3) {
    case 0: tok = LoadFromLlama2cTokenizer(rest); break;
    case 1: {
      static const TiktokenOptions* options = [] {
        auto* o = new TiktokenOptions(Llama3TiktokenOptions());
        o->special_tokens.resize(16);  // keep the per-input cost small
        o->bos_token = o->special_tokens[0];
        o->eos_token = o->special_tokens[1];
        o->end_of_generation_tokens = {o->special_tokens[9]};
        return o;
      }();
      tok = LoadFromTiktoken(rest, *options);
      break;
    }
    default: {
      auto f = otaro::fuzz::SplitFields(data + 1, size - 1, 2);
      tok = LoadFromHfTokenizerJson(f[0], f[1]);
    }
  }
  if (!tok.ok()) return 0;
  for (const char* s : {"", "Hello world", " ab\n\n c 123 é🦙", "<s>x</s><|eot_id|>"}) {
    auto ids = (*tok)->Encode(s, {.add_special = true, .parse_special = true});
    (void)(*tok)->Decode(ids, {.render_special = true});
    StreamingDecoder dec(tok->get());
    for (TokenId id : ids) (void)dec.Push(id);
    (void)dec.Flush();
  }
  (void)(*tok)->Decode({-1, 0, (*tok)->vocab_size(), 1 << 30});
  return 0;
}
