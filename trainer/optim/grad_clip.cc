#include "trainer/optim/grad_clip.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "trainer/optim/parallel.h"

namespace otaro::trainer {
namespace {

// Elements per partial sum: the partition depends only on the length.
constexpr int64_t kBlock = int64_t{1} << 14;

// Sum of squares of one block, with independent lanes so the adds pipeline.
double SumOfSquares(const float* g, int64_t n) {
  constexpr int kLanes = 8;
  double lane[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const double x = g[i + k];
      lane[k] += x * x;
    }
  }
  for (; i < n; ++i) lane[0] += static_cast<double>(g[i]) * g[i];
  double sum = 0;
  for (double l : lane) sum += l;
  return sum;
}

}  // namespace

double GradNorm(absl::Span<const float> grad, sefp::ThreadPool* pool) {
  const int64_t n = static_cast<int64_t>(grad.size());
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(blocks, 0.0);
  const float* g = grad.data();
  // Small gradients stay on the caller thread, as in ForRanges.
  sefp::ThreadPool* block_pool = n >= optim_internal::kMinParallelElements ? pool : nullptr;
  auto run = [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t start = b * kBlock;
      partial[b] = SumOfSquares(g + start, std::min(kBlock, n - start));
    }
  };
  if (block_pool != nullptr && block_pool->num_threads() > 1 && blocks > 1) {
    block_pool->ParallelFor(blocks, run);
  } else {
    run(0, blocks);
  }
  double sum = 0;
  for (double p : partial) sum += p;
  return std::sqrt(sum);
}

double ClipGradNorm(absl::Span<float> grad, double max_norm, sefp::ThreadPool* pool) {
  const double norm = GradNorm(grad, pool);
  if (max_norm > 0 && std::isfinite(norm) && norm > max_norm) {
    const float scale = static_cast<float>(max_norm / (norm + 1e-6));
    float* g = grad.data();
    optim_internal::ForRanges(pool, static_cast<int64_t>(grad.size()),
                              [&](int64_t begin, int64_t end) {
                                for (int64_t i = begin; i < end; ++i) g[i] *= scale;
                              });
  }
  return norm;
}

absl::Status CheckGradNorm(double norm) {
  if (std::isfinite(norm)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("gradient norm is ", norm, ": the gradient holds NaN or Inf values"));
}

}  // namespace otaro::trainer
