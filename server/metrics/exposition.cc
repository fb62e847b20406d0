#include "server/metrics/exposition.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace otaro::metrics {
namespace {

bool IsAsciiLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }

void AppendLabelPair(absl::string_view name, absl::string_view value, std::string* out) {
  out->append(name.data(), name.size());
  out->append("=\"");
  out->append(EscapeLabelValue(value));
  out->push_back('"');
}

// Writes `name{labels[,extra_name="extra_value"]} value\n`; braces are left out
// when there is no label at all, as the format allows.
void AppendSampleLine(absl::string_view name, const MetricFamilySnapshot& family,
                      const Sample& sample, absl::string_view extra_name,
                      absl::string_view extra_value, absl::string_view value, std::string* out) {
  out->append(name.data(), name.size());
  bool any = false;
  for (size_t i = 0; i < family.label_names.size(); ++i) {
    out->push_back(any ? ',' : '{');
    AppendLabelPair(family.label_names[i],
                    i < sample.label_values.size() ? sample.label_values[i] : "", out);
    any = true;
  }
  if (!extra_name.empty()) {
    out->push_back(any ? ',' : '{');
    AppendLabelPair(extra_name, extra_value, out);
    any = true;
  }
  if (any) out->push_back('}');
  out->push_back(' ');
  out->append(value.data(), value.size());
  out->push_back('\n');
}

}  // namespace

absl::string_view MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

absl::Status ValidateMetricName(absl::string_view name) {
  bool ok = !name.empty();
  for (size_t i = 0; ok && i < name.size(); ++i) {
    char c = name[i];
    ok = IsAsciiLetter(c) || c == '_' || c == ':' || (i > 0 && IsAsciiDigit(c));
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid metric name \"", name, "\": must match [a-zA-Z_:][a-zA-Z0-9_:]*"));
  }
  if (name.substr(0, 2) == "__") {
    return absl::InvalidArgumentError(absl::StrCat("invalid metric name \"", name,
                                                   "\": names starting with \"__\" are reserved"));
  }
  return absl::OkStatus();
}

absl::Status ValidateLabelName(absl::string_view name, bool for_histogram) {
  bool ok = !name.empty();
  for (size_t i = 0; ok && i < name.size(); ++i) {
    char c = name[i];
    ok = IsAsciiLetter(c) || c == '_' || (i > 0 && IsAsciiDigit(c));
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid label name \"", name, "\": must match [a-zA-Z_][a-zA-Z0-9_]*"));
  }
  if (name.substr(0, 2) == "__") {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid label name \"", name, "\": names starting with \"__\" are reserved"));
  }
  if (for_histogram && name == "le") {
    return absl::InvalidArgumentError(
        "invalid label name \"le\": reserved for histogram bucket bounds");
  }
  return absl::OkStatus();
}

namespace {

// The text format escapes backslash and newline everywhere, and the double
// quote inside label values only.
std::string Escape(absl::string_view text, bool quotes) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') {
      out.append("\\\\");
    } else if (c == '\n') {
      out.append("\\n");
    } else if (c == '"' && quotes) {
      out.append("\\\"");
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

std::string EscapeLabelValue(absl::string_view value) { return Escape(value, /*quotes=*/true); }

std::string EscapeHelp(absl::string_view help) { return Escape(help, /*quotes=*/false); }

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // Shortest round-trip digits in d.ddde±XX form; the exponent form is already
  // Go's %e spelling (at least two exponent digits).
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::scientific);
  if (ec != std::errc()) return "NaN";  // Cannot happen with 64 bytes.
  absl::string_view sci(buf, end - buf);
  size_t e_pos = sci.find('e');
  int exponent = std::atoi(std::string(sci.substr(e_pos + 1)).c_str());
  // Go's 'g' with shortest precision switches to exponent form when the decimal
  // exponent is < -4 or >= 6 (its eprec is 6 for the shortest form).
  if (exponent < -4 || exponent >= 6) return std::string(sci);

  absl::string_view mantissa = sci.substr(0, e_pos);
  bool negative = !mantissa.empty() && mantissa[0] == '-';
  if (negative) mantissa.remove_prefix(1);
  std::string digits;
  for (char c : mantissa) {
    if (c != '.') digits.push_back(c);
  }
  std::string out = negative ? "-" : "";
  if (exponent < 0) {
    out.append("0.");
    out.append(static_cast<size_t>(-exponent - 1), '0');
    out.append(digits);
    return out;
  }
  size_t int_digits = static_cast<size_t>(exponent) + 1;
  if (digits.size() <= int_digits) {
    out.append(digits);
    out.append(int_digits - digits.size(), '0');
  } else {
    out.append(digits, 0, int_digits);
    out.push_back('.');
    out.append(digits, int_digits, std::string::npos);
  }
  return out;
}

void AppendText(const MetricFamilySnapshot& family, std::string* out) {
  if (family.samples.empty()) return;
  absl::StrAppend(out, "# HELP ", family.name, " ", EscapeHelp(family.help), "\n");
  absl::StrAppend(out, "# TYPE ", family.name, " ", MetricTypeName(family.type), "\n");
  if (family.type != MetricType::kHistogram) {
    for (const Sample& sample : family.samples) {
      AppendSampleLine(family.name, family, sample, "", "", FormatValue(sample.value), out);
    }
    return;
  }
  const std::string bucket_name = family.name + "_bucket";
  const std::string sum_name = family.name + "_sum";
  const std::string count_name = family.name + "_count";
  std::vector<std::string> le_values;
  le_values.reserve(family.bucket_bounds.size() + 1);
  for (double bound : family.bucket_bounds) le_values.push_back(FormatValue(bound));
  le_values.push_back("+Inf");
  for (const Sample& sample : family.samples) {
    uint64_t count = 0;
    for (size_t i = 0; i < le_values.size(); ++i) {
      count = i < sample.cumulative_counts.size() ? sample.cumulative_counts[i] : count;
      AppendSampleLine(bucket_name, family, sample, "le", le_values[i], absl::StrCat(count), out);
    }
    AppendSampleLine(sum_name, family, sample, "", "", FormatValue(sample.sum), out);
    // _count is the +Inf bucket by definition; writing the same number keeps the
    // two consistent even when observations race with the scrape.
    AppendSampleLine(count_name, family, sample, "", "", absl::StrCat(count), out);
  }
}

std::string SerializeText(absl::Span<const MetricFamilySnapshot> families) {
  std::string out;
  for (const MetricFamilySnapshot& family : families) AppendText(family, &out);
  return out;
}

}  // namespace otaro::metrics
