// Test helpers: the real stories260K model (../shared/data) and a CPU backend
// over it, as the engine's tests use them.
#ifndef OTARO_ENGINE_CPU_TESTING_TEST_BACKEND_H_
#define OTARO_ENGINE_CPU_TESTING_TEST_BACKEND_H_

#include <cstdint>
#include <memory>

#include "engine/cpu/cpu_backend.h"
#include "engine/model/loader.h"

namespace otaro::engine::testing {

// stories260K from its GGUF (with its tokenizer); aborts the test binary with
// the loader's error if it cannot be loaded.
std::unique_ptr<LlamaModel> LoadStories260K(const LoadOptions& options = {});

// A 2-thread CPU backend over `model` with a KV cache of `kv_budget_bytes`.
std::unique_ptr<cpu::CpuBackend> MakeBackend(const LlamaModel* model,
                                             int64_t kv_budget_bytes = 8 << 20);

}  // namespace otaro::engine::testing

#endif  // OTARO_ENGINE_CPU_TESTING_TEST_BACKEND_H_
