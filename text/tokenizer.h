// Hugging Face tokenizer.json (BPE models): SentencePiece-style (Llama-2, Mistral) and
// byte-level (GPT-2, Llama-3, Qwen2/3) pipelines, verified token-for-token against an
// independent implementation (tests/integration/tokenizer_parity_test.sh).
//
// Pipeline, as HF tokenizers runs it: split out added tokens (raw text) -> normalizer ->
// split out "normalized" added tokens -> pre-tokenizer -> BPE -> post-processor (BOS/EOS).
// Supported components are listed in tokenizer.cc; anything else is refused at Load with a
// message naming it, never silently approximated.
//
// Thread safety: a loaded Tokenizer is immutable; Encode/Decode may run concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace accullm::text {

class TokenizerImpl;

class Tokenizer {
 public:
  // `path_or_dir`: a tokenizer.json file or a model directory holding one. A
  // tokenizer_config.json beside it (bos/eos tokens, add_bos_token/add_eos_token) and a
  // generation_config.json (extra eos_token_id values) are read when present.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& path_or_dir);
  // Same, from in-memory JSON texts (config may be empty). `what` names the source in errors.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view tokenizer_json,
                                                             std::string_view config_json = {},
                                                             std::string_view what = "tokenizer.json");
  ~Tokenizer();

  // `add_special`: apply the post-processor (e.g. BOS) as HF's add_special_tokens does.
  // Invalid UTF-8 input never fails: each maximal ill-formed subsequence is first replaced
  // by U+FFFD (HF's Rust API only accepts valid strings; this is what a lossy conversion
  // of the bytes would hand it).
  std::vector<int32_t> Encode(std::string_view text, bool add_special = true) const;
  // Unknown ids are skipped. Output is always valid UTF-8 (ill-formed byte sequences
  // produced by byte tokens become U+FFFD, one per maximal ill-formed subsequence).
  std::string Decode(const std::vector<int32_t>& ids, bool skip_special = true) const;

  // Number of ids (model vocabulary plus added tokens): max id + 1.
  int32_t vocab_size() const;
  std::optional<int32_t> bos_id() const;
  std::vector<int32_t> eos_ids() const;
  // Whether Encode(text, true) prepends bos_id().
  bool add_bos() const;
  std::optional<int32_t> TokenToId(std::string_view token) const;
  // Empty for unknown ids.
  std::string_view IdToToken(int32_t id) const;
  // An added token flagged "special" (skipped by Decode when skip_special).
  bool IsSpecial(int32_t id) const;

  const TokenizerImpl& impl() const { return *impl_; }

 private:
  explicit Tokenizer(std::unique_ptr<TokenizerImpl> impl);
  std::unique_ptr<TokenizerImpl> impl_;
};

// Incremental detokenization for streaming responses: feed ids one at a time and get only
// text that is final. Never returns part of a UTF-8 character: bytes of an unfinished
// character are held until it completes, and become U+FFFD only once the sequence is
// definitively ill-formed (or at Flush). The concatenation of all Push results and Flush
// equals Tokenizer::Decode of all the ids (same skip_special).
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tokenizer, bool skip_special = true);
  ~StreamingDecoder();
  std::string Push(int32_t id);
  // Returns whatever is held back (an unfinished character becomes U+FFFD) and resets
  // the decoder for a new sequence.
  std::string Flush();

  struct State;

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::unique_ptr<State> state_;
};

}  // namespace accullm::text
