#include "trainer/data/batcher.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"

namespace otaro::trainer::data {
namespace {

// SplitMix64's finaliser: spreads (seed, epoch) over the generator's seed.
uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform in [0, n) by rejection. Written out (with std::mt19937_64, whose
// output the standard fixes) because std::shuffle and the standard
// distributions differ between library implementations, and the order must
// not change with the machine a run resumes on.
uint64_t UniformBelow(std::mt19937_64& rng, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do {
    x = rng();
  } while (x >= limit);
  return x % n;
}

Batch EmptyBatch(int64_t batch_size, int64_t seq_len) {
  Batch batch;
  batch.batch_size = batch_size;
  batch.seq_len = seq_len;
  batch.inputs.resize(batch_size * seq_len);
  batch.targets.resize(batch_size * seq_len);
  return batch;
}

}  // namespace

Batcher::Batcher(TokenizedDataset data, int64_t batch_size, uint64_t seed)
    : data_(std::move(data)),
      batch_size_(batch_size),
      seed_(seed),
      batches_per_epoch_(data_.rows() / batch_size) {}

absl::StatusOr<Batcher> Batcher::Create(TokenizedDataset data, int64_t batch_size,
                                        uint64_t seed) {
  if (batch_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("batch_size must be at least 1, got ",
                                                   batch_size));
  }
  if (data.rows() < batch_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("the training data has ", data.rows(), " rows, fewer than one batch of ",
                     batch_size, "; lower batch_size or add data"));
  }
  return Batcher(std::move(data), batch_size, seed);
}

absl::Status Batcher::Seek(BatchPosition position) {
  if (position.epoch < 0 || position.index < 0 || position.index >= batches_per_epoch_) {
    return absl::OutOfRangeError(absl::StrCat("batch position (epoch ", position.epoch,
                                              ", index ", position.index,
                                              ") is outside epochs of ", batches_per_epoch_,
                                              " batches"));
  }
  position_ = position;
  return absl::OkStatus();
}

std::vector<int64_t> Batcher::EpochOrder(int64_t epoch) const {
  std::vector<int64_t> order(data_.rows());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(Mix(seed_ ^ Mix(static_cast<uint64_t>(epoch))));
  for (size_t i = order.size(); i > 1; --i) {
    std::swap(order[i - 1], order[UniformBelow(rng, i)]);
  }
  return order;
}

Batch Batcher::Next() {
  if (order_epoch_ != position_.epoch) {
    order_ = EpochOrder(position_.epoch);
    order_epoch_ = position_.epoch;
  }
  const int64_t T = data_.seq_len();
  Batch batch = EmptyBatch(batch_size_, T);
  for (int64_t b = 0; b < batch_size_; ++b) {
    data_.FillRow(order_[position_.index * batch_size_ + b], batch.inputs.data() + b * T,
                  batch.targets.data() + b * T);
  }
  if (++position_.index == batches_per_epoch_) {
    position_.index = 0;
    ++position_.epoch;
  }
  return batch;
}

int64_t EvalBatchCount(const TokenizedDataset& data, int64_t batch_size) {
  if (batch_size < 1) return 0;
  return (data.rows() + batch_size - 1) / batch_size;
}

Batch EvalBatch(const TokenizedDataset& data, int64_t batch_size, int64_t index) {
  const int64_t T = data.seq_len();
  Batch batch = EmptyBatch(batch_size, T);
  for (int64_t b = 0; b < batch_size; ++b) {
    const int64_t row = index * batch_size + b;
    int32_t* inputs = batch.inputs.data() + b * T;
    int32_t* targets = batch.targets.data() + b * T;
    if (row < data.rows()) {
      data.FillRow(row, inputs, targets);
    } else {
      std::fill(inputs, inputs + T, data.pad_id());
      std::fill(targets, targets + T, kIgnoreTarget);
    }
  }
  return batch;
}

}  // namespace otaro::trainer::data
