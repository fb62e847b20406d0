// CPU products with an SEFP weight at precision m:
//   Gemm: Y = X Q(W, m)^T    (X [batch, K] activations, Y [batch, N])
//   Gemv: the same with one row.
// W is a PackedMatrix [N, K] (layout.h); X is quantized to int8 per row and per
// block of 4 inputs (activations.h).
//
// ## One kernel for every batch size
// Decode (one new token per sequence) and prefill (many) run the same kernel:
// each weight tile's digit planes are turned into the integers d of layout.h
// once per group of batch rows and multiplied with every row of that group, so
// the weights are read once per step however many sequences share it.
//
// ## The arithmetic, exactly (every ISA path does this, and nothing else)
// For output (b, n), per group g of 64 inputs, the integer products are summed
// in 16 lanes of 4 neighbours, which is exact in int32:
//     I[l] = sum_{i=0..3} q[64g + 4l + i] * d[n, 64g + 4l + i]          (l = 0..15)
// and then, per lane, in increasing g, two float operations:
//     acc[l] = fma(float(I[l]) * scale[b, 16g + l], 2^(e[n, g] - m), acc[l])  (acc starts at 0)
// (2^(e - m) is 0 for a zero group.) The output is the fixed tree of LaneTree()
// over the 16 lanes. Integers are exact whatever the blocking, and the float
// operations of a row depend on nothing but that row and W, so:
// - Batch invariance: output (b, n) is the same bits whatever the batch size and
//   whatever the other rows are; Gemv equals Gemm with batch 1 bit for bit.
// - Thread-count invariance: each output row is computed by one thread.
// - ISA invariance: the AVX-512, AVX2 and portable scalar paths agree bit
//   for bit (they differ in how they form the exact integers, and the AVX-512
//   path on AMD applies 2^(e - m) before the scale instead of after it, which
//   is the same value because every product is a normal float: activations.h's
//   kMinScale, internal.h's Avx512Accumulate).
// The ISA is chosen once from cpuid (Isa::kAuto) or forced (tests, engine.isa).
// Any K is accepted (a short last group is padded with q = 0).
#ifndef OTARO_SEFP_KERNELS_GEMM_H_
#define OTARO_SEFP_KERNELS_GEMM_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "sefp/format.h"
#include "sefp/kernels/activations.h"
#include "sefp/kernels/thread_pool.h"
#include "sefp/layout.h"

namespace otaro::sefp {

// kAvx512 needs AVX-512 F/BW/VL/VNNI/VBMI/BITALG and GFNI (Ice Lake, Sapphire
// Rapids, Zen 4: it forms the weights' digits with a GF2P8AFFINEQB bit transpose
// and VPERMB lookups); kAvx2 needs AVX2 + FMA (Haswell, Zen 1-3, and the
// Skylake-X / Cascade Lake AVX-512 parts, which lack VBMI and GFNI).
enum class Isa { kAuto, kScalar, kAvx2, kAvx512 };

// "auto", "scalar", "avx2", "avx512".
absl::string_view IsaName(Isa isa);
// Accepts the names above.
absl::StatusOr<Isa> ParseIsa(absl::string_view name);
// Whether this CPU (and OS) can run `isa` (kAuto and kScalar: always).
bool CpuSupports(Isa isa);
// kAuto -> the best this CPU supports; an ISA the CPU lacks is an error that says so.
absl::StatusOr<Isa> ResolveIsa(Isa requested);

struct GemmOptions {
  // The reconstruction the checkpoint was tuned for (SEFP.md).
  Reconstruction mode = Reconstruction::kMidpoint;
  Isa isa = Isa::kAuto;
  // Null: run on the calling thread only.
  ThreadPool* pool = nullptr;
};

// Y[b, n] for the rows [row0, row0 + batch) of x; y is [batch, N] row-major.
// Fails (without touching y) if m is not resident or sizes do not match.
absl::Status Gemm(const PackedMatrix& w, int m, const QuantizedActivations& x, int64_t row0,
                  int64_t batch, absl::Span<float> y, const GemmOptions& options = {});

// The same from float32 x [batch, K] (quantizes it first).
absl::Status Gemm(const PackedMatrix& w, int m, absl::Span<const float> x, int64_t batch,
                  absl::Span<float> y, const GemmOptions& options = {});

// y[n] = sum_k Q(W, m)[n, k] x[k].
absl::Status Gemv(const PackedMatrix& w, int m, absl::Span<const float> x, absl::Span<float> y,
                  const GemmOptions& options = {});

// Plain reference (tests, tools): decodes every weight with DecodeWeight and
// accumulates in double, with float32 x as given. Also returns
// sum_k |Q[n,k] x[b,k]| per output in *abs_sum (if not empty), the natural scale
// for relative error bounds.
absl::Status ReferenceGemm(const SefpTensor& w, int m, Reconstruction mode,
                           absl::Span<const float> x, int64_t batch, absl::Span<double> y,
                           absl::Span<double> abs_sum = {});

}  // namespace otaro::sefp

#endif  // OTARO_SEFP_KERNELS_GEMM_H_
