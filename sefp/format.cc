#include "sefp/format.h"

#include "common/float16.h"

#include <cmath>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace otaro::sefp {

absl::string_view ReconstructionName(Reconstruction mode) {
  return mode == Reconstruction::kMidpoint ? "midpoint" : "truncate";
}

absl::StatusOr<Reconstruction> ParseReconstruction(absl::string_view name) {
  if (name == "midpoint") return Reconstruction::kMidpoint;
  if (name == "truncate") return Reconstruction::kTruncate;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown SEFP reconstruction mode '", name, "' (midpoint or truncate)"));
}

absl::Status CheckPrecision(int m) {
  if (m < kMinBits || m > kMasterBits) {
    return absl::InvalidArgumentError(absl::StrCat("SEFP precision E5M", m,
                                                   " is out of range: mantissa bits must be ",
                                                   kMinBits, "..", kMasterBits));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> ParsePrecision(absl::string_view text) {
  std::string t = absl::AsciiStrToUpper(absl::StripAsciiWhitespace(text));
  absl::string_view digits = t;
  if (absl::ConsumePrefix(&digits, "E5M") && digits.empty()) digits = "x";
  int m = 0;
  if (!absl::SimpleAtoi(digits, &m) || digits.empty() || digits[0] == '+' || digits[0] == '-') {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot parse SEFP precision '", text, "' (write 4 or E5M4)"));
  }
  if (absl::Status s = CheckPrecision(m); !s.ok()) return s;
  return m;
}

int8_t EncodeGroup(const float* w, int n, uint8_t* sign, uint8_t* q8, int64_t* saturated) {
  uint32_t max_abs = 0;
  for (int i = 0; i < n; ++i) {
    sign[i] = static_cast<uint8_t>(rules::FloatBits(w[i]) >> 31);
    max_abs = std::max(max_abs, rules::AbsBits(w[i]));
  }
  const int8_t e = rules::GroupExponent(max_abs);
  if (e == kZeroGroupExponent) {
    std::memset(q8, 0, n);
    return e;
  }
  const float inverse_step8 = rules::InverseStep8(e);
  int32_t sat = 0;
  for (int i = 0; i < n; ++i) {
    q8[i] = static_cast<uint8_t>(rules::QuantizeMagnitude(std::fabs(w[i]), inverse_step8, &sat));
  }
  *saturated += sat;
  return e;
}

float DecodeWeight(int8_t exponent, uint8_t sign, uint8_t q8, int m, Reconstruction mode) {
  return rules::ApplySign(rules::DecodeMagnitude(q8, m, rules::ReconstructionOffset(mode),
                                                 rules::DecodeStep(exponent, m)),
                          sign);
}

namespace {
// FakeQuantizeGroup's body for a group of kN weights (kN = 0: n at run time). A
// full group gets a fixed trip count, so the compiler vectorizes it without a tail.
// `w` is copied first: the loops then read a local array that cannot alias `out`
// (which may alias `w`), which is what lets them vectorize.
template <int kN>
bool FakeQuantizeGroupN(const float* w, int n_dynamic, int m, Reconstruction mode, float* out,
                        int8_t* exponent, int64_t* saturated) {
  const int n = kN > 0 ? kN : n_dynamic;
  float v[kGroupSize];
  std::memcpy(v, w, sizeof(float) * n);
  uint32_t max_abs = 0;
  for (int i = 0; i < n; ++i) max_abs = std::max(max_abs, rules::AbsBits(v[i]));
  if (max_abs >= rules::kNonFiniteBits) return false;
  const int8_t e = rules::GroupExponent(max_abs);
  const rules::FakeQuantScales scales = rules::ScalesForGroup(e, m, mode);
  int32_t sat = 0;
  for (int i = 0; i < n; ++i) out[i] = rules::FakeQuantizeWeight(v[i], scales, m, &sat);
  *exponent = e;
  *saturated += sat;
  return true;
}
}  // namespace

bool FakeQuantizeGroup(const float* w, int n, int m, Reconstruction mode, float* out,
                       int8_t* exponent, int64_t* saturated) {
  if (n == kGroupSize) return FakeQuantizeGroupN<kGroupSize>(w, n, m, mode, out, exponent, saturated);
  return FakeQuantizeGroupN<0>(w, n, m, mode, out, exponent, saturated);
}

uint8_t SefpTensor::q8(int64_t r, int64_t c) const {
  uint8_t q = 0;
  for (int p = 0; p < 8; ++p) q |= static_cast<uint8_t>(Bit(planes[p], r, c) << p);
  return q;
}

absl::StatusOr<std::vector<float>> SefpTensor::DecodeAll(int m, Reconstruction mode) const {
  if (absl::Status s = CheckPrecision(m); !s.ok()) return s;
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = Decode(r, c, m, mode);
  }
  return out;
}

absl::Status SefpTensor::Validate(absl::string_view name) const {
  auto bad = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("SEFP tensor '", name, "': ", why));
  };
  if (rows < 0 || cols < 0) return bad("negative shape");
  const size_t nbits = static_cast<size_t>(rows * row_bytes());
  if (exponents.size() != static_cast<size_t>(rows * groups_per_row())) {
    return bad(absl::StrCat("has ", exponents.size(), " exponents, expected ",
                            rows * groups_per_row()));
  }
  if (signs.size() != nbits) return bad("sign bit array has the wrong size");
  for (int p = 0; p < 8; ++p) {
    if (planes[p].size() != nbits) return bad(absl::StrCat("bit-plane ", p, " has the wrong size"));
  }
  // Padding bits of each row's last byte must be 0: they are not weights.
  const int tail = static_cast<int>(cols % 8);
  const uint8_t pad_mask = tail == 0 ? 0 : static_cast<uint8_t>(0xff << tail);
  for (int64_t r = 0; r < rows && pad_mask != 0; ++r) {
    const size_t last = r * row_bytes() + row_bytes() - 1;
    if (signs[last] & pad_mask) return bad(absl::StrCat("row ", r, " has sign bits set past the last column"));
    for (int p = 0; p < 8; ++p) {
      if (planes[p][last] & pad_mask) return bad(absl::StrCat("row ", r, " has magnitude bits set past the last column"));
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups_per_row(); ++g) {
      int e = exponents[r * groups_per_row() + g];
      if (e == kZeroGroupExponent) {
        int64_t end = std::min<int64_t>(cols, (g + 1) * kGroupSize);
        for (int64_t c = g * kGroupSize; c < end; ++c) {
          if (q8(r, c) != 0) return bad(absl::StrCat("zero group (row ", r, ", group ", g, ") has magnitude bits"));
        }
      } else if (e < kMinExponent || e > kMaxExponent) {
        return bad(absl::StrCat("exponent ", e, " at row ", r, ", group ", g,
                                " is outside [", kMinExponent, ", ", kMaxExponent, "]"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<SefpTensor> EncodeTensor(absl::string_view name, absl::Span<const float> w,
                                        int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0 || static_cast<size_t>(rows * cols) != w.size()) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "': shape [", rows, ", ",
                                                   cols, "] does not match ", w.size(), " values"));
  }
  for (size_t i = 0; i < w.size(); ++i) {
    if (!std::isfinite(w[i])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", name, "' holds a non-finite value (", std::isnan(w[i]) ? "NaN" : "Inf",
          ") at [", static_cast<int64_t>(i) / cols, ", ", static_cast<int64_t>(i) % cols,
          "]: refusing to quantize the model"));
    }
  }
  SefpTensor t;
  t.rows = rows;
  t.cols = cols;
  const int64_t groups = t.groups_per_row();
  const int64_t rb = t.row_bytes();
  t.exponents.resize(rows * groups);
  t.signs.assign(rows * rb, 0);
  for (auto& p : t.planes) p.assign(rows * rb, 0);
  uint8_t sign[kGroupSize];
  uint8_t q8[kGroupSize];
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t c0 = g * kGroupSize;
      const int n = static_cast<int>(std::min<int64_t>(kGroupSize, cols - c0));
      t.exponents[r * groups + g] = EncodeGroup(&w[r * cols + c0], n, sign, q8, &t.saturated);
      for (int i = 0; i < n; ++i) {
        const int64_t c = c0 + i;
        const size_t byte = r * rb + c / 8;
        const int bit = static_cast<int>(c % 8);
        t.signs[byte] |= static_cast<uint8_t>(sign[i] << bit);
        for (int p = 0; p < 8; ++p) t.planes[p][byte] |= static_cast<uint8_t>(((q8[i] >> p) & 1) << bit);
      }
    }
  }
  if (t.saturated > 0) {
    OTARO_LOG_WARN("SEFP: tensor '{}': {} weights saturated at the largest exponent ({})",
                   std::string(name), t.saturated, kMaxExponent);
  }
  return t;
}


namespace {
template <typename Convert>
absl::StatusOr<SefpTensor> EncodeConverted(absl::string_view name, absl::Span<const uint16_t> w,
                                           int64_t rows, int64_t cols, Convert convert) {
  std::vector<float> f(w.size());
  for (size_t i = 0; i < w.size(); ++i) f[i] = convert(w[i]);
  return EncodeTensor(name, f, rows, cols);
}
}  // namespace

absl::StatusOr<SefpTensor> EncodeTensorBf16(absl::string_view name, absl::Span<const uint16_t> w,
                                            int64_t rows, int64_t cols) {
  return EncodeConverted(name, w, rows, cols, Bf16ToFloat);
}

absl::StatusOr<SefpTensor> EncodeTensorFp16(absl::string_view name, absl::Span<const uint16_t> w,
                                            int64_t rows, int64_t cols) {
  return EncodeConverted(name, w, rows, cols, Fp16ToFloat);
}

}  // namespace otaro::sefp
