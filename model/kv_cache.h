// Paged key/value cache. A KvBlockPool owns fixed-size blocks (block_size positions × every
// layer's K and V, FP32) on a free list; each sequence's KvCache maps its positions to
// blocks as it grows, so many sequences share one memory budget and a server can admit
// requests by counting free blocks (as vLLM's PagedAttention does).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/status.h"

namespace accullm {

// Bytes one position of K and V takes in `num_layers` layers of width `kv_dim` (the cache
// holds FP32): the one rule for the serve budget, the stage plan and the stage pools.
inline constexpr int64_t KvBytesPerPosition(int64_t num_layers, int64_t kv_dim) {
  return num_layers * 2 * kv_dim * static_cast<int64_t>(sizeof(float));
}

class KvBlockPool {
 public:
  // Holds layers [first_layer, first_layer + num_layers): a pipeline stage's pool covers only
  // its own layers while callers keep indexing layers by their global number.
  KvBlockPool(int64_t num_layers, int64_t kv_dim, int64_t block_size, int64_t num_blocks, int64_t first_layer = 0);

  int64_t block_size() const { return block_size_; }
  int64_t kv_dim() const { return kv_dim_; }
  int64_t num_layers() const { return num_layers_; }
  int64_t first_layer() const { return first_layer_; }
  int64_t num_blocks() const { return num_blocks_; }
  int64_t free_blocks() const;
  size_t bytes() const { return storage_.size() * sizeof(float); }

  // -1 when the pool is exhausted.
  int32_t Allocate();
  void Free(int32_t block);

  // K (or V) row of (global) `layer` at `offset` within `block`.
  float* k(int32_t block, int64_t layer, int64_t offset) { return Row(block, layer, 0, offset); }
  float* v(int32_t block, int64_t layer, int64_t offset) { return Row(block, layer, 1, offset); }

 private:
  float* Row(int32_t block, int64_t layer, int kv, int64_t offset) {
    return storage_.data() +
           (((static_cast<int64_t>(block) * num_layers_ + (layer - first_layer_)) * 2 + kv) * block_size_ + offset) *
               kv_dim_;
  }
  int64_t num_layers_, kv_dim_, block_size_, num_blocks_, first_layer_;
  std::vector<float> storage_;
  mutable std::mutex mu_;
  std::vector<int32_t> free_;
};

// One sequence's view of the cache: positions [0, length) are valid.
class KvCache {
 public:
  // Draws blocks from a shared pool (which must outlive the cache).
  KvCache(KvBlockPool* pool, int64_t capacity);
  // A private pool sized for `capacity` positions (single-sequence use: generate, bench).
  KvCache(int64_t num_layers, int64_t kv_dim, int64_t capacity);
  ~KvCache();
  KvCache(KvCache&&) noexcept;
  KvCache& operator=(KvCache&&) = delete;
  KvCache(const KvCache&) = delete;

  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }
  void set_length(int64_t n) { length_ = n; }
  int64_t blocks_held() const { return static_cast<int64_t>(blocks_.size()); }

  // Makes room for positions [0, n); ResourceExhausted when the pool has too few blocks.
  absl::Status Reserve(int64_t n);
  // Returns every block to the pool (the cache is empty afterwards).
  void Release();
  // Keeps positions [0, n) (n <= length()) and returns the blocks past them to the pool: a
  // rolled-back draft or a preempted tail is recomputed later.
  void Truncate(int64_t n);

  float* k(int64_t layer, int64_t pos) { return pool_->k(blocks_[pos / block_size_], layer, pos % block_size_); }
  float* v(int64_t layer, int64_t pos) { return pool_->v(blocks_[pos / block_size_], layer, pos % block_size_); }

 private:
  std::unique_ptr<KvBlockPool> owned_pool_;
  KvBlockPool* pool_;
  int64_t block_size_;
  int64_t capacity_;
  int64_t length_ = 0;
  std::vector<int32_t> blocks_;
};

}  // namespace accullm
