// A plain generation loop over a Backend: chunked prefill, then one token per
// step until a stop condition, for one request or a small batch run in
// lockstep (every running sequence shares each step). Tests, tools and the
// in-process bench use it; the server's continuous-batching scheduler drives
// the same Backend / KVCache / Sampler pieces with queues instead.
#ifndef OTARO_ENGINE_RUNTIME_GENERATOR_H_
#define OTARO_ENGINE_RUNTIME_GENERATOR_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/runtime/backend.h"
#include "engine/runtime/sampler.h"
#include "engine/tokenizer/tokenizer.h"

namespace otaro::engine {

enum class FinishReason {
  kEos,          // an end-of-generation token (not part of the output)
  kStopString,   // a stop string appeared (the text ends before it)
  kMaxTokens,    // max_tokens generated
  kContextFull,  // the sequence filled the model's context / the cache's limit
};
absl::string_view FinishReasonName(FinishReason reason);

struct GenerationRequest {
  std::vector<Token> prompt;
  int precision = 8;          // decode precision (E5Mm)
  int prefill_precision = 0;  // 0 = same as precision
  SamplingParams sampling;
  // Tokens to generate at most; 0 = until the context is full.
  int64_t max_tokens = 16;
  std::vector<std::string> stop;  // stop strings (need a tokenizer)
  bool ignore_eos = false;        // benchmarks: run to max_tokens
  bool logprobs = false;
};

struct GenerationResult {
  std::vector<Token> tokens;     // generated ids (an ending EOS excluded)
  std::string text;              // their text, cut before a stop string
  std::vector<double> logprobs;  // per generated token, if asked
  FinishReason finish = FinishReason::kMaxTokens;
  int64_t prompt_tokens = 0;
};

struct GeneratorOptions {
  // Prompt tokens per sequence per prefill step.
  int64_t prefill_chunk = 256;
};

// Called for every generated token with the request's index and the text it
// released (possibly empty: held back for UTF-8 or a possible stop string).
using TokenCallback = std::function<void(size_t index, Token token, absl::string_view text)>;

class Generator {
 public:
  // `tokenizer` may be null (no text, no stop strings; EOS from the config).
  Generator(Backend* backend, const tokenizer::Tokenizer* tokenizer,
            GeneratorOptions options = {});

  absl::StatusOr<GenerationResult> Generate(const GenerationRequest& request,
                                            const TokenCallback& on_token = {});
  // All requests in lockstep; every KV block is freed when this returns.
  absl::StatusOr<std::vector<GenerationResult>> GenerateBatch(
      const std::vector<GenerationRequest>& requests, const TokenCallback& on_token = {});

  // Validates a request against the backend (precision resident, prompt and
  // max_tokens fit the context and cache, sampling values, stop strings).
  absl::Status Validate(const GenerationRequest& request) const;

  bool IsEndOfGeneration(Token id) const;

 private:
  Backend* backend_;
  const tokenizer::Tokenizer* tokenizer_;
  GeneratorOptions options_;
};

}  // namespace otaro::engine

#endif  // OTARO_ENGINE_RUNTIME_GENERATOR_H_
