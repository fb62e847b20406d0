// CPU products with an SEFP weight at precision m:
//   Gemv: y = Q(W, m) x            (decode: one token)
//   Gemm: Y = X Q(W, m)^T          (a batch of tokens: X [batch, K], Y [batch, N])
// W is a PackedMatrix [N, K] (layout.h explains the signed-digit lookup arithmetic).
// Activations and accumulation are float32.
//
// Two kernels (GemmKernel), for the two shapes of work an LLM server has:
// - kDigitLookup (decode): never materializes a weight; per 2 weights and plane it
//   does one table lookup, so its work is batch x (m + 1) lookups per weight and
//   it reads (m + 1)/8 + 1/64 bytes per weight. Best for one or a few rows.
// - kDecodedTiles (prefill): decodes each row block of W to float32 Q(W, m) once
//   per call (cost ~ m + 1 per weight, once) and multiplies every batch row with
//   it by FMA (batch / 8 FMAs per weight). Best for many rows.
// They round differently (different summation orders). Each is deterministic on
// its own, so a caller that promises load-independent results picks the kernel by
// what the rows ARE (prompt tokens vs generated tokens), never by how many rows a
// call happens to have.
//
// Determinism guarantees of each kernel (the server relies on them):
// - Batch invariance: output (b, n) is computed by the same sequence of float
//   operations whatever the batch size and whatever the other rows of X are; Gemv
//   equals Gemm with batch 1 bit for bit.
// - Thread-count invariance: each output row is computed by one thread in a fixed
//   order (groups 0..G-1), so results do not depend on the pool size.
// - ISA invariance: the AVX2+FMA path and the portable scalar path perform the same
//   operations in the same order (FMA where the other uses FMA), so they agree bit
//   for bit. The ISA is chosen at run time (cpuid), or forced for tests.
// Any K is accepted (a short last group is padded with x = 0); kernels are tuned for
// K a multiple of 64 and N a multiple of 8.
#ifndef OTARO_SEFP_KERNELS_GEMM_H_
#define OTARO_SEFP_KERNELS_GEMM_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "sefp/format.h"
#include "sefp/kernels/thread_pool.h"
#include "sefp/layout.h"

namespace otaro::sefp {

enum class Isa { kAuto, kScalar, kAvx2 };

absl::string_view IsaName(Isa isa);
// True when this CPU (and OS) supports AVX2 and FMA.
bool CpuSupportsAvx2Fma();
// kAuto -> the best this CPU supports; kAvx2 on a CPU without it is an error.
absl::StatusOr<Isa> ResolveIsa(Isa requested);

enum class GemmKernel { kDigitLookup, kDecodedTiles };

absl::string_view GemmKernelName(GemmKernel kernel);

struct GemmOptions {
  // The reconstruction the checkpoint was tuned for (SEFP.md).
  Reconstruction mode = Reconstruction::kMidpoint;
  Isa isa = Isa::kAuto;
  // Null: run on the calling thread only.
  ThreadPool* pool = nullptr;
  GemmKernel kernel = GemmKernel::kDigitLookup;
};

// Y[b, n] = sum_k Q(W, m)[n, k] X[b, k]; x is [batch, K] row-major, y is [batch, N].
// Fails (without touching y) if m is not resident or sizes do not match.
absl::Status Gemm(const PackedMatrix& w, int m, absl::Span<const float> x, int64_t batch,
                  absl::Span<float> y, const GemmOptions& options = {});

// y[n] = sum_k Q(W, m)[n, k] x[k].
absl::Status Gemv(const PackedMatrix& w, int m, absl::Span<const float> x, absl::Span<float> y,
                  const GemmOptions& options = {});

// Plain reference (tests, tools): decodes every weight with DecodeWeight and
// accumulates in double. Also returns sum_k |Q[n,k] x[b,k]| per output in *abs_sum
// (if not null), the natural scale for relative error bounds.
absl::Status ReferenceGemm(const SefpTensor& w, int m, Reconstruction mode,
                           absl::Span<const float> x, int64_t batch, absl::Span<double> y,
                           absl::Span<double> abs_sum = {});

}  // namespace otaro::sefp

#endif  // OTARO_SEFP_KERNELS_GEMM_H_
