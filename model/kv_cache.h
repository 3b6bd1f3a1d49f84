// Paged key/value cache (as vLLM's PagedAttention). Three concerns, three classes:
// - KvBlockStorage: the rows themselves, fixed-size blocks (block_size positions × every layer's
//   K and V, stored as a kernels::KvRowFormat: f32, f16, bf16 or int8 with a scale per
//   position and head) addressed by block id. It has no free list: who uses which block is
//   decided elsewhere.
// - KvBlockAllocator: which block ids are free. A deployment has exactly one: the scheduler's
//   (its zero-layer KvBlockPool, whose storage holds nothing), which admits requests by counting
//   free blocks and tells the pipeline stages which ids each sequence uses (pipeline/wire.h).
// - A sequence's map from positions to blocks (KvSequence), in two kinds that never mix:
//   KvCache allocates its blocks itself (the scheduler's count; single-sequence callers such as
//   bench, logits and quantization, over a private pool), KvBlockTable is handed its block ids
//   (a pipeline stage's view of a sequence: pipeline/pipeline_stage.h).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/status.h"
#include "kernels/kv_row_format.h"

namespace accullm::model {

// Bytes one position of K and V takes in `num_layers` layers stored as `format`: the one rule
// for the serve budget, the stage plan and the stage pools.
inline int64_t KvBytesPerPosition(int64_t num_layers, const kernels::KvRowFormat& format) {
  return num_layers * 2 * format.row_bytes();
}

class KvBlockStorage {
 public:
  // Holds layers [first_layer, first_layer + num_layers): a pipeline stage's storage covers only
  // its own layers while callers keep indexing layers by their global number.
  KvBlockStorage(int64_t num_layers, const kernels::KvRowFormat& format, int64_t block_size, int64_t num_blocks,
                 int64_t first_layer = 0);

  const kernels::KvRowFormat& format() const { return format_; }
  int64_t block_size() const { return block_size_; }
  int64_t kv_dim() const { return format_.kv_dim(); }
  int64_t num_layers() const { return num_layers_; }
  int64_t first_layer() const { return first_layer_; }
  int64_t num_blocks() const { return num_blocks_; }
  size_t bytes() const { return rows_.size() * sizeof(uint64_t); }

  // K (or V) row of (global) `layer` at `offset` within `block`: format().row_bytes() bytes.
  void* k(int32_t block, int64_t layer, int64_t offset) { return Row(block, layer, 0, offset); }
  void* v(int32_t block, int64_t layer, int64_t offset) { return Row(block, layer, 1, offset); }

 private:
  void* Row(int32_t block, int64_t layer, int kv, int64_t offset) {
    return reinterpret_cast<uint8_t*>(rows_.data()) +
           (((static_cast<int64_t>(block) * num_layers_ + (layer - first_layer_)) * 2 + kv) * block_size_ + offset) *
               row_bytes_;
  }
  kernels::KvRowFormat format_;
  int64_t num_layers_, row_bytes_, block_size_, num_blocks_, first_layer_;
  // 8-byte aligned bytes, zero-filled here on purpose: the whole budget is committed at start,
  // so a machine short of memory fails at start, not under load, and the resident memory
  // stays flat while serving (serve_soak_test checks it). A pipeline stage builds this after
  // its heartbeats start (pipeline_stage.cc): the fill can take seconds on a loaded machine.
  std::vector<uint64_t> rows_;
};

// The free list of block ids [0, num_blocks). Thread-safe: the scheduler's gauges read it.
class KvBlockAllocator {
 public:
  explicit KvBlockAllocator(int64_t num_blocks);
  int64_t num_blocks() const { return num_blocks_; }
  int64_t free_blocks() const;
  // -1 when every block is in use.
  int32_t Allocate();
  void Free(int32_t block);

 private:
  int64_t num_blocks_;
  mutable std::mutex mu_;
  std::vector<int32_t> free_;
};

// A storage and the allocator of its blocks: what KvCaches draw from. The scheduler's pool has
// zero layers (it only counts and names blocks; the stages hold the rows).
class KvBlockPool {
 public:
  KvBlockPool(int64_t num_layers, const kernels::KvRowFormat& format, int64_t block_size, int64_t num_blocks,
              int64_t first_layer = 0)
      : storage_(num_layers, format, block_size, num_blocks, first_layer), allocator_(num_blocks) {}

  KvBlockStorage& storage() { return storage_; }
  KvBlockAllocator& allocator() { return allocator_; }
  int64_t block_size() const { return storage_.block_size(); }
  int64_t kv_dim() const { return storage_.kv_dim(); }
  int64_t num_blocks() const { return allocator_.num_blocks(); }
  int64_t free_blocks() const { return allocator_.free_blocks(); }
  size_t bytes() const { return storage_.bytes(); }

 private:
  KvBlockStorage storage_;
  KvBlockAllocator allocator_;
};

// One sequence's positions [0, length) mapped onto blocks of a storage: position p lives in
// block blocks()[p / block_size] at offset p % block_size. The transformer reads and writes
// through k()/v() (per position: a division and an index, nothing virtual) and asks Cover
// once per batch segment.
class KvSequence {
 public:
  int64_t length() const { return length_; }
  void set_length(int64_t n) { length_ = n; }
  int64_t block_size() const { return block_size_; }
  int64_t blocks_held() const { return static_cast<int64_t>(blocks_.size()); }
  const std::vector<int32_t>& blocks() const { return blocks_; }

  // Makes positions [0, n) addressable: a KvCache allocates the blocks it lacks, a
  // KvBlockTable (whose blocks are handed to it) refuses when its table is too short.
  virtual absl::Status Cover(int64_t n) = 0;

  const kernels::KvRowFormat& format() const { return storage_->format(); }
  void* k(int64_t layer, int64_t pos) { return storage_->k(blocks_[pos / block_size_], layer, pos % block_size_); }
  void* v(int64_t layer, int64_t pos) { return storage_->v(blocks_[pos / block_size_], layer, pos % block_size_); }

 protected:
  KvSequence(KvBlockStorage* storage, int64_t block_size) : storage_(storage), block_size_(block_size) {}
  KvSequence(KvSequence&& o) noexcept;
  ~KvSequence() = default;  // not deleted through the base
  // Blocks needed for positions [0, n).
  int64_t BlocksFor(int64_t n) const { return (n + block_size_ - 1) / block_size_; }

  KvBlockStorage* storage_;
  int64_t block_size_;
  int64_t length_ = 0;
  std::vector<int32_t> blocks_;
};

// A sequence that allocates its own blocks from a pool's allocator.
class KvCache final : public KvSequence {
 public:
  // Draws blocks from a shared pool (which must outlive the cache).
  KvCache(KvBlockPool* pool, int64_t capacity);
  // A private pool sized for `capacity` positions (single-sequence use: bench, logits, quant).
  KvCache(int64_t num_layers, const kernels::KvRowFormat& format, int64_t capacity);
  ~KvCache();
  KvCache(KvCache&&) noexcept;
  KvCache& operator=(KvCache&&) = delete;
  KvCache(const KvCache&) = delete;

  int64_t capacity() const { return capacity_; }

  // Makes room for positions [0, n); OutOfRange past the capacity, ResourceExhausted when the
  // pool has too few blocks.
  absl::Status Reserve(int64_t n);
  absl::Status Cover(int64_t n) override { return Reserve(n); }
  // Returns every block to the pool (the cache is empty afterwards).
  void Release();
  // Keeps positions [0, n) (n <= length()) and returns the blocks past them to the pool: a
  // rolled-back draft or a preempted tail is recomputed later.
  void Truncate(int64_t n);
  // Prefix caching (the scheduler's): an empty cache starts on `ids`, blocks of this pool
  // holding positions [0, length) that it does not own (a cache of shared blocks counts them);
  // Disown hands every block id back to the caller instead of the pool (empty afterwards).
  void Adopt(const std::vector<int32_t>& ids, int64_t length);
  std::vector<int32_t> Disown();

 private:
  std::unique_ptr<KvBlockPool> owned_pool_;
  KvBlockAllocator* allocator_;
  int64_t capacity_;
};

// A sequence whose blocks are handed to it (a pipeline stage's view: the scheduler allocates,
// the wire names the ids). It trusts its caller to have checked the ids (in the storage, owned
// by no other sequence): pipeline/kv_block_owners.h does at the stage.
class KvBlockTable final : public KvSequence {
 public:
  explicit KvBlockTable(KvBlockStorage* storage) : KvSequence(storage, storage->block_size()) {}

  // The next blocks of the sequence, in position order.
  void Append(const std::vector<int32_t>& ids) { blocks_.insert(blocks_.end(), ids.begin(), ids.end()); }
  // Keeps positions [0, n) (n <= length()) and the ceil(n / block_size) blocks they use;
  // returns the ids dropped (their owner is no longer this sequence).
  std::vector<int32_t> Truncate(int64_t n);
  // FailedPrecondition when the table has fewer than ceil(n / block_size) blocks.
  absl::Status Cover(int64_t n) override;
};

}  // namespace accullm::model
