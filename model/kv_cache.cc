#include "model/kv_cache.h"

#include "absl/strings/str_cat.h"

namespace accullm {

KvBlockPool::KvBlockPool(int64_t num_layers, int64_t kv_dim, int64_t block_size, int64_t num_blocks,
                         int64_t first_layer)
    : num_layers_(num_layers), kv_dim_(kv_dim), block_size_(block_size), num_blocks_(num_blocks),
      first_layer_(first_layer), storage_(static_cast<size_t>(num_blocks * num_layers * 2 * block_size * kv_dim)) {
  free_.reserve(static_cast<size_t>(num_blocks));
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

int64_t KvBlockPool::free_blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(free_.size());
}

int32_t KvBlockPool::Allocate() {
  std::lock_guard<std::mutex> lock(mu_);
  if (free_.empty()) return -1;
  const int32_t b = free_.back();
  free_.pop_back();
  return b;
}

void KvBlockPool::Free(int32_t block) {
  std::lock_guard<std::mutex> lock(mu_);
  free_.push_back(block);
}

namespace {
constexpr int64_t kPrivateBlockSize = 16;
}

KvCache::KvCache(KvBlockPool* pool, int64_t capacity)
    : pool_(pool), block_size_(pool->block_size()), capacity_(capacity) {}

KvCache::KvCache(int64_t num_layers, int64_t kv_dim, int64_t capacity)
    : owned_pool_(std::make_unique<KvBlockPool>(num_layers, kv_dim, kPrivateBlockSize,
                                                (capacity + kPrivateBlockSize - 1) / kPrivateBlockSize)),
      pool_(owned_pool_.get()), block_size_(kPrivateBlockSize), capacity_(capacity) {}

KvCache::KvCache(KvCache&& o) noexcept
    : owned_pool_(std::move(o.owned_pool_)), pool_(o.pool_), block_size_(o.block_size_), capacity_(o.capacity_),
      length_(o.length_), blocks_(std::move(o.blocks_)) {
  o.blocks_.clear();
  o.length_ = 0;
}

KvCache::~KvCache() { Release(); }

absl::Status KvCache::Reserve(int64_t n) {
  if (n > capacity_) {
    return absl::OutOfRangeError(
        absl::StrCat("sequence of ", n, " tokens exceeds the context of ", capacity_, " positions"));
  }
  const int64_t need = (n + block_size_ - 1) / block_size_;
  while (static_cast<int64_t>(blocks_.size()) < need) {
    const int32_t b = pool_->Allocate();
    if (b < 0) return absl::ResourceExhaustedError("KV cache is full: no free blocks");
    blocks_.push_back(b);
  }
  return absl::OkStatus();
}

void KvCache::Truncate(int64_t n) {
  if (n < 0) n = 0;
  if (n < length_) length_ = n;
  const size_t keep = static_cast<size_t>((length_ + block_size_ - 1) / block_size_);
  while (blocks_.size() > keep) {
    pool_->Free(blocks_.back());
    blocks_.pop_back();
  }
}

void KvCache::Release() {
  if (pool_ != nullptr)
    for (int32_t b : blocks_) pool_->Free(b);
  blocks_.clear();
  length_ = 0;
}

}  // namespace accullm
