#include "trainer/checkpoint.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/atomic_file.h"
#include "common/safetensors/safetensors.h"
#include "common/status_macros.h"

namespace otaro::trainer {
namespace {

constexpr char kLatestFile[] = "LATEST";
constexpr char kPartialSuffix[] = ".partial";
constexpr char kStateFormat[] = "otaro-trainer-state";
constexpr char kLaaAccumulatorTensor[] = "laa.accumulator";
constexpr char kOptimizerPrefix[] = "optimizer.";

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string CheckpointName(int64_t step) { return absl::StrFormat("step-%08d", step); }

absl::Status AddFloats(safetensors::Writer& writer, const std::string& name,
                       absl::Span<const float> values) {
  return writer.AddTensor(name, safetensors::DType::kF32, {static_cast<int64_t>(values.size())},
                          absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(values.data()),
                                                    values.size() * sizeof(float)));
}

}  // namespace

CheckpointFolder::CheckpointFolder(const std::string& output_dir)
    : root_(absl::StrCat(output_dir, "/checkpoints")) {}

void CheckpointFolder::Remove(const std::string& dir) {
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* entry = ::readdir(d)) {
      const std::string name = entry->d_name;
      if (name != "." && name != "..") ::unlink((dir + "/" + name).c_str());
    }
    ::closedir(d);
  }
  ::rmdir(dir.c_str());
}

absl::StatusOr<std::string> CheckpointFolder::Write(
    int64_t step, const engine::TensorSource& masters, const engine::ModelConfig& config,
    const engine::tokenizer::Tokenizer* tokenizer, const engine::CheckpointProvenance& provenance,
    const TrainerState& state) const {
  const std::string name = CheckpointName(step);
  const std::string final_dir = absl::StrCat(root_, "/", name);
  const std::string partial = final_dir + kPartialSuffix;
  OTARO_RETURN_IF_ERROR(CreateDirectories(root_));
  Remove(partial);
  if (Exists(final_dir)) Remove(final_dir);  // a re-run of the same step
  OTARO_RETURN_IF_ERROR(CreateDirectories(partial));

  OTARO_RETURN_IF_ERROR(engine::WriteMasterCheckpoint(masters, config, tokenizer, provenance,
                                                      partial + "/master.safetensors"));
  // Optimizer moments and the LAA accumulator: the rest of what a resumed run
  // needs to continue exactly.
  safetensors::Writer writer;
  OTARO_RETURN_IF_ERROR(writer.SetMetadata("format", kStateFormat));
  for (const OptimizerState::Buffer& buffer : state.optimizer.buffers) {
    OTARO_RETURN_IF_ERROR(
        AddFloats(writer, absl::StrCat(kOptimizerPrefix, buffer.name), buffer.values));
  }
  if (!state.laa_accumulator.empty()) {
    OTARO_RETURN_IF_ERROR(AddFloats(writer, kLaaAccumulatorTensor, state.laa_accumulator));
  }
  OTARO_RETURN_IF_ERROR(writer.WriteAtomically(partial + "/optimizer.safetensors"));
  nlohmann::json json = state.state;
  json["format"] = kStateFormat;
  OTARO_RETURN_IF_ERROR(WriteFileAtomically(partial + "/state.json", json.dump(2)));

  // Publish: the folder appears complete or not at all, then LATEST names it.
  if (::rename(partial.c_str(), final_dir.c_str()) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot rename ", partial, " to ", final_dir, ": ", std::strerror(errno)));
  }
  OTARO_RETURN_IF_ERROR(SyncDirectory(root_));
  OTARO_RETURN_IF_ERROR(WriteFileAtomically(absl::StrCat(root_, "/", kLatestFile), name + "\n"));
  return final_dir;
}

absl::StatusOr<LoadedCheckpoint> CheckpointFolder::ReadLatest() const {
  std::string latest;
  if (!ReadFileToString(absl::StrCat(root_, "/", kLatestFile), &latest).ok()) {
    return absl::NotFoundError(absl::StrCat("nothing to resume: no ", root_, "/", kLatestFile));
  }
  LoadedCheckpoint loaded;
  loaded.dir = absl::StrCat(root_, "/", absl::StripAsciiWhitespace(latest));
  std::string state_text;
  OTARO_RETURN_IF_ERROR(ReadFileToString(loaded.dir + "/state.json", &state_text));
  loaded.state = nlohmann::json::parse(state_text, nullptr, false);
  if (loaded.state.is_discarded() || !loaded.state.is_object() ||
      loaded.state.value("format", "") != kStateFormat) {
    return absl::DataLossError(absl::StrCat(loaded.dir, "/state.json is not a trainer state"));
  }
  OTARO_ASSIGN_OR_RETURN(auto master, engine::OpenModelSource(loaded.dir + "/master.safetensors",
                                                              &loaded.config));
  OTARO_ASSIGN_OR_RETURN(loaded.masters, Parameters::FromSource(*master, loaded.config));
  OTARO_ASSIGN_OR_RETURN(auto file, safetensors::File::Open(loaded.dir + "/optimizer.safetensors"));
  for (const auto& tensor : file->tensors()) {
    OTARO_ASSIGN_OR_RETURN(std::vector<float> values, tensor.ToFloat32());
    if (tensor.name == kLaaAccumulatorTensor) {
      loaded.laa_accumulator = std::move(values);
    } else if (absl::StartsWith(tensor.name, kOptimizerPrefix)) {
      loaded.optimizer_buffers.emplace_back(tensor.name.substr(std::strlen(kOptimizerPrefix)),
                                            std::move(values));
    }
  }
  return loaded;
}

}  // namespace otaro::trainer
