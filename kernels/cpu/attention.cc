#include "kernels/cpu/attention.h"

#include <algorithm>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/softmax.h"

namespace accullm::kernels {

// Dot products in float in dimension order, scaled after the sum, and the V sum accumulated
// position by position: the order the fixture's reference logits were checked with.
void CausalAttentionHeadScalar(const float* q, const KvRows& kv, int64_t kv_column, int64_t last_pos, int64_t head_dim,
                               float scale, float* scores, float* out) {
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

#if ACCULLM_HAVE_X86_SIMD
namespace {

// 8 lanes of q·k_j (FMA, then one fixed horizontal sum) and of the V sum; the softmax between
// them is the scalar one. Float results differ from the reference by rounding only (bounded
// in ops_test); every row of a batch runs this same function, so batch invariance holds.
__attribute__((target("avx2,fma"))) void CausalAttentionHeadAvx2(const float* q, const KvRows& kv, int64_t kv_column,
                                                                 int64_t last_pos, int64_t head_dim, float scale,
                                                                 float* scores, float* out) {
  const int64_t d8 = head_dim / 8 * 8;
  for (int64_t j = 0; j <= last_pos; ++j) {
    const float* kj = kv.k_rows[j] + kv_column;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t d = 0; d < d8; d += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(kj + d), acc);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    float s = _mm_cvtss_f32(h);
    for (int64_t d = d8; d < head_dim; ++d) s += q[d] * kj[d];
    scores[j] = s * scale;
  }
  SoftmaxScalar(scores, last_pos + 1);
  int64_t d = 0;
  for (; d + 16 <= head_dim; d += 16) {  // two registers of the output at a time
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (int64_t j = 0; j <= last_pos; ++j) {
      const __m256 p = _mm256_set1_ps(scores[j]);
      const float* vj = kv.v_rows[j] + kv_column + d;
      a0 = _mm256_fmadd_ps(p, _mm256_loadu_ps(vj), a0);
      a1 = _mm256_fmadd_ps(p, _mm256_loadu_ps(vj + 8), a1);
    }
    _mm256_storeu_ps(out + d, a0);
    _mm256_storeu_ps(out + d + 8, a1);
  }
  for (; d + 8 <= head_dim; d += 8) {
    __m256 a = _mm256_setzero_ps();
    for (int64_t j = 0; j <= last_pos; ++j)
      a = _mm256_fmadd_ps(_mm256_set1_ps(scores[j]), _mm256_loadu_ps(kv.v_rows[j] + kv_column + d), a);
    _mm256_storeu_ps(out + d, a);
  }
  for (; d < head_dim; ++d) {
    float a = 0.f;
    for (int64_t j = 0; j <= last_pos; ++j) a += scores[j] * kv.v_rows[j][kv_column + d];
    out[d] = a;
  }
}

}  // namespace
#endif

void CausalAttentionHead(const float* q, const KvRows& kv, int64_t kv_column, int64_t last_pos, int64_t head_dim,
                         float scale, float* scores, float* out) {
  switch (ActiveIsa()) {
    case Isa::kAvx512:  // the AVX2 variant: attention is a small share of decode at these lengths
    case Isa::kAvx2:
#if ACCULLM_HAVE_X86_SIMD
      return CausalAttentionHeadAvx2(q, kv, kv_column, last_pos, head_dim, scale, scores, out);
#else
      [[fallthrough]];
#endif
    case Isa::kScalar: return CausalAttentionHeadScalar(q, kv, kv_column, last_pos, head_dim, scale, scores, out);
  }
}

}  // namespace accullm::kernels
