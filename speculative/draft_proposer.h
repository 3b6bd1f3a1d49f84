// Where draft tokens come from: a small interface so the decoding loop (and later the
// scheduler) does not care whether a draft model or a lookup in the text proposes them.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace accullm::speculative {

class DraftProposer {
 public:
  virtual ~DraftProposer() = default;
  // Writes to `draft` up to `k` tokens that may follow `context` (prompt + every token
  // accepted so far, the newest last). Fewer, or none, when it has nothing worth proposing.
  // Consecutive calls see contexts that share a prefix (the accepted tokens); a proposer
  // with state (a KV cache) rolls it back to that prefix itself.
  virtual absl::Status Propose(absl::Span<const int32_t> context, int64_t k, std::vector<int32_t>& draft) = 0;
  virtual std::string_view name() const = 0;
};

}  // namespace accullm::speculative
