// Internals of Tokenizer shared by tokenizer.cc (loading, encoding) and
// tokenizer_decode.cc (decoding, streaming). Not part of the model/ public API.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "boost/json.hpp"
#include "text/tokenizer_bpe.h"
#include "text/tokenizer_patterns.h"

namespace accullm::text {

// Debian's Abseil has its own string_view type; this bridges std::string_view into
// absl::StrCat, absl::StrReplaceAll and heterogeneous flat_hash_map lookups.
inline absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

// Leftmost-longest search for added tokens, honouring single_word / lstrip / rstrip as
// HF's AddedVocabulary does.
class AddedTokenMatcher {
 public:
  // `contents[i]` is the text matched for tokens[i] (normalized form for normalized tokens).
  void Add(std::string content, const AddedToken* token);
  void Finish();
  bool empty() const { return entries_.empty(); }
  struct Match {
    size_t begin, end;  // including whitespace taken by lstrip / rstrip
    int32_t id;
  };
  // All matches in `text`, left to right, non-overlapping.
  void FindAll(std::string_view text, std::vector<Match>* out) const;

 private:
  struct Entry {
    std::string content;
    const AddedToken* token;
  };
  std::vector<Entry> entries_;
  // Entries by first byte, longest content first.
  std::vector<int32_t> by_byte_[256];
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreTokenizerStep {
  enum class Kind { kSplit, kByteLevel, kMetaspace } kind;
  // kSplit: a known regex or a literal string.
  std::optional<SplitPattern> pattern;
  std::string literal;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  // kByteLevel
  bool add_prefix_space = false;
  bool use_regex = true;
  // kMetaspace
  std::string replacement;
  enum class Prepend { kAlways, kFirst, kNever } prepend = Prepend::kAlways;
  bool split = true;
};

struct NormalizerStep {
  enum class Kind { kPrepend, kReplace, kNfc } kind;
  std::string a, b;  // prepend: a; replace: a -> b
};

// Decoding as a per-token transform plus a few sequence-level rules; see tokenizer_decode.cc.
struct DecoderOp {
  enum class Kind { kReplace, kByteFallback, kByteLevel, kMetaspace, kStrip } kind;
  std::string from, to;      // kReplace; kMetaspace: from = replacement
  bool strip_first = false;  // kMetaspace: drop the first token's leading space
  std::string content;       // kStrip
  int start = 0, stop = 0;   // kStrip
};

struct DecoderPlan {
  bool none = true;  // no decoder: tokens joined with ' ' (HF's fallback)
  std::vector<DecoderOp> per_token;
  // Strip after Fuse applies to the whole text rather than each token.
  std::string global_strip_content;
  int global_strip_start = 0, global_strip_stop = 0;
};

struct DecodeState {
  size_t tokens = 0;        // tokens that reached the decoder
  int lead_strip_left = 0;  // global leading strip still to do
  bool lead_done = false;   // a non-strippable character has been produced
  std::string held;         // trailing strippable characters held back (global stop strip)
  std::string pending;      // produced bytes not yet returned (unfinished UTF-8)
};

class TokenizerImpl {
 public:
  static absl::StatusOr<std::unique_ptr<TokenizerImpl>> Build(const boost::json::object& root,
                                                              const boost::json::object* config,
                                                              const boost::json::object* generation);

  std::vector<int32_t> Encode(std::string_view text, bool add_special) const;

  // Decoding primitives (tokenizer_decode.cc).
  void StartDecode(DecodeState* state) const;
  // Appends the bytes id contributes (possibly an unfinished UTF-8 sequence) to state->pending.
  void DecodeToken(int32_t id, bool skip_special, DecodeState* state) const;
  // Moves held-back characters to `pending` applying end-of-text rules.
  void FinishDecode(DecodeState* state) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;

  BpeModel model_;
  bool byte_level_ = false;
  std::vector<NormalizerStep> normalizer_;
  bool has_normalizer_ = false;
  std::vector<PreTokenizerStep> pre_tokenizer_;
  std::vector<AddedToken> added_;
  AddedTokenMatcher raw_matcher_, normalized_matcher_;
  absl::flat_hash_map<std::string, int32_t> added_by_content_;
  std::vector<int32_t> prefix_ids_, suffix_ids_;
  DecoderPlan decoder_;
  std::vector<std::string_view> id_to_token_;
  std::vector<uint8_t> is_special_;
  std::optional<int32_t> bos_id_;
  std::vector<int32_t> eos_ids_;

 private:
  std::string Normalize(std::string_view text) const;
  // Pre-tokenizes `piece` and appends the BPE ids of every word.
  void EncodePiece(std::string_view piece, bool first_section, std::vector<int32_t>* out) const;
  void EncodeNormalizedText(std::string_view text, bool first_section, std::vector<int32_t>* out) const;
};

}  // namespace accullm::text
