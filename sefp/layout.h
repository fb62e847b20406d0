// PackedMatrix: the physical CPU layout of one SEFP weight [N, K] ("packed
// planes"), built from the logical content (format.h) at load time and read by the
// kernels (kernels/gemm.h). Precision m reads only what m needs.
//
// ## The arithmetic it is designed for
// With sigma = 1 - 2s (the sign as +-1) and b_p the magnitude bits of q8, the SEFP
// value Q(w, m) = sigma (q_m + c) 2^(e+1-m) rewrites EXACTLY as a signed-digit sum
//
//     Q(w, m) = 2^e [ (1 - t 2^-m) sigma + sum_{j=1..m} delta_j 2^-j ]
//
// where delta_j = +1 if (b_{8-j} XOR s) else -1, t = 0 for midpoint and 1 for
// truncate. (Proof: 2 q_m + 1 = 2^m + sum_j (2 b - 1) 2^(m-j); multiply by sigma.)
// Every term is a +-1 "digit plane" times a power of two, so a dot product with x is
//
//     y = sum_groups 2^e [ (1 - t 2^-m) S_sign + sum_j 2^-j S_j ],  S = sum_i (+-x_i)
//
// (S_sign = sum sigma_i x_i; plane 0 stores s itself, so the kernels negate its
// lookup sum) and S over +-1 digits is a table lookup: for 2 consecutive inputs,
// the 4 sums +-x_a +-x_b form one table, and VPERMILPS looks up 8 rows' 2-bit
// patterns at once. The kernel never decodes a weight to float: its work is one
// shuffle per 2 weights per plane, so it scales with m + 1 like the bytes do.
// Nesting is structural: precision m is the first m digit planes.
//
// ## Layout
// - Rows in blocks of kRowBlock = 8 (the 8 lanes of an AVX2 register); a last
//   partial block is padded with zero groups (exponent -128: contributes 0).
// - Columns in groups of 64; a short last group is padded with zero bits. Padded
//   inputs are multiplied by x = 0 (the kernels pad x with zeros), so padding never
//   contributes to a product; the exponent is computed from the real weights only.
// - A tile is (row block rb, group g): 8 rows x 64 weights. For each PLANE
//   (j = 0: sign bits; j = 1..8: digit plane delta_j, i.e. magnitude bit 8 - j XOR
//   sign) a tile is 64 bytes, one cache line: 32-bit word [h * 8 + r] holds row r's
//   bits for weights 32h .. 32h + 31 of the group (h = 0, 1), bit i = weight 32h + i.
// - Each plane is its own array, so precision m streams planes 0..m and never
//   touches planes m+1..8: bytes per weight = (m + 1) / 8 + 1/64 (exponents).
// - Within a plane array tiles are ordered in column slices of kSliceGroups groups:
//   [slice][row block][group within slice]. A kernel sweeps all row blocks of one
//   slice with that slice's lookup tables hot in L1, reading each plane linearly.
// - Exponents: int8, 8 per tile (one per row), in the same tile order.
// - resident_max_bits = R keeps planes 0..R only (R in 2..8); asking a kernel for
//   m > R is an error, never a silent clamp.
#ifndef OTARO_SEFP_LAYOUT_H_
#define OTARO_SEFP_LAYOUT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "sefp/format.h"

namespace otaro::sefp {

inline constexpr int kRowBlock = 8;
inline constexpr int kSliceGroups = 16;
inline constexpr int kTileBytes = 64;  // one plane of one tile

class PackedMatrix {
 public:
  // Builds the layout from validated logical content, keeping planes 0..resident_max_bits.
  static absl::StatusOr<PackedMatrix> Pack(const SefpTensor& t,
                                           int resident_max_bits = kMasterBits);

  PackedMatrix(PackedMatrix&&) = default;
  PackedMatrix& operator=(PackedMatrix&&) = default;

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int64_t groups() const { return groups_; }
  int64_t row_blocks() const { return row_blocks_; }
  int resident_max_bits() const { return resident_max_bits_; }

  // OK iff 2 <= m <= resident_max_bits(); the error says what is resident.
  absl::Status CheckPrecision(int m) const;

  // Byte offset of tile (rb, g) inside a plane array (x kTileBytes) or of its 8
  // exponents (x kRowBlock) -- see the layout above.
  int64_t TileIndex(int64_t rb, int64_t g) const {
    const int64_t s = g / kSliceGroups;
    const int64_t slice_width = SliceWidth(s);
    return s * kSliceGroups * row_blocks_ + rb * slice_width + (g - s * kSliceGroups);
  }
  int64_t slices() const { return (groups_ + kSliceGroups - 1) / kSliceGroups; }
  int64_t SliceWidth(int64_t s) const {
    return std::min<int64_t>(kSliceGroups, groups_ - s * kSliceGroups);
  }
  // Plane j (0 = sign, 1..resident_max_bits = digit planes), 64-byte aligned.
  const uint8_t* plane(int j) const { return planes_[j].get(); }
  const int8_t* exponents() const { return exponents_.get(); }

  // Bytes a product at precision m reads from this matrix (planes 0..m + exponents).
  size_t BytesRead(int m) const;
  // Bytes held in memory (planes 0..resident_max_bits + exponents).
  size_t BytesResident() const { return BytesRead(resident_max_bits_); }

  // A deep copy (benchmarks rotate copies to defeat the cache; engines may share).
  PackedMatrix Clone() const;

  // Q(W, m) for row r, decoded from the stored planes (tests; reference paths).
  absl::Status DecodeRow(int64_t r, int m, Reconstruction mode, float* out) const;

 private:
  struct FreeDeleter {
    void operator()(void* p) const;
  };
  PackedMatrix() = default;

  int64_t rows_ = 0, cols_ = 0, groups_ = 0, row_blocks_ = 0;
  int resident_max_bits_ = 0;
  size_t plane_bytes_ = 0;
  std::vector<std::unique_ptr<uint8_t, FreeDeleter>> planes_;
  std::unique_ptr<int8_t, FreeDeleter> exponents_;
};

}  // namespace otaro::sefp

#endif  // OTARO_SEFP_LAYOUT_H_
