#include "engine/tokenizer/tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/testing/shared_data.h"
#include "engine/formats/gguf.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/loaders.h"
#include "engine/tokenizer/utf8.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace otaro::engine::tokenizer {
namespace {

std::string ReadShared(const std::string& rel) {
  std::string s;
  absl::Status st = ReadFileToString(otaro::testing::SharedPath(rel), &s);
  EXPECT_TRUE(st.ok()) << st;
  return s;
}

std::string Runfile(const std::string& rel) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* ws = std::getenv("TEST_WORKSPACE");
  EXPECT_NE(srcdir, nullptr);
  return absl::StrCat(srcdir ? srcdir : ".", "/", ws ? ws : "otaro", "/", rel);
}

std::unique_ptr<Tokenizer> FromGgufPath(const std::string& rel) {
  auto f = gguf::GgufFile::Open(otaro::testing::SharedPath(rel));
  EXPECT_TRUE(f.ok()) << f.status();
  if (!f.ok()) return nullptr;
  auto t = LoadFromGguf(**f);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

std::unique_ptr<Tokenizer> Vocab(const std::string& name) {
  return FromGgufPath("data/tokenizer-vectors/ggml-vocab-" + name + ".gguf");
}

std::vector<std::string> VectorTexts() {
  std::string inp = ReadShared("data/tokenizer-vectors/ggml-vocab-gpt-2.gguf.inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  size_t pos;
  while ((pos = inp.find(sep)) != std::string::npos) {
    texts.push_back(inp.substr(0, pos));
    inp.erase(0, pos + sep.size());
  }
  return texts;
}

// ---------------------------------------------------------------------------
// UTF-8 and byte-level helpers.

TEST(Utf8, ByteLevelMappingIsABijection) {
  EXPECT_EQ(ByteLevelEncode(" "), "Ġ");
  EXPECT_EQ(ByteLevelEncode("\n"), "Ċ");
  EXPECT_EQ(ByteLevelEncode("a"), "a");
  for (int b = 0; b < 256; ++b) {
    std::string one(1, static_cast<char>(b));
    auto back = ByteLevelDecode(ByteLevelEncode(one));
    ASSERT_TRUE(back.has_value()) << b;
    EXPECT_EQ(*back, one) << b;
  }
  EXPECT_FALSE(ByteLevelDecode("€").has_value());  // U+20AC is not a mapped byte
}

TEST(Utf8, TakeCompleteHoldsBackIncompleteCharacters) {
  std::string rest;
  EXPECT_EQ(TakeCompleteUtf8("ab\xF0\x9F", &rest), "ab");
  EXPECT_EQ(rest, "\xF0\x9F");
  EXPECT_EQ(TakeCompleteUtf8("\xF0\x9F\xA6\x99!", &rest), "🦙!");
  EXPECT_EQ(rest, "");
  // Invalid bytes are replaced, never held forever.
  EXPECT_EQ(TakeCompleteUtf8("a\x80z", &rest), "a\xEF\xBF\xBDz");
  EXPECT_EQ(TakeCompleteUtf8("\xE2\x28\xA1", &rest), "\xEF\xBF\xBD(\xEF\xBF\xBD");
  EXPECT_EQ(rest, "");
  EXPECT_TRUE(IsValidUtf8("héllo 🦙"));
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));  // overlong
}

// ---------------------------------------------------------------------------
// Encode / decode behaviour on the real vocabularies.

TEST(Tokenizer, SpecialTokensBosAndPieces) {
  auto spm = Vocab("llama-spm");
  ASSERT_NE(spm, nullptr);
  EXPECT_EQ(spm->kind(), ModelKind::kSentencePiece);
  EXPECT_EQ(spm->bos_id(), 1);
  EXPECT_EQ(spm->eos_id(), 2);
  EXPECT_TRUE(spm->add_bos());
  EXPECT_EQ(spm->Encode("Hello world", {.add_special = true}),
            (std::vector<TokenId>{1, 15043, 3186}));
  EXPECT_EQ(*spm->TokenPiece(15043), "▁Hello");
  EXPECT_EQ(*spm->TokenBytes(15043), " Hello");
  EXPECT_EQ(spm->token_type(13), TokenType::kByte);  // <0x0A>
  EXPECT_FALSE(spm->TokenPiece(32000).ok());
  // "<s>" in user text is text unless parse_special is set.
  std::vector<TokenId> as_text = spm->Encode("<s>x");
  EXPECT_EQ(std::count(as_text.begin(), as_text.end(), 1), 0);
  std::vector<TokenId> parsed = spm->Encode("<s>x", {.parse_special = true});
  ASSERT_FALSE(parsed.empty());
  EXPECT_EQ(parsed[0], 1);

  auto gpt2 = Vocab("gpt-2");
  ASSERT_NE(gpt2, nullptr);
  EXPECT_EQ(gpt2->kind(), ModelKind::kByteLevelBpe);
  EXPECT_EQ(*gpt2->TokenBytes(220), " ");  // "Ġ"
  std::vector<TokenId> eot = gpt2->Encode("a<|endoftext|>b", {.parse_special = true});
  EXPECT_EQ(eot, (std::vector<TokenId>{64, 50256, 65}));
  EXPECT_EQ(gpt2->Decode(eot), "ab");
  EXPECT_EQ(gpt2->Decode(eot, {.render_special = true}), "a<|endoftext|>b");
  EXPECT_TRUE(gpt2->IsEndOfGeneration(50256));
}

TEST(Tokenizer, DecodeRoundTripsEveryVectorInput) {
  std::vector<std::string> texts = VectorTexts();
  ASSERT_EQ(texts.size(), 46u);
  for (const char* name : {"llama-spm", "phi-3", "gpt-2", "deepseek-llm", "deepseek-coder"}) {
    auto tok = Vocab(name);
    ASSERT_NE(tok, nullptr);
    for (const std::string& text : texts) {
      std::vector<TokenId> ids = tok->Encode(text);
      EXPECT_EQ(tok->Decode(ids), text) << name << ": \"" << text << "\"";
    }
  }
}

// Token-by-token streaming yields valid UTF-8 chunks that add up to the text,
// also where a character's bytes are spread over several tokens.
TEST(StreamingDecoder, SplitsNeverBreakCharacters) {
  std::vector<std::string> texts = VectorTexts();
  for (const char* name : {"llama-spm", "gpt-2"}) {
    auto tok = Vocab(name);
    ASSERT_NE(tok, nullptr);
    int split_chars = 0;
    for (const std::string& text : texts) {
      std::vector<TokenId> ids = tok->Encode(text);
      StreamingDecoder dec(tok.get());
      std::string all;
      for (TokenId id : ids) {
        std::string chunk = dec.Push(id);
        EXPECT_TRUE(IsValidUtf8(chunk)) << name << ": " << text;
        if (chunk.empty() && dec.pending_bytes() > 0) ++split_chars;
        all += chunk;
      }
      EXPECT_EQ(dec.pending_bytes(), 0u);
      all += dec.Flush();
      EXPECT_EQ(all, text) << name;
    }
    EXPECT_GT(split_chars, 0) << name << ": the vectors should split some characters";
  }
  // The llama emoji is four byte-fallback tokens in LLaMA's vocabulary.
  auto spm = Vocab("llama-spm");
  std::vector<TokenId> ids = spm->Encode("🦙");
  ASSERT_EQ(ids, (std::vector<TokenId>{29871, 243, 162, 169, 156}));
  StreamingDecoder dec(spm.get());
  EXPECT_EQ(dec.Push(ids[0]), "");  // the leading space is stripped
  EXPECT_EQ(dec.Push(ids[1]), "");
  EXPECT_EQ(dec.Push(ids[2]), "");
  EXPECT_EQ(dec.Push(ids[3]), "");
  EXPECT_EQ(dec.Push(ids[4]), "🦙");
  // An abandoned partial character becomes U+FFFD on Flush.
  EXPECT_EQ(dec.Push(ids[1]), "");
  EXPECT_EQ(dec.Flush(), "\xEF\xBF\xBD");
}

TEST(Tokenizer, Stories260KGgufAndLlama2cVocabulariesAgree) {
  auto from_gguf = FromGgufPath("data/models/stories260K-gguf/stories260K.gguf");
  ASSERT_NE(from_gguf, nullptr);
  auto from_bin =
      LoadFromLlama2cTokenizer(ReadShared("data/models/stories260K-llama2c/tok512.bin"));
  ASSERT_TRUE(from_bin.ok()) << from_bin.status();
  EXPECT_EQ((*from_bin)->vocab_size(), 512);
  for (const std::string& text : VectorTexts()) {
    EXPECT_EQ((*from_bin)->Encode(text, {.add_special = true}),
              from_gguf->Encode(text, {.add_special = true}))
        << text;
  }
  // The reference greedy continuation decodes to the reference text.
  nlohmann::json ref = nlohmann::json::parse(
      ReadShared("data/models/stories260K-hf-converted/REFERENCE_greedy_helper.json"));
  std::vector<TokenId> ids = ref["greedy_tokens_incl_prompt"].get<std::vector<TokenId>>();
  std::string expected = ref["decoded_text"].get<std::string>();
  EXPECT_EQ(from_gguf->Decode(ids, {.strip_leading_space = false}), expected);
  EXPECT_EQ(from_gguf->Decode(ids), expected.substr(1));
  EXPECT_EQ((*from_bin)->Decode(ids), expected.substr(1));
  EXPECT_EQ(from_gguf->Encode(expected.substr(1), {.add_special = true}), ids);
}

TEST(Tokenizer, TokenizerJsonFixtureMatchesVocabJsonPath) {
  std::string tj, cfg;
  ASSERT_TRUE(
      ReadFileToString(Runfile("tests/fixtures/qwen2-tokenizer-json/tokenizer.json"), &tj).ok());
  ASSERT_TRUE(ReadFileToString(
                  Runfile("tests/fixtures/qwen2-tokenizer-json/tokenizer_config.json"), &cfg)
                  .ok());
  auto from_json = LoadFromHfTokenizerJson(tj, cfg);
  ASSERT_TRUE(from_json.ok()) << from_json.status();
  auto from_vocab = LoadFromHfDirectory(otaro::testing::SharedPath("data/tokenizers/qwen2"));
  ASSERT_TRUE(from_vocab.ok()) << from_vocab.status();
  EXPECT_EQ((*from_json)->vocab_size(), (*from_vocab)->vocab_size());
  EXPECT_EQ((*from_json)->eos_id(), 151645);  // <|im_end|> per tokenizer_config
  for (const std::string& text : VectorTexts()) {
    std::vector<TokenId> a = (*from_json)->Encode(text);
    EXPECT_EQ(a, (*from_vocab)->Encode(text)) << text;
    EXPECT_EQ((*from_json)->Decode(a), text);
  }
  const std::string chat = "<|im_start|>user\nhi<|im_end|>\n";
  std::vector<TokenId> ids = (*from_json)->Encode(chat, {.parse_special = true});
  EXPECT_EQ(ids.front(), 151644);
  EXPECT_EQ(ids, (*from_vocab)->Encode(chat, {.parse_special = true}));
  EXPECT_TRUE((*from_json)->IsEndOfGeneration(151645));
}

TEST(Tokenizer, SentencePieceStyleTokenizerJson) {
  // A tiny LLaMA-2 style tokenizer.json: merges, byte fallback, "▁".
  nlohmann::json j;
  nlohmann::json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    vocab[buf] = 3 + b;
  }
  int id = 259;
  for (const char* p : {"▁", "a", "b", "ab", "▁ab", "c"}) vocab[p] = id++;
  j["model"] = {{"type", "BPE"},
                {"vocab", vocab},
                {"merges", {"a b", "▁ ab"}},
                {"byte_fallback", true},
                {"unk_token", "<unk>"}};
  j["added_tokens"] = {{{"id", 1}, {"content", "<s>"}, {"special", true}},
                       {{"id", 2}, {"content", "</s>"}, {"special", true}}};
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                     {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}}};
  auto tok = LoadFromHfTokenizerJson(j.dump());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->kind(), ModelKind::kSentencePiece);
  EXPECT_TRUE((*tok)->add_bos());
  // "ab c" -> ▁ab ▁ c; "é" (not in the vocabulary) -> ▁ + its two bytes.
  EXPECT_EQ((*tok)->Encode("ab c", {.add_special = true}),
            (std::vector<TokenId>{1, 263, 259, 264}));
  EXPECT_EQ((*tok)->Encode("é"), (std::vector<TokenId>{259, 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ((*tok)->Decode((*tok)->Encode("ab cé", {.add_special = true})), "ab cé");
}

TEST(Tokenizer, MalformedTokenizerJsonGivesErrors) {
  for (const char* bad : {"", "{", "[]", "{\"model\": 3}", "{\"model\": {\"type\": \"Unigram\"}}",
                          "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}}}",
                          "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 99999999999}}}",
                          "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}}}",
                          "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": "
                          "[\"a z\"]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
                          "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": "
                          "[\"a\"]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
                          "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                          " \"pre_tokenizer\": {\"type\": \"Split\", \"behavior\": \"Isolated\","
                          " \"pattern\": {\"Regex\": \"(\"}}, \"decoder\": {\"type\": "
                          "\"ByteLevel\"}}"}) {
    auto t = LoadFromHfTokenizerJson(bad);
    EXPECT_FALSE(t.ok()) << bad;
    if (!t.ok()) {
      EXPECT_FALSE(t.status().message().empty());
    }
  }
  EXPECT_FALSE(PreTokenizerByName("no-such-pre").ok());
}

// ---------------------------------------------------------------------------
// Chat templates.

const std::vector<ChatMessage> kConversation = {
    {"system", "Be brief."}, {"user", "Hi!"}, {"assistant", "Hello."}, {"user", "2+2?"}};
const std::vector<ChatMessage> kNoSystem = {{"user", "Hi!"}};

TEST(ChatTemplate, Qwen2RealTemplateWithDefaultSystem) {
  nlohmann::json cfg =
      nlohmann::json::parse(ReadShared("data/tokenizers/qwen2/tokenizer_config.json"));
  auto f = RecognizeChatTemplate(cfg["chat_template"].get<std::string>(), "", "<|im_end|>");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->style, ChatStyle::kChatMl);
  EXPECT_EQ(f->default_system, "You are a helpful assistant.");
  EXPECT_EQ(*RenderChat(*f, kNoSystem, true),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(*RenderChat(*f, kConversation, true),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
            "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ChatTemplate, Phi3RealTemplateFromGguf) {
  auto tok = Vocab("phi-3");
  ASSERT_NE(tok, nullptr);
  auto f = RecognizeChatTemplate(*tok);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->style, ChatStyle::kPhi3);
  EXPECT_TRUE(f->renders_bos);
  std::string text = *RenderChat(*f, kConversation, true);
  EXPECT_EQ(text,
            "<s><|user|>\nHi!<|end|>\n<|assistant|>\nHello.<|end|>\n<|user|>\n2+2?<|end|>\n"
            "<|assistant|>\n");
  std::vector<TokenId> ids = tok->Encode(text, {.parse_special = true});
  EXPECT_EQ(ids.front(), 1);  // <s>, parsed from the rendered text
}

TEST(ChatTemplate, SmolLM2ChatMl) {
  // SmolLM2-Instruct's template (tokenizer_config.json chat_template).
  const std::string smol =
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' "
      "%}{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by "
      "Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
      "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt "
      "%}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  auto f = RecognizeChatTemplate(smol, "<|im_start|>", "<|im_end|>");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->default_system,
            "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  EXPECT_EQ(*RenderChat(*f, kNoSystem, false),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n");
  // Plain ChatML: no default system prompt.
  const std::string plain =
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
      "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
      "'<|im_start|>assistant\\n' }}{% endif %}";
  auto p = RecognizeChatTemplate(plain, "", "<|im_end|>");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->default_system, "");
  EXPECT_EQ(*RenderChat(*p, kNoSystem, true),
            "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, Llama3Llama2Zephyr) {
  const std::string llama3 =
      "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
      "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ "
      "message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = "
      "bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt "
      "%}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
  auto l3 = RecognizeChatTemplate(llama3, "<|begin_of_text|>", "<|eot_id|>");
  ASSERT_TRUE(l3.ok()) << l3.status();
  EXPECT_EQ(l3->style, ChatStyle::kLlama3);
  EXPECT_EQ(*RenderChat(*l3, kConversation, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  // Rendered LLaMA 3 prompts tokenize with the special tokens recognised.
  auto tok = LoadFromTiktoken(ReadShared("data/tokenizers/llama3-tiktoken/tokenizer.model"),
                              Llama3TiktokenOptions());
  ASSERT_TRUE(tok.ok());
  std::vector<TokenId> ids =
      (*tok)->Encode(*RenderChat(*l3, kNoSystem, true), {.parse_special = true});
  EXPECT_EQ(ids, (std::vector<TokenId>{128000, 128006, 882, 128007, 271, 13347, 0, 128009,
                                       128006, 78191, 128007, 271}));
  // LLaMA 3.1's date header is not guessed.
  EXPECT_EQ(RecognizeChatTemplate(llama3 + "Cutting Knowledge Date: December 2023", "<s>", "x")
                .status()
                .code(),
            absl::StatusCode::kUnimplemented);

  const std::string llama2 =
      "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
      "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% "
      "set system_message = false %}{% endif %}{% for message in loop_messages %}{% if "
      "(message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation "
      "roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 "
      "== 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
      "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] "
      "%}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + "
      "content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + "
      "content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
  auto l2 = RecognizeChatTemplate(llama2, "<s>", "</s>");
  ASSERT_TRUE(l2.ok()) << l2.status();
  EXPECT_EQ(l2->style, ChatStyle::kLlama2);
  EXPECT_EQ(*RenderChat(*l2, kConversation, true),
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi! [/INST] Hello. </s><s>[INST] 2+2? "
            "[/INST]");
  EXPECT_FALSE(RenderChat(*l2, {{"assistant", "x"}}, true).ok());  // must start with user

  const std::string zephyr =
      "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + "
      "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ "
      "'<|system|>\\n' + message['content'] + eos_token }}\n{% elif message['role'] == "
      "'assistant' %}\n{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n{% endif "
      "%}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% "
      "endfor %}";
  auto z = RecognizeChatTemplate(zephyr, "<s>", "</s>");
  ASSERT_TRUE(z.ok()) << z.status();
  EXPECT_EQ(z->style, ChatStyle::kZephyr);
  EXPECT_EQ(*RenderChat(*z, kConversation, true),
            "<|system|>\nBe brief.</s>\n<|user|>\nHi!</s>\n<|assistant|>\nHello.</s>\n"
            "<|user|>\n2+2?</s>\n<|assistant|>\n");
}

TEST(ChatTemplate, UnknownTemplatesAreErrors) {
  EXPECT_EQ(RecognizeChatTemplate("", "<s>", "</s>").status().code(),
            absl::StatusCode::kNotFound);
  auto unknown = RecognizeChatTemplate(
      "{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}", "<s>",
      "</s>");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_TRUE(absl::StrContains(unknown.status().message(), "raw prompt"));
  // Mixed markers are not guessed either.
  EXPECT_FALSE(RecognizeChatTemplate("<|im_start|><|im_end|>[INST][/INST]<<SYS>>", "", "").ok());
  // The stories260K GGUF has no template at all.
  auto tok = FromGgufPath("data/models/stories260K-gguf/stories260K.gguf");
  ASSERT_NE(tok, nullptr);
  EXPECT_FALSE(RecognizeChatTemplate(*tok).ok());
  // Bad roles / order.
  auto f = RecognizeChatTemplate("<|im_start|><|im_end|>", "", "");
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE(RenderChat(*f, {{"tool", "x"}}, true).ok());
  EXPECT_FALSE(RenderChat(*f, {{"user", "x"}, {"system", "y"}}, true).ok());
}

}  // namespace
}  // namespace otaro::engine::tokenizer
