#include "model/end_of_sequence.h"

#include <algorithm>

namespace accullm::model {

std::vector<int32_t> EndOfSequenceIds(const ModelConfig& config, const text::Tokenizer* tokenizer) {
  std::vector<int32_t> eos;
  if (tokenizer != nullptr) eos = tokenizer->eos_ids();
  for (int64_t e : config.eos_token_ids)
    if (std::find(eos.begin(), eos.end(), e) == eos.end()) eos.push_back(static_cast<int32_t>(e));
  return eos;
}

}  // namespace accullm::model
