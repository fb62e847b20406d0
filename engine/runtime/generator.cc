#include "engine/runtime/generator.h"

#include <algorithm>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/runtime/kv_sequence_guard.h"
#include "engine/runtime/sequence_output.h"

namespace otaro::engine {

absl::string_view FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kEos: return "eos";
    case FinishReason::kStopString: return "stop";
    case FinishReason::kMaxTokens: return "length";
    case FinishReason::kContextFull: return "context_full";
  }
  return "?";
}

Generator::Generator(Backend* backend, const tokenizer::Tokenizer* tokenizer,
                     GeneratorOptions options)
    : backend_(backend), tokenizer_(tokenizer), options_(options) {}

bool Generator::IsEndOfGeneration(Token id) const {
  const std::vector<int64_t>& eos = backend_->config().eos_token_ids;
  if (std::find(eos.begin(), eos.end(), id) != eos.end()) return true;
  return tokenizer_ != nullptr && tokenizer_->IsEndOfGeneration(id);
}

namespace {
// Longest the sequence may grow to.
int64_t MaxTotal(const GenerationRequest& r, const KVCache& kv) {
  return r.max_tokens == 0 ? kv.max_sequence_tokens()
                           : static_cast<int64_t>(r.prompt.size()) + r.max_tokens;
}
}  // namespace

absl::Status Generator::Validate(const GenerationRequest& r) const {
  if (r.prompt.empty()) return absl::InvalidArgumentError("prompt: empty");
  if (r.max_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens: must be >= 0, got ", r.max_tokens));
  }
  if (absl::Status s = backend_->CheckPrecision(r.precision); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("precision: ", s.message()));
  }
  if (r.prefill_precision != 0) {
    if (absl::Status s = backend_->CheckPrecision(r.prefill_precision); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("prefill_precision: ", s.message()));
    }
  }
  OTARO_RETURN_IF_ERROR(ValidateSamplingParams(r.sampling));
  if (!r.stop.empty() && tokenizer_ == nullptr) {
    return absl::InvalidArgumentError("stop: stop strings need the model's tokenizer");
  }
  const KVCache& kv = backend_->kv_cache();
  if (static_cast<int64_t>(r.prompt.size()) >= kv.max_sequence_tokens()) {
    return absl::InvalidArgumentError(absl::StrCat("prompt: ", r.prompt.size(),
                                                   " tokens leave no room to generate (limit ",
                                                   kv.max_sequence_tokens(), ")"));
  }
  return kv.CheckFits(MaxTotal(r, kv));
}

absl::StatusOr<GenerationResult> Generator::Generate(const GenerationRequest& request,
                                                     const TokenCallback& on_token) {
  OTARO_ASSIGN_OR_RETURN(std::vector<GenerationResult> results,
                         GenerateBatch({request}, on_token));
  return std::move(results[0]);
}

namespace {

struct Running {
  const GenerationRequest* request;
  SequenceHandle seq = 0;
  int64_t max_total = 0;
  int64_t prefilled = 0;  // prompt tokens in the cache
  Token next = -1;        // sampled, not yet fed back
  std::optional<SequenceOutput> out;
};

}  // namespace

absl::StatusOr<std::vector<GenerationResult>> Generator::GenerateBatch(
    const std::vector<GenerationRequest>& requests, const TokenCallback& on_token) {
  if (requests.empty()) return std::vector<GenerationResult>{};
  if (options_.prefill_chunk <= 0) {
    return absl::InvalidArgumentError("prefill_chunk must be positive");
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    if (absl::Status s = Validate(requests[i]); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("request ", i, ": ", s.message()));
    }
  }
  KVCache& kv = backend_->kv_cache();
  KvSequenceGuard guard(kv);  // frees every sequence, however GenerateBatch returns
  std::vector<Running> run(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    Running& r = run[i];
    r.request = &requests[i];
    r.max_total = MaxTotal(requests[i], kv);
    OTARO_ASSIGN_OR_RETURN(r.seq, guard.Allocate(0, r.max_total));
    r.out.emplace(requests[i], tokenizer_, [this](Token id) { return IsEndOfGeneration(id); },
                  r.max_total);
  }

  // Takes the token sampled for sequence i.
  auto accept = [&](size_t i, absl::Span<const float> logits) -> absl::Status {
    Running& r = run[i];
    const uint64_t index = r.out->result().tokens.size();
    OTARO_ASSIGN_OR_RETURN(const SampledToken tok, Sample(logits, r.request->sampling, index,
                                                             r.request->logprobs));
    SequenceOutput::Accepted accepted = r.out->Accept(tok);
    if (accepted.appended) {
      if (on_token) on_token(i, tok.id, accepted.text);
      r.next = tok.id;
    }
    return absl::OkStatus();
  };

  Logits logits;
  // Prefill in chunks; every sequence advances by one chunk per step.
  for (bool more = true; more;) {
    BatchStep step;
    std::vector<size_t> index;
    for (size_t i = 0; i < run.size(); ++i) {
      Running& r = run[i];
      const int64_t n = std::min<int64_t>(options_.prefill_chunk,
                                          r.out->result().prompt_tokens - r.prefilled);
      if (n == 0) continue;
      SequenceStep s;
      s.seq = r.seq;
      s.start_position = r.prefilled;
      s.tokens.assign(r.request->prompt.begin() + r.prefilled,
                      r.request->prompt.begin() + r.prefilled + n);
      s.precision = r.request->prefill_precision != 0 ? r.request->prefill_precision
                                                      : r.request->precision;
      OTARO_RETURN_IF_ERROR(kv.Extend(r.seq, r.prefilled + n));
      step.sequences.push_back(std::move(s));
      index.push_back(i);
    }
    more = !step.sequences.empty();
    if (!more) break;
    OTARO_RETURN_IF_ERROR(backend_->Forward(step, &logits));
    for (size_t j = 0; j < index.size(); ++j) {
      Running& r = run[index[j]];
      r.prefilled += static_cast<int64_t>(step.sequences[j].tokens.size());
      if (r.prefilled == r.out->result().prompt_tokens) {
        OTARO_RETURN_IF_ERROR(accept(index[j], logits.Last(j)));
      }
    }
  }

  // Decode: one token per running sequence per step.
  for (;;) {
    BatchStep step;
    std::vector<size_t> index;
    for (size_t i = 0; i < run.size(); ++i) {
      Running& r = run[i];
      if (r.out->done()) continue;
      const int64_t pos = r.out->result().prompt_tokens +
                          static_cast<int64_t>(r.out->result().tokens.size()) - 1;
      OTARO_RETURN_IF_ERROR(kv.Extend(r.seq, pos + 1));
      SequenceStep s;
      s.seq = r.seq;
      s.start_position = pos;
      s.tokens = {r.next};
      s.precision = r.request->precision;
      step.sequences.push_back(std::move(s));
      index.push_back(i);
    }
    if (step.sequences.empty()) break;
    OTARO_RETURN_IF_ERROR(backend_->Forward(step, &logits));
    for (size_t j = 0; j < index.size(); ++j) {
      OTARO_RETURN_IF_ERROR(accept(index[j], logits.Last(j)));
    }
  }

  std::vector<GenerationResult> results;
  results.reserve(run.size());
  for (Running& r : run) results.push_back(std::move(r.out->result()));
  return results;
}

}  // namespace otaro::engine
