#include "pipeline/kv_block_owners.h"

#include "absl/strings/str_cat.h"

namespace accullm::pipeline {

absl::Status KvBlockOwners::Claim(uint64_t seq, const std::vector<int32_t>& ids) {
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    absl::Status refused;
    if (id < 0 || static_cast<size_t>(id) >= blocks_.size()) {
      refused = absl::InvalidArgumentError(absl::StrCat(
          "sequence ", seq, ": KV block ", id, " is outside this stage's pool of ", blocks_.size(), " blocks"));
    } else if (blocks_[id].writer.has_value()) {
      refused = absl::InvalidArgumentError(
          absl::StrCat("sequence ", seq, ": KV block ", id, " is already held by sequence ", *blocks_[id].writer));
    } else if (blocks_[id].readers > 0) {
      refused = absl::InvalidArgumentError(absl::StrCat("sequence ", seq, ": KV block ", id, " is read by ",
                                                        blocks_[id].readers, " sequence(s) sharing a cached prefix"));
    }
    if (!refused.ok()) {
      Free(std::vector<int32_t>(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(i)));  // record nothing
      return refused;
    }
    blocks_[id].writer = seq;
    blocks_[id].complete = false;
    ++held_;
  }
  return absl::OkStatus();
}

absl::Status KvBlockOwners::Share(uint64_t seq, const std::vector<int32_t>& ids) {
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    absl::Status refused;
    if (id < 0 || static_cast<size_t>(id) >= blocks_.size()) {
      refused = absl::InvalidArgumentError(absl::StrCat(
          "sequence ", seq, ": cached KV block ", id, " is outside this stage's pool of ", blocks_.size(), " blocks"));
    } else if (!blocks_[id].complete) {
      refused = absl::InvalidArgumentError(
          absl::StrCat("sequence ", seq, ": cached KV block ", id, " does not hold a complete block of rows"));
    } else if (blocks_[id].writer == seq) {
      refused = absl::InvalidArgumentError(absl::StrCat("sequence ", seq, ": KV block ", id, " is its own"));
    }
    if (!refused.ok()) {
      Unshare(std::vector<int32_t>(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(i)));
      return refused;
    }
    if (!Held(blocks_[id])) ++held_;
    ++blocks_[id].readers;
  }
  return absl::OkStatus();
}

void KvBlockOwners::MarkComplete(const std::vector<int32_t>& ids) {
  for (int32_t id : ids) blocks_[id].complete = true;
}

absl::Status KvBlockOwners::Reopen(int32_t id) {
  if (blocks_[id].readers > 0)
    return absl::InvalidArgumentError(absl::StrCat("KV block ", id, " is read by ", blocks_[id].readers,
                                                   " sequence(s) sharing a cached prefix; it cannot be rolled back"));
  blocks_[id].complete = false;
  return absl::OkStatus();
}

void KvBlockOwners::Free(const std::vector<int32_t>& ids) {
  for (int32_t id : ids) {
    Block& b = blocks_[id];
    if (!b.writer.has_value()) continue;
    b.writer.reset();
    if (!Held(b)) --held_;
  }
}

void KvBlockOwners::Unshare(const std::vector<int32_t>& ids) {
  for (int32_t id : ids) {
    Block& b = blocks_[id];
    if (b.readers == 0) continue;
    --b.readers;
    if (!Held(b)) --held_;
  }
}

}  // namespace accullm::pipeline
