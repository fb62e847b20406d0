// PackedMatrix: the physical CPU layout of one SEFP weight [N, K] ("packed
// planes"), built from the logical content (format.h) at load time and read by the
// kernels (kernels/gemm.h). Precision m reads only what m needs.
//
// ## The arithmetic it is designed for
// With sigma = 1 - 2s (the sign as +-1) and b_p the magnitude bits of q8, the SEFP
// value Q(w, m) = sigma (q_m + c) 2^(e+1-m) rewrites EXACTLY as a signed-digit sum
//
//     Q(w, m) = 2^(e-m) d,   d = (2^m - t) sigma + sum_{j=1..m} delta_j 2^(m-j)
//
// where delta_j = +1 if (b_{8-j} XOR s) else -1, t = 0 for midpoint and 1 for
// truncate. (Proof: 2 q_m + 1 = 2^m + sum_j (2 b - 1) 2^(m-j); multiply by sigma.)
// d is a small odd (midpoint) or even (truncate) integer, |d| < 2^(m+1), built
// from m + 1 "digit planes" of +-1 digits: the kernels form d with one masked add
// per plane, then multiply it with int8 activations exactly (kernels/gemm.h).
// Nesting is structural: precision m is the first m + 1 planes.
//
// ## Layout
// - Rows in blocks of kRowBlock = 8; a last partial block is padded with zero
//   groups (exponent -128: contributes 0).
// - Columns in groups of 64; a short last group is padded with zero bits. Padded
//   inputs are multiplied by x = 0 (the kernels pad x with zeros), so padding never
//   contributes to a product; the exponent is computed from the real weights only.
// - A tile is (row block rb, group g): 8 rows x 64 weights. For each PLANE
//   (j = 0: sign bits; j = 1..8: digit plane delta_j, i.e. magnitude bit 8 - j XOR
//   sign) a tile is 64 bytes, one cache line: 64-bit word r holds row r's bits for
//   the group's 64 weights, bit i = weight i (an AVX-512 mask register as is).
// - Each plane is its own array, so precision m streams planes 0..m and never
//   touches planes m+1..8: bytes per weight = (m + 1) / 8 + 1/64 (exponents).
// - Within a plane array tiles are ordered [row block][group]: a kernel sweeping
//   one row block reads every plane linearly.
// - Exponents: int8, 8 per tile (one per row), in the same tile order.
// - resident_max_bits = R keeps planes 0..R only (R in 2..8); asking a kernel for
//   m > R is an error, never a silent clamp.
#ifndef OTARO_SEFP_LAYOUT_H_
#define OTARO_SEFP_LAYOUT_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/page_buffer.h"
#include "sefp/format.h"

namespace otaro::sefp {

inline constexpr int kRowBlock = 8;
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
  int64_t TileIndex(int64_t rb, int64_t g) const { return rb * groups_ + g; }
  // Plane j (0 = sign, 1..resident_max_bits = digit planes), 64-byte aligned.
  const uint8_t* plane(int j) const { return memory_.data() + j * plane_bytes_; }
  // The 8 row words of plane j in tile `tile` (word r = row r, bit i = weight i).
  const uint64_t* TileWords(int j, int64_t tile) const {
    return reinterpret_cast<const uint64_t*>(plane(j) + tile * kTileBytes);
  }
  const int8_t* exponents() const {
    return reinterpret_cast<const int8_t*>(memory_.data() + exponents_offset());
  }

  // Bytes a product at precision m reads from this matrix (planes 0..m + exponents).
  size_t BytesRead(int m) const;
  // Bytes held in memory (planes 0..resident_max_bits + exponents).
  size_t BytesResident() const { return BytesRead(resident_max_bits_); }

  // A deep copy (benchmarks rotate copies to defeat the cache; engines may share).
  PackedMatrix Clone() const;

  // Q(W, m) for row r, decoded from the stored planes (tests; reference paths).
  absl::Status DecodeRow(int64_t r, int m, Reconstruction mode, float* out) const;

 private:
  PackedMatrix() = default;
  // Sizes the matrix and maps its zeroed memory: planes 0..resident_max_bits,
  // then the exponents.
  absl::Status Allocate(int64_t rows, int64_t cols, int64_t groups, int resident_max_bits);
  uint8_t* mutable_plane(int j) { return memory_.data() + j * plane_bytes_; }
  int8_t* mutable_exponents() {
    return reinterpret_cast<int8_t*>(memory_.data() + exponents_offset());
  }
  size_t exponents_offset() const { return (resident_max_bits_ + 1) * plane_bytes_; }
  size_t exponent_bytes() const { return static_cast<size_t>(row_blocks_ * groups_) * kRowBlock; }

  int64_t rows_ = 0, cols_ = 0, groups_ = 0, row_blocks_ = 0;
  int resident_max_bits_ = 0;
  size_t plane_bytes_ = 0;  // a multiple of kTileBytes, so every plane stays 64-byte aligned
  // One mapping per matrix rather than malloc: a replaced model version's
  // weights go back to the system without a heap trim (common/page_buffer.h).
  PageBuffer memory_;
};

}  // namespace otaro::sefp

#endif  // OTARO_SEFP_LAYOUT_H_
