// Automatic prefix caching (as vLLM's): full KV blocks are kept, after their sequence is done
// with them, under a key of their contents, so a later sequence whose tokens begin the same way
// starts on those blocks instead of recomputing them.
//
// A block's key chains over everything before it: (the key of the block before, or a salt of
// the model and KV layout for the first block; the block's own tokens). The rows of a block
// depend on exactly that (rows are batch-invariant, and a KV row's bytes on its own token and
// prefix only: kernels/kv_row_format.h), so equal keys mean equal rows. The 64-bit key only
// finds a candidate: the entry keeps its tokens and which entry came before it (block id and a
// serial number never reused, so an evicted parent's id taken by other content does not
// match), and a lookup accepts it only when both are equal: a hash collision is a miss, never
// wrong rows.
//
// The cache owns the blocks it holds. They are immutable (the scheduler offers only blocks
// whose every position holds a final token, never an unverified draft row) and
// reference-counted: each sequence starting on a block, and its writer while it runs, holds a
// reference. An unreferenced block stays cached, last-used order, until the pool needs it back
// (Evict: the least recently released first). The scheduler's thread only: no lock.
#pragma once

#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

#include "absl/types/span.h"

namespace accullm::coordinator {

class PrefixCache {
 public:
  // `salt` names the model and the KV layout (block size, dtype): keys of another never match.
  PrefixCache(uint64_t salt, int64_t block_size) : salt_(salt), block_size_(block_size) {}

  int64_t block_size() const { return block_size_; }
  // The cached blocks holding the longest prefix of `tokens` in whole blocks, at most
  // `max_blocks` of them, in order; each gains a reference (the caller's).
  std::vector<int32_t> Lookup(absl::Span<const int32_t> tokens, int64_t max_blocks);
  // Offers block `id`, full with `tokens` (block_size of them), whose prefix ends with cached
  // block `parent` (-1: it is the first block). Returns the cached block for this content: `id`
  // itself, now cached with one reference (its writer's), or the block cached already for the
  // same content (then `id` stays the caller's and nothing is referenced); -1 when it cannot be
  // cached (`parent` is no longer cached, or another content has its key): the caller keeps
  // `id` and offers no later block of that sequence.
  int32_t Insert(int32_t parent, absl::Span<const int32_t> tokens, int32_t id);
  bool Holds(int32_t id) const { return entries_.count(id) != 0; }
  // Drops one reference; at zero the block waits in last-used order for eviction.
  void Unref(int32_t id);
  // Unreferenced cached blocks: the pool may take them back.
  int64_t evictable() const { return static_cast<int64_t>(lru_.size()); }
  int64_t size() const { return static_cast<int64_t>(entries_.size()); }
  // Removes the least recently released unreferenced block and returns its id (the caller
  // frees it); -1 when there is none.
  int32_t Evict();

 private:
  struct Entry {
    uint64_t key = 0, serial = 0, parent_serial = 0;
    int32_t parent = -1;
    std::vector<int32_t> tokens;
    int32_t refs = 0;
    std::list<int32_t>::iterator lru;  // valid when refs == 0
  };
  uint64_t Key(int32_t parent, absl::Span<const int32_t> tokens) const;
  // The entry cached for (parent, tokens), or null.
  Entry* Find(int32_t parent, absl::Span<const int32_t> tokens, int32_t* id);

  uint64_t salt_;
  int64_t block_size_;
  uint64_t next_serial_ = 1;
  std::unordered_map<int32_t, Entry> entries_;    // by block id
  std::unordered_map<uint64_t, int32_t> by_key_;  // key → block id
  std::list<int32_t> lru_;                        // unreferenced, least recently released first
};

}  // namespace accullm::coordinator
