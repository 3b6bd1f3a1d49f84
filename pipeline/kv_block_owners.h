// Which live sequence holds each KV block of a stage. The scheduler decides which block ids a
// sequence uses (wire.h BatchItem::blocks) and the stage stores rows where it is told, so the
// stage checks what it is told: an id outside its storage would write out of bounds, and an id
// another live sequence holds would let one request read (and overwrite) another's KV. A
// coordinator bug or a forged batch is refused before anything runs, never obeyed.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"

namespace accullm::pipeline {

class KvBlockOwners {
 public:
  explicit KvBlockOwners(int64_t num_blocks) : owner_(static_cast<size_t>(num_blocks)) {}

  // Records `seq` as the holder of every id of `ids`; InvalidArgument (naming the id, and its
  // holder) when one lies outside [0, num_blocks) or is held already (by another sequence, by
  // `seq` itself, or twice in `ids`). Nothing is recorded then.
  absl::Status Claim(uint64_t seq, const std::vector<int32_t>& ids);
  // The ids are free again (they were claimed).
  void Free(const std::vector<int32_t>& ids);
  int64_t held() const { return held_; }

 private:
  std::vector<std::optional<uint64_t>> owner_;  // per block id
  int64_t held_ = 0;
};

}  // namespace accullm::pipeline
