// From a CreateTuningJobRequest to the trainer's TuneOptions: every field
// checked and defaulted (OTARO.md), every path confined to the configured data
// folder. The worker runs exactly what this returns, so a job that passes here
// fails later only for reasons that need the data read or the model trained.
#ifndef OTARO_SERVER_TUNING_JOB_SPEC_H_
#define OTARO_SERVER_TUNING_JOB_SPEC_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "otaro/v1/tuning.pb.h"
#include "trainer/tuner.h"

namespace otaro::server {

// The error rule of every tuning RPC (tuning.proto): a message starts with the
// request field it concerns, "field.path: ". `status` with that prefix, its
// code kept (OK stays OK).
absl::Status FieldError(absl::string_view field, const absl::Status& status);

// Resolves `relative` inside `root` (both must exist): an empty or absolute
// path, ".." components, a path that does not exist and a symlink whose target
// lies outside root are INVALID_ARGUMENT naming the path (a missing root is
// FAILED_PRECONDITION). Returns the real path.
absl::StatusOr<std::string> ResolveDataPath(const std::string& root, absl::string_view relative);

struct JobEnvironment {
  std::string data_dir;         // the folder dataset paths are relative to
  // The zero-shot sets' folder (tuning.zero_shot_dir); empty = <data_dir>/eval.
  std::string zero_shot_dir;
  int64_t max_upload_bytes = 0;  // cap on inline_data
  int threads = 1;              // CPU threads the trainer may use
  int64_t max_memory_bytes = 0;  // 0 = no limit
};

// Checks `request` and fills everything of TuneOptions but model_path,
// output_dir and (for inline data) data_path, which the worker sets per job.
// Errors are INVALID_ARGUMENT naming the proto field.
absl::StatusOr<trainer::TuneOptions> TuneOptionsFromRequest(
    const otaro::v1::CreateTuningJobRequest& request, const JobEnvironment& environment);

// The trainer's evaluation in the API's form (its reconstruction and LAA state
// included). model_version: the version the evaluated weights are (0 = not a
// version); base_version: the version the job tunes (tuning.proto).
otaro::v1::EvaluationTable ToEvaluationTable(const trainer::Evaluation& evaluation,
                                             uint64_t model_version, uint64_t base_version);

}  // namespace otaro::server

#endif  // OTARO_SERVER_TUNING_JOB_SPEC_H_
