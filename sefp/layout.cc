#include "sefp/layout.h"

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace otaro::sefp {
namespace {

void* AlignedZeroAlloc(size_t bytes) {
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (p != nullptr) std::memset(p, 0, rounded == 0 ? 64 : rounded);
  return p;
}

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

void PackedMatrix::FreeDeleter::operator()(void* p) const { std::free(p); }

absl::StatusOr<PackedMatrix> PackedMatrix::Pack(const SefpTensor& t, int resident_max_bits) {
  if (absl::Status s = sefp::CheckPrecision(resident_max_bits); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("resident_max_bits: ", s.message()));
  }
  if (absl::Status s = t.Validate("(packing)"); !s.ok()) return s;
  PackedMatrix p;
  p.rows_ = t.rows;
  p.cols_ = t.cols;
  p.groups_ = t.groups_per_row();
  p.row_blocks_ = (t.rows + kRowBlock - 1) / kRowBlock;
  p.resident_max_bits_ = resident_max_bits;
  const int64_t tiles = p.row_blocks_ * p.groups_;
  p.plane_bytes_ = static_cast<size_t>(tiles) * kTileBytes;
  for (int j = 0; j <= resident_max_bits; ++j) {
    p.planes_.emplace_back(static_cast<uint8_t*>(AlignedZeroAlloc(p.plane_bytes_)));
    if (!p.planes_.back()) return absl::ResourceExhaustedError("out of memory packing SEFP planes");
  }
  p.exponents_.reset(static_cast<int8_t*>(AlignedZeroAlloc(static_cast<size_t>(tiles) * kRowBlock)));
  if (!p.exponents_) return absl::ResourceExhaustedError("out of memory packing SEFP exponents");
  std::memset(p.exponents_.get(), kZeroGroupExponent, static_cast<size_t>(tiles) * kRowBlock);

  const int64_t rb_bytes = t.row_bytes();
  for (int64_t r = 0; r < t.rows; ++r) {
    const int64_t rb = r / kRowBlock;
    const int lane = static_cast<int>(r % kRowBlock);
    const uint8_t* sign_row = t.signs.data() + r * rb_bytes;
    for (int64_t g = 0; g < p.groups_; ++g) {
      const int64_t tile = p.TileIndex(rb, g);
      p.exponents_.get()[tile * kRowBlock + lane] = t.exponents[r * p.groups_ + g];
      const int64_t c = g * kGroupSize;
      // Bits past the row's end are 0 in the logical arrays (validated); the
      // sign of a padded weight is 0, so its digits are "-1" times x = 0.
      const uint64_t sign = Bits64(sign_row, rb_bytes, c);
      *TileWord(p.planes_[0].get(), tile, lane) = sign;
      for (int j = 1; j <= resident_max_bits; ++j) {
        const uint8_t* plane_row = t.planes[kMasterBits - j].data() + r * rb_bytes;
        *TileWord(p.planes_[j].get(), tile, lane) = Bits64(plane_row, rb_bytes, c) ^ sign;
      }
    }
  }
  return p;
}

PackedMatrix PackedMatrix::Clone() const {
  PackedMatrix p;
  p.rows_ = rows_;
  p.cols_ = cols_;
  p.groups_ = groups_;
  p.row_blocks_ = row_blocks_;
  p.resident_max_bits_ = resident_max_bits_;
  p.plane_bytes_ = plane_bytes_;
  for (const auto& plane : planes_) {
    p.planes_.emplace_back(static_cast<uint8_t*>(AlignedZeroAlloc(plane_bytes_)));
    std::memcpy(p.planes_.back().get(), plane.get(), plane_bytes_);
  }
  const size_t exp_bytes = static_cast<size_t>(row_blocks_ * groups_) * kRowBlock;
  p.exponents_.reset(static_cast<int8_t*>(AlignedZeroAlloc(exp_bytes)));
  std::memcpy(p.exponents_.get(), exponents_.get(), exp_bytes);
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
  return static_cast<size_t>(m + 1) * plane_bytes_ +
         static_cast<size_t>(row_blocks_ * groups_) * kRowBlock;
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
    out[c] = DecodeWeight(exponents_.get()[tile * kRowBlock + lane], s, q8, m, mode);
  }
  return absl::OkStatus();
}

}  // namespace otaro::sefp
