#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/dtype.h"
#include "common/grow_buffer.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/softmax.h"
#include "kernels/cpu/vector_exp_simd.h"
#include "kernels/kv_row_format.h"

namespace accullm::kernels {

namespace {

// Head `kv_head` of a stored row as FP32: in place for f32 rows (the bits the fixture's
// reference was checked with), else decoded into `buffer` (head_dim floats).
const float* HeadRow(const KvRows& kv, const void* row, int64_t kv_head, int64_t head_dim, float* buffer) {
  if (kv.dtype == KvDType::kF32) return static_cast<const float*>(row) + kv_head * head_dim;
  DecodeKvHeadScalar(kv.dtype, row, kv_head, head_dim, buffer);
  return buffer;
}

void DecodeKvHeadRowsScalar(KvDType t, const void* const* rows, int64_t n, int64_t kv_head, int64_t head_dim,
                            float* out) {
  for (int64_t j = 0; j < n; ++j) DecodeKvHeadScalar(t, rows[j], kv_head, head_dim, out + j * head_dim);
}


}  // namespace

// Dot products in float in dimension order, scaled after the sum, and the V sum accumulated
// position by position: the order the fixture's reference logits were checked with.
void CausalAttentionHeadScalar(const float* q, const KvRows& kv, int64_t kv_head, int64_t last_pos, int64_t head_dim,
                               float scale, float* scores, float* out) {
  thread_local std::vector<float> decoded;  // one row, grown per thread (a warm call allocates nothing)
  float* buffer = GrowBuffer(decoded, head_dim);
  for (int64_t j = 0; j <= last_pos; ++j) {
    const float* kj = HeadRow(kv, kv.k_rows[j], kv_head, head_dim, buffer);
    float s = 0.f;
    for (int64_t d = 0; d < head_dim; ++d) s += q[d] * kj[d];
    s *= scale;
    scores[j] = s;
  }
  SoftmaxScalar(scores, last_pos + 1);
  std::fill_n(out, head_dim, 0.f);
  for (int64_t j = 0; j <= last_pos; ++j) {
    const float p = scores[j];
    const float* vj = HeadRow(kv, kv.v_rows[j], kv_head, head_dim, buffer);
    for (int64_t d = 0; d < head_dim; ++d) out[d] += p * vj[d];
  }
}

void CausalAttentionGroupScalar(const float* q, int64_t num_heads, const KvRows& kv, int64_t kv_head, int64_t last_pos,
                                int64_t head_dim, float scale, float* scores, float* out) {
  for (int64_t h = 0; h < num_heads; ++h)
    CausalAttentionHeadScalar(q + h * head_dim, kv, kv_head, last_pos, head_dim, scale, scores, out + h * head_dim);
}

#if ACCULLM_HAVE_X86_SIMD
namespace {

// Query heads per pass over a block: their block scores live on the stack (8 × 32 floats).
// A larger group (MQA) runs in passes of 8, each re-reading the rows from cache, not memory.
constexpr int64_t kMaxGroupPass = 8;

// The per-ISA pieces of one block, called once per block per head: the online-softmax
// bookkeeping between them is shared (OnlineAttention below) and scalar.
struct Avx2Ops {
  // p[g·kAttentionBlock + j] = q_g · k[j] · scale (k[j]: the block's j-th K row of the head,
  // FP32). Two accumulators (chunks alternate), a masked tail chunk, then (a0 + a1) and the
  // fixed HorizontalSum8: an order set by head_dim.
  __attribute__((target("avx2,fma"))) static void Scores(const float* q, int64_t heads, const float* const* k_block,
                                                         int64_t nb, int64_t hd, float scale, float* p) {
    const __m256i tail = simd_exp::TailMask8(hd % 8);
    const int64_t d8 = hd / 8 * 8;
    for (int64_t j = 0; j < nb; ++j) {
      const float* k = k_block[j];
      for (int64_t g = 0; g < heads; ++g) {
        const float* qg = q + g * hd;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        int64_t d = 0;
        for (; d + 16 <= d8; d += 16) {
          a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qg + d), _mm256_loadu_ps(k + d), a0);
          a1 = _mm256_fmadd_ps(_mm256_loadu_ps(qg + d + 8), _mm256_loadu_ps(k + d + 8), a1);
        }
        if (d < d8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qg + d), _mm256_loadu_ps(k + d), a0);
        if (d8 < hd) a1 = _mm256_fmadd_ps(_mm256_maskload_ps(qg + d8, tail), _mm256_maskload_ps(k + d8, tail), a1);
        p[g * kAttentionBlock + j] = simd_exp::HorizontalSum8(_mm256_add_ps(a0, a1)) * scale;
      }
    }
  }
  // out[j·hd + d] = head `head` of rows[j] as FP32 (DecodeKvHeadRows). Tails convert one
  // value at a time with the scalar conversions, which give the same bits.
  __attribute__((target("avx2,fma,f16c"))) static void DecodeRows(KvDType t, const void* const* rows, int64_t n,
                                                                  int64_t head, int64_t hd, float* out) {
    const int64_t d8 = hd / 8 * 8;
    for (int64_t j = 0; j < n; ++j) {
      const uint8_t* rec = KvHeadRecord(t, rows[j], head, hd);
      float* o = out + j * hd;
      switch (t) {
        case KvDType::kF32: std::memcpy(o, rec, static_cast<size_t>(hd) * sizeof(float)); break;
        case KvDType::kF16: {
          const auto* h = reinterpret_cast<const uint16_t*>(rec);
          for (int64_t d = 0; d < d8; d += 8)
            _mm256_storeu_ps(o + d, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + d))));
          for (int64_t d = d8; d < hd; ++d) o[d] = F16ToF32(h[d]);
          break;
        }
        case KvDType::kBF16: {
          const auto* h = reinterpret_cast<const uint16_t*>(rec);
          for (int64_t d = 0; d < d8; d += 8) {
            const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + d)));
            _mm256_storeu_ps(o + d, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
          }
          for (int64_t d = d8; d < hd; ++d) o[d] = Bf16ToF32(h[d]);
          break;
        }
        case KvDType::kInt8: {
          float scale;
          std::memcpy(&scale, rec, sizeof(float));
          const auto* c = reinterpret_cast<const int8_t*>(rec + sizeof(float));
          const __m256 vs = _mm256_set1_ps(scale);
          for (int64_t d = 0; d < d8; d += 8) {
            const __m256i w = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(c + d)));
            _mm256_storeu_ps(o + d, _mm256_mul_ps(_mm256_cvtepi32_ps(w), vs));
          }
          for (int64_t d = d8; d < hd; ++d) o[d] = static_cast<float>(c[d]) * scale;
          break;
        }
      }
    }
  }
  // p[j] ← exp(p[j] − m), j < nb; returns their sum (one register of lanes, fixed tree).
  __attribute__((target("avx2,fma"))) static float ExpShiftSum(float* p, int64_t nb, float m) {
    const __m256 vm = _mm256_set1_ps(m);
    __m256 sum = _mm256_setzero_ps();
    for (int64_t j = 0; j < nb; j += 8) {
      const __m256i mask = simd_exp::TailMask8(std::min<int64_t>(8, nb - j));
      const __m256 e =
          _mm256_and_ps(simd_exp::Exp8(_mm256_sub_ps(_mm256_maskload_ps(p + j, mask), vm)), _mm256_castsi256_ps(mask));
      _mm256_maskstore_ps(p + j, mask, e);
      sum = _mm256_add_ps(sum, e);
    }
    return simd_exp::HorizontalSum8(sum);
  }
  // o[d] ← o[d]·c.
  __attribute__((target("avx2,fma"))) static void Scale(float* o, int64_t hd, float c) {
    const __m256 vc = _mm256_set1_ps(c);
    int64_t d = 0;
    for (; d + 8 <= hd; d += 8) _mm256_storeu_ps(o + d, _mm256_mul_ps(_mm256_loadu_ps(o + d), vc));
    for (; d < hd; ++d) o[d] *= c;
  }
  // o[d] += Σ_j p[j] · v[j][d], position by position (one FMA chain per lane).
  __attribute__((target("avx2,fma"))) static void AddValues(const float* p, const float* const* v_block, int64_t nb,
                                                            int64_t hd, float* o) {
    int64_t d = 0;
    for (; d + 16 <= hd; d += 16) {
      __m256 a0 = _mm256_loadu_ps(o + d), a1 = _mm256_loadu_ps(o + d + 8);
      for (int64_t j = 0; j < nb; ++j) {
        const __m256 pj = _mm256_set1_ps(p[j]);
        const float* v = v_block[j] + d;
        a0 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(v), a0);
        a1 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(v + 8), a1);
      }
      _mm256_storeu_ps(o + d, a0);
      _mm256_storeu_ps(o + d + 8, a1);
    }
    for (; d < hd; d += 8) {
      const __m256i mask = simd_exp::TailMask8(std::min<int64_t>(8, hd - d));
      __m256 a = _mm256_maskload_ps(o + d, mask);
      for (int64_t j = 0; j < nb; ++j)
        a = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), _mm256_maskload_ps(v_block[j] + d, mask), a);
      _mm256_maskstore_ps(o + d, mask, a);
    }
  }
};

#define ACCULLM_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,fma")))
struct Avx512Ops {
  static __mmask16 Mask(int64_t n) { return n >= 16 ? __mmask16{0xFFFF} : simd_exp::TailMask16(n); }
  ACCULLM_AVX512_TARGET static void Scores(const float* q, int64_t heads, const float* const* k_block, int64_t nb,
                                           int64_t hd, float scale, float* p) {
    const int64_t d16 = hd / 16 * 16;
    const __mmask16 tail = Mask(hd - d16);
    for (int64_t j = 0; j < nb; ++j) {
      const float* k = k_block[j];
      for (int64_t g = 0; g < heads; ++g) {
        const float* qg = q + g * hd;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        int64_t d = 0;
        for (; d + 32 <= d16; d += 32) {
          a0 = _mm512_fmadd_ps(_mm512_loadu_ps(qg + d), _mm512_loadu_ps(k + d), a0);
          a1 = _mm512_fmadd_ps(_mm512_loadu_ps(qg + d + 16), _mm512_loadu_ps(k + d + 16), a1);
        }
        if (d < d16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(qg + d), _mm512_loadu_ps(k + d), a0);
        if (d16 < hd)
          a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, qg + d16), _mm512_maskz_loadu_ps(tail, k + d16), a1);
        p[g * kAttentionBlock + j] = simd_exp::HorizontalSum16(_mm512_add_ps(a0, a1)) * scale;
      }
    }
  }
  // DecodeRows of Avx2Ops, 16 lanes, tails by masked loads.
  ACCULLM_AVX512_TARGET static void DecodeRows(KvDType t, const void* const* rows, int64_t n, int64_t head, int64_t hd,
                                               float* out) {
    for (int64_t j = 0; j < n; ++j) {
      const uint8_t* rec = KvHeadRecord(t, rows[j], head, hd);
      float* o = out + j * hd;
      switch (t) {
        case KvDType::kF32: std::memcpy(o, rec, static_cast<size_t>(hd) * sizeof(float)); break;
        case KvDType::kF16: {
          const auto* h = reinterpret_cast<const uint16_t*>(rec);
          for (int64_t d = 0; d < hd; d += 16) {
            const __mmask16 m = Mask(hd - d);
            _mm512_mask_storeu_ps(o + d, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, h + d)));
          }
          break;
        }
        case KvDType::kBF16: {
          const auto* h = reinterpret_cast<const uint16_t*>(rec);
          for (int64_t d = 0; d < hd; d += 16) {
            const __mmask16 m = Mask(hd - d);
            const __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, h + d));
            _mm512_mask_storeu_ps(o + d, m, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
          }
          break;
        }
        case KvDType::kInt8: {
          float scale;
          std::memcpy(&scale, rec, sizeof(float));
          const auto* c = reinterpret_cast<const int8_t*>(rec + sizeof(float));
          const __m512 vs = _mm512_set1_ps(scale);
          for (int64_t d = 0; d < hd; d += 16) {
            const __mmask16 m = Mask(hd - d);
            const __m512i w = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, c + d));
            _mm512_mask_storeu_ps(o + d, m, _mm512_mul_ps(_mm512_cvtepi32_ps(w), vs));
          }
          break;
        }
      }
    }
  }
  ACCULLM_AVX512_TARGET static float ExpShiftSum(float* p, int64_t nb, float m) {
    const __m512 vm = _mm512_set1_ps(m);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < nb; j += 16) {
      const __mmask16 mask = Mask(nb - j);
      const __m512 e =
          _mm512_maskz_mov_ps(mask, simd_exp::Exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, p + j), vm)));
      _mm512_mask_storeu_ps(p + j, mask, e);
      sum = _mm512_add_ps(sum, e);
    }
    return simd_exp::HorizontalSum16(sum);
  }
  ACCULLM_AVX512_TARGET static void Scale(float* o, int64_t hd, float c) {
    const __m512 vc = _mm512_set1_ps(c);
    for (int64_t d = 0; d < hd; d += 16) {
      const __mmask16 mask = Mask(hd - d);
      _mm512_mask_storeu_ps(o + d, mask, _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, o + d), vc));
    }
  }
  ACCULLM_AVX512_TARGET static void AddValues(const float* p, const float* const* v_block, int64_t nb, int64_t hd,
                                              float* o) {
    int64_t d = 0;
    for (; d + 32 <= hd; d += 32) {
      __m512 a0 = _mm512_loadu_ps(o + d), a1 = _mm512_loadu_ps(o + d + 16);
      for (int64_t j = 0; j < nb; ++j) {
        const __m512 pj = _mm512_set1_ps(p[j]);
        const float* v = v_block[j] + d;
        a0 = _mm512_fmadd_ps(pj, _mm512_loadu_ps(v), a0);
        a1 = _mm512_fmadd_ps(pj, _mm512_loadu_ps(v + 16), a1);
      }
      _mm512_storeu_ps(o + d, a0);
      _mm512_storeu_ps(o + d + 16, a1);
    }
    for (; d < hd; d += 16) {
      const __mmask16 mask = Mask(hd - d);
      __m512 a = _mm512_maskz_loadu_ps(mask, o + d);
      for (int64_t j = 0; j < nb; ++j)
        a = _mm512_fmadd_ps(_mm512_set1_ps(p[j]), _mm512_maskz_loadu_ps(mask, v_block[j] + d), a);
      _mm512_mask_storeu_ps(o + d, mask, a);
    }
  }
};
#undef ACCULLM_AVX512_TARGET

// One pass over the positions in blocks (flash attention's online softmax, per head): the
// block's rows of the K/V head as FP32 (in place for f32, else decoded into a per-thread tile
// of kAttentionBlock rows each of K and V, shared by every head of the pass), the block's
// scores for every head of the pass, then per head the block max, exp(s − max) and its sum,
// the partial output rescaled by exp(old max − new max) when the max grew, and the block's V
// rows added. Each head's arithmetic is independent of the others in the pass.
template <class Ops>
void OnlineAttention(const float* q, int64_t num_heads, const KvRows& kv, int64_t kv_head, int64_t last_pos, int64_t hd,
                     float scale, float* out) {
  const int64_t positions = last_pos + 1;
  const bool in_place = kv.dtype == KvDType::kF32;
  thread_local std::vector<float> tile;  // grown per thread: a warm call allocates nothing
  float* k_tile = in_place ? nullptr : GrowBuffer(tile, 2 * kAttentionBlock * hd);
  float* v_tile = in_place ? nullptr : k_tile + kAttentionBlock * hd;
  const float* k_block[kAttentionBlock];
  const float* v_block[kAttentionBlock];
  for (int64_t h0 = 0; h0 < num_heads; h0 += kMaxGroupPass) {
    const int64_t heads = std::min(kMaxGroupPass, num_heads - h0);
    const float* qp = q + h0 * hd;
    float* op = out + h0 * hd;
    float p[kMaxGroupPass * kAttentionBlock];
    float run_max[kMaxGroupPass], run_sum[kMaxGroupPass];
    for (int64_t b0 = 0; b0 < positions; b0 += kAttentionBlock) {
      const int64_t nb = std::min(kAttentionBlock, positions - b0);
      if (in_place) {
        for (int64_t j = 0; j < nb; ++j) {
          k_block[j] = static_cast<const float*>(kv.k_rows[b0 + j]) + kv_head * hd;
          v_block[j] = static_cast<const float*>(kv.v_rows[b0 + j]) + kv_head * hd;
        }
      } else {
        Ops::DecodeRows(kv.dtype, kv.k_rows + b0, nb, kv_head, hd, k_tile);
        Ops::DecodeRows(kv.dtype, kv.v_rows + b0, nb, kv_head, hd, v_tile);
        for (int64_t j = 0; j < nb; ++j) {
          k_block[j] = k_tile + j * hd;
          v_block[j] = v_tile + j * hd;
        }
      }
      Ops::Scores(qp, heads, k_block, nb, hd, scale, p);
      for (int64_t g = 0; g < heads; ++g) {
        float* pg = p + g * kAttentionBlock;
        float* og = op + g * hd;
        float block_max = pg[0];
        for (int64_t j = 1; j < nb; ++j) block_max = std::max(block_max, pg[j]);
        if (b0 == 0) {
          run_max[g] = block_max;
          run_sum[g] = Ops::ExpShiftSum(pg, nb, block_max);
          std::fill_n(og, hd, 0.f);
        } else {
          const float new_max = std::max(run_max[g], block_max);
          const float block_sum = Ops::ExpShiftSum(pg, nb, new_max);
          if (new_max != run_max[g]) {
            const float c = std::exp(run_max[g] - new_max);
            run_sum[g] *= c;
            Ops::Scale(og, hd, c);
            run_max[g] = new_max;
          }
          run_sum[g] += block_sum;
        }
        Ops::AddValues(pg, v_block, nb, hd, og);
      }
    }
    for (int64_t g = 0; g < heads; ++g) Ops::Scale(op + g * hd, hd, 1.0f / run_sum[g]);
  }
}

}  // namespace
#endif

void CausalAttentionGroup(const float* q, int64_t num_heads, const KvRows& kv, int64_t kv_head, int64_t last_pos,
                          int64_t head_dim, float scale, float* scores, float* out) {
  switch (ActiveIsa()) {
#if ACCULLM_HAVE_X86_SIMD
    case Isa::kAvx512: return OnlineAttention<Avx512Ops>(q, num_heads, kv, kv_head, last_pos, head_dim, scale, out);
    case Isa::kAvx2: return OnlineAttention<Avx2Ops>(q, num_heads, kv, kv_head, last_pos, head_dim, scale, out);
#else
    case Isa::kAvx512:
    case Isa::kAvx2:
#endif
    case Isa::kScalar:
      return CausalAttentionGroupScalar(q, num_heads, kv, kv_head, last_pos, head_dim, scale, scores, out);
  }
}

void CausalAttentionHead(const float* q, const KvRows& kv, int64_t kv_head, int64_t last_pos, int64_t head_dim,
                         float scale, float* scores, float* out) {
  CausalAttentionGroup(q, 1, kv, kv_head, last_pos, head_dim, scale, scores, out);
}

void DecodeKvHeadRows(KvDType t, const void* const* rows, int64_t n, int64_t kv_head, int64_t head_dim, float* out) {
  switch (ActiveIsa()) {
#if ACCULLM_HAVE_X86_SIMD
    case Isa::kAvx512: return Avx512Ops::DecodeRows(t, rows, n, kv_head, head_dim, out);
    case Isa::kAvx2: return Avx2Ops::DecodeRows(t, rows, n, kv_head, head_dim, out);
#else
    case Isa::kAvx512:
    case Isa::kAvx2:
#endif
    case Isa::kScalar: return DecodeKvHeadRowsScalar(t, rows, n, kv_head, head_dim, out);
  }
}

}  // namespace accullm::kernels
