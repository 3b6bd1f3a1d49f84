#include "kernels/cpu/scaled_rows.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/dtype.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/dot_bytes_avx512.h"
#include "kernels/cpu/isa.h"

namespace accullm::kernels {

namespace {

// The byte of 4-bit output o (within its block) holding column i, and the nibble's shift.
inline size_t Int4ByteOf(int64_t o, int64_t i) {
  return static_cast<size_t>((i / 8) * kScaledRowsBlock * 4 + o * 4 + i % 4);
}
inline int Int4ShiftOf(int64_t i) { return i % 8 < 4 ? 0 : 4; }

}  // namespace

ScaledRows QuantizeScaledRows(const uint16_t* f16, int64_t out, int64_t in, int bits) {
  ScaledRows w;
  w.out = out;
  w.in = in;
  w.bits = bits == 4 ? 4 : 8;
  const float qmax = w.bits == 8 ? 127.f : 7.f;
  // 4 bits: every nibble starts at 8 (code 0), so columns past `in` are code 0.
  w.codes.assign(static_cast<size_t>(w.blocks() * w.column_bytes() * kScaledRowsBlock),
                 w.bits == 8 ? int8_t{0} : static_cast<int8_t>(0x88));
  w.steps.assign(static_cast<size_t>(w.blocks() * kScaledRowsBlock), 0.f);
  std::vector<float> row(static_cast<size_t>(in));
  for (int64_t o = 0; o < out; ++o) {
    float max = 0.f;
    for (int64_t i = 0; i < in; ++i) {
      row[i] = F16ToF32(f16[o * in + i]);
      max = std::max(max, std::fabs(row[i]));
    }
    if (max == 0.f) continue;
    const float step = max / qmax;
    w.steps[o] = step;
    int8_t* block = w.codes.data() + (o / kScaledRowsBlock) * w.column_bytes() * kScaledRowsBlock;
    const int64_t ob = o % kScaledRowsBlock;
    for (int64_t i = 0; i < in; ++i) {
      const float q = std::nearbyint(row[i] / step);  // the default rounding: to nearest, ties to even
      const int code = static_cast<int>(std::clamp(q, -qmax, qmax));
      if (w.bits == 8) {
        block[i * kScaledRowsBlock + ob] = static_cast<int8_t>(code);
      } else {
        auto& byte = reinterpret_cast<uint8_t&>(block[Int4ByteOf(ob, i)]);
        const int shift = Int4ShiftOf(i);
        byte = static_cast<uint8_t>((byte & ~(0xF << shift)) | ((code + 8) << shift));
      }
    }
  }
  return w;
}

void QuantizeScaledRowsInput(const float* x, int64_t n, int64_t in, ScaledRowsInput& q) {
  q.n = n;
  q.stride = 8 * ((in + 7) / 8);
  q.xq.assign(static_cast<size_t>(n * q.stride), 0);
  q.scale.assign(static_cast<size_t>(n), 0.f);
  q.sum.assign(static_cast<size_t>(n), 0);
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x + r * in;
    float max = 0.f;
    bool finite = true;
    for (int64_t i = 0; i < in; ++i) {
      finite = finite && std::isfinite(xr[i]);
      max = std::max(max, std::fabs(xr[i]));
    }
    if (!finite || max == 0.f) {
      // All zero: outputs 0. A NaN or Inf: every output NaN (codes 0 times a NaN scale), where
      // the float product would have given NaN or Inf.
      q.scale[r] = finite ? 0.f : std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    const float scale = max / 127.f;
    q.scale[r] = scale;
    int32_t sum = 0;
    for (int64_t i = 0; i < in; ++i) {
      const auto v = static_cast<int8_t>(std::clamp(std::nearbyint(xr[i] / scale), -127.f, 127.f));
      q.xq[static_cast<size_t>(r * q.stride + i)] = v;
      sum += v;
    }
    q.sum[r] = sum;
  }
}

namespace {

// y = (float(acc) · x_scale) · step for the block's 64 outputs of one row, where they exist.
inline void StoreInt4Outputs(const int32_t* acc, float x_scale, const ScaledRows& w, int64_t o0, float* yr) {
  const int64_t valid = std::min(kScaledRowsBlock, w.out - o0);
  for (int64_t k = 0; k < valid; ++k)
    yr[o0 + k] = (static_cast<float>(acc[k]) * x_scale) * w.steps[static_cast<size_t>(o0 + k)];
}

thread_local ScaledRowsInput t_input;  // the 4-bit product's quantized rows, reused per thread

}  // namespace

void ScaledRowsForwardScalar(const ScaledRows& w, const float* x, int64_t n, int64_t block_begin, int64_t block_end,
                             float* y) {
  if (w.bits == 4) QuantizeScaledRowsInput(x, n, w.in, t_input);
  for (int64_t b = block_begin; b < block_end; ++b) {
    const int8_t* block = w.codes.data() + b * w.column_bytes() * kScaledRowsBlock;
    const int64_t o0 = b * kScaledRowsBlock, o1 = std::min(w.out, o0 + kScaledRowsBlock);
    for (int64_t r = 0; r < n; ++r) {
      if (w.bits == 4) {
        const int8_t* xq = t_input.xq.data() + r * t_input.stride;
        int32_t acc[kScaledRowsBlock] = {};
        for (int64_t o = o0; o < o1; ++o) {
          int32_t dot = 0;
          for (int64_t i = 0; i < w.in; ++i) {
            const auto byte = static_cast<uint8_t>(block[Int4ByteOf(o - o0, i)]);
            dot += (((byte >> Int4ShiftOf(i)) & 0xF) - 8) * xq[i];
          }
          acc[o - o0] = dot;
        }
        StoreInt4Outputs(acc, t_input.scale[r], w, o0, y + r * w.out);
        continue;
      }
      const float* xr = x + r * w.in;
      for (int64_t o = o0; o < o1; ++o) {
        float acc = 0.f;
        for (int64_t i = 0; i < w.in; ++i)
          acc = std::fma(static_cast<float>(block[i * kScaledRowsBlock + (o - o0)]), xr[i], acc);
        y[r * w.out + o] = acc * w.steps[o];
      }
    }
  }
}

#if ACCULLM_HAVE_X86_SIMD
namespace {

// How far ahead (in blocks) the first row's pass requests the codes: one sequential stream
// from memory left the kernel at ~60% of the dense FFN kernels' rate (they read four tiles at
// once); asking for the lines two blocks early keeps more of them in flight.
constexpr int64_t kPrefetchBlocks = 2;

// The block's 64 outputs of every row, scaled by their steps, written where they exist (the
// last block may be short).
inline void StoreOutputs(const float* acc, const ScaledRows& w, int64_t o0, float* yr) {
  const int64_t valid = std::min(kScaledRowsBlock, w.out - o0);
  for (int64_t k = 0; k < valid; ++k) yr[o0 + k] = acc[k] * w.steps[static_cast<size_t>(o0 + k)];
}

// acc[k] (outputs 16k … 16k + 15 of the block) += code · x for the line's 64 codes.
__attribute__((target("avx512f,fma"))) inline void Fma8BitLine(const int8_t* line, __m512 x, __m512* acc) {
  for (int k = 0; k < 4; ++k) {
    const __m512i c = _mm512_cvtepi8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(line + 16 * k)));
    acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(c), x, acc[k]);
  }
}

__attribute__((target("avx512f,fma"))) void Int8Avx512(const ScaledRows& w, const float* x, int64_t n,
                                                       int64_t block_begin, int64_t block_end, float* y) {
  for (int64_t b = block_begin; b < block_end; ++b) {
    const int8_t* codes = w.codes.data() + b * w.in * kScaledRowsBlock;
    const int64_t o0 = b * kScaledRowsBlock;
    for (int64_t r = 0; r < n; ++r) {
      const float* xr = x + r * w.in;
      __m512 acc[4];  // four independent chains of 16 outputs: one lane per output
      for (auto& a : acc) a = _mm512_setzero_ps();
      for (int64_t i = 0; i < w.in; ++i) {
        const int8_t* line = codes + i * kScaledRowsBlock;
        if (r == 0 && b + kPrefetchBlocks < block_end)
          _mm_prefetch(reinterpret_cast<const char*>(line + kPrefetchBlocks * w.in * kScaledRowsBlock), _MM_HINT_T0);
        Fma8BitLine(line, _mm512_set1_ps(xr[i]), acc);
      }
      alignas(64) float out[kScaledRowsBlock];
      for (int k = 0; k < 4; ++k) _mm512_store_ps(out + 16 * k, acc[k]);
      StoreOutputs(out, w, o0, y + r * w.out);
    }
  }
}

inline int32_t Load4Bytes(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// 4 bits: per group of 8 columns, four lines of 16 outputs; the low nibbles against columns
// 8g … 8g + 3, the high ones against 8g + 4 … 8g + 7, one vpdpbusd each (unsigned nibbles times
// signed xq, four products per 32-bit lane).
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void Int4Avx512(const ScaledRows& w, const ScaledRowsInput& q,
                                                                       int64_t block_begin, int64_t block_end,
                                                                       float* y) {
  const int64_t groups = (w.in + 7) / 8, block_bytes = groups * 4 * kScaledRowsBlock;
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int64_t b = block_begin; b < block_end; ++b) {
    const int8_t* codes = w.codes.data() + b * block_bytes;
    const int64_t o0 = b * kScaledRowsBlock;
    for (int64_t r = 0; r < q.n; ++r) {
      const int8_t* xq = q.xq.data() + r * q.stride;
      __m512i acc[4];
      for (auto& a : acc) a = _mm512_setzero_si512();
      for (int64_t g = 0; g < groups; ++g) {
        const int8_t* lines = codes + g * 4 * kScaledRowsBlock;
        if (r == 0 && b + kPrefetchBlocks < block_end) {
          for (int k = 0; k < 4; ++k)
            _mm_prefetch(reinterpret_cast<const char*>(lines + kPrefetchBlocks * block_bytes + 64 * k), _MM_HINT_T0);
        }
        const __m512i x_lo = _mm512_set1_epi32(Load4Bytes(xq + 8 * g));
        const __m512i x_hi = _mm512_set1_epi32(Load4Bytes(xq + 8 * g + 4));
        for (int k = 0; k < 4; ++k) {
          const __m512i v = _mm512_load_si512(lines + 64 * k);
          acc[k] = DotBytes512(acc[k], _mm512_and_si512(v, low4), x_lo);
          acc[k] = DotBytes512(acc[k], _mm512_and_si512(_mm512_srli_epi16(v, 4), low4), x_hi);
        }
      }
      // The nibbles are code + 8: Σ (code + 8) · xq − 8 · Σ xq.
      const __m512i offset = _mm512_set1_epi32(8 * q.sum[r]);
      alignas(64) int32_t out[kScaledRowsBlock];
      for (int k = 0; k < 4; ++k)
        _mm512_store_si512(reinterpret_cast<__m512i*>(out + 16 * k), _mm512_sub_epi32(acc[k], offset));
      StoreInt4Outputs(out, q.scale[r], w, o0, y + r * w.out);
    }
  }
}

// acc[k] (outputs 8k … 8k + 7) += code · x for the 8-bit line's 64 codes.
__attribute__((target("avx2,fma"))) inline void Fma8BitLine(const int8_t* line, __m256 x, __m256* acc) {
  for (int k = 0; k < 8; ++k) {
    const __m256i c = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(line + 8 * k)));
    acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(c), x, acc[k]);
  }
}

__attribute__((target("avx2,fma"))) void Int8Avx2(const ScaledRows& w, const float* x, int64_t n, int64_t block_begin,
                                                  int64_t block_end, float* y) {
  for (int64_t b = block_begin; b < block_end; ++b) {
    const int8_t* codes = w.codes.data() + b * w.in * kScaledRowsBlock;
    const int64_t o0 = b * kScaledRowsBlock;
    for (int64_t r = 0; r < n; ++r) {
      const float* xr = x + r * w.in;
      __m256 acc[8];  // eight chains of 8 outputs
      for (auto& a : acc) a = _mm256_setzero_ps();
      for (int64_t i = 0; i < w.in; ++i) {
        const int8_t* line = codes + i * kScaledRowsBlock;
        if (r == 0 && b + kPrefetchBlocks < block_end)
          _mm_prefetch(reinterpret_cast<const char*>(line + kPrefetchBlocks * w.in * kScaledRowsBlock), _MM_HINT_T0);
        Fma8BitLine(line, _mm256_set1_ps(xr[i]), acc);
      }
      alignas(32) float out[kScaledRowsBlock];
      for (int k = 0; k < 8; ++k) _mm256_store_ps(out + 8 * k, acc[k]);
      StoreOutputs(out, w, o0, y + r * w.out);
    }
  }
}

// 4 bits without VNNI: pmaddubsw (unsigned nibbles times signed xq, pairs summed to 16 bits:
// at most 2 · 15 · 127, no saturation), low and high halves added (at most 7620), then pmaddwd
// against ones to 32 bits. Exact, so the same sums as vpdpbusd.
__attribute__((target("avx2"))) void Int4Avx2(const ScaledRows& w, const ScaledRowsInput& q, int64_t block_begin,
                                              int64_t block_end, float* y) {
  const int64_t groups = (w.in + 7) / 8, block_bytes = groups * 4 * kScaledRowsBlock;
  const __m256i low4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  for (int64_t b = block_begin; b < block_end; ++b) {
    const int8_t* codes = w.codes.data() + b * block_bytes;
    const int64_t o0 = b * kScaledRowsBlock;
    for (int64_t r = 0; r < q.n; ++r) {
      const int8_t* xq = q.xq.data() + r * q.stride;
      __m256i acc[8];
      for (auto& a : acc) a = _mm256_setzero_si256();
      for (int64_t g = 0; g < groups; ++g) {
        const int8_t* lines = codes + g * 4 * kScaledRowsBlock;
        if (r == 0 && b + kPrefetchBlocks < block_end) {
          for (int k = 0; k < 4; ++k)
            _mm_prefetch(reinterpret_cast<const char*>(lines + kPrefetchBlocks * block_bytes + 64 * k), _MM_HINT_T0);
        }
        const __m256i x_lo = _mm256_set1_epi32(Load4Bytes(xq + 8 * g));
        const __m256i x_hi = _mm256_set1_epi32(Load4Bytes(xq + 8 * g + 4));
        for (int k = 0; k < 8; ++k) {
          const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(lines + 32 * k));
          const __m256i lo = _mm256_maddubs_epi16(_mm256_and_si256(v, low4), x_lo);
          const __m256i hi = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), low4), x_hi);
          acc[k] = _mm256_add_epi32(acc[k], _mm256_madd_epi16(_mm256_add_epi16(lo, hi), ones));
        }
      }
      const __m256i offset = _mm256_set1_epi32(8 * q.sum[r]);
      alignas(32) int32_t out[kScaledRowsBlock];
      for (int k = 0; k < 8; ++k)
        _mm256_store_si256(reinterpret_cast<__m256i*>(out + 8 * k), _mm256_sub_epi32(acc[k], offset));
      StoreInt4Outputs(out, q.scale[r], w, o0, y + r * w.out);
    }
  }
}

}  // namespace

bool ScaledRowsForwardAvx512(const ScaledRows& w, const float* x, int64_t n, int64_t block_begin, int64_t block_end,
                             float* y) {
  if (DetectedIsa() < Isa::kAvx512) return false;
  if (w.bits == 8) {
    Int8Avx512(w, x, n, block_begin, block_end, y);
  } else {
    QuantizeScaledRowsInput(x, n, w.in, t_input);
    Int4Avx512(w, t_input, block_begin, block_end, y);
  }
  return true;
}

bool ScaledRowsForwardAvx2(const ScaledRows& w, const float* x, int64_t n, int64_t block_begin, int64_t block_end,
                           float* y) {
  if (DetectedIsa() < Isa::kAvx2) return false;
  if (w.bits == 8) {
    Int8Avx2(w, x, n, block_begin, block_end, y);
  } else {
    QuantizeScaledRowsInput(x, n, w.in, t_input);
    Int4Avx2(w, t_input, block_begin, block_end, y);
  }
  return true;
}
#else
bool ScaledRowsForwardAvx512(const ScaledRows&, const float*, int64_t, int64_t, int64_t, float*) { return false; }
bool ScaledRowsForwardAvx2(const ScaledRows&, const float*, int64_t, int64_t, int64_t, float*) { return false; }
#endif

void ScaledRowsForward(const ScaledRows& w, const float* x, int64_t n, int64_t block_begin, int64_t block_end,
                       float* y) {
  if (ActiveIsa() >= Isa::kAvx512 && ScaledRowsForwardAvx512(w, x, n, block_begin, block_end, y)) return;
  if (ActiveIsa() >= Isa::kAvx2 && ScaledRowsForwardAvx2(w, x, n, block_begin, block_end, y)) return;
  ScaledRowsForwardScalar(w, x, n, block_begin, block_end, y);
}

}  // namespace accullm::kernels
