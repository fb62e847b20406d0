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

#include "sefp/layout.h"

namespace otaro::sefp::internal {

inline constexpr int kTablesPerHalf = 16;
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

}  // namespace otaro::sefp::internal

#endif  // OTARO_SEFP_KERNELS_INTERNAL_H_
