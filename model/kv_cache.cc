#include "model/kv_cache.h"

#include "absl/strings/str_cat.h"

namespace accullm::model {

KvBlockStorage::KvBlockStorage(int64_t num_layers, const kernels::KvRowFormat& format, int64_t block_size,
                               int64_t num_blocks, int64_t first_layer)
    : format_(format), num_layers_(num_layers), row_bytes_(format.row_bytes()), block_size_(block_size),
      num_blocks_(num_blocks), first_layer_(first_layer),
      rows_(static_cast<size_t>((num_blocks * num_layers * 2 * block_size * row_bytes_ + 7) / 8)) {}

KvBlockAllocator::KvBlockAllocator(int64_t num_blocks) : num_blocks_(num_blocks) {
  free_.reserve(static_cast<size_t>(num_blocks));
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

int64_t KvBlockAllocator::free_blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(free_.size());
}

int32_t KvBlockAllocator::Allocate() {
  std::lock_guard<std::mutex> lock(mu_);
  if (free_.empty()) return -1;
  const int32_t b = free_.back();
  free_.pop_back();
  return b;
}

void KvBlockAllocator::Free(int32_t block) {
  std::lock_guard<std::mutex> lock(mu_);
  free_.push_back(block);
}

KvSequence::KvSequence(KvSequence&& o) noexcept
    : storage_(o.storage_), block_size_(o.block_size_), length_(o.length_), blocks_(std::move(o.blocks_)) {
  o.blocks_.clear();
  o.length_ = 0;
}

namespace {
constexpr int64_t kPrivateBlockSize = 16;
}

KvCache::KvCache(KvBlockPool* pool, int64_t capacity)
    : KvSequence(&pool->storage(), pool->block_size()), allocator_(&pool->allocator()), capacity_(capacity) {}

KvCache::KvCache(int64_t num_layers, const kernels::KvRowFormat& format, int64_t capacity)
    : KvSequence(nullptr, kPrivateBlockSize),
      owned_pool_(std::make_unique<KvBlockPool>(num_layers, format, kPrivateBlockSize,
                                                (capacity + kPrivateBlockSize - 1) / kPrivateBlockSize)),
      allocator_(&owned_pool_->allocator()), capacity_(capacity) {
  storage_ = &owned_pool_->storage();  // the base is built before the pool it points into
}

KvCache::KvCache(KvCache&& o) noexcept
    : KvSequence(std::move(o)), owned_pool_(std::move(o.owned_pool_)), allocator_(o.allocator_),
      capacity_(o.capacity_) {}

KvCache::~KvCache() { Release(); }

absl::Status KvCache::Reserve(int64_t n) {
  if (n > capacity_) {
    return absl::OutOfRangeError(
        absl::StrCat("sequence of ", n, " tokens exceeds the context of ", capacity_, " positions"));
  }
  const int64_t need = BlocksFor(n);
  while (static_cast<int64_t>(blocks_.size()) < need) {
    const int32_t b = allocator_->Allocate();
    if (b < 0) return absl::ResourceExhaustedError("KV cache is full: no free blocks");
    blocks_.push_back(b);
  }
  return absl::OkStatus();
}

void KvCache::Truncate(int64_t n) {
  if (n < 0) n = 0;
  if (n < length_) length_ = n;
  const size_t keep = static_cast<size_t>(BlocksFor(length_));
  while (blocks_.size() > keep) {
    allocator_->Free(blocks_.back());
    blocks_.pop_back();
  }
}

void KvCache::Adopt(const std::vector<int32_t>& ids, int64_t length) {
  blocks_ = ids;
  length_ = length;
}

std::vector<int32_t> KvCache::Disown() {
  std::vector<int32_t> ids = std::move(blocks_);
  blocks_.clear();
  length_ = 0;
  return ids;
}

void KvCache::Release() {
  if (allocator_ != nullptr)
    for (int32_t b : blocks_) allocator_->Free(b);
  blocks_.clear();
  length_ = 0;
}

std::vector<int32_t> KvBlockTable::Truncate(int64_t n) {
  if (n < 0) n = 0;
  if (n < length_) length_ = n;
  const size_t keep = static_cast<size_t>(BlocksFor(length_));
  std::vector<int32_t> dropped;
  if (blocks_.size() > keep) {
    dropped.assign(blocks_.begin() + static_cast<std::ptrdiff_t>(keep), blocks_.end());
    blocks_.resize(keep);
  }
  return dropped;
}

absl::Status KvBlockTable::Cover(int64_t n) {
  if (blocks_held() < BlocksFor(n))
    return absl::FailedPreconditionError(absl::StrCat("KV block table of ", blocks_held(), " blocks (", block_size_,
                                                      " positions each) cannot hold ", n, " positions"));
  return absl::OkStatus();
}

}  // namespace accullm::model
