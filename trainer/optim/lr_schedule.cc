#include "trainer/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace otaro::trainer {

absl::StatusOr<LrScheduleKind> ParseLrScheduleKind(absl::string_view text) {
  const std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (name == "constant") return LrScheduleKind::kConstant;
  if (name == "cosine") return LrScheduleKind::kCosine;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown learning-rate schedule '", text, "'; valid: constant, cosine"));
}

absl::string_view LrScheduleKindName(LrScheduleKind kind) {
  return kind == LrScheduleKind::kCosine ? "cosine" : "constant";
}

absl::Status ValidateLrSchedule(const LrSchedule& schedule, int64_t total_steps) {
  if (!(schedule.lr > 0) || !std::isfinite(schedule.lr)) {
    return absl::InvalidArgumentError(
        absl::StrCat("learning rate must be finite and > 0, got ", schedule.lr));
  }
  if (total_steps < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("a run needs at least one step, got total_steps = ", total_steps));
  }
  if (schedule.warmup_steps < 0 || schedule.warmup_steps > total_steps) {
    return absl::InvalidArgumentError(absl::StrCat("warmup_steps must be in 0..", total_steps,
                                                   " (the run's steps), got ",
                                                   schedule.warmup_steps));
  }
  if (schedule.kind == LrScheduleKind::kCosine &&
      !(schedule.min_lr >= 0 && schedule.min_lr <= schedule.lr)) {
    return absl::InvalidArgumentError(absl::StrCat("min_lr must be in [0, lr = ", schedule.lr,
                                                   "], got ", schedule.min_lr));
  }
  return absl::OkStatus();
}

double LearningRate(const LrSchedule& schedule, int64_t step, int64_t total_steps) {
  step = std::max<int64_t>(step, 1);
  if (step <= schedule.warmup_steps) {
    return schedule.lr * static_cast<double>(step) / static_cast<double>(schedule.warmup_steps);
  }
  if (schedule.kind == LrScheduleKind::kConstant) return schedule.lr;
  const int64_t decay_steps = total_steps - schedule.warmup_steps;
  if (decay_steps <= 0) return schedule.lr;
  const double progress = std::min(
      1.0, static_cast<double>(step - schedule.warmup_steps) / static_cast<double>(decay_steps));
  return schedule.min_lr + (schedule.lr - schedule.min_lr) * 0.5 *
                               (1.0 + std::cos(std::numbers::pi * progress));
}

}  // namespace otaro::trainer
