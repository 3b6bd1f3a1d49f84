#include "pipeline/kv_block_owners.h"

#include "absl/strings/str_cat.h"

namespace accullm::pipeline {

absl::Status KvBlockOwners::Claim(uint64_t seq, const std::vector<int32_t>& ids) {
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    absl::Status refused;
    if (id < 0 || static_cast<size_t>(id) >= owner_.size()) {
      refused = absl::InvalidArgumentError(absl::StrCat("sequence ", seq, ": KV block ", id,
                                                        " is outside this stage's pool of ", owner_.size(), " blocks"));
    } else if (owner_[id].has_value()) {
      refused = absl::InvalidArgumentError(
          absl::StrCat("sequence ", seq, ": KV block ", id, " is already held by sequence ", *owner_[id]));
    }
    if (!refused.ok()) {
      Free(std::vector<int32_t>(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(i)));  // record nothing
      return refused;
    }
    owner_[id] = seq;
    ++held_;
  }
  return absl::OkStatus();
}

void KvBlockOwners::Free(const std::vector<int32_t>& ids) {
  for (int32_t id : ids) {
    if (owner_[id].has_value()) --held_;
    owner_[id].reset();
  }
}

}  // namespace accullm::pipeline
