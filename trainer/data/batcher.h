// Cutting a TokenizedDataset into trainer::Batch: shuffled, reproducible
// batches for training, and in-order batches for evaluation.
//
// Training order is a pure function of (seed, epoch): each epoch is a fresh
// permutation of the rows drawn from a generator seeded with both, and batch
// i of an epoch takes rows [i * B, (i + 1) * B) of it. A position (epoch,
// index) therefore names a batch on any machine and at any time, so a resumed
// run that restores the position gets exactly the batches it would have got.
// Rows that do not fill a last batch are left out of that epoch (the next
// epoch's permutation brings them back).
#ifndef OTARO_TRAINER_DATA_BATCHER_H_
#define OTARO_TRAINER_DATA_BATCHER_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/batch.h"
#include "trainer/data/dataset.h"

namespace otaro::trainer::data {

// Where a Batcher is: the next batch is batch `index` of epoch `epoch`.
struct BatchPosition {
  int64_t epoch = 0;
  int64_t index = 0;
  bool operator==(const BatchPosition&) const = default;
};

class Batcher {
 public:
  // Errors: batch_size < 1, or fewer rows than one batch.
  static absl::StatusOr<Batcher> Create(TokenizedDataset data, int64_t batch_size, uint64_t seed);

  int64_t batch_size() const { return batch_size_; }
  int64_t seq_len() const { return data_.seq_len(); }
  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  // Epochs started so far count from 0: position().epoch.
  int64_t epoch() const { return position_.epoch; }
  BatchPosition position() const { return position_; }

  // Moves to `position` (to resume); index must be < batches_per_epoch.
  absl::Status Seek(BatchPosition position);

  // The batch at position(), then advances (to the next epoch after the last
  // batch of one).
  Batch Next();

  // The row order of `epoch` (rows() row indices); exposed for tests.
  std::vector<int64_t> EpochOrder(int64_t epoch) const;

 private:
  Batcher(TokenizedDataset data, int64_t batch_size, uint64_t seed);

  TokenizedDataset data_;
  int64_t batch_size_;
  uint64_t seed_;
  int64_t batches_per_epoch_;
  BatchPosition position_;
  // The permutation of order_epoch_ (computed once per epoch).
  int64_t order_epoch_ = -1;
  std::vector<int64_t> order_;
};

// Evaluation: rows in order, no shuffling, every row used. The last batch is
// filled up with rows of padding whose targets are all kIgnoreTarget, so every
// batch has the same shape and the mean loss over scored targets is exact.
int64_t EvalBatchCount(const TokenizedDataset& data, int64_t batch_size);
// Batch `index` (< EvalBatchCount) of `data`.
Batch EvalBatch(const TokenizedDataset& data, int64_t batch_size, int64_t index);

}  // namespace otaro::trainer::data

#endif  // OTARO_TRAINER_DATA_BATCHER_H_
