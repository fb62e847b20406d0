#include "sefp/layout.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace otaro::sefp {
namespace {

// 64 bits of a packed logical bit row starting at column c (bits past `cols` are 0
// in SefpTensor).
uint64_t Bits64(const uint8_t* row, int64_t row_bytes, int64_t c) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    const int64_t byte = c / 8 + i;
    if (byte < row_bytes) v |= static_cast<uint64_t>(row[byte]) << (8 * i);
  }
  return v;  // c is a multiple of 64, so byte-aligned.
}

uint64_t* TileWord(uint8_t* plane, int64_t tile, int lane) {
  return reinterpret_cast<uint64_t*>(plane + tile * kTileBytes) + lane;
}

}  // namespace

absl::Status PackedMatrix::Allocate(int64_t rows, int64_t cols, int64_t groups,
                                    int resident_max_bits) {
  rows_ = rows;
  cols_ = cols;
  groups_ = groups;
  row_blocks_ = (rows + kRowBlock - 1) / kRowBlock;
  resident_max_bits_ = resident_max_bits;
  plane_bytes_ = static_cast<size_t>(row_blocks_ * groups_) * kTileBytes;
  absl::StatusOr<PageBuffer> memory = PageBuffer::Allocate(exponents_offset() + exponent_bytes());
  if (!memory.ok()) {
    return absl::ResourceExhaustedError(absl::StrCat("out of memory packing a ", rows, "x", cols,
                                                     " SEFP matrix: ", memory.status().message()));
  }
  memory_ = std::move(*memory);
  return absl::OkStatus();
}

absl::StatusOr<PackedMatrix> PackedMatrix::Pack(const SefpTensor& t, int resident_max_bits) {
  if (absl::Status s = sefp::CheckPrecision(resident_max_bits); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("resident_max_bits: ", s.message()));
  }
  if (absl::Status s = t.Validate("(packing)"); !s.ok()) return s;
  PackedMatrix p;
  if (absl::Status s = p.Allocate(t.rows, t.cols, t.groups_per_row(), resident_max_bits); !s.ok()) {
    return s;
  }
  int8_t* exponents = p.mutable_exponents();
  std::memset(exponents, kZeroGroupExponent, p.exponent_bytes());

  const int64_t rb_bytes = t.row_bytes();
  for (int64_t r = 0; r < t.rows; ++r) {
    const int64_t rb = r / kRowBlock;
    const int lane = static_cast<int>(r % kRowBlock);
    const uint8_t* sign_row = t.signs.data() + r * rb_bytes;
    for (int64_t g = 0; g < p.groups_; ++g) {
      const int64_t tile = p.TileIndex(rb, g);
      exponents[tile * kRowBlock + lane] = t.exponents[r * p.groups_ + g];
      const int64_t c = g * kGroupSize;
      // Bits past the row's end are 0 in the logical arrays (validated); the
      // sign of a padded weight is 0, so its digits are "-1" times x = 0.
      const uint64_t sign = Bits64(sign_row, rb_bytes, c);
      *TileWord(p.mutable_plane(0), tile, lane) = sign;
      for (int j = 1; j <= resident_max_bits; ++j) {
        const uint8_t* plane_row = t.planes[kMasterBits - j].data() + r * rb_bytes;
        *TileWord(p.mutable_plane(j), tile, lane) = Bits64(plane_row, rb_bytes, c) ^ sign;
      }
    }
  }
  return p;
}

PackedMatrix PackedMatrix::Clone() const {
  PackedMatrix p;
  // Clone's callers (benchmarks, engines sharing weights) have no error path:
  // running out of memory here is fatal, as it would be in a copy constructor.
  if (absl::Status s = p.Allocate(rows_, cols_, groups_, resident_max_bits_); !s.ok()) {
    std::fprintf(stderr, "PackedMatrix::Clone: %s\n", std::string(s.message()).c_str());
    std::abort();
  }
  std::memcpy(p.memory_.data(), memory_.data(), memory_.size());
  return p;
}

absl::Status PackedMatrix::CheckPrecision(int m) const {
  if (absl::Status s = sefp::CheckPrecision(m); !s.ok()) return s;
  if (m > resident_max_bits_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "SEFP precision E5M", m, " requested but this model keeps only the planes down to E5M",
        resident_max_bits_, " (resident_max_bits = ", resident_max_bits_, ")"));
  }
  return absl::OkStatus();
}

size_t PackedMatrix::BytesRead(int m) const {
  return static_cast<size_t>(m + 1) * plane_bytes_ + exponent_bytes();
}

absl::Status PackedMatrix::DecodeRow(int64_t r, int m, Reconstruction mode, float* out) const {
  if (absl::Status s = CheckPrecision(m); !s.ok()) return s;
  if (r < 0 || r >= rows_) return absl::OutOfRangeError(absl::StrCat("row ", r, " out of range"));
  const int64_t rb = r / kRowBlock;
  const int lane = static_cast<int>(r % kRowBlock);
  for (int64_t c = 0; c < cols_; ++c) {
    const int64_t g = c / kGroupSize;
    const int64_t tile = TileIndex(rb, g);
    const int bit = static_cast<int>(c % kGroupSize);
    auto bit_of = [&](int j) {
      return static_cast<uint8_t>((TileWords(j, tile)[lane] >> bit) & 1);
    };
    const uint8_t s = bit_of(0);
    // Undo the digit transform: magnitude bit 8-j = delta_j XOR sign. Planes below m
    // are never read (they may not even be resident): q8's low bits are left 0.
    uint8_t q8 = 0;
    for (int j = 1; j <= m; ++j) q8 |= static_cast<uint8_t>((bit_of(j) ^ s) << (kMasterBits - j));
    out[c] = DecodeWeight(exponents()[tile * kRowBlock + lane], s, q8, m, mode);
  }
  return absl::OkStatus();
}

}  // namespace otaro::sefp
