#include "sefp/kernels/gemm.h"

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "sefp/kernels/internal.h"

namespace otaro::sefp {

absl::string_view IsaName(Isa isa) {
  switch (isa) {
    case Isa::kAuto: return "auto";
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "?";
}

absl::StatusOr<Isa> ParseIsa(absl::string_view name) {
  for (Isa isa : {Isa::kAuto, Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (name == IsaName(isa)) return isa;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown SEFP kernel ISA \"", name, "\" (want auto, scalar, avx2 or avx512)"));
}

bool CpuSupports(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  // __builtin_cpu_supports also checks that the OS saves the YMM / ZMM state (XGETBV).
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  static const bool avx512 = __builtin_cpu_supports("avx512f") &&
                             __builtin_cpu_supports("avx512bw") &&
                             __builtin_cpu_supports("avx512vl") &&
                             __builtin_cpu_supports("avx512vnni") &&
                             __builtin_cpu_supports("avx512vbmi") &&
                             __builtin_cpu_supports("avx512bitalg") &&
                             __builtin_cpu_supports("gfni");
#else
  static const bool avx2 = false, avx512 = false;
#endif
  switch (isa) {
    case Isa::kAuto:
    case Isa::kScalar: return true;
    case Isa::kAvx2: return avx2;
    case Isa::kAvx512: return avx512;
  }
  return false;
}

absl::StatusOr<Isa> ResolveIsa(Isa requested) {
  if (requested == Isa::kAuto) {
    if (CpuSupports(Isa::kAvx512)) return Isa::kAvx512;
    if (CpuSupports(Isa::kAvx2)) return Isa::kAvx2;
    return Isa::kScalar;
  }
  if (!CpuSupports(requested)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the ", IsaName(requested), " SEFP kernels were requested but this CPU lacks ",
        requested == Isa::kAvx2 ? "AVX2 or FMA" : "AVX-512 F/BW/VL/VNNI/VBMI/BITALG or GFNI"));
  }
  return requested;
}

absl::Status Gemm(const PackedMatrix& w, int m, const QuantizedActivations& x, int64_t row0,
                  int64_t batch, absl::Span<float> y, const GemmOptions& options) {
  OTARO_RETURN_IF_ERROR(w.CheckPrecision(m));
  if (batch < 0 || row0 < 0 || row0 + batch > x.rows() || x.cols() != w.cols() ||
      y.size() != static_cast<size_t>(batch * w.rows())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SEFP GEMM shape mismatch: W is [", w.rows(), ", ", w.cols(), "], activations are [",
        x.rows(), ", ", x.cols(), "], rows ", row0, "..", row0 + batch, ", y has ", y.size(),
        " values (want ", batch * w.rows(), ")"));
  }
  if (batch == 0 || w.rows() == 0) return absl::OkStatus();
  OTARO_ASSIGN_OR_RETURN(const Isa isa, ResolveIsa(options.isa));
  const internal::GemmJob job{&w, m, options.mode, &x, row0, batch, y.data()};
  auto run = [&](int64_t rb0, int64_t rb1) {
    switch (isa) {
      case Isa::kAvx512: internal::RowBlocksAvx512(job, rb0, rb1); break;
      case Isa::kAvx2: internal::RowBlocksAvx2(job, rb0, rb1); break;
      default: internal::RowBlocksScalar(job, rb0, rb1); break;
    }
  };
  if (options.pool == nullptr) {
    run(0, w.row_blocks());
  } else {
    options.pool->ParallelFor(w.row_blocks(), run);
  }
  return absl::OkStatus();
}

absl::Status Gemm(const PackedMatrix& w, int m, absl::Span<const float> x, int64_t batch,
                  absl::Span<float> y, const GemmOptions& options) {
  if (batch < 0 || x.size() != static_cast<size_t>(batch * w.cols())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SEFP GEMM shape mismatch: W is [", w.rows(), ", ", w.cols(), "], batch ", batch,
        ", x has ", x.size(), " values (want ", batch * w.cols(), ")"));
  }
  // Reused across calls of this thread: no allocation per token.
  thread_local QuantizedActivations quantized;
  quantized.Quantize(x, batch, w.cols());
  return Gemm(w, m, quantized, 0, batch, y, options);
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

namespace internal {

namespace {
// -1: the CPU's choice; else a forced Avx512Accumulate.
std::atomic<int> forced_accumulate{-1};
}  // namespace

Avx512Accumulate Avx512AccumulateFor(int mantissa_bits, int64_t batch) {
  const int forced = forced_accumulate.load(std::memory_order_relaxed);
  if (forced >= 0) {
    const auto form = static_cast<Avx512Accumulate>(forced);
    return form == Avx512Accumulate::kWidePairs && mantissa_bits <= 6 ? Avx512Accumulate::kFma
                                                                      : form;
  }
  static const bool amd = __builtin_cpu_is("amd");
  if (amd || mantissa_bits == 7) return Avx512Accumulate::kWeightScaleInBias;
  if (mantissa_bits == 8 && batch >= 16) return Avx512Accumulate::kWidePairs;
  return Avx512Accumulate::kFma;
}

void ForceAvx512AccumulateForTesting(Avx512Accumulate form) {
  forced_accumulate.store(static_cast<int>(form), std::memory_order_relaxed);
}

void ClearForcedAvx512AccumulateForTesting() {
  forced_accumulate.store(-1, std::memory_order_relaxed);
}

}  // namespace internal
}  // namespace otaro::sefp
