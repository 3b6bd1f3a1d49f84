// Which live sequences hold each KV block of a stage. The scheduler decides which block ids a
// sequence uses (wire.h BatchItem::blocks, NewSequence::prefix_blocks) and the stage stores
// rows where it is told, so the stage checks what it is told: an id outside its storage would
// write out of bounds, and an id another live sequence writes would let one request read (and
// overwrite) another's KV. A coordinator bug or a forged batch is refused before anything
// runs, never obeyed.
//
// Prefix caching shares blocks on purpose, read-only: a block is either written by one
// sequence (Claim: no one else holds it) or read by any number (Share: only a block whose
// every row was written, by a writer still live or gone; its contents stay when its holders
// leave). A shared block is never written again until it is claimed afresh, which needs every
// reader gone.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"

namespace accullm::pipeline {

class KvBlockOwners {
 public:
  explicit KvBlockOwners(int64_t num_blocks) : blocks_(static_cast<size_t>(num_blocks)) {}

  // Records `seq` as the writer of every id of `ids`; InvalidArgument (naming the id, and its
  // holder) when one lies outside [0, num_blocks) or is held already (written by another
  // sequence, by `seq` itself, twice in `ids`, or read by any). Nothing is recorded then.
  absl::Status Claim(uint64_t seq, const std::vector<int32_t>& ids);
  // Records `seq` as a reader of every id of `ids`; InvalidArgument when one lies outside the
  // pool, is not complete (MarkComplete since its last Claim), or `seq` writes it. Nothing is
  // recorded then.
  absl::Status Share(uint64_t seq, const std::vector<int32_t>& ids);
  // Every row of these (claimed) blocks has been written: they may be shared.
  void MarkComplete(const std::vector<int32_t>& ids);
  // A rollback into the block: its rows past the cut will be written again. InvalidArgument
  // when someone reads it (it must not change under them).
  absl::Status Reopen(int32_t id);
  // The writer's / a reader's hold ends (the ids were claimed / shared).
  void Free(const std::vector<int32_t>& ids);
  void Unshare(const std::vector<int32_t>& ids);
  // Blocks some live sequence writes or reads.
  int64_t held() const { return held_; }

 private:
  struct Block {
    std::optional<uint64_t> writer;
    int32_t readers = 0;
    bool complete = false;
  };
  bool Held(const Block& b) const { return b.writer.has_value() || b.readers > 0; }
  std::vector<Block> blocks_;  // per block id
  int64_t held_ = 0;
};

}  // namespace accullm::pipeline
