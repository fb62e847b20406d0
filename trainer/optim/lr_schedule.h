// Learning-rate schedules for the tuning loop. Steps are 1-based (step t is the
// t-th update, like the batch index t of BPS):
//   warmup   for t <= warmup_steps: lr * t / warmup_steps (the first step already
//            moves; it reaches lr at t = warmup_steps)
//   constant lr afterwards (the paper: constant 1e-5)
//   cosine   min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2 afterwards, with
//            p = (t - warmup_steps) / (total_steps - warmup_steps): lr at the end of
//            warmup (p = 0), min_lr at t = total_steps (and beyond).
#ifndef OTARO_TRAINER_OPTIM_LR_SCHEDULE_H_
#define OTARO_TRAINER_OPTIM_LR_SCHEDULE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace otaro::trainer {

enum class LrScheduleKind { kConstant, kCosine };

// "constant" | "cosine" (any case).
absl::StatusOr<LrScheduleKind> ParseLrScheduleKind(absl::string_view text);
absl::string_view LrScheduleKindName(LrScheduleKind kind);

struct LrSchedule {
  LrScheduleKind kind = LrScheduleKind::kConstant;
  double lr = 1e-5;            // peak learning rate, > 0
  int64_t warmup_steps = 0;    // >= 0, <= total_steps
  double min_lr = 0.0;         // cosine floor, in [0, lr]
};

// Checks the schedule for a run of total_steps (>= 1) updates.
absl::Status ValidateLrSchedule(const LrSchedule& schedule, int64_t total_steps);

// The learning rate of update `step` (1-based; < 1 reads as 1) of `total_steps`.
// Assumes a validated schedule.
double LearningRate(const LrSchedule& schedule, int64_t step, int64_t total_steps);

}  // namespace otaro::trainer

#endif  // OTARO_TRAINER_OPTIM_LR_SCHEDULE_H_
