#include "engine/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <thread>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/cpu/dense.h"
#include "sefp/format.h"

namespace otaro::engine::cpu {
namespace {

absl::Status CheckLinear(const LlamaModel& model, const Linear& lin, int64_t out, int64_t in,
                         const std::string& name) {
  if (lin.out_features != out || lin.in_features != in) {
    return absl::InvalidArgumentError(absl::StrCat("CPU backend: ", name, " is [",
                                                   lin.out_features, ", ", lin.in_features,
                                                   "], want [", out, ", ", in, "]"));
  }
  if (model.quantized != lin.quantized()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CPU backend: ", name, (lin.quantized() ? " is" : " is not"),
        " SEFP-packed but the model says quantized = ", model.quantized));
  }
  if (lin.quantized()) {
    if (lin.packed->rows() != out || lin.packed->cols() != in) {
      return absl::InvalidArgumentError(absl::StrCat("CPU backend: ", name, "'s planes are [",
                                                     lin.packed->rows(), ", ",
                                                     lin.packed->cols(), "]"));
    }
  } else if (static_cast<int64_t>(lin.dense.size()) != out * in) {
    return absl::InvalidArgumentError(
        absl::StrCat("CPU backend: ", name, " has ", lin.dense.size(), " weights, want ", out * in));
  }
  if (!lin.bias.empty() && static_cast<int64_t>(lin.bias.size()) != out) {
    return absl::InvalidArgumentError(absl::StrCat("CPU backend: ", name, "'s bias has ",
                                                   lin.bias.size(), " values, want ", out));
  }
  return absl::OkStatus();
}

absl::Status CheckModel(const LlamaModel& m) {
  const ModelConfig& c = m.config;
  if (c.num_layers <= 0 || c.hidden_size <= 0 || c.num_heads <= 0 || c.num_kv_heads <= 0 ||
      c.head_dim <= 0 || c.head_dim % 2 != 0 || c.head_dim > kMaxHeadDim ||
      c.num_heads % c.num_kv_heads != 0 ||
      c.vocab_size <= 0 || c.max_position <= 0) {
    return absl::InvalidArgumentError("CPU backend: inconsistent model config");
  }
  if (static_cast<int64_t>(m.layers.size()) != c.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("CPU backend: model has ", m.layers.size(),
                                                   " layers, config says ", c.num_layers));
  }
  const size_t table = static_cast<size_t>(c.vocab_size * c.hidden_size);
  const bool embed_ok = m.embed.size() == table ||
                        (m.embed.empty() && c.tie_word_embeddings && m.quantized_lm_head);
  const bool head_ok = m.quantized_lm_head ? m.lm_head.empty() : m.LmHead().size() == table;
  if (!embed_ok || !head_ok || m.final_norm.size() != static_cast<size_t>(c.hidden_size)) {
    return absl::InvalidArgumentError("CPU backend: embedding / lm_head / final norm sizes do not match the config");
  }
  if (m.quantized_lm_head) {
    if (!m.quantized) {
      return absl::InvalidArgumentError("CPU backend: a SEFP lm_head needs a quantized model");
    }
    OTARO_RETURN_IF_ERROR(CheckLinear(m, *m.quantized_lm_head, c.vocab_size, c.hidden_size, "lm_head"));
  }
  const int64_t h = c.hidden_size, i = c.intermediate_size;
  for (size_t l = 0; l < m.layers.size(); ++l) {
    const LlamaLayer& L = m.layers[l];
    const std::string p = absl::StrCat("layer ", l, " ");
    if (L.input_norm.size() != static_cast<size_t>(h) ||
        L.post_attention_norm.size() != static_cast<size_t>(h)) {
      return absl::InvalidArgumentError(absl::StrCat("CPU backend: ", p, "norm sizes"));
    }
    OTARO_RETURN_IF_ERROR(CheckLinear(m, L.q, c.q_dim(), h, p + "q_proj"));
    OTARO_RETURN_IF_ERROR(CheckLinear(m, L.k, c.kv_dim(), h, p + "k_proj"));
    OTARO_RETURN_IF_ERROR(CheckLinear(m, L.v, c.kv_dim(), h, p + "v_proj"));
    OTARO_RETURN_IF_ERROR(CheckLinear(m, L.o, h, c.q_dim(), p + "o_proj"));
    OTARO_RETURN_IF_ERROR(CheckLinear(m, L.gate, i, h, p + "gate_proj"));
    OTARO_RETURN_IF_ERROR(CheckLinear(m, L.up, i, h, p + "up_proj"));
    OTARO_RETURN_IF_ERROR(CheckLinear(m, L.down, h, i, p + "down_proj"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<CpuBackend>> CpuBackend::Create(const LlamaModel* model,
                                                               const CpuBackendOptions& options) {
  if (model == nullptr) return absl::InvalidArgumentError("CPU backend: no model");
  OTARO_RETURN_IF_ERROR(CheckModel(*model));
  OTARO_ASSIGN_OR_RETURN(const sefp::Isa isa, sefp::ResolveIsa(options.isa));
  if (options.num_threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("CPU backend: num_threads must be >= 0, got ", options.num_threads));
  }
  const ModelConfig& c = model->config;
  KvCacheShape shape;
  shape.num_layers = c.num_layers;
  shape.num_kv_heads = c.num_kv_heads;
  shape.head_dim = c.head_dim;
  shape.bytes_per_element = sizeof(float);
  shape.max_context = c.max_position;
  OTARO_ASSIGN_OR_RETURN(std::unique_ptr<KVCache> kv, KVCache::Create(shape, options.kv_cache));
  return std::unique_ptr<CpuBackend>(new CpuBackend(model, options, isa, std::move(kv)));
}

CpuBackend::CpuBackend(const LlamaModel* model, const CpuBackendOptions& options, sefp::Isa isa,
                       std::unique_ptr<KVCache> kv)
    : model_(*model), isa_(isa), ops_(StepOpsFor(isa)), kv_(std::move(kv)) {
  // Uninitialised on purpose: pages are touched only as blocks get used, and a
  // block is always written before it is read (KVCache lengths).
  kv_storage_.reset(new float[kv_->num_blocks() * kv_->BytesPerBlock() / sizeof(float)]);
  int threads = options.num_threads;
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  pool_ = std::make_unique<sefp::ThreadPool>(threads);
  inv_freq_ = RopeInverseFrequencies(model_.config);
}

CpuBackend::~CpuBackend() = default;

absl::Status CpuBackend::CheckPrecision(int m) const {
  OTARO_RETURN_IF_ERROR(sefp::CheckPrecision(m));
  if (model_.quantized && m > model_.resident_max_bits) {
    return absl::InvalidArgumentError(absl::StrCat("precision E5M", m,
                                                   " is above the resident precision E5M",
                                                   model_.resident_max_bits, " of this model"));
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::Validate(const BatchStep& step,
                                  std::vector<std::vector<int32_t>>* tables) const {
  if (step.sequences.empty()) return absl::InvalidArgumentError("empty batch step");
  std::unordered_set<SequenceHandle> seen;
  tables->clear();
  for (size_t i = 0; i < step.sequences.size(); ++i) {
    const SequenceStep& s = step.sequences[i];
    const std::string who = absl::StrCat("batch entry ", i, " (sequence ", s.seq, "): ");
    if (!seen.insert(s.seq).second) {
      return absl::InvalidArgumentError(absl::StrCat(who, "listed twice in one step"));
    }
    if (s.tokens.empty()) return absl::InvalidArgumentError(absl::StrCat(who, "no tokens"));
    for (Token t : s.tokens) {
      if (t < 0 || t >= model_.config.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat(who, "token id ", t, " outside [0, ",
                                                       model_.config.vocab_size, ")"));
      }
    }
    if (absl::Status p = CheckPrecision(s.precision); !p.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(who, p.message()));
    }
    OTARO_ASSIGN_OR_RETURN(const int64_t length, kv_->Length(s.seq));
    OTARO_ASSIGN_OR_RETURN(const int64_t capacity, kv_->Capacity(s.seq));
    const int64_t end = s.start_position + static_cast<int64_t>(s.tokens.size());
    if (s.start_position < 0 || s.start_position > length) {
      return absl::InvalidArgumentError(absl::StrCat(who, "start position ", s.start_position,
                                                     " but ", length, " tokens are cached"));
    }
    if (end > capacity) {
      return absl::FailedPreconditionError(absl::StrCat(
          who, "positions up to ", end, " but only ", capacity, " KV slots are allocated"));
    }
    if (end > model_.config.max_position) {
      return absl::OutOfRangeError(absl::StrCat(who, "positions up to ", end,
                                                " exceed the model's context of ",
                                                model_.config.max_position));
    }
    OTARO_ASSIGN_OR_RETURN(std::vector<int32_t> table, kv_->BlockTable(s.seq));
    tables->push_back(std::move(table));
  }
  return absl::OkStatus();
}

void CpuBackend::ForRows(int64_t rows, const std::function<void(int64_t, int64_t)>& fn) {
  if (rows <= 1 || pool_->num_threads() == 1) {
    fn(0, rows);
  } else {
    pool_->ParallelFor(rows, fn);
  }
}

void CpuBackend::QuantizeRows(const float* in, int64_t rows, int64_t cols, int64_t r0,
                              int64_t r1) {
  if (model_.quantized) xq_.QuantizeRows(absl::MakeConstSpan(in, rows * cols), r0, r1);
}

absl::Status CpuBackend::ApplyLinear(const Linear& lin, const std::vector<Group>& groups,
                                     const float* in, float* out) {
  const int64_t n = lin.out_features, k = lin.in_features;
  for (const Group& g : groups) {
    float* y = out + g.row0 * n;
    if (lin.quantized()) {
      const sefp::GemmOptions opts{model_.reconstruction, isa_, pool_.get()};
      OTARO_RETURN_IF_ERROR(sefp::Gemm(*lin.packed, g.m, xq_, g.row0, g.rows,
                                       absl::MakeSpan(y, g.rows * n), opts));
    } else {
      DenseGemm(lin.dense.data(), n, k, in + g.row0 * k, g.rows, y, pool_.get());
    }
  }
  if (!lin.bias.empty()) {
    int64_t rows = 0;
    for (const Group& g : groups) rows += g.rows;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < n; ++j) out[r * n + j] += lin.bias[j];
    }
  }
  return absl::OkStatus();
}

void CpuBackend::RmsNormRows(const float* x, const std::vector<float>& weight, int64_t r0,
                             int64_t r1, float* out) const {
  const int64_t h = model_.config.hidden_size;
  for (int64_t r = r0; r < r1; ++r) {
    ops_.rms_norm(x + r * h, weight.data(), h, model_.config.rms_norm_eps, out + r * h);
  }
}

// HF rotate_half: dims i and i + d/2 form a pair. Angles in float32 as HF
// computes them (position * inv_freq), cos / sin from that angle.
void CpuBackend::RopeRow(float* x, int64_t heads, int64_t position) const {
  const int64_t d = model_.config.head_dim, half = d / 2;
  float cs[kMaxHeadDim / 2], sn[kMaxHeadDim / 2];
  const float pos = static_cast<float>(position);
  for (int64_t i = 0; i < half; ++i) {
    const float angle = pos * inv_freq_[i];
    cs[i] = static_cast<float>(std::cos(static_cast<double>(angle)));
    sn[i] = static_cast<float>(std::sin(static_cast<double>(angle)));
  }
  for (int64_t h = 0; h < heads; ++h) {
    float* v = x + h * d;
    for (int64_t i = 0; i < half; ++i) {
      const float a = v[i], b = v[i + half];
      v[i] = a * cs[i] - b * sn[i];
      v[i + half] = b * cs[i] + a * sn[i];
    }
  }
}

float* CpuBackend::KvBlock(int32_t block, int64_t layer, int kv, int64_t head) {
  const ModelConfig& c = model_.config;
  const int64_t index =
      ((static_cast<int64_t>(block) * c.num_layers + layer) * 2 + kv) * c.num_kv_heads + head;
  return kv_storage_.get() + index * kv_->block_size() * c.head_dim;
}

void CpuBackend::Attention(int64_t layer, const std::vector<RowInfo>& rows,
                           const std::vector<std::vector<int32_t>>& tables, const float* q,
                           float* out) {
  const ModelConfig& c = model_.config;
  const int64_t d = c.head_dim, heads = c.num_heads, per_kv = c.num_heads / c.num_kv_heads;
  const int64_t bs = kv_->block_size();
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  const int64_t kv_heads = c.num_kv_heads;
  const int64_t items = static_cast<int64_t>(rows.size()) * kv_heads;
  // One (row, KV head) per item: the scores, softmax and weighted sum of V of
  // its query heads in a fixed order per head (StepOps::attend), whatever else
  // is in the step; grouped so that each key and value is read once for them.
  pool_->ParallelFor(items, [&](int64_t i0, int64_t i1) {
    thread_local std::vector<float> scores;
    thread_local std::vector<const float*> keys, values;
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t r = item / kv_heads, kvh = item % kv_heads, h0 = kvh * per_kv;
      const RowInfo& row = rows[r];
      const std::vector<int32_t>& table = tables[row.seq];
      const int64_t n = row.position + 1;  // causal: positions 0..position
      const int64_t blocks = (n + bs - 1) / bs;
      scores.resize(per_kv * n);
      keys.resize(blocks);
      values.resize(blocks);
      for (int64_t b = 0; b < blocks; ++b) {
        keys[b] = KvBlock(table[b], layer, 0, kvh);
        values[b] = KvBlock(table[b], layer, 1, kvh);
      }
      ops_.attend({q + (r * heads + h0) * d, d, n, bs, keys.data(), values.data(), scale,
                   scores.data(), out + (r * heads + h0) * d, per_kv});
    }
  });
}

absl::Status CpuBackend::Forward(const BatchStep& step, Logits* out) {
  std::vector<std::vector<int32_t>> tables;
  OTARO_RETURN_IF_ERROR(Validate(step, &tables));
  const ModelConfig& c = model_.config;
  const int64_t H = c.hidden_size, I = c.intermediate_size, QD = c.q_dim(), KD = c.kv_dim();
  const size_t num_seqs = step.sequences.size();

  // Rows ordered by precision (stable), so each (layer, m) is one Gemm over
  // consecutive rows. Float32 models compute the same function for every m:
  // one group.
  std::vector<size_t> order(num_seqs);
  std::iota(order.begin(), order.end(), 0);
  auto precision = [&](size_t i) {
    return model_.quantized ? step.sequences[i].precision : sefp::kMasterBits;
  };
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return precision(a) < precision(b); });
  std::vector<RowInfo> rows;
  std::vector<Token> tokens;
  std::vector<int64_t> seq_row0(num_seqs);
  std::vector<Group> groups;
  for (size_t i : order) {
    const SequenceStep& s = step.sequences[i];
    seq_row0[i] = static_cast<int64_t>(rows.size());
    const int m = precision(i);
    if (groups.empty() || groups.back().m != m) {
      groups.push_back({m, static_cast<int64_t>(rows.size()), 0});
    }
    for (size_t t = 0; t < s.tokens.size(); ++t) {
      rows.push_back({s.start_position + static_cast<int64_t>(t), i});
      tokens.push_back(s.tokens[t]);
    }
    groups.back().rows += static_cast<int64_t>(s.tokens.size());
  }
  const int64_t T = static_cast<int64_t>(rows.size());

  x_.resize(T * H);
  h_.resize(T * H);
  q_.resize(T * QD);
  k_.resize(T * KD);
  v_.resize(T * KD);
  attn_.resize(T * QD);
  proj_.resize(T * H);
  gate_.resize(T * I);
  up_.resize(T * I);

  for (int64_t r = 0; r < T; ++r) OTARO_RETURN_IF_ERROR(model_.Embed(tokens[r], &x_[r * H]));

  // Everything between the linear layers is row by row, split over the pool
  // (ForRows), several steps fused per pass; the SEFP products read xq_.
  const int64_t bs = kv_->block_size(), d = c.head_dim;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LlamaLayer& L = model_.layers[l];
    // x (+= the previous layer's MLP output) -> RMSNorm -> h -> int8.
    xq_.Resize(T, H);
    ForRows(T, [&](int64_t r0, int64_t r1) {
      if (l > 0) ops_.add(&x_[r0 * H], &proj_[r0 * H], (r1 - r0) * H);
      RmsNormRows(x_.data(), L.input_norm, r0, r1, h_.data());
      QuantizeRows(h_.data(), T, H, r0, r1);
    });
    OTARO_RETURN_IF_ERROR(ApplyLinear(L.q, groups, h_.data(), q_.data()));
    OTARO_RETURN_IF_ERROR(ApplyLinear(L.k, groups, h_.data(), k_.data()));
    OTARO_RETURN_IF_ERROR(ApplyLinear(L.v, groups, h_.data(), v_.data()));
    // RoPE, then this step's K/V into the cache (distinct slots per row):
    // attention then reads every position (earlier steps and this chunk) from
    // one place.
    ForRows(T, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t pos = rows[r].position;
        RopeRow(&q_[r * QD], c.num_heads, pos);
        RopeRow(&k_[r * KD], c.num_kv_heads, pos);
        const int32_t block = tables[rows[r].seq][pos / bs];
        const int64_t slot = pos % bs;
        for (int64_t kvh = 0; kvh < c.num_kv_heads; ++kvh) {
          // Keys transposed ([d][block]), values as rows ([block][d]): StepOps::attend.
          const float* k = &k_[(r * c.num_kv_heads + kvh) * d];
          float* keys = KvBlock(block, l, 0, kvh);
          for (int64_t t = 0; t < d; ++t) keys[t * bs + slot] = k[t];
          std::memcpy(KvBlock(block, l, 1, kvh) + slot * d, &v_[(r * c.num_kv_heads + kvh) * d],
                      d * sizeof(float));
        }
      }
    });
    Attention(l, rows, tables, q_.data(), attn_.data());
    xq_.Resize(T, QD);
    ForRows(T, [&](int64_t r0, int64_t r1) { QuantizeRows(attn_.data(), T, QD, r0, r1); });
    OTARO_RETURN_IF_ERROR(ApplyLinear(L.o, groups, attn_.data(), proj_.data()));
    // x += attention output -> RMSNorm -> h -> int8.
    xq_.Resize(T, H);
    ForRows(T, [&](int64_t r0, int64_t r1) {
      ops_.add(&x_[r0 * H], &proj_[r0 * H], (r1 - r0) * H);
      RmsNormRows(x_.data(), L.post_attention_norm, r0, r1, h_.data());
      QuantizeRows(h_.data(), T, H, r0, r1);
    });
    OTARO_RETURN_IF_ERROR(ApplyLinear(L.gate, groups, h_.data(), gate_.data()));
    OTARO_RETURN_IF_ERROR(ApplyLinear(L.up, groups, h_.data(), up_.data()));
    xq_.Resize(T, I);
    ForRows(T, [&](int64_t r0, int64_t r1) {
      ops_.swiglu(&gate_[r0 * I], &up_[r0 * I], (r1 - r0) * I);
      QuantizeRows(gate_.data(), T, I, r0, r1);
    });
    OTARO_RETURN_IF_ERROR(ApplyLinear(L.down, groups, gate_.data(), proj_.data()));
  }
  ForRows(T, [&](int64_t r0, int64_t r1) {
    ops_.add(&x_[r0 * H], &proj_[r0 * H], (r1 - r0) * H);
  });

  // Output rows in the step's order: the last token of each sequence, or all.
  out->vocab_size = c.vocab_size;
  out->first_row.assign(num_seqs, 0);
  out->num_rows.assign(num_seqs, 0);
  std::vector<int64_t> selected;
  for (size_t i = 0; i < num_seqs; ++i) {
    const SequenceStep& s = step.sequences[i];
    const int64_t n = static_cast<int64_t>(s.tokens.size());
    out->first_row[i] = static_cast<int64_t>(selected.size());
    out->num_rows[i] = s.all_logits ? n : 1;
    for (int64_t t = s.all_logits ? 0 : n - 1; t < n; ++t) selected.push_back(seq_row0[i] + t);
  }
  const int64_t R = static_cast<int64_t>(selected.size());
  for (int64_t j = 0; j < R; ++j) {
    std::memcpy(&proj_[j * H], &x_[selected[j] * H], H * sizeof(float));
  }
  xq_.Resize(R, H);
  ForRows(R, [&](int64_t r0, int64_t r1) {
    RmsNormRows(proj_.data(), model_.final_norm, r0, r1, h_.data());
    QuantizeRows(h_.data(), R, H, r0, r1);
  });
  out->values.resize(R * c.vocab_size);
  if (model_.quantized_lm_head) {
    // Each selected row at its lm_head precision, one Gemm per run of rows
    // that share one (the rows are in step order, not sorted).
    std::vector<Group> head_groups;
    for (size_t i = 0; i < num_seqs; ++i) {
      const int m = model_.LmHeadBits(step.sequences[i].precision);
      if (head_groups.empty() || head_groups.back().m != m) {
        head_groups.push_back({m, out->first_row[i], 0});
      }
      head_groups.back().rows += out->num_rows[i];
    }
    OTARO_RETURN_IF_ERROR(
        ApplyLinear(*model_.quantized_lm_head, head_groups, h_.data(), out->values.data()));
  } else {
    DenseGemm(model_.LmHead().data(), c.vocab_size, H, h_.data(), R, out->values.data(),
              pool_.get());
  }

  for (const SequenceStep& s : step.sequences) {
    OTARO_RETURN_IF_ERROR(
        kv_->SetLength(s.seq, s.start_position + static_cast<int64_t>(s.tokens.size())));
  }

  // xq_ was sized to at most T rows of the widest input (H, QD or I columns)
  // and keeps its largest buffers: int8 values, a float scale and an int32
  // offset per lane.
  const int64_t widest = std::max({H, QD, I});
  xq_rows_groups_ =
      std::max(xq_rows_groups_, T * ((widest + sefp::kGroupSize - 1) / sefp::kGroupSize));
  size_t bytes = static_cast<size_t>(xq_rows_groups_) *
                 (sefp::kGroupSize + sefp::kLanesPerGroup * (sizeof(float) + sizeof(int32_t)));
  for (const std::vector<float>* buffer :
       {&x_, &h_, &q_, &k_, &v_, &attn_, &proj_, &gate_, &up_}) {
    bytes += buffer->capacity() * sizeof(float);
  }
  workspace_bytes_.store(bytes, std::memory_order_relaxed);
  return absl::OkStatus();
}

}  // namespace otaro::engine::cpu
