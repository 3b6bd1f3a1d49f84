// Tokenizer: the fixture model's known ids, decoding, streaming, NFC, malformed files.
// Token-for-token parity with an independent implementation on four real tokenizers is
// checked by tests/integration/tokenizer_parity_test.sh.
#include "text/tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "boost/json.hpp"
#include "tests/support/test_support.h"
#include "text/stop_text.h"
#include "text/unicode_tables.h"

namespace accullm::text {
namespace {

using test_support::LoadTokenizerOrFail;
using test_support::ModelDir;
using test_support::ReadFileOrFail;
const std::string kNpmModels = test_support::SourceDir() + "/tests/oracles/node_modules/@lenml";

std::vector<int32_t> ToIds(const boost::json::value& v) {
  std::vector<int32_t> ids;
  for (const auto& x : v.as_array()) ids.push_back(static_cast<int32_t>(x.to_number<int64_t>()));
  return ids;
}

std::vector<std::string> Corpus() {
  std::vector<std::string> out;
  boost::json::value v = boost::json::parse(ReadFileOrFail(test_support::FixturePath("tokenizer_strings.json")));
  for (const auto& s : v.as_array()) out.emplace_back(s.as_string());
  return out;
}

bool HaveNpmModels() { return std::filesystem::exists(kNpmModels + "/tokenizer-llama3/models/tokenizer.json"); }

TEST(TokenizerTest, FixtureKnownIds) {
  auto t = LoadTokenizerOrFail(ModelDir());
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->Encode("Once upon a time"), (std::vector<int32_t>{1, 420, 435, 261, 394}));
  EXPECT_EQ(t->Encode("Once upon a time", /*add_special=*/false), (std::vector<int32_t>{420, 435, 261, 394}));
  EXPECT_EQ(t->vocab_size(), 2048);
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_ids(), std::vector<int32_t>{2});
  EXPECT_TRUE(t->add_bos());
  EXPECT_EQ(t->TokenToId("<s>"), 1);
  EXPECT_EQ(t->IdToToken(1), "<s>");
  EXPECT_TRUE(t->IsSpecial(1));
  EXPECT_FALSE(t->IsSpecial(420));
  EXPECT_EQ(t->IdToToken(99999), "");
  EXPECT_EQ(t->Decode({1, 420, 435, 261, 394}), "Once upon a time");
}

TEST(TokenizerTest, ReferenceCases) {
  auto t = LoadTokenizerOrFail(ModelDir());
  ASSERT_NE(t, nullptr);
  boost::json::value ref = boost::json::parse(ReadFileOrFail(ModelDir() + "/reference.json"));
  const auto& cases = ref.at("cases").as_array();
  ASSERT_GE(cases.size(), 3u);
  for (const auto& c : cases) {
    const std::string prompt(c.at("prompt").as_string());
    EXPECT_EQ(t->Encode(prompt), ToIds(c.at("prompt_ids"))) << prompt;
    EXPECT_EQ(t->Decode(ToIds(c.at("greedy_ids"))), std::string(c.at("greedy_text").as_string()));
  }
}

TEST(TokenizerTest, LoadsFileOrDirectory) {
  auto a = LoadTokenizerOrFail(ModelDir());
  auto b = LoadTokenizerOrFail(ModelDir() + "/tokenizer.json");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(a->Encode("Lily's dog"), b->Encode("Lily's dog"));
}

TEST(TokenizerTest, ByteFallbackAndSpecialText) {
  auto t = LoadTokenizerOrFail(ModelDir());
  ASSERT_NE(t, nullptr);
  // The 2048-token vocabulary has no CJK: each byte becomes a <0xNN> token.
  const std::vector<int32_t> ids = t->Encode("日", false);
  ASSERT_EQ(ids.size(), 4u);  // "▁" + 3 bytes
  EXPECT_EQ(t->IdToToken(ids[1]), "<0xE6>");
  EXPECT_EQ(t->Decode(ids), "日");
  // Special-token text is its token, never merged with neighbours.
  const std::vector<int32_t> s = t->Encode("Hi<s>there", false);
  EXPECT_NE(std::find(s.begin(), s.end(), 1), s.end());
  EXPECT_EQ(t->Decode(s, /*skip_special=*/false), "Hi<s> there");
  EXPECT_EQ(t->Decode(s, /*skip_special=*/true), "Hi there");
}

TEST(TokenizerTest, InvalidUtf8IsReplaced) {
  auto t = LoadTokenizerOrFail(ModelDir());
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->Encode("a\xFF"
                      "b"),
            t->Encode("a\xEF\xBF\xBD"
                      "b"));
  // A truncated sequence is one maximal subpart: one U+FFFD.
  EXPECT_EQ(t->Encode("a\xE6\x97"), t->Encode("a\xEF\xBF\xBD"));
  EXPECT_EQ(SanitizeUtf8("\xF0\x9F\x98"), "\xEF\xBF\xBD");
  EXPECT_EQ(SanitizeUtf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(SanitizeUtf8("ok"), "ok");
}

TEST(TokenizerTest, Nfc) {
  EXPECT_EQ(NormalizeNfc("cafe\xCC\x81"), "caf\xC3\xA9");                           // e + acute -> é
  EXPECT_EQ(NormalizeNfc("\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB"), "\xED\x95\x9C");  // jamo -> 한
  EXPECT_EQ(NormalizeNfc("\xE1\xBA\x9B\xCC\xA3"), "\xE1\xBA\x9B\xCC\xA3");          // ẛ̣ stays (UAX #15 example)
  EXPECT_EQ(NormalizeNfc("a\xCC\xA3\xCC\x87"), "\xE1\xBA\xA1\xCC\x87");             // reorder + compose: ạ̇
  EXPECT_EQ(NormalizeNfc("\xE2\x84\xAB"), "\xC3\x85");                              // Angstrom sign -> Å
  EXPECT_EQ(NormalizeNfc("plain ascii"), "plain ascii");
}

// Concatenated streamed pieces equal Decode, and every piece is whole UTF-8.
void ExpectStreamingMatches(const Tokenizer& t, const std::vector<std::string>& strings, bool skip_special) {
  for (const std::string& s : strings) {
    const std::vector<int32_t> ids = t.Encode(s);
    StreamingDecoder stream(t, skip_special);
    std::string joined;
    for (int32_t id : ids) {
      std::string piece = stream.Push(id);
      EXPECT_TRUE(IsValidUtf8(piece)) << s;
      joined += piece;
    }
    joined += stream.Flush();
    EXPECT_EQ(joined, t.Decode(ids, skip_special)) << s;
  }
}

TEST(TokenizerTest, StreamingEqualsDecodeFixture) {
  auto t = LoadTokenizerOrFail(ModelDir());
  ASSERT_NE(t, nullptr);
  ExpectStreamingMatches(*t, Corpus(), true);
  ExpectStreamingMatches(*t, Corpus(), false);
}

TEST(TokenizerTest, StreamingHoldsPartialCharacters) {
  auto t = LoadTokenizerOrFail(ModelDir());
  ASSERT_NE(t, nullptr);
  const std::vector<int32_t> ids = t->Encode("😀", false);  // ▁ + 4 byte tokens
  ASSERT_EQ(ids.size(), 5u);
  StreamingDecoder stream(*t);
  EXPECT_EQ(stream.Push(ids[0]), "");  // the leading space is stripped at the start
  EXPECT_EQ(stream.Push(ids[1]), "");
  EXPECT_EQ(stream.Push(ids[2]), "");
  EXPECT_EQ(stream.Push(ids[3]), "");
  EXPECT_EQ(stream.Push(ids[4]), "😀");
  // A sequence cut short by another token is definitively invalid: U+FFFD, then the token.
  const int32_t e6 = *t->TokenToId("<0xE6>");
  const int32_t a = t->Encode("a", false).back();
  EXPECT_EQ(stream.Push(e6), "");
  EXPECT_EQ(stream.Push(a), "\xEF\xBF\xBD a");
  // Flush turns an unfinished character into U+FFFD and restarts (leading space stripped).
  EXPECT_EQ(stream.Push(e6), "");
  EXPECT_EQ(stream.Flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(stream.Push(a), "a");
}

TEST(StopTextTest, HoldsBackAPossibleStopAndCutsAtIt) {
  EXPECT_EQ(StopPrefixHoldback("the end", {"end.", "x"}), 3u);
  EXPECT_EQ(StopPrefixHoldback("the en", {"end."}), 2u);
  EXPECT_EQ(StopPrefixHoldback("the", {"end."}), 1u);  // "e" may begin "end."
  EXPECT_EQ(StopPrefixHoldback("tha", {"end."}), 0u);
  auto t = LoadTokenizerOrFail(ModelDir());
  const std::vector<int32_t> ids = t->Encode("Once upon a time, there was a dog.", false);
  const std::string full = t->Decode(ids, false);
  StopText stop(*t, {"there"});
  std::string streamed;
  bool stopped = false;
  for (int32_t id : ids) {
    StopText::Piece p = stop.Push(id);
    streamed += p.text;
    EXPECT_EQ(full.substr(0, streamed.size()), streamed);  // never text past the stop's start
    if (p.stopped) {
      stopped = true;
      break;
    }
  }
  EXPECT_TRUE(stopped);
  EXPECT_EQ(streamed, full.substr(0, full.find("there")));
  EXPECT_EQ(stop.text(), streamed);
  StopText none(*t, {});
  std::string all;
  for (int32_t id : ids) all += none.Push(id).text;
  all += none.Finish();
  EXPECT_EQ(all, full);
}

TEST(TokenizerTest, RealTokenizersStreamAndRoundTrip) {
  if (!HaveNpmModels()) GTEST_SKIP() << "tests/oracles/node_modules missing: run scripts/setup.sh";
  // Strings that must round-trip: no special-token text, already NFC, and no literal "▁"
  // (SentencePiece-style decoding turns it into a space, as HF does).
  std::vector<std::string> plain;
  for (const std::string& s : Corpus()) {
    if (s.find('<') == std::string::npos && NormalizeNfc(s) == s && s.find("\xE2\x96\x81") == std::string::npos)
      plain.push_back(s);
  }
  for (const char* name : {"llama2", "llama3", "qwen3"}) {
    SCOPED_TRACE(name);
    auto t = LoadTokenizerOrFail(kNpmModels + "/tokenizer-" + name + "/models/tokenizer.json");
    ASSERT_NE(t, nullptr);
    ExpectStreamingMatches(*t, Corpus(), true);
    ExpectStreamingMatches(*t, Corpus(), false);
    for (const std::string& s : plain) {
      // SentencePiece-style decoding drops the leading space it added.
      EXPECT_EQ(t->Decode(t->Encode(s, false)), s);
    }
  }
  auto llama3 = LoadTokenizerOrFail(kNpmModels + "/tokenizer-llama3/models/tokenizer.json");
  ASSERT_NE(llama3, nullptr);
  EXPECT_EQ(llama3->bos_id(), 128000);
  EXPECT_EQ(llama3->TokenToId("<|begin_of_text|>"), 128000);
  EXPECT_EQ(llama3->TokenToId("Ġthe"), llama3->Encode(" the", false).front());
  const std::string chat = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
  EXPECT_EQ(llama3->Decode(llama3->Encode(chat, false), /*skip_special=*/false), chat);
  auto qwen = LoadTokenizerOrFail(kNpmModels + "/tokenizer-qwen3/models/tokenizer.json");
  ASSERT_NE(qwen, nullptr);
  EXPECT_FALSE(qwen->add_bos());
  EXPECT_EQ(qwen->eos_ids(), std::vector<int32_t>{*qwen->TokenToId("<|im_end|>")});
  // NFC: a decomposed é tokenizes like the precomposed one.
  EXPECT_EQ(qwen->Encode("cafe\xCC\x81"), qwen->Encode("caf\xC3\xA9"));
}

// A minimal tokenizer.json around `model_json`.
std::string MiniTokenizer(const std::string& model_json) {
  return R"({"version":"1.0","added_tokens":[],"normalizer":null,"pre_tokenizer":null,)"
         R"("post_processor":null,"decoder":null,"model":)" +
         model_json + "}";
}

std::string Replaced(std::string s, const std::string& from, const std::string& to) {
  const size_t p = s.find(from);
  if (p != std::string::npos) s.replace(p, from.size(), to);
  return s;
}

TEST(TokenizerTest, MalformedFilesGiveClearErrors) {
  const std::string good_model = R"({"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]})";
  auto ok = Tokenizer::FromJson(MiniTokenizer(good_model));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ((*ok)->Encode("abab"), (std::vector<int32_t>{2, 2}));
  auto ok_new =
      Tokenizer::FromJson(MiniTokenizer(R"({"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":[["a","b"]]})"));
  ASSERT_TRUE(ok_new.ok()) << ok_new.status();
  EXPECT_EQ((*ok_new)->Encode("ab"), std::vector<int32_t>{2});

  struct Case {
    std::string json, expect;
  };
  const std::vector<Case> cases = {
      {"{not json", "tokenizer.json"},
      {"[1,2]", "JSON object"},
      {R"({"version":"1.0"})", "missing \"model\""},
      {MiniTokenizer(R"({"type":"WordPiece","vocab":{}})"), "WordPiece"},
      {MiniTokenizer(R"({"type":"BPE","vocab":{"a":0},"merges":["a b"]})"), "merges[0]"},
      {MiniTokenizer(R"({"type":"BPE","vocab":{"a":0,"b":1},"merges":["a b"]})"), "missing from the vocabulary"},
      {MiniTokenizer(R"({"type":"BPE","vocab":{"a":"zero"},"merges":[]})"), "integer id"},
      {MiniTokenizer(R"({"type":"BPE","vocab":[],"merges":[]})"), "model.vocab"},
      {MiniTokenizer(R"({"type":"BPE","vocab":{"a":0},"merges":[7]})"), "merges[0]"},
      {MiniTokenizer(R"({"type":"BPE","vocab":{"a":-4},"merges":[]})"), "out of range"},
      {Replaced(MiniTokenizer(good_model), R"("pre_tokenizer":null)",
                R"("pre_tokenizer":{"type":"Split","pattern":{"Regex":"\\w+"},"behavior":"Isolated"})"),
       "unsupported Split regex"},
      {Replaced(MiniTokenizer(good_model), R"("normalizer":null)", R"("normalizer":{"type":"NFKD"})"), "NFKD"},
      {Replaced(MiniTokenizer(good_model), R"("decoder":null)", R"("decoder":{"type":"CTC"})"), "CTC"},
      {Replaced(MiniTokenizer(good_model), R"("added_tokens":[])", R"("added_tokens":[{"id":"x"}])"), "added_tokens"},
      {Replaced(MiniTokenizer(good_model), R"("normalizer":null)", R"("normalizer":{"type":7})"), "type"},
  };
  for (const Case& c : cases) {
    auto t = Tokenizer::FromJson(c.json);
    ASSERT_FALSE(t.ok()) << c.json;
    EXPECT_NE(std::string(t.status().message()).find(c.expect), std::string::npos)
        << "status: " << t.status() << "\nexpected to mention: " << c.expect;
  }
  EXPECT_FALSE(Tokenizer::Load("/nonexistent/dir").ok());
}

TEST(TokenizerTest, ArbitraryBytesNeverBreak) {
  std::vector<std::string> paths = {ModelDir()};
  if (HaveNpmModels()) paths.push_back(kNpmModels + "/tokenizer-qwen3/models/tokenizer.json");
  uint64_t seed = 12345;
  auto next = [&] { return (seed = seed * 6364136223846793005ull + 1442695040888963407ull) >> 33; };
  for (const std::string& path : paths) {
    auto t = LoadTokenizerOrFail(path);
    ASSERT_NE(t, nullptr);
    for (int i = 0; i < 300; ++i) {
      std::string s(next() % 40, '\0');
      for (char& c : s) c = static_cast<char>(next() & 0xFF);
      const std::vector<int32_t> ids = t->Encode(s);
      for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < t->vocab_size());
      EXPECT_TRUE(IsValidUtf8(t->Decode(ids, false)));
      // Random ids, including out-of-range ones, decode and stream without failing.
      std::vector<int32_t> random_ids;
      for (int k = 0; k < 20; ++k) random_ids.push_back(static_cast<int32_t>(next() % (t->vocab_size() + 10)) - 5);
      StreamingDecoder stream(*t, false);
      std::string joined;
      for (int32_t id : random_ids) joined += stream.Push(id);
      joined += stream.Flush();
      EXPECT_EQ(joined, t->Decode(random_ids, false));
      EXPECT_TRUE(IsValidUtf8(joined));
    }
  }
}

TEST(TokenizerTest, AddedTokenFlags) {
  // lstrip / rstrip take the neighbouring whitespace; single_word only matches whole words.
  const std::string json = R"({"added_tokens":[
      {"id":3,"content":"<m>","lstrip":true,"rstrip":true,"special":true,"normalized":false},
      {"id":4,"content":"cat","single_word":true,"special":false,"normalized":false}],
    "normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,
    "model":{"type":"BPE","vocab":{" ":0,"x":1,"c":2,"a":5,"t":6,"s":7},"merges":[]}})";
  auto t = Tokenizer::FromJson(json);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->Encode("x  <m>  x"), (std::vector<int32_t>{1, 3, 1}));
  EXPECT_EQ((*t)->Encode("cat x"), (std::vector<int32_t>{4, 0, 1}));
  EXPECT_EQ((*t)->Encode("cats"), (std::vector<int32_t>{2, 5, 6, 7}));
}

}  // namespace
}  // namespace accullm::text
