// Reading fine-tuning data from disk: the files behind a dataset path (one
// file, or a folder of .txt files), a size cap checked before anything is
// read, the dataset format (detected from the path and content unless given),
// and the split of JSON data into records that remember their line.
#ifndef OTARO_TRAINER_DATA_DATA_SOURCE_H_
#define OTARO_TRAINER_DATA_DATA_SOURCE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace otaro::trainer::data {

enum class DataFormat {
  kAuto,    // detect (see DetectFormat)
  kText,    // plain text, packed into windows
  kAlpaca,  // {instruction, input?, output}: JSON Lines or one JSON list
  kChat,    // {"messages": [{role, content}, ...]}: JSON Lines or one JSON list
};
absl::string_view DataFormatName(DataFormat format);
// "auto", "text", "alpaca" or "chat"; anything else is InvalidArgument.
absl::StatusOr<DataFormat> ParseDataFormat(absl::string_view name);

struct InputFile {
  std::string path;
  std::string content;
};

// The files behind `path`: the file itself, or every regular *.txt file
// directly inside the folder, sorted by name (so the order, and with it the
// token stream, is the same on every machine). Errors name the path: missing,
// unreadable, a folder with no .txt file, a total size above `max_bytes`
// (checked before reading), or nothing but whitespace in all of them.
absl::StatusOr<std::vector<InputFile>> ReadInputFiles(const std::string& path, int64_t max_bytes);

// The format of data read from `path`: a folder, or a .txt / .text / .raw
// file, is text. Otherwise the content decides: a first non-blank character of
// '[' or '{' means JSON (a list, or JSON Lines), whose first records that
// parse as objects pick chat ("messages") or alpaca ("instruction"/"output");
// anything else is text, except in a .json / .jsonl file, which is an error.
absl::StatusOr<DataFormat> DetectFormat(const std::string& path,
                                        const std::vector<InputFile>& files);

// One JSON value of a dataset file, as unparsed text, with the 1-based line
// where it starts.
struct JsonRecord {
  int64_t line = 0;
  absl::string_view text;
};

// Whether `content` is one JSON list (first non-blank character '[') rather
// than JSON Lines.
bool IsJsonList(absl::string_view content);

// JSON Lines: one record per non-blank line (a trailing '\r' is dropped).
std::vector<JsonRecord> SplitJsonLines(absl::string_view content);

// A JSON list: one record per element, found by bracket matching so that one
// broken element is skipped on its own instead of failing the whole file.
// Errors: not a list, or a list that is never closed.
absl::StatusOr<std::vector<JsonRecord>> SplitJsonList(absl::string_view content);

// Number of lines (a final line without '\n' counts; "" has none).
int64_t CountLines(absl::string_view content);

}  // namespace otaro::trainer::data

#endif  // OTARO_TRAINER_DATA_DATA_SOURCE_H_
