// The split regexes of real tokenizer.json files, as hand-written matchers over code points.
// We deliberately have no regex engine: each known pattern is recognised by its exact text
// and matched by code that follows Oniguruma's (backtracking, leftmost-first) semantics for
// that pattern; an unknown pattern is an error at load time.
#pragma once

#include <cstddef>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace accullm::text {

enum class SplitPattern {
  // GPT-2 (also the ByteLevel pre-tokenizer's built-in regex):
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  // Llama-3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
  //          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,
  // Qwen2/2.5/3: as Llama-3 but \p{N} (one digit per piece).
  kQwen2,
};

// The regex text as it appears in tokenizer.json (after JSON unescaping).
absl::StatusOr<SplitPattern> RecognizeSplitPattern(std::string_view regex);

// Appends the [begin, end) byte ranges of all non-overlapping matches in `text` (valid
// UTF-8), scanning left to right like a regex find-all.
void FindPatternMatches(SplitPattern pattern, std::string_view text, std::vector<std::pair<size_t, size_t>>* matches);

}  // namespace accullm::text
