#include "engine/runtime/sequence_output.h"

namespace otaro::engine {

SequenceOutput::SequenceOutput(const GenerationRequest& request,
                               const tokenizer::Tokenizer* tokenizer,
                               std::function<bool(Token)> is_end_of_generation,
                               int64_t max_total)
    : request_(request),
      is_end_of_generation_(std::move(is_end_of_generation)),
      max_total_(max_total),
      stops_(request.stop) {
  if (tokenizer != nullptr) decoder_.emplace(tokenizer);
  result_.prompt_tokens = static_cast<int64_t>(request.prompt.size());
}

SequenceOutput::Accepted SequenceOutput::Accept(const SampledToken& token) {
  Accepted accepted;
  if (!request_.ignore_eos && is_end_of_generation_(token.id)) {
    Finish(FinishReason::kEos);
    return accepted;
  }
  accepted.appended = true;
  result_.tokens.push_back(token.id);
  if (request_.logprobs) result_.logprobs.push_back(token.logprob);
  if (decoder_) accepted.text = stops_.Push(decoder_->Push(token.id));
  result_.text += accepted.text;
  const int64_t generated = static_cast<int64_t>(result_.tokens.size());
  if (stops_.stopped()) {
    Finish(FinishReason::kStopString);
  } else if (request_.max_tokens > 0 && generated >= request_.max_tokens) {
    Finish(FinishReason::kMaxTokens);
  } else if (result_.prompt_tokens + generated >= max_total_) {
    Finish(FinishReason::kContextFull);
  }
  return accepted;
}

void SequenceOutput::Finish(FinishReason reason) {
  done_ = true;
  result_.finish = reason;
  if (stops_.stopped()) return;
  // Release what was held back for UTF-8 or a stop-string prefix; a stop
  // string may still complete in that tail.
  std::string tail;
  if (decoder_) tail = stops_.Push(decoder_->Flush());
  if (stops_.stopped()) {
    result_.finish = FinishReason::kStopString;
  } else {
    tail += stops_.Flush();
  }
  result_.text += tail;
}

}  // namespace otaro::engine
