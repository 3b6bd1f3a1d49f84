// Causal attention of query heads over a sequence's cached keys and values: scores
// q·k_j · scale for positions j in [0, last_pos], softmax, then the probability-weighted sum
// of the v_j. Grouped-query attention: the query heads that share one K/V head (`kv_column`)
// run as one group, so each cached K/V row is fetched from memory once for all of them. The
// cache may be paged: the kernel reaches position j's rows through per-position row
// pointers, so it knows nothing of blocks (or of model/).
//
// The scalar reference is the two-pass form (all scores, softmax, then the V sum). The SIMD
// variants are one pass over the positions in fixed blocks of kAttentionBlock (online
// softmax: a running max and sum per head, the partial output rescaled when the max grows),
// with vectorized dot products, exp (vector_exp.h) and V sums; their results are within
// ops_test's bound of the reference. A head's bits depend only on its q, the rows and
// last_pos: never on the group it ran in, the batch, or which call (prefill or decode) ran
// it, because the blocks start at position 0 whatever the call.
#pragma once

#include <cstdint>

#include "kernels/kv_row_format.h"

namespace accullm::kernels {

// Positions per block of the SIMD variants: a block's K and V rows of one head (32 × 128
// dims × 4 B = 16 KB each at head_dim 128) stay in L1 while every head of the group reads them.
inline constexpr int64_t kAttentionBlock = 32;

// One sequence's cached K and V rows of one layer: k_rows[j] and v_rows[j] point at position
// j's stored rows (every KV head's record, back to back, in `dtype`'s layout); valid for j in
// [0, last_pos] of the call.
struct KvRows {
  const void* const* k_rows = nullptr;
  const void* const* v_rows = nullptr;
  KvDType dtype = KvDType::kF32;
};

// For each of the `num_heads` query heads h at q + h·head_dim (all reading K/V head
// `kv_head`): out[h·head_dim, +head_dim) = softmax_j(q_h · K[j][kv_head] · scale) ·
// V[j][kv_head] over j in [0, last_pos]. `scores` is the caller's scratch of at least
// last_pos + 1 floats (reused across calls so the hot loop does not allocate; only the scalar
// reference needs that much). out must not overlap q.
void CausalAttentionGroup(const float* q, int64_t num_heads, const KvRows& kv, int64_t kv_head, int64_t last_pos,
                          int64_t head_dim, float scale, float* scores, float* out);
void CausalAttentionGroupScalar(const float* q, int64_t num_heads, const KvRows& kv, int64_t kv_head, int64_t last_pos,
                                int64_t head_dim, float scale, float* scores, float* out);

// One query head: CausalAttentionGroup with num_heads = 1 (the same bits).
void CausalAttentionHead(const float* q, const KvRows& kv, int64_t kv_head, int64_t last_pos, int64_t head_dim,
                         float scale, float* scores, float* out);
void CausalAttentionHeadScalar(const float* q, const KvRows& kv, int64_t kv_head, int64_t last_pos, int64_t head_dim,
                               float scale, float* scores, float* out);

// The FP32 values of head `kv_head` of rows[0, n) into out[j·head_dim, +head_dim): what the
// SIMD variants read from each block, at the active ISA level. Bit-identical to
// DecodeKvHeadScalar row by row at every level (the conversions are exact, int8's one
// multiply is correctly rounded): ops_test checks it.
void DecodeKvHeadRows(KvDType t, const void* const* rows, int64_t n, int64_t kv_head, int64_t head_dim, float* out);

}  // namespace accullm::kernels
