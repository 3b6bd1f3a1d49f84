#include "kernels/cpu/attention.h"

#include <algorithm>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/softmax.h"

namespace accullm::kernels {

// Dot products in float in dimension order, scaled after the sum, and the V sum accumulated
// position by position: the order the fixture's reference logits were checked with.
void CausalAttentionHeadScalar(const float* q, const KvRows& kv, int64_t kv_column, int64_t last_pos,
                               int64_t head_dim, float scale, float* scores, float* out) {
  for (int64_t j = 0; j <= last_pos; ++j) {
    const float* kj = kv.k_rows[j] + kv_column;
    float s = 0.f;
    for (int64_t d = 0; d < head_dim; ++d) s += q[d] * kj[d];
    s *= scale;
    scores[j] = s;
  }
  SoftmaxScalar(scores, last_pos + 1);
  std::fill_n(out, head_dim, 0.f);
  for (int64_t j = 0; j <= last_pos; ++j) {
    const float p = scores[j];
    const float* vj = kv.v_rows[j] + kv_column;
    for (int64_t d = 0; d < head_dim; ++d) out[d] += p * vj[d];
  }
}

void CausalAttentionHead(const float* q, const KvRows& kv, int64_t kv_column, int64_t last_pos, int64_t head_dim,
                         float scale, float* scores, float* out) {
  switch (ActiveIsa()) {
    case Isa::kAvx512:
    case Isa::kAvx2:  // no SIMD variant yet
    case Isa::kScalar: return CausalAttentionHeadScalar(q, kv, kv_column, last_pos, head_dim, scale, scores, out);
  }
}

}  // namespace accullm::kernels
