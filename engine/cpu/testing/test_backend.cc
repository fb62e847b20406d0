#include "engine/cpu/testing/test_backend.h"

#include <cstdio>
#include <cstdlib>

#include "common/testing/shared_data.h"

namespace otaro::engine::testing {

std::unique_ptr<LlamaModel> LoadStories260K(const LoadOptions& options) {
  auto model = LoadModel(
      otaro::testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf"), options);
  if (!model.ok()) {
    std::fprintf(stderr, "cannot load stories260K: %s\n", model.status().ToString().c_str());
    std::abort();
  }
  return std::move(*model);
}

std::unique_ptr<cpu::CpuBackend> MakeBackend(const LlamaModel* model, int64_t kv_budget_bytes) {
  cpu::CpuBackendOptions options;
  options.num_threads = 2;
  options.kv_cache.budget_bytes = kv_budget_bytes;
  auto backend = cpu::CpuBackend::Create(model, options);
  if (!backend.ok()) {
    std::fprintf(stderr, "cannot create the CPU backend: %s\n",
                 backend.status().ToString().c_str());
    std::abort();
  }
  return std::move(*backend);
}

}  // namespace otaro::engine::testing
