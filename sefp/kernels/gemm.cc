#include "sefp/kernels/gemm.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "sefp/kernels/internal.h"

namespace otaro::sefp {

absl::string_view IsaName(Isa isa) {
  switch (isa) {
    case Isa::kAuto: return "auto";
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2+fma";
  }
  return "?";
}

bool CpuSupportsAvx2Fma() {
#if defined(__x86_64__) || defined(__i386__)
  // __builtin_cpu_supports also checks that the OS saves the YMM state (XGETBV).
  static const bool supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return supported;
#else
  return false;
#endif
}

absl::StatusOr<Isa> ResolveIsa(Isa requested) {
  if (requested == Isa::kAuto) return CpuSupportsAvx2Fma() ? Isa::kAvx2 : Isa::kScalar;
  if (requested == Isa::kAvx2 && !CpuSupportsAvx2Fma()) {
    return absl::FailedPreconditionError("the AVX2+FMA SEFP kernels were requested but this CPU lacks AVX2 or FMA");
  }
  return requested;
}

absl::string_view GemmKernelName(GemmKernel kernel) {
  switch (kernel) {
    case GemmKernel::kDigitLookup: return "digit-lookup";
    case GemmKernel::kDecodedTiles: return "decoded-tiles";
  }
  return "?";
}

namespace {

// Splits the row blocks over the pool (or runs them here without one).
void ForRowBlocks(const PackedMatrix& w, ThreadPool* pool,
                  const std::function<void(int64_t, int64_t)>& run) {
  if (pool == nullptr) {
    run(0, w.row_blocks());
  } else {
    pool->ParallelFor(w.row_blocks(), run);
  }
}

void DecodedTilesGemm(const PackedMatrix& w, int m, const float* x, int64_t batch, float* y,
                      Reconstruction mode, Isa isa, ThreadPool* pool) {
  // The kernel reads whole groups: copy X into zero-padded, aligned rows (a
  // small cost next to the batch x N x K products), reused across calls.
  const int64_t kp = w.groups() * kGroupSize;
  thread_local std::vector<float> padded_storage;
  padded_storage.assign(static_cast<size_t>(batch * kp) + 8, 0.0f);
  float* padded = padded_storage.data();
  while (reinterpret_cast<uintptr_t>(padded) % 32 != 0) ++padded;
  for (int64_t b = 0; b < batch; ++b) {
    std::memcpy(padded + b * kp, x + b * w.cols(), sizeof(float) * w.cols());
  }
  const internal::DecodedGemmJob job{&w, m, mode, padded, kp, batch, y};
  ForRowBlocks(w, pool, [&](int64_t rb0, int64_t rb1) {
    if (isa == Isa::kAvx2) {
      internal::DecodedRowBlocksAvx2(job, rb0, rb1);
    } else {
      internal::DecodedRowBlocksScalar(job, rb0, rb1);
    }
  });
}

}  // namespace

absl::Status Gemm(const PackedMatrix& w, int m, absl::Span<const float> x, int64_t batch,
                  absl::Span<float> y, const GemmOptions& options) {
  OTARO_RETURN_IF_ERROR(w.CheckPrecision(m));
  if (batch < 0 || x.size() != static_cast<size_t>(batch * w.cols()) ||
      y.size() != static_cast<size_t>(batch * w.rows())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SEFP GEMM shape mismatch: W is [", w.rows(), ", ", w.cols(), "], batch ", batch, ", x has ",
        x.size(), " values (want ", batch * w.cols(), "), y has ", y.size(), " (want ",
        batch * w.rows(), ")"));
  }
  if (batch == 0 || w.rows() == 0) return absl::OkStatus();
  OTARO_ASSIGN_OR_RETURN(const Isa isa, ResolveIsa(options.isa));
  if (options.kernel == GemmKernel::kDecodedTiles) {
    DecodedTilesGemm(w, m, x.data(), batch, y.data(), options.mode, isa, options.pool);
    return absl::OkStatus();
  }

  // Per-call lookup tables (~11 bytes per input per batch row), reused across calls
  // of this thread to avoid an allocation per token.
  thread_local std::vector<float> table_storage;
  const size_t per_row = static_cast<size_t>(w.groups()) * internal::kTableFloatsPerGroup;
  table_storage.resize(per_row * batch + 16);
  float* tables = table_storage.data();
  while (reinterpret_cast<uintptr_t>(tables) % 64 != 0) ++tables;
  for (int64_t b = 0; b < batch; ++b) {
    const float* xb = x.data() + b * w.cols();
    if (isa == Isa::kAvx2) {
      internal::BuildTablesAvx2(xb, w.cols(), w.groups(), tables + b * per_row);
    } else {
      internal::BuildTablesScalar(xb, w.cols(), w.groups(), tables + b * per_row);
    }
  }

  internal::GemmJob job;
  job.w = &w;
  job.m = m;
  // Plane 0 holds the sign bit s, and a lookup reads a set bit as +x: the sigma
  // term sum (1 - 2s) x is therefore the NEGATED plane sum.
  job.sign_coef = -(options.mode == Reconstruction::kMidpoint ? 1.0f : 1.0f - std::ldexp(1.0f, -m));
  job.tables = tables;
  job.batch = batch;
  job.y = y.data();
  ForRowBlocks(w, options.pool, [&](int64_t rb0, int64_t rb1) {
    if (isa == Isa::kAvx2) {
      internal::RowBlocksAvx2(job, rb0, rb1);
    } else {
      internal::RowBlocksScalar(job, rb0, rb1);
    }
  });
  return absl::OkStatus();
}

absl::Status Gemv(const PackedMatrix& w, int m, absl::Span<const float> x, absl::Span<float> y,
                  const GemmOptions& options) {
  return Gemm(w, m, x, 1, y, options);
}

absl::Status ReferenceGemm(const SefpTensor& w, int m, Reconstruction mode,
                           absl::Span<const float> x, int64_t batch, absl::Span<double> y,
                           absl::Span<double> abs_sum) {
  OTARO_RETURN_IF_ERROR(CheckPrecision(m));
  if (batch < 0 || x.size() != static_cast<size_t>(batch * w.cols) ||
      y.size() != static_cast<size_t>(batch * w.rows) ||
      (!abs_sum.empty() && abs_sum.size() != y.size())) {
    return absl::InvalidArgumentError("ReferenceGemm: shape mismatch");
  }
  OTARO_ASSIGN_OR_RETURN(std::vector<float> q, w.DecodeAll(m, mode));
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t n = 0; n < w.rows; ++n) {
      double sum = 0, mag = 0;
      for (int64_t k = 0; k < w.cols; ++k) {
        const double p = static_cast<double>(q[n * w.cols + k]) * x[b * w.cols + k];
        sum += p;
        mag += std::fabs(p);
      }
      y[b * w.rows + n] = sum;
      if (!abs_sum.empty()) abs_sum[b * w.rows + n] = mag;
    }
  }
  return absl::OkStatus();
}

}  // namespace otaro::sefp
