// The BPE model of tokenizer.json: vocabulary, ranked merges, byte fallback, unk fusing.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "boost/json.hpp"

namespace accullm::text {

class BpeModel {
 public:
  // Builds from the "model" object. In byte-level mode every vocabulary entry is re-keyed
  // from GPT-2's printable byte alphabet to the raw bytes it stands for, so words are merged
  // directly over UTF-8 bytes with no per-call remapping.
  static absl::StatusOr<BpeModel> FromJson(const boost::json::object& model, bool byte_level);

  // Appends the ids of one pre-tokenized word (raw bytes in byte-level mode, else UTF-8).
  void Encode(std::string_view word, std::vector<int32_t>* out) const;

  // Id of a model-space string (raw bytes in byte-level mode).
  std::optional<int32_t> Find(std::string_view key) const;
  // Tokens as written in tokenizer.json, indexed by id (empty where the vocab has a gap).
  const std::vector<std::string>& tokens() const { return tokens_; }
  std::optional<int32_t> unk_id() const { return unk_id_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t merged;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  // Initial symbols of `word` (characters, or bytes), with byte fallback / unk applied.
  void InitialSymbols(std::string_view word, std::vector<int32_t>* syms) const;
  void MergeSymbols(std::vector<int32_t>* syms) const;

  bool byte_level_ = false;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  std::optional<int32_t> unk_id_;
  absl::flat_hash_map<std::string, int32_t> vocab_;  // model-space key -> id
  absl::flat_hash_map<uint64_t, Merge> merges_;
  std::vector<std::string> tokens_;
  // Byte-level: id of each byte's symbol. Byte fallback: id of "<0xNN>". -1 when absent.
  std::array<int32_t, 256> byte_ids_;
};

// GPT-2's byte <-> printable code point table used by ByteLevel components.
char32_t ByteToUnicode(uint8_t b);
// -1 for code points that stand for no byte.
int UnicodeToByte(char32_t cp);

}  // namespace accullm::text
