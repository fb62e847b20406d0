// The SEFP checkpoint file (SEFP.md "Storage"): a safetensors container holding, for
// each quantized weight NAME of logical shape [N, K], the logical arrays
//   NAME.sefp.exponents  I8 [N, ceil(K/64)]
//   NAME.sefp.signs      U8 [N, ceil(K/8)]   bits, LSB first, rows byte-aligned
//   NAME.sefp.plane7 .. NAME.sefp.plane0  U8 [N, ceil(K/8)]  magnitude bit p of q8
// plus any dense tensors (F32 / F16 / BF16: embeddings, norms, lm_head ...) under
// their own names, so one file holds a whole model. __metadata__ (strings):
//   format = "otaro-sefp", format_version = "1", group_size = "64", master_bits = "8",
//   reconstruction = "midpoint" | "truncate", source_model, tuning_provenance,
//   sefp_tensors = JSON object {NAME: [N, K], ...} (K cannot be recovered from the
//   byte-rounded arrays, so it is recorded).
// The reader validates all of it and refuses anything else with a clear error.
#ifndef OTARO_SEFP_CHECKPOINT_H_
#define OTARO_SEFP_CHECKPOINT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/safetensors/safetensors.h"
#include "sefp/format.h"

namespace otaro::sefp {

inline constexpr char kCheckpointFormat[] = "otaro-sefp";
inline constexpr int kCheckpointVersion = 1;

struct CheckpointMetadata {
  Reconstruction reconstruction = Reconstruction::kMidpoint;
  std::string source_model;       // e.g. "HuggingFaceTB/SmolLM2-135M@<revision>"
  std::string tuning_provenance;  // free text / JSON: strategy, bits, steps, data ...
  // Further string entries, each stored as `__metadata__["x.<key>"]` (e.g. the
  // model config and the tokenizer, so a checkpoint is a self-contained model).
  std::map<std::string, std::string> extra;
};

struct DenseTensor {
  safetensors::DType dtype = safetensors::DType::kF32;  // F32, F16 or BF16
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // little-endian elements
};

struct Checkpoint {
  CheckpointMetadata metadata;
  std::map<std::string, SefpTensor> quantized;
  std::map<std::string, DenseTensor> dense;
};

// The file as bytes (tests, fuzz seeds); validates the content first.
absl::StatusOr<std::string> SerializeCheckpoint(const Checkpoint& checkpoint);
// Writes crash-safely (temporary file + rename), validating the content first.
absl::Status WriteCheckpoint(const std::string& path, const Checkpoint& checkpoint);

class CheckpointReader {
 public:
  // Maps and validates the container, the metadata and every array's presence,
  // dtype and shape. The tensors' contents are validated when loaded.
  static absl::StatusOr<std::unique_ptr<CheckpointReader>> Open(const std::string& path);
  // Same over bytes owned by the caller (must outlive the reader).
  static absl::StatusOr<std::unique_ptr<CheckpointReader>> FromBuffer(
      absl::Span<const uint8_t> bytes);

  const CheckpointMetadata& metadata() const { return metadata_; }
  // Quantized weight names with their logical [N, K].
  const std::map<std::string, std::pair<int64_t, int64_t>>& quantized_shapes() const {
    return shapes_;
  }
  std::vector<std::string> dense_names() const;

  // Copies one quantized weight out and validates its content (exponent range, zero
  // groups, padding bits).
  absl::StatusOr<SefpTensor> LoadQuantized(const std::string& name) const;
  // Zero-copy view of a dense tensor (bytes may be unaligned); null if absent.
  const safetensors::TensorView* FindDense(const std::string& name) const;
  // Everything, copied and validated.
  absl::StatusOr<Checkpoint> LoadAll() const;

 private:
  CheckpointReader() = default;
  absl::Status Init(safetensors::View view, const std::string& origin);

  std::unique_ptr<safetensors::File> file_;  // null for FromBuffer
  safetensors::View view_;
  std::string origin_;
  CheckpointMetadata metadata_;
  std::map<std::string, std::pair<int64_t, int64_t>> shapes_;
  std::vector<std::string> dense_;
};

}  // namespace otaro::sefp

#endif  // OTARO_SEFP_CHECKPOINT_H_
