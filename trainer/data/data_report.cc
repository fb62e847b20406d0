#include "trainer/data/data_report.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace otaro::trainer::data {

void DataReport::AddIssue(absl::string_view file, int64_t line, absl::string_view reason) {
  ++malformed;
  if (issues.size() < static_cast<size_t>(kMaxListedIssues)) {
    issues.push_back({std::string(file), line, std::string(reason)});
  }
}

double DataReport::MalformedFraction() const {
  return records == 0 ? 0.0 : static_cast<double>(malformed) / static_cast<double>(records);
}

std::string DataReport::ToString() const {
  std::string out = absl::StrCat("format ", format, ", ", files.size(), " file(s)");
  if (files.size() == 1) absl::StrAppend(&out, ": ", files[0]);
  absl::StrAppend(&out, "\n  lines ", lines, ", records ", records, ", examples ", examples,
                  ", malformed ", malformed,
                  absl::StrFormat(" (%.1f%%)", 100.0 * MalformedFraction()), ", truncated ",
                  truncated);
  absl::StrAppend(&out, "\n  tokens ", tokens, ", scored targets ", scored_tokens, ", rows ", rows);
  if (dropped_tail_tokens > 0) {
    absl::StrAppend(&out, ", dropped tail tokens ", dropped_tail_tokens);
  }
  if (malformed > 0) {
    absl::StrAppend(&out, "\n  malformed records:");
    for (const DataIssue& issue : issues) {
      absl::StrAppend(&out, "\n    ", issue.file, ":", issue.line, ": ", issue.reason);
    }
    const int64_t unlisted = malformed - static_cast<int64_t>(issues.size());
    if (unlisted > 0) absl::StrAppend(&out, "\n    ... and ", unlisted, " more");
  }
  return out;
}

}  // namespace otaro::trainer::data
