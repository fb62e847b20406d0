// Scoring one model at several precisions: the loop the evaluator CLI and the
// trainer's zero-shot evaluation share.
//
// A precision is a SEFP mantissa width m (read from the model's bit-planes) or
// 0 for float32 (the unquantized weights). All quantized precisions share ONE
// engine model, since E5Mm is a prefix of the stored planes; float32 needs a
// model of its own. The sweep builds at most those two, one at a time (the
// SEFP one first), so scoring never holds two copies of the weights.
#ifndef OTARO_EVAL_PRECISION_SWEEP_H_
#define OTARO_EVAL_PRECISION_SWEEP_H_

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/model/llama_model.h"

namespace otaro::eval {

struct PrecisionSweep {
  // Builds the engine model: SEFP planes when `quantized`, float32 otherwise.
  // Called at most once per representation.
  std::function<absl::StatusOr<std::unique_ptr<engine::LlamaModel>>(bool quantized)> build_model;
  // The CPU backend each model is scored on (threads, KV budget).
  engine::cpu::CpuBackendOptions backend;
};

// What a score callback gets: the model and its backend, the entry of `bits`
// being scored (0 = float32) and the precision to ask the backend for (that
// m, or sefp::kMasterBits for float32).
struct SweepPoint {
  const engine::LlamaModel& model;
  engine::Backend& backend;
  int bits;
  int precision;
};

// Calls score once for every entry of `bits`: the quantized ones in their
// order on the SEFP model, then 0 (if present) on the float32 model. The first
// error (building, starting a backend, or from `score`) stops the sweep.
absl::Status SweepPrecisions(const PrecisionSweep& sweep, const std::vector<int>& bits,
                             const std::function<absl::Status(const SweepPoint&)>& score);

}  // namespace otaro::eval

#endif  // OTARO_EVAL_PRECISION_SWEEP_H_
