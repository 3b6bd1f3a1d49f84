// Which token ids end a sequence: one rule for every generation path.
#pragma once

#include <cstdint>
#include <vector>

#include "model/model_config.h"
#include "text/tokenizer.h"

namespace accullm::model {

// The tokenizer's EOS tokens (when there is a tokenizer) and config.json's eos_token_id(s),
// each once.
std::vector<int32_t> EndOfSequenceIds(const ModelConfig& config, const text::Tokenizer* tokenizer);

}  // namespace accullm::model
