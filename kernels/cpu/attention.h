// Causal attention of one query head over a sequence's cached keys and values: scores
// q·k_j · scale for positions j in [0, last_pos], softmax, then the probability-weighted sum
// of the v_j. Grouped-query attention is the caller's choice of which K/V head's columns
// (`kv_column`) a query head reads. The cache may be paged: the kernel reaches position j's
// rows through per-position row pointers, so it knows nothing of blocks (or of model/).
#pragma once

#include <cstdint>

namespace accullm::kernels {

// One sequence's cached K and V rows of one layer: k_rows[j] and v_rows[j] point at position
// j's rows (every KV head, back to back); valid for j in [0, last_pos] of the call.
struct KvRows {
  const float* const* k_rows = nullptr;
  const float* const* v_rows = nullptr;
};

// out[0, head_dim) = softmax_j(q · K[j][kv_column ..] · scale) · V[j][kv_column ..] over
// j in [0, last_pos]. `scores` is the caller's scratch of at least last_pos + 1 floats (reused
// across calls so the hot loop does not allocate).
void CausalAttentionHead(const float* q, const KvRows& kv, int64_t kv_column, int64_t last_pos, int64_t head_dim,
                         float scale, float* scores, float* out);
void CausalAttentionHeadScalar(const float* q, const KvRows& kv, int64_t kv_column, int64_t last_pos, int64_t head_dim,
                               float scale, float* scores, float* out);

}  // namespace accullm::kernels
