// libFuzzer entry point for chat-template input: the input is a Jinja chat
// template, NUL, BOS text, NUL, EOS text, then NUL-separated role / content
// pairs. The template is recognised (RecognizeChatTemplate); when it is, the
// conversation is rendered with and without the generation prompt
// (RenderChat). Built and run by tools/fuzz/run_all.sh.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tokenizer/chat_template.h"
#include "tools/fuzz/targets/fuzz_split.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace otaro::engine::tokenizer;
  if (size > (1u << 16)) return 0;
  auto f = otaro::fuzz::SplitFields(data, size, 3 + 2 * 8);
  auto format = RecognizeChatTemplate(f[0], f[1], f[2]);
  if (!format.ok()) return 0;
  std::vector<ChatMessage> messages;
  for (size_t k = 3; k + 1 < f.size(); k += 2) {
    if (f[k].empty() && f[k + 1].empty()) break;
    messages.push_back({f[k], f[k + 1]});
  }
  for (bool gen : {false, true}) (void)RenderChat(*format, messages, gen);
  return 0;
}
