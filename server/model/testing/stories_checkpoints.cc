#include "server/model/testing/stories_checkpoints.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/testing/shared_data.h"
#include "engine/model/loader.h"
#include "sefp/checkpoint.h"

namespace otaro::server::testing {

std::string Stories260KGguf() {
  return otaro::testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf");
}

absl::Status WriteStories260KCheckpoint(const std::string& out_path) {
  return engine::ConvertToSefpCheckpoint(Stories260KGguf(), out_path,
                                         sefp::Reconstruction::kMidpoint)
      .status();
}

absl::Status WriteSignFlippedCheckpoint(const std::string& in_path, const std::string& out_path) {
  OTARO_ASSIGN_OR_RETURN(auto reader, sefp::CheckpointReader::Open(in_path));
  OTARO_ASSIGN_OR_RETURN(sefp::Checkpoint checkpoint, reader->LoadAll());
  constexpr char kFinalNorm[] = "model.norm.weight";
  auto it = checkpoint.dense.find(kFinalNorm);
  if (it == checkpoint.dense.end()) {
    return absl::NotFoundError(absl::StrCat(in_path, " has no dense tensor ", kFinalNorm));
  }
  sefp::DenseTensor& norm = it->second;
  // The sign is the top bit of the last (little-endian) byte of each element
  // in F32, F16 and BF16 alike.
  const size_t element_bytes = norm.dtype == safetensors::DType::kF32 ? 4 : 2;
  for (size_t i = element_bytes - 1; i < norm.bytes.size(); i += element_bytes) {
    norm.bytes[i] ^= 0x80;
  }
  checkpoint.metadata.tuning_provenance = "test: final norm sign-flipped";
  return sefp::WriteCheckpoint(out_path, checkpoint);
}

}  // namespace otaro::server::testing
