// The trainer's checkpoints on disk, apart from the tuning loop that decides
// what goes in them.
//
// Layout under <output_dir>/checkpoints/:
//   step-NNNNNNNN/master.safetensors     float32 masters + config + tokenizer +
//                                        provenance (servable, resumable)
//   step-NNNNNNNN/optimizer.safetensors  "optimizer.<buffer>" tensors and, when
//                                        updates are pending, "laa.accumulator"
//   step-NNNNNNNN/state.json             the run's counters (format
//                                        "otaro-trainer-state"; the loop's schema)
//   LATEST                               the name of the newest complete one
// A checkpoint is written into step-N.partial/ and renamed into place, the
// folder synced, then LATEST replaced atomically: a crash at any point leaves
// the previous LATEST pointing at a complete checkpoint.
#ifndef OTARO_TRAINER_CHECKPOINT_H_
#define OTARO_TRAINER_CHECKPOINT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/model/loader.h"
#include "engine/model/model_config.h"
#include "engine/model/tensor_source.h"
#include "nlohmann/json.hpp"
#include "trainer/model/parameters.h"
#include "trainer/optim/optimizer.h"

namespace otaro::trainer {

// What a checkpoint holds besides the masters.
struct TrainerState {
  nlohmann::json state;                // state.json; "format" is set on write
  OptimizerState optimizer;            // spans: valid while the source lives
  absl::Span<const float> laa_accumulator;  // empty: nothing pending
};

// A checkpoint read back: everything it holds, owned.
struct LoadedCheckpoint {
  std::string dir;
  nlohmann::json state;
  engine::ModelConfig config;
  Parameters masters;
  std::vector<std::pair<std::string, std::vector<float>>> optimizer_buffers;
  std::vector<float> laa_accumulator;  // empty when none was pending
};

class CheckpointFolder {
 public:
  // Checkpoints of the run writing to `output_dir`.
  explicit CheckpointFolder(const std::string& output_dir);

  const std::string& root() const { return root_; }

  // Writes the checkpoint of `step` (replacing one of the same step) and makes
  // it LATEST. Returns its folder.
  absl::StatusOr<std::string> Write(int64_t step, const engine::TensorSource& masters,
                                    const engine::ModelConfig& config,
                                    const engine::tokenizer::Tokenizer* tokenizer,
                                    const engine::CheckpointProvenance& provenance,
                                    const TrainerState& state) const;

  // The checkpoint LATEST names. NOT_FOUND when there is none; DATA_LOSS when
  // its state.json is not a trainer state.
  absl::StatusOr<LoadedCheckpoint> ReadLatest() const;

  // Deletes a checkpoint folder (a flat folder of files).
  static void Remove(const std::string& dir);

 private:
  std::string root_;
};

}  // namespace otaro::trainer

#endif  // OTARO_TRAINER_CHECKPOINT_H_
