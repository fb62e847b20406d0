// Fine-tuning datasets for OTARo: data files turned into rows of token ids
// with a loss mask, ready to be cut into trainer::Batch (see batcher.h).
//
// Formats (DataFormat; detected unless given, see DetectFormat):
//   text    plain text: one file, or a folder of .txt files (sorted by name).
//           A file is split into documents at DataOptions::document_separator
//           (default TinyStories' "<|endoftext|>"). Each document becomes
//           [BOS if the tokenizer adds one] + tokens + [EOS if it has one];
//           the documents' tokens form one stream that is cut into
//           non-overlapping windows of seq_len + 1 tokens (Hugging Face's
//           group_texts), every target scored. The tail shorter than a window
//           is dropped by default (as group_texts; the report counts it), or
//           kept as one padded row with TailPolicy::kPad (useful to evaluate
//           every token of a small held-out text).
//   alpaca  {instruction, input?, output} as JSON Lines or as one JSON list
//           (Stanford's alpaca_data.json). The standard Alpaca prompt, then the
//           output and EOS; only the output and EOS are scored.
//   chat    {"messages": [{role, content}, ...]} (JSON Lines or a JSON list),
//           rendered through the model's own chat template (RenderChat);
//           only assistant turns (content + end-of-turn token) are scored.
// Alpaca and chat give one row per example: longer than seq_len + 1 tokens
// is truncated (the end of the response is lost; counted in the report),
// shorter is padded with pad_id() inputs and kIgnoreTarget targets. An
// example whose prompt alone fills the window is malformed (nothing to learn).
//
// Malformed records (bad JSON, missing / empty / wrongly typed fields,
// invalid UTF-8, nothing left after tokenising) are skipped and reported with
// their line; loading fails, before any training, when none is usable or the
// malformed fraction exceeds DataOptions::max_malformed_fraction.
#ifndef OTARO_TRAINER_DATA_DATASET_H_
#define OTARO_TRAINER_DATA_DATASET_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/tokenizer/tokenizer.h"
#include "trainer/data/data_report.h"
#include "trainer/data/data_source.h"

namespace otaro::trainer::data {

// What happens to the last, partial window of a text stream.
enum class TailPolicy {
  kDrop,  // dropped, as Hugging Face's group_texts
  kPad,   // one shorter row, padded (needs at least 2 tokens)
};

struct DataOptions {
  DataFormat format = DataFormat::kAuto;
  int64_t seq_len = 256;  // T: positions per row
  TailPolicy text_tail = TailPolicy::kDrop;
  // Splits text files into documents; empty: one document per file.
  std::string document_separator = "<|endoftext|>";
  // Refuse data larger than this many bytes in all (checked before reading).
  int64_t max_bytes = int64_t{256} << 20;
  // Fail when more than this fraction of records is malformed. Half is far
  // beyond a few bad lines and usually means the wrong format or file.
  double max_malformed_fraction = 0.5;
};

// Rows of at most seq_len + 1 tokens; row r gives seq_len inputs and targets.
// Copies are cheap and share the tokens (Slice makes views).
class TokenizedDataset {
 public:
  // The tokens and rows; defined in dataset.cc, built by BuildDataset.
  struct Storage;

  TokenizedDataset() = default;
  explicit TokenizedDataset(std::shared_ptr<const Storage> storage);

  int64_t rows() const { return end_ - begin_; }
  int64_t seq_len() const;
  // The input id written at padding positions: the tokenizer's PAD, else its
  // EOS, else 0 (its target is kIgnoreTarget, so the value only has to be a
  // valid id).
  int32_t pad_id() const;

  // `row` must be in [0, rows()).
  // The row's tokens before padding (2..seq_len + 1 of them).
  absl::Span<const int32_t> RowTokens(int64_t row) const;
  // Writes row `row` into seq_len inputs and targets: inputs[t] = tokens[t],
  // targets[t] = tokens[t + 1] where scored, else kIgnoreTarget; padded.
  void FillRow(int64_t row, int32_t* inputs, int32_t* targets) const;

  // Rows [begin, end) of this dataset, sharing its tokens.
  TokenizedDataset Slice(int64_t begin, int64_t end) const;

 private:
  std::shared_ptr<const Storage> storage_;
  int64_t begin_ = 0;
  int64_t end_ = 0;
};

struct LoadedDataset {
  TokenizedDataset data;
  DataReport report;
};

// Reads `path` (size cap first), detects the format unless options.format
// names it, and builds the dataset.
absl::StatusOr<LoadedDataset> LoadDataset(const std::string& path,
                                          const engine::tokenizer::Tokenizer& tokenizer,
                                          const DataOptions& options);

// The same from data already in memory (e.g. streamed by a client); `format`
// must not be kAuto. The size cap applies to the files' total size.
absl::StatusOr<LoadedDataset> BuildDataset(const std::vector<InputFile>& files, DataFormat format,
                                           const engine::tokenizer::Tokenizer& tokenizer,
                                           const DataOptions& options);

struct TrainEvalSplit {
  TokenizedDataset train;
  TokenizedDataset eval;
};

// Holds out the last `fraction` of the rows (at least one, leaving at least
// one) for evaluation: the end of a text stream, or the last examples in file
// order. For a separate evaluation file, load it with the same DataOptions so
// that its windows have the same length.
absl::StatusOr<TrainEvalSplit> HoldOutTail(const TokenizedDataset& data, double fraction);

}  // namespace otaro::trainer::data

#endif  // OTARO_TRAINER_DATA_DATASET_H_
