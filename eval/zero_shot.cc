#include "eval/zero_shot.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "engine/runtime/kv_sequence_guard.h"
#include "engine/runtime/sampler.h"
#include "nlohmann/json.hpp"

namespace otaro::eval {

using engine::BatchStep;
using engine::KVCache;
using engine::Logits;
using engine::SequenceHandle;
using engine::SequenceStep;
using engine::Token;
using engine::tokenizer::Tokenizer;

namespace {

// ---- Scoring ---------------------------------------------------------------

// One continuation to score after its group's context.
struct Request {
  int choice = 0;
  std::vector<Token> continuation;
};

// The choices that share one context's tokens: one KV sequence.
struct Group {
  std::vector<Token> context;
  std::vector<Request> requests;
  // Slots the sequence needs: the context and the longest continuation but its
  // last token (whose logits predict nothing we score).
  int64_t Slots() const {
    size_t longest = 0;
    for (const Request& r : requests) longest = std::max(longest, r.continuation.size());
    return static_cast<int64_t>(context.size() + longest) - 1;
  }
};

struct PreparedTask {
  std::vector<Group> groups;
  int64_t context_tokens = 0;
  int64_t blocks = 0;
};

// Unicode code points (what Python's len() counts): bytes that do not
// continue a UTF-8 sequence.
int64_t CodePoints(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

bool IsPythonWhitespace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

absl::Status Validate(const MultipleChoiceTask& task) {
  const std::string where = task.where.empty() ? "task" : task.where;
  if (task.choices.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ": no choices"));
  if (task.contexts.size() != 1 && task.contexts.size() != task.choices.size()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", task.contexts.size(),
                                                   " contexts for ", task.choices.size(),
                                                   " choices (need 1 or one per choice)"));
  }
  if (task.gold < 0 || task.gold >= static_cast<int>(task.choices.size())) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": gold ", task.gold, " outside 0..",
                                                   task.choices.size() - 1));
  }
  for (size_t i = 0; i < task.choices.size(); ++i) {
    if (task.choices[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": choice ", i, " is empty"));
    }
  }
  return absl::OkStatus();
}

// lm-eval's _encode_pair for every choice, grouped by context tokens, with
// left truncation to `max_tokens` per sequence.
absl::StatusOr<PreparedTask> Prepare(const MultipleChoiceTask& task, const Tokenizer& tok,
                                     const KVCache& kv) {
  if (absl::Status s = Validate(task); !s.ok()) return s;
  const std::string where = task.where.empty() ? "task" : task.where;
  const bool bos = tok.add_bos() && tok.bos_id() >= 0;
  PreparedTask out;
  for (size_t i = 0; i < task.choices.size(); ++i) {
    std::string context = task.contexts[task.contexts.size() == 1 ? 0 : i];
    std::string continuation = task.delimiter + task.choices[i];
    size_t keep = context.size();
    while (keep > 0 && IsPythonWhitespace(context[keep - 1])) --keep;
    continuation = context.substr(keep) + continuation;
    context.resize(keep);

    std::vector<Token> context_tokens, whole;
    if (bos) context_tokens.push_back(tok.bos_id());
    if (context.empty() && !bos) {
      const Token start = tok.bos_id() >= 0 ? tok.bos_id() : tok.eos_id();
      if (start < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": empty context and the tokenizer has no BOS or EOS to start from"));
      }
      context_tokens.push_back(start);
      whole = context_tokens;
      for (Token t : tok.Encode(continuation)) whole.push_back(t);
    } else {
      for (Token t : tok.Encode(context)) context_tokens.push_back(t);
      if (bos) whole.push_back(tok.bos_id());
      for (Token t : tok.Encode(context + continuation)) whole.push_back(t);
    }
    if (whole.size() <= context_tokens.size()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": choice ", i, " ('",
                                                     task.choices[i],
                                                     "') adds no tokens to the context"));
    }
    Request request;
    request.choice = static_cast<int>(i);
    request.continuation.assign(whole.begin() + context_tokens.size(), whole.end());
    auto group = std::find_if(out.groups.begin(), out.groups.end(),
                              [&](const Group& g) { return g.context == context_tokens; });
    if (group == out.groups.end()) {
      out.groups.push_back(Group{std::move(context_tokens), {}});
      group = out.groups.end() - 1;
    }
    group->requests.push_back(std::move(request));
  }
  const int64_t max_tokens = kv.max_sequence_tokens();
  for (Group& g : out.groups) {
    const int64_t excess = g.Slots() - max_tokens;
    if (excess > 0) {
      if (excess >= static_cast<int64_t>(g.context.size())) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": a continuation of ", g.Slots() + 1 - static_cast<int64_t>(g.context.size()),
            " tokens does not fit in the ", max_tokens, " tokens one KV sequence may hold"));
      }
      g.context.erase(g.context.begin(), g.context.begin() + excess);
    }
    out.context_tokens += static_cast<int64_t>(g.context.size());
    out.blocks += kv.BlocksFor(g.Slots());
  }
  return out;
}

// Adds continuation token `id` under logits `row` to choice `choice`'s score.
absl::Status ScoreToken(absl::Span<const float> row, Token id, int choice, TaskScore& score) {
  score.loglikelihoods[choice] += engine::LogSoftmaxAt(row, id);
  auto argmax = engine::Sample(row, engine::SamplingParams{}, 0);  // temperature 0: argmax
  if (!argmax.ok()) return argmax.status();
  if (argmax->id != id) score.greedy[choice] = false;
  return absl::OkStatus();
}

// Runs one batch of prepared tasks; fills their scores' loglikelihoods,
// greedy flags and token counts.
absl::Status RunBatch(engine::Backend& backend, const std::vector<const PreparedTask*>& batch,
                      int precision, std::vector<TaskScore*>& scores, int64_t* forward_tokens) {
  KVCache& kv = backend.kv_cache();
  engine::KvSequenceGuard sequences(kv);
  struct Live {
    const Group* group;
    TaskScore* score;
    SequenceHandle seq;
  };
  std::vector<Live> live;
  for (size_t t = 0; t < batch.size(); ++t) {
    for (const Group& g : batch[t]->groups) {
      auto seq = sequences.Allocate(g.Slots(), g.Slots());
      if (!seq.ok()) return seq.status();
      live.push_back({&g, scores[t], *seq});
    }
  }
  // Every context at once; its last row predicts each continuation's first token.
  Logits logits;
  {
    BatchStep step;
    for (const Live& l : live) {
      SequenceStep ss;
      ss.seq = l.seq;
      ss.tokens = l.group->context;
      ss.start_position = 0;
      ss.precision = precision;
      ss.all_logits = false;
      *forward_tokens += static_cast<int64_t>(ss.tokens.size());
      step.sequences.push_back(std::move(ss));
    }
    if (absl::Status s = backend.Forward(step, &logits); !s.ok()) return s;
    for (size_t i = 0; i < live.size(); ++i) {
      for (const Request& r : live[i].group->requests) {
        TaskScore& score = *live[i].score;
        if (absl::Status s = ScoreToken(logits.Last(i), r.continuation[0], r.choice, score);
            !s.ok()) {
          return s;
        }
      }
    }
  }
  // Round k: the k-th continuation of every group, rewound to the context's end.
  for (size_t k = 0;; ++k) {
    BatchStep step;
    std::vector<std::pair<const Live*, const Request*>> rows;
    for (const Live& l : live) {
      if (k >= l.group->requests.size()) continue;
      const Request& r = l.group->requests[k];
      if (r.continuation.size() < 2) continue;
      SequenceStep ss;
      ss.seq = l.seq;
      ss.tokens.assign(r.continuation.begin(), r.continuation.end() - 1);
      ss.start_position = static_cast<int64_t>(l.group->context.size());
      ss.precision = precision;
      ss.all_logits = true;
      *forward_tokens += static_cast<int64_t>(ss.tokens.size());
      step.sequences.push_back(std::move(ss));
      rows.push_back({&l, &r});
    }
    if (step.sequences.empty()) {
      bool more = false;
      for (const Live& l : live) more = more || k + 1 < l.group->requests.size();
      if (!more) break;
      continue;
    }
    if (absl::Status s = backend.Forward(step, &logits); !s.ok()) return s;
    for (size_t i = 0; i < rows.size(); ++i) {
      const Request& r = *rows[i].second;
      TaskScore& score = *rows[i].first->score;
      // Row j (position context + j) predicts continuation token j + 1.
      for (size_t j = 0; j + 1 < r.continuation.size(); ++j) {
        if (absl::Status s = ScoreToken(logits.Row(i, static_cast<int64_t>(j)),
                                        r.continuation[j + 1], r.choice, score);
            !s.ok()) {
          return s;
        }
      }
    }
  }
  return absl::OkStatus();
}

// Picks acc's and acc_norm's answers.
void Decide(const MultipleChoiceTask& task, TaskScore* score) {
  const size_t n = task.choices.size();
  if (n == 1) {  // greedy continuation (LAMBADA)
    score->prediction = score->prediction_norm = score->greedy[0] ? 0 : -1;
    score->correct = score->correct_norm = score->greedy[0];
    return;
  }
  score->prediction = score->prediction_norm = 0;
  double best_norm = score->loglikelihoods[0] / CodePoints(task.choices[0]);
  for (size_t i = 1; i < n; ++i) {
    if (score->loglikelihoods[i] > score->loglikelihoods[score->prediction]) {
      score->prediction = static_cast<int>(i);
    }
    const double norm = score->loglikelihoods[i] / CodePoints(task.choices[i]);
    if (norm > best_norm) {
      best_norm = norm;
      score->prediction_norm = static_cast<int>(i);
    }
  }
  score->correct = score->prediction == task.gold;
  score->correct_norm = score->prediction_norm == task.gold;
}

void Summarise(ZeroShotResult* r, double gold_ll_sum) {
  const double n = static_cast<double>(r->count);
  if (r->count == 0) return;
  r->acc = r->correct / n;
  r->acc_norm = r->correct_norm / n;
  r->mean_gold_loglikelihood = gold_ll_sum / n;
  if (r->count > 1) {
    r->acc_stderr = std::sqrt(r->acc * (1 - r->acc) / (n - 1));
    r->acc_norm_stderr = std::sqrt(r->acc_norm * (1 - r->acc_norm) / (n - 1));
  }
}

}  // namespace

absl::StatusOr<ZeroShotResult> EvaluateZeroShot(engine::Backend& backend, const Tokenizer& tok,
                                                const std::vector<MultipleChoiceTask>& tasks,
                                                int precision, const ZeroShotOptions& options) {
  if (absl::Status s = backend.CheckPrecision(precision); !s.ok()) {
    return absl::InvalidArgumentError(s.message());
  }
  if (options.limit < 0 || options.max_batch_tasks < 1 || options.max_batch_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("limit must be >= 0 and max_batch_tasks, max_batch_tokens >= 1; got ",
                     options.limit, ", ", options.max_batch_tasks, ", ",
                     options.max_batch_tokens));
  }
  const size_t n = options.limit > 0 ? std::min<size_t>(options.limit, tasks.size())
                                     : tasks.size();
  KVCache& kv = backend.kv_cache();
  // Tokenise everything first: a malformed task fails before any compute.
  std::vector<PreparedTask> prepared;
  prepared.reserve(n);
  for (size_t t = 0; t < n; ++t) {
    auto p = Prepare(tasks[t], tok, kv);
    if (!p.ok()) return p.status();
    prepared.push_back(std::move(*p));
  }
  std::vector<TaskScore> scores(n);
  for (size_t t = 0; t < n; ++t) {
    const size_t c = tasks[t].choices.size();
    scores[t].loglikelihoods.assign(c, 0.0);
    scores[t].greedy.assign(c, true);
    scores[t].num_tokens.assign(c, 0);
    for (const Group& g : prepared[t].groups) {
      for (const Request& r : g.requests) {
        scores[t].num_tokens[r.choice] = static_cast<int64_t>(r.continuation.size());
      }
    }
  }

  ZeroShotResult result;
  double gold_ll_sum = 0;
  for (size_t begin = 0; begin < n;) {
    // As many tasks as the batch limits and the free KV blocks allow (at least one).
    std::vector<const PreparedTask*> batch;
    std::vector<TaskScore*> batch_scores;
    int64_t tokens = 0, blocks = 0;
    const int64_t free_blocks = kv.free_blocks();
    size_t end = begin;
    while (end < n && static_cast<int64_t>(batch.size()) < options.max_batch_tasks) {
      const PreparedTask& p = prepared[end];
      if (!batch.empty() && (tokens + p.context_tokens > options.max_batch_tokens ||
                             blocks + p.blocks > free_blocks)) {
        break;
      }
      tokens += p.context_tokens;
      blocks += p.blocks;
      batch.push_back(&p);
      batch_scores.push_back(&scores[end]);
      ++end;
    }
    if (absl::Status s = RunBatch(backend, batch, precision, batch_scores,
                                  &result.forward_tokens);
        !s.ok()) {
      return s;
    }
    for (size_t t = begin; t < end; ++t) {
      Decide(tasks[t], &scores[t]);
      ++result.count;
      result.correct += scores[t].correct;
      result.correct_norm += scores[t].correct_norm;
      gold_ll_sum += scores[t].loglikelihoods[tasks[t].gold];
    }
    begin = end;
    Summarise(&result, gold_ll_sum);
    if (options.progress) options.progress(static_cast<int64_t>(end), static_cast<int64_t>(n), result);
  }
  if (options.scores != nullptr) *options.scores = std::move(scores);
  return result;
}

// ---- Data sets -------------------------------------------------------------

namespace {

// Calls `fn(line, line_number)` for every non-blank line of a text file
// (CR of CRLF removed). Stops at and returns the first error.
absl::Status ForEachLine(const std::string& path,
                         const std::function<absl::Status(const std::string&, int64_t)>& fn) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    if (absl::Status s = fn(line, number); !s.ok()) return s;
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  return absl::OkStatus();
}

// One JSON object a line; errors say path:line.
absl::StatusOr<std::vector<MultipleChoiceTask>> LoadJsonl(
    const std::string& path,
    const std::function<absl::Status(const nlohmann::json&, MultipleChoiceTask*)>& convert) {
  std::vector<MultipleChoiceTask> tasks;
  absl::Status s = ForEachLine(path, [&](const std::string& line, int64_t number) {
    const std::string where = absl::StrCat(path, ":", number);
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(where, ": not JSON"));
    if (!j.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": not a JSON object"));
    }
    MultipleChoiceTask task;
    task.where = where;
    if (absl::Status c = convert(j, &task); !c.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", c.message()));
    }
    if (absl::Status v = Validate(task); !v.ok()) return v;
    tasks.push_back(std::move(task));
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  if (tasks.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no tasks"));
  return tasks;
}

absl::StatusOr<std::string> StringField(const nlohmann::json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end()) return absl::InvalidArgumentError(absl::StrCat("no \"", name, "\""));
  if (!it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("\"", name, "\" is not a string"));
  }
  return it->get<std::string>();
}

// lm-eval's hellaswag preprocess().
std::string HellaswagPreprocess(absl::string_view text) {
  std::string s(absl::StripAsciiWhitespace(text));
  s = absl::StrReplaceAll(s, {{" [title]", ". "}});
  std::string out;  // re.sub("\\[.*?\\]", "", s): drop each "[...]" (non-greedy)
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '[') {
      const size_t close = s.find(']', i + 1);
      if (close != std::string::npos) {
        i = close;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return absl::StrReplaceAll(out, {{"  ", " "}});
}

}  // namespace

absl::StatusOr<std::vector<MultipleChoiceTask>> LoadMosaicMultipleChoice(
    const std::string& path, const std::string& query_suffix) {
  return LoadJsonl(path, [&](const nlohmann::json& j, MultipleChoiceTask* task) -> absl::Status {
    auto query = StringField(j, "query");
    if (!query.ok()) return query.status();
    task->contexts = {*query + query_suffix};
    auto choices = j.find("choices");
    if (choices == j.end() || !choices->is_array()) {
      return absl::InvalidArgumentError("\"choices\" missing or not an array");
    }
    for (const auto& c : *choices) {
      if (!c.is_string()) return absl::InvalidArgumentError("a choice is not a string");
      task->choices.push_back(c.get<std::string>());
    }
    auto gold = j.find("gold");
    if (gold == j.end() || !gold->is_number_integer()) {
      return absl::InvalidArgumentError("\"gold\" missing or not an integer");
    }
    const int64_t g = gold->get<int64_t>();
    if (g < 0 || g >= static_cast<int64_t>(task->choices.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("gold ", g, " outside 0..", static_cast<int64_t>(task->choices.size()) - 1));
    }
    task->gold = static_cast<int>(g);
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<MultipleChoiceTask>> LoadWinogrande(const std::string& path) {
  return LoadJsonl(path, [&](const nlohmann::json& j, MultipleChoiceTask* task) -> absl::Status {
    auto sentence = StringField(j, "sentence");
    if (!sentence.ok()) return sentence.status();
    const size_t blank = sentence->find('_');
    if (blank == std::string::npos || sentence->find('_', blank + 1) != std::string::npos) {
      return absl::InvalidArgumentError("\"sentence\" must hold exactly one '_'");
    }
    const std::string prefix = sentence->substr(0, blank);
    for (const char* name : {"option1", "option2"}) {
      auto option = StringField(j, name);
      if (!option.ok()) return option.status();
      task->contexts.push_back(prefix + *option);
    }
    task->choices = {std::string(absl::StripAsciiWhitespace(sentence->substr(blank + 1)))};
    task->choices.push_back(task->choices[0]);
    auto answer = StringField(j, "answer");
    if (!answer.ok()) return answer.status();
    if (*answer != "1" && *answer != "2") {
      return absl::InvalidArgumentError(absl::StrCat("\"answer\" must be \"1\" or \"2\", not \"",
                                                     *answer, "\""));
    }
    task->gold = *answer == "1" ? 0 : 1;
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<MultipleChoiceTask>> LoadHellaswag(const std::string& path) {
  std::vector<std::string> lines;
  std::vector<int64_t> numbers;
  absl::Status s = ForEachLine(path, [&](const std::string& line, int64_t number) {
    lines.push_back(line);
    numbers.push_back(number);
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  if (lines.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no tasks"));
  if (lines.size() % 6 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ":", numbers[lines.size() / 6 * 6], ": ", lines.size() % 6,
        " trailing non-blank line(s): expected 6 lines a task (context, label, 4 endings)"));
  }
  std::vector<MultipleChoiceTask> tasks;
  for (size_t i = 0; i < lines.size(); i += 6) {
    MultipleChoiceTask task;
    task.where = absl::StrCat(path, ":", numbers[i]);
    const std::string& label = lines[i + 1];
    if (label.size() != 1 || label[0] < '0' || label[0] > '3') {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", numbers[i + 1],
                                                     ": gold label must be 0-3, not '", label,
                                                     "'"));
    }
    task.gold = label[0] - '0';
    task.contexts = {HellaswagPreprocess(lines[i])};
    for (int e = 0; e < 4; ++e) task.choices.push_back(HellaswagPreprocess(lines[i + 2 + e]));
    if (absl::Status v = Validate(task); !v.ok()) return v;
    tasks.push_back(std::move(task));
  }
  return tasks;
}

absl::StatusOr<std::vector<MultipleChoiceTask>> LoadLambada(const std::string& path) {
  return LoadJsonl(path, [&](const nlohmann::json& j, MultipleChoiceTask* task) -> absl::Status {
    auto context = StringField(j, "context");
    if (!context.ok()) return context.status();
    auto continuation = StringField(j, "continuation");
    if (!continuation.ok()) return continuation.status();
    task->contexts = {*context};
    task->choices = {*continuation};
    // lm-eval's target is " " + last word; one file entry already starts with "\n\n".
    if (!continuation->empty() && IsPythonWhitespace((*continuation)[0])) task->delimiter = "";
    return absl::OkStatus();
  });
}

namespace {

// Where each task lives and how its prompt is made (lm-eval's where the data
// allows; see the notes).
struct TaskSpec {
  const char* file;
  enum Format { kMosaic, kWinogrande, kHellaswag, kLambada } format;
  const char* query_suffix = "";
  const char* delimiter = " ";
};

const std::map<std::string, TaskSpec>& Specs() {
  static const auto* specs = new std::map<std::string, TaskSpec>{
      // "Question: {q}\nAnswer:" + " " + choice: lm-eval's arc_easy / arc_challenge.
      {"arc_easy", {"arc-easy/arc_easy.jsonl", TaskSpec::kMosaic, "\nAnswer:"}},
      {"arc_challenge", {"arc-challenge/arc_challenge.jsonl", TaskSpec::kMosaic, "\nAnswer:"}},
      // question_stem + " " + choice: lm-eval's openbookqa.
      {"obqa", {"openbookqa/openbook_qa.jsonl", TaskSpec::kMosaic}},
      // The query is "Question: {goal}\n": + "Answer:" gives lm-eval's piqa prompt.
      {"piqa", {"piqa/piqa_mosaic.jsonl", TaskSpec::kMosaic, "Answer:"}},
      // "Passage: {passage} Question: {question}?\nAnswer:" + " no"/" yes"; lm-eval's
      // is "{passage}\nQuestion: {question}?\nAnswer:".
      {"boolq", {"boolq/boolq_mosaic.jsonl", TaskSpec::kMosaic, "\nAnswer:"}},
      // llm-foundry's lettered prompt ending "Answer: ": the trailing space moves into
      // the continuation, so the choice is " A" (no extra delimiter). lm-eval's mathqa
      // scores the option texts instead.
      {"mathqa", {"mathqa/math_qa_mosaic.jsonl", TaskSpec::kMosaic, "", ""}},
      {"winogrande", {"winogrande/dev.jsonl", TaskSpec::kWinogrande}},
      {"hellaswag", {"hellaswag/hellaswag_val_full.txt", TaskSpec::kHellaswag}},
      {"lambada", {"lambada-openai/lambada_openai.jsonl", TaskSpec::kLambada}},
  };
  return *specs;
}

}  // namespace

const std::vector<std::string>& KnownTaskNames() {
  static const auto* names = new std::vector<std::string>{
      "arc_easy", "arc_challenge", "obqa",      "piqa",   "boolq",
      "winogrande", "hellaswag",   "mathqa", "lambada"};
  return *names;
}

absl::StatusOr<std::vector<MultipleChoiceTask>> LoadNamedTask(const std::string& name,
                                                              const std::string& data_dir) {
  auto it = Specs().find(name);
  if (it == Specs().end()) {
    return absl::NotFoundError(absl::StrCat("unknown task '", name, "' (known: ",
                                            absl::StrJoin(KnownTaskNames(), ", "), ")"));
  }
  const TaskSpec& spec = it->second;
  const std::string path = absl::StrCat(data_dir, "/", spec.file);
  absl::StatusOr<std::vector<MultipleChoiceTask>> tasks;
  switch (spec.format) {
    case TaskSpec::kMosaic:
      tasks = LoadMosaicMultipleChoice(path, spec.query_suffix);
      break;
    case TaskSpec::kWinogrande:
      tasks = LoadWinogrande(path);
      break;
    case TaskSpec::kHellaswag:
      tasks = LoadHellaswag(path);
      break;
    case TaskSpec::kLambada:
      return LoadLambada(path);  // its own per-entry delimiter
  }
  if (!tasks.ok()) return tasks.status();
  for (MultipleChoiceTask& t : *tasks) t.delimiter = spec.delimiter;
  return tasks;
}

}  // namespace otaro::eval
