// Golden mode's draft must be a pack of the model that verifies it: the same tokenizer and,
// for its drafts to be accepted, nearly the same distribution. The pack's manifest records
// the hash of the model it was quantized from (model/pack/source_hash.h); the target's own
// hash must equal it. Anything else is refused with a message that says what differs.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "model/transformer.h"

namespace accullm::speculative {

absl::Status CheckDraftMatchesTarget(const model::Transformer& draft, const std::string& draft_dir,
                                     const model::Transformer& target, const std::string& target_dir);

}  // namespace accullm::speculative
