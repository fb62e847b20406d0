// What loading a fine-tuning dataset found: counts, and the records that were
// skipped as malformed with their file and line, so a user can fix the data
// before a tuning job spends any time on it.
#ifndef OTARO_TRAINER_DATA_DATA_REPORT_H_
#define OTARO_TRAINER_DATA_DATA_REPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace otaro::trainer::data {

// One skipped record: where it starts and why it was skipped.
struct DataIssue {
  std::string file;
  int64_t line = 0;  // 1-based line where the record starts
  std::string reason;
};

struct DataReport {
  // Only the first kMaxListedIssues issues are kept; the rest are counted.
  static constexpr int kMaxListedIssues = 20;

  std::string format;              // "text", "alpaca" or "chat"
  std::vector<std::string> files;  // in the order they were read
  int64_t lines = 0;               // physical lines in all files
  int64_t records = 0;             // documents (text) or examples seen (JSON)
  int64_t examples = 0;            // records that became training data
  int64_t malformed = 0;           // records skipped (see issues)
  int64_t truncated = 0;           // examples cut to fit seq_len + 1 tokens
  int64_t tokens = 0;              // tokens kept in rows (before padding)
  int64_t scored_tokens = 0;       // targets that carry loss
  int64_t rows = 0;                // rows of seq_len positions
  int64_t dropped_tail_tokens = 0;  // text: tokens after the last full window
  std::vector<DataIssue> issues;   // the first kMaxListedIssues malformed records

  // Counts a malformed record, listing it while fewer than kMaxListedIssues are.
  void AddIssue(absl::string_view file, int64_t line, absl::string_view reason);
  // Fraction of records that were malformed (0 when there were none).
  double MalformedFraction() const;
  // Multi-line human-readable summary, issues included.
  std::string ToString() const;
};

}  // namespace otaro::trainer::data

#endif  // OTARO_TRAINER_DATA_DATA_REPORT_H_
