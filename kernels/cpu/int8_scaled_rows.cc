#include "kernels/cpu/int8_scaled_rows.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/dtype.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/isa.h"

namespace accullm::kernels {

Int8ScaledRows QuantizeInt8ScaledRows(const uint16_t* f16, int64_t out, int64_t in) {
  Int8ScaledRows w;
  w.out = out;
  w.in = in;
  w.codes.assign(static_cast<size_t>(w.blocks() * in * kInt8ScaledRowsBlock), 0);
  w.steps.assign(static_cast<size_t>(w.blocks() * kInt8ScaledRowsBlock), 0.f);
  std::vector<float> row(static_cast<size_t>(in));
  for (int64_t o = 0; o < out; ++o) {
    float max = 0.f;
    for (int64_t i = 0; i < in; ++i) {
      row[i] = F16ToF32(f16[o * in + i]);
      max = std::max(max, std::fabs(row[i]));
    }
    if (max == 0.f) continue;
    const float step = max / 127.f;
    w.steps[o] = step;
    int8_t* dst = w.codes.data() + (o / kInt8ScaledRowsBlock) * in * kInt8ScaledRowsBlock + o % kInt8ScaledRowsBlock;
    for (int64_t i = 0; i < in; ++i) {
      const float q = std::nearbyint(row[i] / step);  // the default rounding: to nearest, ties to even
      dst[i * kInt8ScaledRowsBlock] = static_cast<int8_t>(std::clamp(q, -127.f, 127.f));
    }
  }
  return w;
}

void Int8ScaledRowsForwardScalar(const Int8ScaledRows& w, const float* x, int64_t n, int64_t block_begin,
                                 int64_t block_end, float* y) {
  for (int64_t b = block_begin; b < block_end; ++b) {
    const int8_t* codes = w.codes.data() + b * w.in * kInt8ScaledRowsBlock;
    const int64_t o0 = b * kInt8ScaledRowsBlock, o1 = std::min(w.out, o0 + kInt8ScaledRowsBlock);
    for (int64_t r = 0; r < n; ++r) {
      const float* xr = x + r * w.in;
      for (int64_t o = o0; o < o1; ++o) {
        float acc = 0.f;
        for (int64_t i = 0; i < w.in; ++i)
          acc = std::fma(static_cast<float>(codes[i * kInt8ScaledRowsBlock + (o - o0)]), xr[i], acc);
        y[r * w.out + o] = acc * w.steps[o];
      }
    }
  }
}

#if ACCULLM_HAVE_X86_SIMD
namespace {

// How far ahead (in blocks) the first row's pass requests the codes: one sequential stream
// from memory left the kernel at ~60% of the dense FFN kernels' rate (they read four tiles at
// once); asking for the lines two blocks (2·in·64 bytes) early keeps more of them in flight.
constexpr int64_t kPrefetchBlocks = 2;

// The block's 64 outputs of every row, written where they exist (the last block may be short).
inline void StoreOutputs(const float* acc, const Int8ScaledRows& w, int64_t o0, float* yr) {
  const int64_t valid = std::min(kInt8ScaledRowsBlock, w.out - o0);
  std::memcpy(yr + o0, acc, static_cast<size_t>(valid) * sizeof(float));
}

__attribute__((target("avx512f,fma"))) void ForwardAvx512(const Int8ScaledRows& w, const float* x, int64_t n,
                                                          int64_t block_begin, int64_t block_end, float* y) {
  for (int64_t b = block_begin; b < block_end; ++b) {
    const int8_t* codes = w.codes.data() + b * w.in * kInt8ScaledRowsBlock;
    const int64_t o0 = b * kInt8ScaledRowsBlock;
    for (int64_t r = 0; r < n; ++r) {
      const float* xr = x + r * w.in;
      __m512 acc[4];  // four independent chains of 16 outputs: one lane per output
      for (auto& a : acc) a = _mm512_setzero_ps();
      for (int64_t i = 0; i < w.in; ++i) {
        const __m512 xi = _mm512_set1_ps(xr[i]);
        const int8_t* col = codes + i * kInt8ScaledRowsBlock;
        if (r == 0 && b + kPrefetchBlocks < block_end)
          _mm_prefetch(reinterpret_cast<const char*>(col + kPrefetchBlocks * w.in * kInt8ScaledRowsBlock), _MM_HINT_T0);
        for (int k = 0; k < 4; ++k) {
          const __m512i c = _mm512_cvtepi8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(col + 16 * k)));
          acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(c), xi, acc[k]);
        }
      }
      alignas(64) float out[kInt8ScaledRowsBlock];
      for (int k = 0; k < 4; ++k)
        _mm512_store_ps(out + 16 * k, _mm512_mul_ps(acc[k], _mm512_loadu_ps(w.steps.data() + o0 + 16 * k)));
      StoreOutputs(out, w, o0, y + r * w.out);
    }
  }
}

__attribute__((target("avx2,fma"))) void ForwardAvx2(const Int8ScaledRows& w, const float* x, int64_t n,
                                                     int64_t block_begin, int64_t block_end, float* y) {
  for (int64_t b = block_begin; b < block_end; ++b) {
    const int8_t* codes = w.codes.data() + b * w.in * kInt8ScaledRowsBlock;
    const int64_t o0 = b * kInt8ScaledRowsBlock;
    for (int64_t r = 0; r < n; ++r) {
      const float* xr = x + r * w.in;
      __m256 acc[8];  // eight chains of 8 outputs
      for (auto& a : acc) a = _mm256_setzero_ps();
      for (int64_t i = 0; i < w.in; ++i) {
        const __m256 xi = _mm256_set1_ps(xr[i]);
        const int8_t* col = codes + i * kInt8ScaledRowsBlock;
        if (r == 0 && b + kPrefetchBlocks < block_end)
          _mm_prefetch(reinterpret_cast<const char*>(col + kPrefetchBlocks * w.in * kInt8ScaledRowsBlock), _MM_HINT_T0);
        for (int k = 0; k < 8; ++k) {
          const __m256i c = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(col + 8 * k)));
          acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(c), xi, acc[k]);
        }
      }
      alignas(32) float out[kInt8ScaledRowsBlock];
      for (int k = 0; k < 8; ++k)
        _mm256_store_ps(out + 8 * k, _mm256_mul_ps(acc[k], _mm256_loadu_ps(w.steps.data() + o0 + 8 * k)));
      StoreOutputs(out, w, o0, y + r * w.out);
    }
  }
}

}  // namespace

bool Int8ScaledRowsForwardAvx512(const Int8ScaledRows& w, const float* x, int64_t n, int64_t block_begin,
                                 int64_t block_end, float* y) {
  if (DetectedIsa() < Isa::kAvx512) return false;
  ForwardAvx512(w, x, n, block_begin, block_end, y);
  return true;
}

bool Int8ScaledRowsForwardAvx2(const Int8ScaledRows& w, const float* x, int64_t n, int64_t block_begin,
                               int64_t block_end, float* y) {
  if (DetectedIsa() < Isa::kAvx2) return false;
  ForwardAvx2(w, x, n, block_begin, block_end, y);
  return true;
}
#else
bool Int8ScaledRowsForwardAvx512(const Int8ScaledRows&, const float*, int64_t, int64_t, int64_t, float*) {
  return false;
}
bool Int8ScaledRowsForwardAvx2(const Int8ScaledRows&, const float*, int64_t, int64_t, int64_t, float*) { return false; }
#endif

void Int8ScaledRowsForward(const Int8ScaledRows& w, const float* x, int64_t n, int64_t block_begin, int64_t block_end,
                           float* y) {
  if (ActiveIsa() >= Isa::kAvx512 && Int8ScaledRowsForwardAvx512(w, x, n, block_begin, block_end, y)) return;
  if (ActiveIsa() >= Isa::kAvx2 && Int8ScaledRowsForwardAvx2(w, x, n, block_begin, block_end, y)) return;
  Int8ScaledRowsForwardScalar(w, x, n, block_begin, block_end, y);
}

}  // namespace accullm::kernels
