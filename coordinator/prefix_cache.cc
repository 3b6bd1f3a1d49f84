#include "coordinator/prefix_cache.h"

#include <algorithm>

namespace accullm::coordinator {

namespace {

uint64_t Mix(uint64_t h, uint64_t v) {  // SplitMix64's finalizer over h ^ v
  uint64_t z = h ^ (v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

uint64_t PrefixCache::Key(int32_t parent, absl::Span<const int32_t> tokens) const {
  // The parent's key stands for everything before the block (it chained over it in turn).
  uint64_t h = parent < 0 ? salt_ : entries_.at(parent).key;
  for (int32_t t : tokens) h = Mix(h, static_cast<uint32_t>(t));
  return h;
}

PrefixCache::Entry* PrefixCache::Find(int32_t parent, absl::Span<const int32_t> tokens, int32_t* id) {
  auto k = by_key_.find(Key(parent, tokens));
  if (k == by_key_.end()) return nullptr;
  Entry& e = entries_.at(k->second);
  const uint64_t parent_serial = parent < 0 ? 0 : entries_.at(parent).serial;
  if (e.parent != parent || e.parent_serial != parent_serial ||
      !std::equal(e.tokens.begin(), e.tokens.end(), tokens.begin(), tokens.end()))
    return nullptr;  // a collision, or a child of an evicted block: not this content
  *id = k->second;
  return &e;
}

std::vector<int32_t> PrefixCache::Lookup(absl::Span<const int32_t> tokens, int64_t max_blocks) {
  std::vector<int32_t> hit;
  int32_t parent = -1;
  const int64_t blocks = std::min<int64_t>(max_blocks, static_cast<int64_t>(tokens.size()) / block_size_);
  for (int64_t j = 0; j < blocks; ++j) {
    int32_t id = -1;
    Entry* e =
        Find(parent, tokens.subspan(static_cast<size_t>(j * block_size_), static_cast<size_t>(block_size_)), &id);
    if (e == nullptr) break;
    if (e->refs++ == 0) lru_.erase(e->lru);
    hit.push_back(id);
    parent = id;
  }
  return hit;
}

int32_t PrefixCache::Insert(int32_t parent, absl::Span<const int32_t> tokens, int32_t id) {
  if (parent >= 0 && !Holds(parent)) return -1;
  if (static_cast<int64_t>(tokens.size()) != block_size_ || Holds(id)) return -1;
  int32_t cached = -1;
  if (Find(parent, tokens, &cached) != nullptr) return cached;
  const uint64_t key = Key(parent, tokens);
  if (by_key_.count(key) != 0) return -1;  // the key names other content: this one stays out
  Entry e;
  e.key = key;
  e.serial = next_serial_++;
  e.parent = parent;
  e.parent_serial = parent < 0 ? 0 : entries_.at(parent).serial;
  e.tokens.assign(tokens.begin(), tokens.end());
  e.refs = 1;
  entries_.emplace(id, std::move(e));
  by_key_.emplace(key, id);
  return id;
}

void PrefixCache::Unref(int32_t id) {
  Entry& e = entries_.at(id);
  if (--e.refs == 0) e.lru = lru_.insert(lru_.end(), id);
}

int32_t PrefixCache::Evict() {
  if (lru_.empty()) return -1;
  const int32_t id = lru_.front();
  lru_.pop_front();
  // Its descendants stay until their own turn: unreachable now (a lookup walks from the
  // first block), they are unreferenced too, or become so, and go the same way.
  by_key_.erase(entries_.at(id).key);
  entries_.erase(id);
  return id;
}

}  // namespace accullm::coordinator
