// Test helpers: stories260K as SEFP checkpoints, the way model versions are
// stored, plus a second version that answers differently.
#ifndef OTARO_SERVER_MODEL_TESTING_STORIES_CHECKPOINTS_H_
#define OTARO_SERVER_MODEL_TESTING_STORIES_CHECKPOINTS_H_

#include <string>

#include "absl/status/status.h"

namespace otaro::server::testing {

// The stories260K GGUF from the shared data.
std::string Stories260KGguf();

// Converts stories260K to a SEFP checkpoint at `out_path`.
absl::Status WriteStories260KCheckpoint(const std::string& out_path);

// Copies the SEFP checkpoint `in_path` to `out_path` with the sign of the final
// RMSNorm weight flipped: every logit changes sign, so greedy decoding picks
// the least likely token instead of the most likely one. A valid model whose
// output differs from the original from the first token on.
absl::Status WriteSignFlippedCheckpoint(const std::string& in_path, const std::string& out_path);

}  // namespace otaro::server::testing

#endif  // OTARO_SERVER_MODEL_TESTING_STORIES_CHECKPOINTS_H_
