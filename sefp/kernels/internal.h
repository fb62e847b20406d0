// Internal interface between the kernel dispatcher (gemm.cc) and the per-ISA
// implementations (gemm_scalar.cc, gemm_avx2.cc). Not for other users.
//
// Lookup tables: for each group of 64 inputs and each half h (32 inputs), 16 tables
// of 8 floats; table k covers inputs 2k, 2k+1 of the half, and entry t (t < 4)
//   (t&1 ? x_a : -x_a) + (t&2 ? x_b : -x_b)
// is stored twice (floats 0..3 and 4..7: VPERMILPS looks up within each 128-bit
// lane). Inputs past K are 0. A digit word's 2-bit field k selects the entry, i.e.
// the signed sum of 2 inputs. (2-bit VPERMILPS is 1 uop on Zen 3 / Intel cores;
// 3-bit VPERMPS is 2 uops with half the throughput -- measured slower.)
#ifndef OTARO_SEFP_KERNELS_INTERNAL_H_
#define OTARO_SEFP_KERNELS_INTERNAL_H_

#include <cstdint>
#include <cstring>

#include "sefp/format.h"
#include "sefp/layout.h"

namespace otaro::sefp::internal {

inline constexpr int kTablesPerHalf = 16;

// Row `lane`'s 32 bits of plane `plane` for weights 32h .. 32h + 31 of a tile
// (layout.h: 32-bit word [h * 8 + lane] of the tile's 64 bytes).
inline uint32_t TileWord(const uint8_t* plane, int64_t tile, int h, int lane) {
  uint32_t w;
  std::memcpy(&w, plane + tile * kTileBytes + 4 * (h * 8 + lane), 4);
  return w;
}
inline constexpr int kTableFloatsPerGroup = 2 * kTablesPerHalf * 8;

// Tables for groups [0, groups) of one input row x[0..cols).
void BuildTablesScalar(const float* x, int64_t cols, int64_t groups, float* tables);
void BuildTablesAvx2(const float* x, int64_t cols, int64_t groups, float* tables);

struct GemmJob {
  const PackedMatrix* w;
  int m;
  float sign_coef;       // -1 (midpoint) or -(1 - 2^-m) (truncate): see gemm.cc
  const float* tables;   // [batch][groups][kTableFloatsPerGroup]
  int64_t batch;
  float* y;              // [batch][rows]
};

// Computes the outputs of row blocks [rb0, rb1) for every batch row.
void RowBlocksScalar(const GemmJob& job, int64_t rb0, int64_t rb1);
void RowBlocksAvx2(const GemmJob& job, int64_t rb0, int64_t rb1);

// --- the decoded-tiles kernel (GemmKernel::kDecodedTiles) --------------------
// A row block's weights are decoded to float32 Q(W, m) once per call, into a
// per-thread buffer [8 rows][padded_cols], then every batch row is multiplied
// with them by FMA. Output (b, n) is always the same sequence of operations:
// 8 partial sums, lane l = fma chain over k = l, l + 8, l + 16, ... < padded_cols
// in increasing k, then DecodedDotTree(lanes). Padded columns hold x = 0.
struct DecodedGemmJob {
  const PackedMatrix* w;
  int m;
  Reconstruction mode;
  const float* x;  // [batch][padded_cols], zero past cols, 32-byte aligned rows
  int64_t padded_cols;  // groups * 64
  int64_t batch;
  float* y;  // [batch][rows]
};

// The fixed reduction of the 8 partial sums (what the AVX2 horizontal sum does):
// ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
inline float DecodedDotTree(const float* l) {
  return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

void DecodedRowBlocksScalar(const DecodedGemmJob& job, int64_t rb0, int64_t rb1);
void DecodedRowBlocksAvx2(const DecodedGemmJob& job, int64_t rb0, int64_t rb1);

}  // namespace otaro::sefp::internal

#endif  // OTARO_SEFP_KERNELS_INTERNAL_H_
