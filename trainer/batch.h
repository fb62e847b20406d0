// One training batch: the contract between the data pipeline (trainer/data),
// the model (trainer/model) and the tuning loop. Token ids are int32 as in the
// engine; a target of kIgnoreTarget is not scored (prompt tokens of
// instruction data, padding), so the loss is the mean over scored targets.
#ifndef OTARO_TRAINER_BATCH_H_
#define OTARO_TRAINER_BATCH_H_

#include <cstdint>
#include <vector>

namespace otaro::trainer {

inline constexpr int32_t kIgnoreTarget = -1;

struct Batch {
  int64_t batch_size = 0;  // B rows
  int64_t seq_len = 0;     // T positions per row
  // [B, T] row-major. Row b is one window: inputs[b, t] predicts targets[b, t]
  // (the next token); padding positions have any valid input id and
  // kIgnoreTarget as target.
  std::vector<int32_t> inputs;
  std::vector<int32_t> targets;

  int64_t ScoredTokens() const {
    int64_t n = 0;
    for (int32_t t : targets) n += t != kIgnoreTarget;
    return n;
  }
};

}  // namespace otaro::trainer

#endif  // OTARO_TRAINER_BATCH_H_
