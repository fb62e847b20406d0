#include "trainer/data/dataset.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "trainer/batch.h"
#include "trainer/data/examples.h"

namespace otaro::trainer::data {

using engine::tokenizer::kNoToken;
using engine::tokenizer::Tokenizer;

struct TokenizedDataset::Storage {
  struct Row {
    int64_t offset = 0;
    int64_t length = 0;  // 2..seq_len + 1 tokens
  };
  int64_t seq_len = 0;
  int32_t pad_id = 0;
  std::vector<int32_t> tokens;
  std::vector<uint8_t> scored;  // per token: predicting it carries loss
  std::vector<Row> rows;
};

namespace {

// Longest malformed-record reason kept (JSON parser messages quote input).
constexpr size_t kMaxReasonBytes = 200;

std::string ShortReason(absl::string_view reason) {
  if (reason.size() <= kMaxReasonBytes) return std::string(reason);
  std::string out = ToValidUtf8(reason.substr(0, kMaxReasonBytes));
  return out + "...";
}

// Parses one JSON record; the error is a malformed reason.
absl::StatusOr<nlohmann::json> ParseRecord(absl::string_view text) {
  if (!IsValidUtf8(text)) return absl::InvalidArgumentError("invalid UTF-8");
  if (text.empty()) return absl::InvalidArgumentError("empty list element");
  nlohmann::json value = nlohmann::json::parse(text.begin(), text.end(), nullptr,
                                               /*allow_exceptions=*/false);
  if (!value.is_discarded()) return value;
  // Parse again only to get the parser's description of the problem.
  std::string detail = "syntax error";
  try {
    const nlohmann::json unused = nlohmann::json::parse(text.begin(), text.end());
    (void)unused;
  } catch (const nlohmann::json::exception& e) {
    detail = e.what();
    // Drop the "[json.exception.parse_error.101] " tag.
    if (const size_t tag_end = detail.find("] "); absl::StartsWith(detail, "[json.") &&
                                                  tag_end != std::string::npos) {
      detail = detail.substr(tag_end + 2);
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("not valid JSON: ", detail));
}

int32_t PadId(const Tokenizer& tokenizer) {
  for (int32_t id : {tokenizer.pad_id(), tokenizer.eos_id()}) {
    if (id != kNoToken && id >= 0 && id < tokenizer.vocab_size()) return id;
  }
  return 0;
}

class Builder {
 public:
  Builder(const Tokenizer& tokenizer, const DataOptions& options, DataReport* report)
      : tokenizer_(tokenizer), options_(options), report_(report) {
    storage_ = std::make_shared<TokenizedDataset::Storage>();
    storage_->seq_len = options.seq_len;
    storage_->pad_id = PadId(tokenizer);
  }

  int64_t window() const { return options_.seq_len + 1; }

  void AddTextFile(const InputFile& file) {
    for (const TextDocument& doc : SplitDocuments(file.content, options_.document_separator)) {
      ++report_->records;
      absl::StatusOr<std::vector<int32_t>> ids = DocumentTokens(doc, tokenizer_);
      if (!ids.ok()) {
        report_->AddIssue(file.path, doc.line, ShortReason(ids.status().message()));
        continue;
      }
      ++report_->examples;
      storage_->tokens.insert(storage_->tokens.end(), ids->begin(), ids->end());
    }
  }

  // Cuts the text stream into windows (after all text files were added).
  void PackText() {
    const int64_t total = static_cast<int64_t>(storage_->tokens.size());
    storage_->scored.assign(storage_->tokens.size(), 1);
    int64_t offset = 0;
    for (; offset + window() <= total; offset += window()) AddRow(offset, window());
    const int64_t tail = total - offset;
    if (tail >= 2 && options_.text_tail == TailPolicy::kPad) {
      AddRow(offset, tail);
    } else {
      report_->dropped_tail_tokens = tail;
    }
    // Keep only what rows use.
    storage_->tokens.resize(offset + (report_->dropped_tail_tokens == 0 ? tail : 0));
    storage_->scored.resize(storage_->tokens.size());
  }

  // One JSON record of alpaca or chat data.
  void AddExample(const std::string& file, const JsonRecord& record,
                  const engine::tokenizer::ChatFormat* chat) {
    ++report_->records;
    auto issue = [&](absl::string_view reason) {
      report_->AddIssue(file, record.line, ShortReason(reason));
    };
    absl::StatusOr<nlohmann::json> value = ParseRecord(record.text);
    if (!value.ok()) return issue(value.status().message());
    absl::StatusOr<ScoredSequence> seq = chat != nullptr
                                             ? ChatSequence(*value, tokenizer_, *chat)
                                             : AlpacaSequence(*value, tokenizer_);
    if (!seq.ok()) return issue(seq.status().message());
    const int64_t length = static_cast<int64_t>(seq->tokens.size());
    const int64_t kept = std::min(length, window());
    if (std::find(seq->scored.begin() + 1, seq->scored.begin() + kept, 1) ==
        seq->scored.begin() + kept) {
      return issue(absl::StrCat("the prompt alone fills seq_len ", options_.seq_len,
                                " (example has ", length, " tokens); nothing to learn"));
    }
    ++report_->examples;
    report_->truncated += length > kept;
    const int64_t offset = static_cast<int64_t>(storage_->tokens.size());
    storage_->tokens.insert(storage_->tokens.end(), seq->tokens.begin(),
                            seq->tokens.begin() + kept);
    storage_->scored.insert(storage_->scored.end(), seq->scored.begin(),
                            seq->scored.begin() + kept);
    AddRow(offset, kept);
  }

  std::shared_ptr<const TokenizedDataset::Storage> Finish() { return std::move(storage_); }

 private:
  void AddRow(int64_t offset, int64_t length) {
    storage_->rows.push_back({offset, length});
    ++report_->rows;
    report_->tokens += length;
    for (int64_t i = offset + 1; i < offset + length; ++i) {
      report_->scored_tokens += storage_->scored[i];
    }
  }

  const Tokenizer& tokenizer_;
  const DataOptions& options_;
  DataReport* report_;
  std::shared_ptr<TokenizedDataset::Storage> storage_;
};

absl::Status ValidateOptions(const DataOptions& options) {
  if (options.seq_len < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("seq_len must be at least 1, got ", options.seq_len));
  }
  if (!(options.max_malformed_fraction >= 0 && options.max_malformed_fraction <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_malformed_fraction must be in [0, 1], got ", options.max_malformed_fraction));
  }
  return absl::OkStatus();
}

// The dataset's name in errors: its path, or "k files".
std::string DatasetName(const std::vector<InputFile>& files) {
  return files.size() == 1 ? files[0].path : absl::StrCat(files.size(), " files");
}

}  // namespace

TokenizedDataset::TokenizedDataset(std::shared_ptr<const Storage> storage)
    : storage_(std::move(storage)),
      end_(storage_ == nullptr ? 0 : static_cast<int64_t>(storage_->rows.size())) {}

int64_t TokenizedDataset::seq_len() const { return storage_ == nullptr ? 0 : storage_->seq_len; }

int32_t TokenizedDataset::pad_id() const { return storage_ == nullptr ? 0 : storage_->pad_id; }

absl::Span<const int32_t> TokenizedDataset::RowTokens(int64_t row) const {
  const Storage::Row& r = storage_->rows[begin_ + row];
  return absl::MakeConstSpan(storage_->tokens.data() + r.offset, r.length);
}

void TokenizedDataset::FillRow(int64_t row, int32_t* inputs, int32_t* targets) const {
  const Storage::Row& r = storage_->rows[begin_ + row];
  const int32_t* tokens = storage_->tokens.data() + r.offset;
  const uint8_t* scored = storage_->scored.data() + r.offset;
  const int64_t n = r.length - 1;
  for (int64_t t = 0; t < n; ++t) {
    inputs[t] = tokens[t];
    targets[t] = scored[t + 1] ? tokens[t + 1] : kIgnoreTarget;
  }
  std::fill(inputs + n, inputs + storage_->seq_len, storage_->pad_id);
  std::fill(targets + n, targets + storage_->seq_len, kIgnoreTarget);
}

TokenizedDataset TokenizedDataset::Slice(int64_t begin, int64_t end) const {
  TokenizedDataset view = *this;
  begin = std::clamp<int64_t>(begin, 0, rows());
  end = std::clamp<int64_t>(end, begin, rows());
  view.begin_ = begin_ + begin;
  view.end_ = begin_ + end;
  return view;
}

absl::StatusOr<LoadedDataset> BuildDataset(const std::vector<InputFile>& files, DataFormat format,
                                           const Tokenizer& tokenizer,
                                           const DataOptions& options) {
  OTARO_RETURN_IF_ERROR(ValidateOptions(options));
  if (format == DataFormat::kAuto) {
    return absl::InvalidArgumentError("BuildDataset needs a concrete format, not auto");
  }
  if (files.empty()) return absl::InvalidArgumentError("no dataset files given");
  const std::string name = DatasetName(files);
  int64_t bytes = 0;
  for (const InputFile& file : files) bytes += static_cast<int64_t>(file.content.size());
  if (options.max_bytes >= 0 && bytes > options.max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("dataset ", name, " is ", bytes,
                                                     " bytes, above the limit of ",
                                                     options.max_bytes, " bytes"));
  }

  LoadedDataset loaded;
  DataReport& report = loaded.report;
  report.format = std::string(DataFormatName(format));
  std::optional<engine::tokenizer::ChatFormat> chat;
  if (format == DataFormat::kChat) {
    absl::StatusOr<engine::tokenizer::ChatFormat> recognized =
        engine::tokenizer::RecognizeChatTemplate(tokenizer);
    if (!recognized.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("chat data needs a chat template otaro can render: ",
                       recognized.status().message()));
    }
    chat = *recognized;
  }

  Builder builder(tokenizer, options, &report);
  for (const InputFile& file : files) {
    report.files.push_back(file.path);
    report.lines += CountLines(file.content);
    if (format == DataFormat::kText) {
      builder.AddTextFile(file);
      continue;
    }
    std::vector<JsonRecord> records;
    if (IsJsonList(file.content)) {
      absl::StatusOr<std::vector<JsonRecord>> list = SplitJsonList(file.content);
      if (!list.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(file.path, ": ", list.status().message()));
      }
      records = *std::move(list);
    } else {
      records = SplitJsonLines(file.content);
    }
    for (const JsonRecord& record : records) {
      builder.AddExample(file.path, record, chat.has_value() ? &*chat : nullptr);
    }
  }
  if (format == DataFormat::kText) builder.PackText();
  loaded.data = TokenizedDataset(builder.Finish());

  if (report.examples == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dataset ", name, " has no usable ", report.format, " records\n", report.ToString()));
  }
  if (report.MalformedFraction() > options.max_malformed_fraction) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "dataset %s: %.1f%% of its records are malformed (limit %.1f%%); is it %s data?\n%s",
        name, 100 * report.MalformedFraction(), 100 * options.max_malformed_fraction,
        report.format, report.ToString()));
  }
  if (report.rows == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dataset ", name, " has ", report.dropped_tail_tokens,
        " tokens, fewer than one window of seq_len + 1 = ", options.seq_len + 1,
        "; use a shorter seq_len or pad the tail\n", report.ToString()));
  }
  return loaded;
}

absl::StatusOr<LoadedDataset> LoadDataset(const std::string& path, const Tokenizer& tokenizer,
                                          const DataOptions& options) {
  OTARO_RETURN_IF_ERROR(ValidateOptions(options));
  OTARO_ASSIGN_OR_RETURN(const std::vector<InputFile> files,
                         ReadInputFiles(path, options.max_bytes));
  DataFormat format = options.format;
  if (format == DataFormat::kAuto) {
    OTARO_ASSIGN_OR_RETURN(format, DetectFormat(path, files));
  }
  return BuildDataset(files, format, tokenizer, options);
}

absl::StatusOr<TrainEvalSplit> HoldOutTail(const TokenizedDataset& data, double fraction) {
  if (!(fraction > 0 && fraction < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("held-out fraction must be in (0, 1), got ", fraction));
  }
  if (data.rows() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot hold out rows from a dataset of ", data.rows(), " row(s); give an eval file"));
  }
  const int64_t eval_rows = std::clamp<int64_t>(
      static_cast<int64_t>(std::ceil(fraction * static_cast<double>(data.rows()))), 1,
      data.rows() - 1);
  const int64_t split = data.rows() - eval_rows;
  return TrainEvalSplit{data.Slice(0, split), data.Slice(split, data.rows())};
}

}  // namespace otaro::trainer::data
