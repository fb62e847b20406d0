// Portable path of the decoded-tiles kernel (internal.h). It decodes with the
// per-weight rules of format.h and accumulates each output exactly as one AVX2
// lane group does (8 fma chains, then DecodedDotTree), so the two agree bit for
// bit. Compiled with -ffp-contract=off, like the lookup kernel's scalar path.
#include <cmath>
#include <cstring>
#include <vector>

#include "sefp/kernels/internal.h"

namespace otaro::sefp::internal {
namespace {

// Q(W, m) of the 8 rows of row block rb, [8][padded_cols]; rows past the matrix
// decode their padding (zero groups) to +-0.
void DecodeRowBlock(const PackedMatrix& w, int m, Reconstruction mode, int64_t rb,
                    int64_t padded_cols, float* out) {
  const float offset = rules::ReconstructionOffset(mode);
  for (int64_t g = 0; g < w.groups(); ++g) {
    const int64_t tile = w.TileIndex(rb, g);
    for (int lane = 0; lane < kRowBlock; ++lane) {
      const float step = rules::DecodeStep(w.exponents()[tile * kRowBlock + lane], m);
      float* row = out + lane * padded_cols + g * kGroupSize;
      for (int h = 0; h < 2; ++h) {
        const uint32_t sign = TileWord(w.plane(0), tile, h, lane);
        // Magnitude bit 8 - j = digit j XOR sign (layout.h); q_m from planes 1..m.
        uint32_t digits[kMasterBits + 1];
        for (int j = 1; j <= m; ++j) digits[j] = TileWord(w.plane(j), tile, h, lane) ^ sign;
        for (int i = 0; i < 32; ++i) {
          int32_t q8 = 0;
          for (int j = 1; j <= m; ++j) q8 |= static_cast<int32_t>((digits[j] >> i) & 1) << (kMasterBits - j);
          row[32 * h + i] =
              rules::ApplySign(rules::DecodeMagnitude(q8, m, offset, step), (sign >> i) & 1);
        }
      }
    }
  }
}

}  // namespace

void DecodedRowBlocksScalar(const DecodedGemmJob& job, int64_t rb0, int64_t rb1) {
  const PackedMatrix& w = *job.w;
  const int64_t kp = job.padded_cols;
  std::vector<float> decoded(static_cast<size_t>(kRowBlock * kp));
  for (int64_t rb = rb0; rb < rb1; ++rb) {
    DecodeRowBlock(w, job.m, job.mode, rb, kp, decoded.data());
    for (int lane = 0; lane < kRowBlock; ++lane) {
      const int64_t row = rb * kRowBlock + lane;
      if (row >= w.rows()) break;
      const float* q = decoded.data() + lane * kp;
      for (int64_t b = 0; b < job.batch; ++b) {
        const float* x = job.x + b * kp;
        float partial[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int64_t k = 0; k < kp; ++k) partial[k % 8] = std::fma(q[k], x[k], partial[k % 8]);
        job.y[b * w.rows() + row] = DecodedDotTree(partial);
      }
    }
  }
}

}  // namespace otaro::sefp::internal
