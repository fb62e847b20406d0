// What one generating sequence has produced so far and whether it is done: the
// tokens, their text (whole UTF-8 characters only, cut before a stop string),
// logprobs, and the finish rules (end-of-generation token, stop string,
// max_tokens, context full). One implementation, used by the Generator and the
// serving Scheduler, so both stop for exactly the same reasons.
#ifndef OTARO_ENGINE_RUNTIME_SEQUENCE_OUTPUT_H_
#define OTARO_ENGINE_RUNTIME_SEQUENCE_OUTPUT_H_

#include <functional>
#include <optional>
#include <string>

#include "engine/runtime/generator.h"
#include "engine/runtime/sampler.h"
#include "engine/tokenizer/tokenizer.h"

namespace otaro::engine {

class SequenceOutput {
 public:
  // `tokenizer` may be null (no text, no stop strings). `max_total` is the
  // most tokens (prompt + generated) the sequence may hold.
  SequenceOutput(const GenerationRequest& request, const tokenizer::Tokenizer* tokenizer,
                 std::function<bool(Token)> is_end_of_generation, int64_t max_total);

  struct Accepted {
    // False for an end-of-generation token: it ends the sequence, unshown.
    bool appended = false;
    // Text this token released (may be empty: held back for an incomplete
    // UTF-8 character or a possible stop string).
    std::string text;
  };
  // Takes the sampled token. When this ends the sequence, any held-back text
  // is released into result().text (it belongs to no token).
  Accepted Accept(const SampledToken& token);

  bool done() const { return done_; }
  const GenerationResult& result() const { return result_; }
  GenerationResult& result() { return result_; }

 private:
  void Finish(FinishReason reason);

  const GenerationRequest& request_;
  std::function<bool(Token)> is_end_of_generation_;
  const int64_t max_total_;
  std::optional<tokenizer::StreamingDecoder> decoder_;
  StopStringMatcher stops_;
  GenerationResult result_;
  bool done_ = false;
};

}  // namespace otaro::engine

#endif  // OTARO_ENGINE_RUNTIME_SEQUENCE_OUTPUT_H_
