#include "kernels/cpu/int8_activations.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/random.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/isa.h"

namespace accullm::kernels {

namespace {

void Resize(int64_t rows, int64_t in, int64_t block, Int8Activations& out) {
  out.rows = rows;
  out.in = in;
  out.block = block;
  out.q.resize(static_cast<size_t>(rows * in));
  out.scales.resize(static_cast<size_t>(rows * (in / block)));
  out.sums.resize(static_cast<size_t>(rows * (in / block)));
}

// The one definition of a block's scale and its reciprocal, shared by every variant so the
// codes agree bit for bit: q = nearbyint(x · (127 / amax)), x ≈ q · (amax / 127).
// Below kTinyMax the reciprocal would overflow: such a block quantizes to zeros.
constexpr float kTinyMax = 1e-36f;
inline void BlockScale(float amax, float& scale, float& inv) {
  scale = amax / 127.f;
  inv = amax > kTinyMax ? 127.f / amax : 0.f;
}

// Clamp to [-127, 127] written as the vector max/min compute it (a NaN becomes -127), so
// every variant gives the same code even for a non-finite input.
inline float ClampCode(float v) {
  v = v > -127.f ? v : -127.f;
  return v < 127.f ? v : 127.f;
}

// One block of `block` values: its codes, scale and code sum (the scalar definition).
void QuantizeBlockScalar(const float* xb, const char* eb, int64_t block, int8_t* q, float* scale_out,
                         int32_t* sum_out) {
  float amax = 0.f;
  for (int64_t i = 0; i < block; ++i)
    if ((eb == nullptr || !eb[i]) && std::fabs(xb[i]) > amax) amax = std::fabs(xb[i]);  // NaN ignored
  float scale, inv;
  BlockScale(amax, scale, inv);
  int32_t sum = 0;
  for (int64_t i = 0; i < block; ++i) {
    // amax bounds |x·inv| by 127 up to rounding of the product; the clamp makes it exact.
    const float v = (eb != nullptr && eb[i]) ? 0.f : std::nearbyint(xb[i] * inv);
    const int c = static_cast<int>(ClampCode(v));
    q[i] = static_cast<int8_t>(c);
    sum += c;
  }
  *scale_out = scale;
  *sum_out = sum;
}

// Blocks b0 .. b0 + kLanes − 1 of a row under a rounding mode other than plain nearest (the
// header's definitions): codes, scales and code sums. Stochastic draws are keyed by the row's
// `key` and the column. Each block's error feedback is a serial chain (carry → code → carry);
// the blocks' chains are independent, so they are interleaved element by element for the CPU
// to overlap: each block still sees exactly its own sequence of operations.
// (always_inline: compiled once plainly and once for SSE4.1, below, where nearbyint and floor
// become single instructions instead of libm calls; same IEEE operations, same results.)
template <int kLanes>
inline __attribute__((always_inline)) void QuantizeBlocksWithMode(const float* xr, const char* er, int64_t b0,
                                                                  int64_t block, const ActQuantConfig& mode,
                                                                  uint64_t key, int8_t* qr, float* scales,
                                                                  int32_t* sums) {
  float scale[kLanes], inv[kLanes], carry[kLanes];
  int32_t sum[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    const float* xb = xr + (b0 + l) * block;
    const char* eb = er != nullptr ? er + (b0 + l) * block : nullptr;
    float amax = 0.f;
    for (int64_t i = 0; i < block; ++i)
      if ((eb == nullptr || !eb[i]) && std::fabs(xb[i]) > amax) amax = std::fabs(xb[i]);  // NaN ignored
    BlockScale(amax, scale[l], inv[l]);
    carry[l] = 0.f;
    sum[l] = 0;
  }
  const bool stochastic = mode.rounding == ActRounding::kStochastic;
  for (int64_t i = 0; i < block; ++i) {
    for (int l = 0; l < kLanes; ++l) {
      const int64_t col = (b0 + l) * block + i;
      if (er != nullptr && er[col]) {
        qr[col] = 0;
        continue;
      }
      const float v = mode.error_feedback ? xr[col] + carry[l] : xr[col];
      const float t = v * inv[l];
      float r;
      if (stochastic) {
        const float u = UnitFloat24(SplitMix64(key + static_cast<uint64_t>(col)));
        const float f = std::floor(t);
        r = f + (u < t - f ? 1.f : 0.f);
      } else {
        r = std::nearbyint(t);
      }
      const float c = ClampCode(r);
      if (mode.error_feedback) {
        const float e = v - c * scale[l];
        carry[l] = std::isfinite(e) ? e : 0.f;
      }
      qr[col] = static_cast<int8_t>(static_cast<int>(c));
      sum[l] += static_cast<int>(c);
    }
  }
  for (int l = 0; l < kLanes; ++l) {
    scales[b0 + l] = scale[l];
    sums[b0 + l] = sum[l];
  }
}

// Every row under a mode other than plain nearest (scalar: see the header).
inline __attribute__((always_inline)) void QuantizeInt8BlocksWithMode(const float* x, int64_t rows, int64_t in,
                                                                      int64_t block, const char* exact,
                                                                      const ActQuantConfig& mode,
                                                                      Int8Activations& out) {
  Resize(rows, in, block, out);
  const int64_t blocks = in / block;
  constexpr int kLanes = 8;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * in;
    const uint64_t key = mode.rounding == ActRounding::kStochastic ? Int8RowKey(xr, in, mode.seed) : 0;
    int8_t* qr = out.q.data() + r * in;
    float* scales = out.scales.data() + r * blocks;
    int32_t* sums = out.sums.data() + r * blocks;
    int64_t b = 0;
    for (; b + kLanes <= blocks; b += kLanes)
      QuantizeBlocksWithMode<kLanes>(xr, exact, b, block, mode, key, qr, scales, sums);
    for (; b < blocks; ++b) QuantizeBlocksWithMode<1>(xr, exact, b, block, mode, key, qr, scales, sums);
  }
}

void QuantizeInt8BlocksWithModeScalar(const float* x, int64_t rows, int64_t in, int64_t block, const char* exact,
                                      const ActQuantConfig& mode, Int8Activations& out) {
  QuantizeInt8BlocksWithMode(x, rows, in, block, exact, mode, out);
}

#if ACCULLM_HAVE_X86_SIMD
// No FMA in SSE4.1, so the compiler cannot contract x + carry − c·scale differently from the
// scalar build: the codes are the reference's bit for bit (int8_activation_modes_test).
__attribute__((target("sse4.1"))) void QuantizeInt8BlocksWithModeSse41(const float* x, int64_t rows, int64_t in,
                                                                       int64_t block, const char* exact,
                                                                       const ActQuantConfig& mode,
                                                                       Int8Activations& out) {
  QuantizeInt8BlocksWithMode(x, rows, in, block, exact, mode, out);
}
#endif

inline uint64_t RotateLeft(uint64_t v, int s) { return (v << s) | (v >> (64 - s)); }

}  // namespace

uint64_t Int8RowKey(const float* row, int64_t in, uint64_t seed) {
  // Four independent multiply-rotate lanes (xxHash64's round) over pairs of floats, so the
  // hash is not one long dependency chain, then mixed with the seed and the width.
  constexpr uint64_t kP1 = 0x9e3779b185ebca87ull, kP2 = 0xc2b2ae3d27d4eb4full;
  uint64_t h[4] = {kP1, kP2, ~kP1, ~kP2};
  auto round = [&](uint64_t acc, uint64_t w) { return RotateLeft(acc + w * kP2, 31) * kP1; };
  int64_t i = 0;
  for (; i + 8 <= in; i += 8) {
    uint64_t w[4];
    std::memcpy(w, row + i, sizeof(w));
    for (int l = 0; l < 4; ++l) h[l] = round(h[l], w[l]);
  }
  for (; i < in; ++i) {
    uint32_t bits;
    std::memcpy(&bits, row + i, sizeof(bits));
    h[0] = round(h[0], bits);
  }
  uint64_t key = SplitMix64(seed ^ static_cast<uint64_t>(in));
  for (uint64_t v : h) key = SplitMix64(key ^ v);
  return key;
}

void QuantizeInt8BlocksScalar(const float* x, int64_t rows, int64_t in, int64_t block, const char* exact,
                              Int8Activations& out, const ActQuantConfig& mode) {
  if (!mode.is_plain_nearest()) return QuantizeInt8BlocksWithModeScalar(x, rows, in, block, exact, mode, out);
  Resize(rows, in, block, out);
  const int64_t blocks = in / block;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < blocks; ++b)
      QuantizeBlockScalar(x + r * in + b * block, exact != nullptr ? exact + b * block : nullptr, block,
                          out.q.data() + r * in + b * block, &out.scales[r * blocks + b], &out.sums[r * blocks + b]);
}

#if ACCULLM_HAVE_X86_SIMD
namespace {

__attribute__((target("avx2,fma"))) void QuantizeInt8BlocksAvx2(const float* x, int64_t rows, int64_t in, int64_t block,
                                                                const char* exact, Int8Activations& out) {
  Resize(rows, in, block, out);
  const int64_t blocks = in / block;
  const __m256 sign_mask = _mm256_set1_ps(-0.f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < blocks; ++b) {
      const float* xb = x + r * in + b * block;
      const char* eb = exact != nullptr ? exact + b * block : nullptr;
      // Blocks are multiples of 8 (groups are multiples of 32); exact channels are rare, so
      // a block holding one takes the scalar route.
      bool any_exact = false;
      if (eb != nullptr)
        for (int64_t i = 0; i < block && !any_exact; ++i) any_exact = eb[i] != 0;
      int8_t* q = out.q.data() + r * in + b * block;
      if (any_exact || block % 8 != 0) {
        QuantizeBlockScalar(xb, eb, block, q, &out.scales[r * blocks + b], &out.sums[r * blocks + b]);
        continue;
      }
      __m256 vmax = _mm256_setzero_ps();
      for (int64_t i = 0; i < block; i += 8)
        vmax = _mm256_max_ps(_mm256_andnot_ps(sign_mask, _mm256_loadu_ps(xb + i)), vmax);  // NaN ignored
      __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
      m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
      m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
      float scale, inv;
      BlockScale(_mm_cvtss_f32(m4), scale, inv);
      const __m256 vinv = _mm256_set1_ps(inv);
      const __m256 lo = _mm256_set1_ps(-127.f), hi = _mm256_set1_ps(127.f);
      __m256i vsum = _mm256_setzero_si256();
      for (int64_t i = 0; i < block; i += 8) {
        __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xb + i), vinv),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);  // as ClampCode
        const __m256i c = _mm256_cvtps_epi32(v);
        vsum = _mm256_add_epi32(vsum, c);
        // 8 int32 → 8 int8 (values fit, so the saturating packs are exact).
        const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(q + i), _mm_packs_epi16(w16, w16));
      }
      __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(vsum), _mm256_extracti128_si256(vsum, 1));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
      out.scales[r * blocks + b] = scale;
      out.sums[r * blocks + b] = _mm_cvtsi128_si32(s4);
    }
  }
}

}  // namespace
#endif

void QuantizeInt8Blocks(const float* x, int64_t rows, int64_t in, int64_t block, const char* exact,
                        Int8Activations& out, const ActQuantConfig& mode) {
#if ACCULLM_HAVE_X86_SIMD
  if (ActiveIsa() >= Isa::kAvx2) {
    if (!mode.is_plain_nearest()) return QuantizeInt8BlocksWithModeSse41(x, rows, in, block, exact, mode, out);
    return QuantizeInt8BlocksAvx2(x, rows, in, block, exact, out);
  }
#endif
  QuantizeInt8BlocksScalar(x, rows, in, block, exact, out, mode);
}

}  // namespace accullm::kernels
