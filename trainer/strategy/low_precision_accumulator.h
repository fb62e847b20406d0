// Low-precision Asynchronous Accumulation (LAA), paper eq. 16-18 and Algorithm 1
// lines 6-19. A batch is "ultra-low" when its bit-width m <= ultra_low_max_bits
// (default 4: E5M4 and E5M3; the paper analyses those two and does not define the
// cut). Ultra-low gradients are not applied at once: they are summed into an
// accumulator (the first one initialises it, line 8), and on the N-th (default 10)
// the sum is applied and the count i returns to 0. Gradients of other batches are
// applied immediately in between - "asynchronous" because the accumulated ones
// were computed on older weights, on purpose (eq. 16-17: the quantization noise of
// the N summed gradients averages out). The paper applies the SUM (eq. 18); `mean`
// divides by the count instead (config `laa.reduce`). Flush() drains a partly
// filled accumulator so no computed gradient is dropped.
//
// The accumulated gradients are raw (not clipped one by one): like PyTorch's
// gradient accumulation, clipping applies to what is released, the update the
// optimizer actually receives (the tuner's rule, trainer/tuner.h).
//
// The otaro strategy and the "+laa" baselines (strategy.h) use LAA; for the others
// the accumulator is a pass-through that allocates nothing. Memory: one float per
// parameter when active.
#ifndef OTARO_TRAINER_STRATEGY_LOW_PRECISION_ACCUMULATOR_H_
#define OTARO_TRAINER_STRATEGY_LOW_PRECISION_ACCUMULATOR_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "trainer/strategy/strategy.h"

namespace otaro::trainer {

struct LaaOptions {
  int n = 10;                   // delayed interval N (>= 1)
  int ultra_low_max_bits = 4;   // m <= this is ultra-low (2..8)
  enum class Reduce { kSum, kMean };
  Reduce reduce = Reduce::kSum;  // eq. 18 sums
};

// "sum" | "mean" (config `laa.reduce`).
absl::StatusOr<LaaOptions::Reduce> ParseLaaReduce(absl::string_view text);
absl::string_view LaaReduceName(LaaOptions::Reduce reduce);
absl::Status ValidateLaaOptions(const LaaOptions& options);

class LowPrecisionAccumulator {
 public:
  // Active iff strategy.uses_laa(). num_params: the length of every gradient.
  static absl::StatusOr<LowPrecisionAccumulator> Create(const Strategy& strategy,
                                                        const LaaOptions& options,
                                                        int64_t num_params);

  // Given this batch's gradient (length num_params) and bit-width (nullopt =
  // unquantized), returns the gradient to apply now, or nullopt when it was only
  // accumulated. The span is `grad` itself for an immediate update, or a view of
  // the accumulator (valid until the next Step/Flush/Restore) when N ultra-low
  // gradients are due. The caller may change what the span shows (gradient
  // clipping scales the update that is applied, trainer/tuner.h): a released
  // accumulator is re-initialised by the next ultra-low gradient, never reused.
  absl::StatusOr<std::optional<absl::Span<float>>> Step(std::optional<int> m,
                                                        absl::Span<float> grad);

  // Drains the accumulator: the partly filled sum (reduced like a full one;
  // `mean` divides by the count actually accumulated), or nullopt when nothing is
  // pending. The tuner drains before its final evaluation (trainer/tuner.h).
  std::optional<absl::Span<float>> Flush();

  bool active() const { return active_; }
  const LaaOptions& options() const { return options_; }
  int64_t num_params() const { return num_params_; }
  bool IsUltraLow(std::optional<int> m) const {
    return active_ && m.has_value() && *m <= options_.ultra_low_max_bits;
  }

  // --- checkpoint state: the count i and, while i > 0, the accumulated sum ---
  int pending() const { return pending_; }
  // The running sum (num_params floats) while pending() > 0, else empty.
  absl::Span<const float> accumulator() const;
  // Restores what pending()/accumulator() returned. pending must be in [0, N)
  // (0 for an inactive accumulator); accumulator must hold num_params floats when
  // pending > 0 and is ignored otherwise.
  absl::Status Restore(int pending, absl::Span<const float> accumulator);

 private:
  LowPrecisionAccumulator(bool active, const LaaOptions& options, int64_t num_params)
      : active_(active), options_(options), num_params_(num_params) {}
  // Turns the sum of `count` gradients into the update and resets the count.
  absl::Span<float> Release(int count);

  bool active_;
  LaaOptions options_;
  int64_t num_params_;
  int pending_ = 0;
  std::vector<float> sum_;  // allocated on the first ultra-low step
};

}  // namespace otaro::trainer

#endif  // OTARO_TRAINER_STRATEGY_LOW_PRECISION_ACCUMULATOR_H_
