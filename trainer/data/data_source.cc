#include "trainer/data/data_source.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/atomic_file.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace otaro::trainer::data {
namespace fs = std::filesystem;
namespace {

// Records that DetectFormat looks at before giving up.
constexpr int kSniffRecords = 100;

std::string Lower(absl::string_view s) { return absl::AsciiStrToLower(std::string(s)); }

bool IsTextExtension(const std::string& ext) {
  return ext == ".txt" || ext == ".text" || ext == ".raw";
}

bool IsJsonExtension(const std::string& ext) {
  return ext == ".json" || ext == ".jsonl" || ext == ".ndjson";
}

// `content` without a UTF-8 byte order mark and leading whitespace.
absl::string_view SkipBomAndSpace(absl::string_view content) {
  if (absl::StartsWith(content, "\xEF\xBB\xBF")) content.remove_prefix(3);
  return absl::StripLeadingAsciiWhitespace(content);
}

absl::Status TooLarge(const std::string& path, uintmax_t bytes, int64_t max_bytes) {
  return absl::ResourceExhaustedError(
      absl::StrCat("dataset ", path, " is ", bytes, " bytes, above the limit of ", max_bytes,
                   " bytes; split it or raise the data size cap"));
}

}  // namespace

absl::string_view DataFormatName(DataFormat format) {
  switch (format) {
    case DataFormat::kAuto: return "auto";
    case DataFormat::kText: return "text";
    case DataFormat::kAlpaca: return "alpaca";
    case DataFormat::kChat: return "chat";
  }
  return "unknown";
}

absl::StatusOr<DataFormat> ParseDataFormat(absl::string_view name) {
  for (DataFormat f : {DataFormat::kAuto, DataFormat::kText, DataFormat::kAlpaca,
                       DataFormat::kChat}) {
    if (name == DataFormatName(f)) return f;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown data format '", name, "'; use auto, text, alpaca or chat"));
}

absl::StatusOr<std::vector<InputFile>> ReadInputFiles(const std::string& path, int64_t max_bytes) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (ec || !fs::exists(status)) {
    return absl::NotFoundError(absl::StrCat("dataset ", path, " does not exist"));
  }
  std::vector<std::string> paths;
  if (fs::is_directory(status)) {
    for (const fs::directory_entry& entry : fs::directory_iterator(path, ec)) {
      if (entry.is_regular_file() && Lower(entry.path().extension().string()) == ".txt") {
        paths.push_back(entry.path().string());
      }
    }
    if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot list ", path, ": ", ec.message()));
    if (paths.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("dataset folder ", path, " has no .txt files"));
    }
    std::sort(paths.begin(), paths.end());
  } else if (fs::is_regular_file(status)) {
    paths.push_back(path);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("dataset ", path, " is neither a regular file nor a folder"));
  }

  uintmax_t total = 0;
  for (const std::string& p : paths) {
    const uintmax_t size = fs::file_size(p, ec);
    if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot stat ", p, ": ", ec.message()));
    total += size;
    if (max_bytes >= 0 && total > static_cast<uintmax_t>(max_bytes)) {
      return TooLarge(paths.size() == 1 ? p : path, total, max_bytes);
    }
  }

  std::vector<InputFile> files;
  bool any_content = false;
  for (const std::string& p : paths) {
    InputFile file{p, ""};
    OTARO_RETURN_IF_ERROR(ReadFileToString(p, &file.content));
    // The file may have grown since it was measured.
    if (max_bytes >= 0 && file.content.size() > static_cast<uintmax_t>(max_bytes)) {
      return TooLarge(p, file.content.size(), max_bytes);
    }
    any_content = any_content || !SkipBomAndSpace(file.content).empty();
    files.push_back(std::move(file));
  }
  if (!any_content) {
    return absl::InvalidArgumentError(absl::StrCat("dataset ", path, " is empty"));
  }
  return files;
}

bool IsJsonList(absl::string_view content) {
  return absl::StartsWith(SkipBomAndSpace(content), "[");
}

absl::StatusOr<DataFormat> DetectFormat(const std::string& path,
                                        const std::vector<InputFile>& files) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return DataFormat::kText;
  const std::string ext = Lower(fs::path(path).extension().string());
  if (IsTextExtension(ext)) return DataFormat::kText;
  if (files.size() != 1) return DataFormat::kText;

  const absl::string_view content = SkipBomAndSpace(files[0].content);
  if (!absl::StartsWith(content, "[") && !absl::StartsWith(content, "{")) {
    if (IsJsonExtension(ext)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "dataset ", path, " is named like JSON but does not start with '[' or '{'"));
    }
    return DataFormat::kText;
  }
  std::vector<JsonRecord> records;
  if (IsJsonList(content)) {
    OTARO_ASSIGN_OR_RETURN(records, SplitJsonList(files[0].content));
  } else {
    records = SplitJsonLines(files[0].content);
  }
  std::vector<std::string> keys_seen;
  int looked = 0;
  for (const JsonRecord& record : records) {
    if (++looked > kSniffRecords) break;
    const nlohmann::json value = nlohmann::json::parse(record.text.begin(), record.text.end(),
                                                       nullptr, /*allow_exceptions=*/false);
    if (!value.is_object()) continue;
    if (value.contains("messages")) return DataFormat::kChat;
    if (value.contains("instruction") || value.contains("output")) return DataFormat::kAlpaca;
    if (keys_seen.empty()) {
      for (const auto& item : value.items()) keys_seen.push_back(item.key());
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "cannot tell the format of ", path,
      ": no JSON object among its first records has \"messages\" (chat) or \"instruction\" "
      "(alpaca)",
      keys_seen.empty() ? "" : absl::StrCat("; keys found: ", absl::StrJoin(keys_seen, ", ")),
      ". Name the format explicitly"));
}

std::vector<JsonRecord> SplitJsonLines(absl::string_view content) {
  std::vector<JsonRecord> records;
  int64_t line = 0;
  size_t start = 0;
  while (start < content.size()) {
    size_t end = content.find('\n', start);
    if (end == absl::string_view::npos) end = content.size();
    ++line;
    absl::string_view text = content.substr(start, end - start);
    if (line == 1 && absl::StartsWith(text, "\xEF\xBB\xBF")) text.remove_prefix(3);
    if (absl::EndsWith(text, "\r")) text.remove_suffix(1);
    if (!absl::StripAsciiWhitespace(text).empty()) records.push_back({line, text});
    start = end + 1;
  }
  return records;
}

absl::StatusOr<std::vector<JsonRecord>> SplitJsonList(absl::string_view content) {
  size_t pos = 0;
  int64_t line = 1;
  // Moves pos to the next non-whitespace byte, counting lines.
  auto skip_space = [&] {
    while (pos < content.size() && absl::ascii_isspace(static_cast<unsigned char>(content[pos]))) {
      line += content[pos] == '\n';
      ++pos;
    }
  };
  if (absl::StartsWith(content, "\xEF\xBB\xBF")) pos = 3;
  skip_space();
  if (pos >= content.size() || content[pos] != '[') {
    return absl::InvalidArgumentError("expected a JSON list of examples ('[' ... ']')");
  }
  ++pos;
  std::vector<JsonRecord> records;
  skip_space();
  if (pos < content.size() && content[pos] == ']') {
    ++pos;
  } else {
    for (;;) {
      skip_space();
      const size_t start = pos;
      const int64_t start_line = line;
      int depth = 0;
      bool in_string = false;
      bool closed = false;  // the list's ']' was reached
      for (; pos < content.size(); ++pos) {
        const char c = content[pos];
        line += c == '\n';
        if (in_string) {
          if (c == '\\') {
            ++pos;  // The escaped character cannot end the string.
            if (pos < content.size()) line += content[pos] == '\n';
          } else if (c == '"') {
            in_string = false;
          }
        } else if (c == '"') {
          in_string = true;
        } else if (c == '[' || c == '{') {
          ++depth;
        } else if ((c == ']' || c == '}') && depth > 0) {
          --depth;
        } else if (c == ']' && depth == 0) {
          closed = true;
          break;
        } else if (c == ',' && depth == 0) {
          break;
        }
      }
      if (pos >= content.size()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "the JSON list is never closed (element starting on line ", start_line,
            " runs to the end of the file)"));
      }
      records.push_back(
          {start_line, absl::StripTrailingAsciiWhitespace(content.substr(start, pos - start))});
      ++pos;  // past ',' or ']'
      if (closed) break;
    }
  }
  skip_space();
  if (pos < content.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected text after the JSON list on line ", line));
  }
  return records;
}

int64_t CountLines(absl::string_view content) {
  if (content.empty()) return 0;
  const int64_t newlines = std::count(content.begin(), content.end(), '\n');
  return newlines + (content.back() == '\n' ? 0 : 1);
}

}  // namespace otaro::trainer::data
