// Speculative decoding series (serve --draft PACK or --speculate ngram; absent otherwise):
// vLLM's names with the accullm_ prefix. Per verification step with a draft: the draft tokens
// verified, those accepted, and per draft position i (0-based) the steps whose draft reached
// i and those that had positions 0..i all accepted, so the acceptance rate at i is
// rate(accepted_per_pos{position=i}) / rate(draft_tokens_per_pos{position=i}).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "prometheus/counter.h"
#include "prometheus/registry.h"

namespace accullm::monitoring {

class SpecDecodeSeries {
 public:
  // Creates every series, the per-position ones for positions 0 .. max_draft_tokens - 1.
  SpecDecodeSeries(prometheus::Registry& registry, const std::string& model_name, int64_t max_draft_tokens);
  // One verification step: `drafted` (> 0) draft tokens, of which the first `accepted`.
  void Step(int64_t drafted, int64_t accepted);

 private:
  prometheus::Counter *drafts_, *draft_tokens_, *accepted_tokens_;
  std::vector<prometheus::Counter*> drafted_at_, accepted_at_;
};

}  // namespace accullm::monitoring
