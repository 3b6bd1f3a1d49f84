// Per-sequence key/value cache: for every layer, K and V rows [position, kv_heads * head_dim]
// in FP32. Grows on demand up to `capacity` positions.
#pragma once

#include <cstdint>
#include <vector>

namespace accullm {

class KvCache {
 public:
  KvCache(int64_t num_layers, int64_t kv_dim, int64_t capacity)
      : kv_dim_(kv_dim), capacity_(capacity), k_(num_layers), v_(num_layers) {}

  int64_t capacity() const { return capacity_; }
  int64_t kv_dim() const { return kv_dim_; }
  // Positions [0, length) hold valid entries.
  int64_t length() const { return length_; }
  void set_length(int64_t n) { length_ = n; }

  // Makes room for positions [0, n) in every layer (n <= capacity).
  void Reserve(int64_t n) {
    for (size_t l = 0; l < k_.size(); ++l) {
      if (static_cast<int64_t>(k_[l].size()) < n * kv_dim_) {
        k_[l].resize(static_cast<size_t>(n * kv_dim_));
        v_[l].resize(static_cast<size_t>(n * kv_dim_));
      }
    }
  }
  float* k(int64_t layer, int64_t pos) { return k_[layer].data() + pos * kv_dim_; }
  float* v(int64_t layer, int64_t pos) { return v_[layer].data() + pos * kv_dim_; }

 private:
  int64_t kv_dim_;
  int64_t capacity_;
  int64_t length_ = 0;
  std::vector<std::vector<float>> k_, v_;
};

}  // namespace accullm
