#include "kernels/cpu/sparse_ffn_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/dtype.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/low_bit_tiles_avx2.h"

namespace accullm::kernels {

namespace {

// The float a group contributes with, as the dense kernels compute it: scale · (xscale · 2^−frac).
inline float GroupFactor(float weight_scale, float x_scale, float inv_frac) {
  return weight_scale * (x_scale * inv_frac);
}

// Whether a group of all-zero activation codes may be skipped (see the header): its factor
// ws · (xs · 2^−frac) must be finite and ≥ 0 for every output. Steps are ≤ 65504 (F16) when
// the layout says they are finite; xs below 1e30 keeps the product finite.
inline bool EmptyGroupSkippable(const SparseColumnsLayout& w, float x_scale) {
  return w.steps_finite_nonnegative && x_scale >= 0.f && x_scale < 1e30f;
}

}  // namespace

// ---- Scalar references ----

void SparseRowsInt8Scalar(const SparseRowsLayout& w, const Int8Activations& x, const int32_t* kept, int64_t k_begin,
                          int64_t k_end, float* y) {
  const int64_t groups = w.groups(), chunks = w.group_words();
  const int frac = w.zero_frac_bits;
  const float inv_frac = 1.f / static_cast<float>(1 << frac);
  for (int64_t k = k_begin; k < k_end; ++k) {
    const int64_t row = kept[k];
    const uint32_t* words = w.row(row);
    float acc = 0.f;
    for (int64_t g = 0; g < groups; ++g) {
      const int8_t* xg = x.row(0) + g * w.group;
      int32_t dot = 0;
      for (int64_t c = 0; c < chunks; ++c) {
        const uint32_t word = *words++;
        for (int j = 0; j < 4; ++j) {
          const int32_t byte = static_cast<int32_t>((word >> (8 * j)) & 0xFF);
          if (w.nibbles()) dot += (byte & 15) * xg[8 * c + j] + (byte >> 4) * xg[8 * c + 4 + j];
          else dot += byte * xg[4 * c + j];
        }
      }
      const uint32_t meta = w.row_meta(row)[g];
      const int32_t zero = w.has_zeros ? static_cast<int32_t>((meta >> 16) & 0xFF) : (1 << (w.bits - 1));
      const int32_t d = dot * (1 << frac) - zero * x.sums[g];
      const float ws = w.has_scale_codes ? U8GroupScale(w.row_scales[row], static_cast<uint8_t>(meta & 0xFF))
                                         : F16ToF32(static_cast<uint16_t>(meta & 0xFFFF));
      acc = std::fma(static_cast<float>(d), GroupFactor(ws, x.scales[g], inv_frac), acc);
    }
    y[k] = acc;
  }
}

void FindNonzeroNeurons(const Int8Activations& x, SparseNeurons& out) {
  const int64_t groups = x.blocks();
  out.neurons.resize(static_cast<size_t>(x.in));
  out.group_begin.assign(static_cast<size_t>(groups + 1), 0);
  const int8_t* q = x.row(0);
  int32_t count = 0;
  for (int64_t g = 0; g < groups; ++g) {
    out.group_begin[g] = count;
    // Branch-free: at 50% sparsity a branch per neuron mispredicts half the time.
    for (int64_t j = g * x.block; j < (g + 1) * x.block; ++j) {
      out.neurons[count] = static_cast<int32_t>(j);
      count += q[j] != 0 ? 1 : 0;
    }
  }
  out.group_begin[groups] = count;
  out.neurons.resize(static_cast<size_t>(count));
}

// The reference runs every group's epilogue, as the dense kernel does: it checks the SIMD
// variant's skipping of empty groups rather than sharing it.
void SparseDownInt8Scalar(const SparseColumnsLayout& w, const Int8Activations& x, const SparseNeurons& nonzero,
                          int64_t block_begin, int64_t block_end, float* y) {
  const int64_t groups = w.groups();
  const int frac = w.zero_frac_bits;
  const float inv_frac = 1.f / static_cast<float>(1 << frac);
  const int8_t* q = x.row(0);
  const int64_t o_end = std::min(w.out, block_end * kSparseDownBlockOutputs);
  for (int64_t o = block_begin * kSparseDownBlockOutputs; o < o_end; ++o) {
    const SparseStripPosition at = SparseDownStripPosition(w, o);
    float acc = 0.f;
    for (int64_t g = 0; g < groups; ++g) {
      int32_t dot = 0;
      for (int32_t i = nonzero.group_begin[g]; i < nonzero.group_begin[g + 1]; ++i) {
        const int32_t j = nonzero.neurons[i];
        const int32_t byte = w.strip(j)[at.byte];
        const int32_t code = w.nibbles() ? (at.high_nibble ? byte >> 4 : byte & 15) : byte;
        dot += code * q[j];
      }
      const size_t meta = static_cast<size_t>(g * w.out_padded + o);
      const int32_t zero = w.zeros.empty() ? (1 << (w.bits - 1)) : w.zeros[meta];
      const int32_t d = dot * (1 << frac) - zero * x.sums[g];
      const float ws =
          w.scale_codes.empty() ? F16ToF32(w.scales[meta]) : U8GroupScale(w.row_scales[o], w.scale_codes[meta]);
      acc = std::fma(static_cast<float>(d), GroupFactor(ws, x.scales[g], inv_frac), acc);
    }
    y[o] = acc;
  }
}

#if ACCULLM_HAVE_X86_SIMD
// GCC 12's AVX-512 conversion intrinsics: see low_bit_int8_kernels.cc (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
namespace {

using tiles_avx2::Load32;

#define ACCULLM_SPARSE_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")))

// r[i] dword c becomes r[c] dword i: 16 rows' words at one position become one tile chunk.
ACCULLM_SPARSE_AVX512_TARGET inline void Transpose16x16(__m512i (&r)[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 16; i += 2) {  // t[i] lane L: r[i], r[i+1] at columns 4L, 4L+1 (t[i+1]: 4L+2, 4L+3)
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // u[i + c] lane L: column 4L + c of rows i..i+3
    u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int c = 0; c < 4; ++c) {  // t[c]: columns c, 8+c of rows 0..7; t[4+c]: 4+c, 12+c; t[8..]: rows 8..15
    t[c] = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x88);
    t[4 + c] = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xdd);
    t[8 + c] = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x88);
    t[12 + c] = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xdd);
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm512_shuffle_i32x4(t[c], t[8 + c], 0x88);
    r[8 + c] = _mm512_shuffle_i32x4(t[c], t[8 + c], 0xdd);
    r[4 + c] = _mm512_shuffle_i32x4(t[4 + c], t[12 + c], 0x88);
    r[12 + c] = _mm512_shuffle_i32x4(t[4 + c], t[12 + c], 0xdd);
  }
}

// The 4-byte products of one row's 16 code words (one cache line) with the activations
// arranged to match (xl: word c's low-nibble columns or its 4 byte columns; xh: its high-nibble
// columns): lane c = the exact int32 dot of word c.
template <bool kNibbles>
ACCULLM_SPARSE_AVX512_TARGET inline __m512i RowWordDots(const uint32_t* words, __m512i xl, __m512i xh) {
  const __m512i v = _mm512_load_si512(words);
  if constexpr (kNibbles) {
    const __m512i low_nibbles = _mm512_set1_epi8(0x0F);
    const __m512i lo = _mm512_and_si512(v, low_nibbles);
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low_nibbles);
    return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xl), hi, xh);
  } else {
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), v, xl);
  }
}

// 16 kept rows (rows[r], padded with the zero row), one activation row. Instead of moving the
// codes into the tiles' layout, each row's words are multiplied in place and the int32 results
// are transposed and summed: per window of 16 words, sums[L] lane r = Σ of row r's words
// 4L..4L+3 (32 columns at ≤ 4 bits, 16 at 5–8). A group is `lanes` such sums in a row (group
// words a multiple of 4, checked by the caller); its epilogue is the tiles' (TileAvx512 with
// kM = 1): the same integer and float operations per row, in group order.
template <bool kNibbles>
ACCULLM_SPARSE_AVX512_TARGET void RowBatchAvx512(const SparseRowsLayout& w, const Int8Activations& x, const int8_t* xlo,
                                                 const int8_t* xhi, uint32_t* metas, const int32_t (&rows)[16],
                                                 const int32_t (&next_rows)[16], float* y, int valid) {
  const int64_t groups = w.groups(), lanes = w.group_words() / 4;
  const int frac = w.zero_frac_bits;
  const float inv_frac = 1.f / static_cast<float>(1 << frac);
  const __m512i low_byte = _mm512_set1_epi32(0xFF);
  const __m512i symmetric_zero = _mm512_set1_epi32(1 << (w.bits - 1));
  // 16 row streams at once are more than the hardware prefetchers follow: the next batch's
  // rows are fetched line by line along this batch's (a batch ahead).
  const uint32_t* src[16];
  const uint32_t* next[16];
  alignas(64) float row_scale[16];
  for (int r = 0; r < 16; ++r) {
    src[r] = w.row(rows[r]);
    next[r] = w.row(next_rows[r]);
    row_scale[r] = w.has_scale_codes ? w.row_scales[rows[r]] : 0.f;
  }
  const __m512 row_scales = _mm512_load_ps(row_scale);
  // The 16 rows' steps and zeros, transposed 16 groups at a time: metas[16·g + r] = row r's
  // word of group g.
  for (int64_t g0 = 0; g0 < w.meta_stride; g0 += 16) {
    __m512i v[16];
    for (int r = 0; r < 16; ++r) v[r] = _mm512_load_si512(w.row_meta(rows[r]) + g0);
    Transpose16x16(v);
    for (int k = 0; k < 16; ++k) _mm512_store_si512(metas + 16 * (g0 + k), v[k]);
  }
  __m512 acc = _mm512_setzero_ps();
  __m512i dot = _mm512_setzero_si512();
  int64_t g = 0, lane = 0;  // the group the next lane sum belongs to, and its lanes so far
  for (int64_t at = 0; g < groups; at += 16) {
    for (int r = 0; r < 16; ++r) _mm_prefetch(reinterpret_cast<const char*>(next[r] + at), _MM_HINT_T1);
    const __m512i xl = _mm512_load_si512(xlo + 4 * at);
    const __m512i xh = kNibbles ? _mm512_load_si512(xhi + 4 * at) : xl;
    // Rows in pairs: t[p] lane L = (a_2p, a_2p+1, b_2p, b_2p+1), a = words 4L + 4L+2, b = 4L+1 + 4L+3.
    __m512i t[8];
    for (int p = 0; p < 8; ++p) {
      const __m512i p0 = RowWordDots<kNibbles>(src[2 * p] + at, xl, xh);
      const __m512i p1 = RowWordDots<kNibbles>(src[2 * p + 1] + at, xl, xh);
      t[p] = _mm512_add_epi32(_mm512_unpacklo_epi32(p0, p1), _mm512_unpackhi_epi32(p0, p1));
    }
    // u[b] lane L dword m = row 4b+m's words 4L..4L+3.
    __m512i u[4];
    for (int b = 0; b < 4; ++b)
      u[b] = _mm512_add_epi32(_mm512_unpacklo_epi64(t[2 * b], t[2 * b + 1]),
                              _mm512_unpackhi_epi64(t[2 * b], t[2 * b + 1]));
    const __m512i v0 = _mm512_shuffle_i32x4(u[0], u[1], 0x44), v1 = _mm512_shuffle_i32x4(u[0], u[1], 0xEE);
    const __m512i v2 = _mm512_shuffle_i32x4(u[2], u[3], 0x44), v3 = _mm512_shuffle_i32x4(u[2], u[3], 0xEE);
    const __m512i sums[4] = {_mm512_shuffle_i32x4(v0, v2, 0x88), _mm512_shuffle_i32x4(v0, v2, 0xDD),
                             _mm512_shuffle_i32x4(v1, v3, 0x88), _mm512_shuffle_i32x4(v1, v3, 0xDD)};
    for (int l = 0; l < 4 && g < groups; ++l) {
      dot = _mm512_add_epi32(dot, sums[l]);
      if (++lane < lanes) continue;
      const __m512i meta = _mm512_load_si512(metas + 16 * g);
      const __m512 ws =
          w.has_scale_codes
              ? _mm512_mul_ps(_mm512_mul_ps(row_scales, _mm512_cvtepi32_ps(_mm512_and_si512(meta, low_byte))),
                              _mm512_set1_ps(1.f / 255.f))
              : _mm512_cvtph_ps(_mm512_cvtepi32_epi16(meta));
      const __m512i zero = w.has_zeros ? _mm512_and_si512(_mm512_srli_epi32(meta, 16), low_byte) : symmetric_zero;
      const __m512i d = _mm512_sub_epi32(_mm512_slli_epi32(dot, static_cast<unsigned>(frac)),
                                         _mm512_mullo_epi32(zero, _mm512_set1_epi32(x.sums[g])));
      const __m512 factor = _mm512_mul_ps(ws, _mm512_set1_ps(x.scales[g] * inv_frac));
      acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), factor, acc);
      dot = _mm512_setzero_si512();
      lane = 0;
      ++g;
    }
  }
  _mm512_mask_storeu_ps(y, static_cast<__mmask16>((1u << valid) - 1), acc);
}

// The activations of row 0 arranged as the words: xlo word c = the columns of word c's low
// nibbles (or of its 4 bytes), xhi word c = those of its high nibbles; zero past `in`.
struct RowActivations {
  CacheLineVector<int8_t> lo, hi;
  CacheLineVector<uint32_t> metas;  // a batch's transposed steps and zeros
};

void ArrangeActivations(const SparseRowsLayout& w, const Int8Activations& x, RowActivations& out) {
  const size_t n = static_cast<size_t>(4 * w.row_words);
  out.lo.assign(n, 0);
  out.hi.assign(n, 0);
  const int8_t* q = x.row(0);
  if (!w.nibbles()) {
    std::memcpy(out.lo.data(), q, static_cast<size_t>(w.in));
    return;
  }
  for (int64_t c = 0; c < w.in / 8; ++c) {
    std::memcpy(out.lo.data() + 4 * c, q + 8 * c, 4);
    std::memcpy(out.hi.data() + 4 * c, q + 8 * c + 4, 4);
  }
}

template <bool kNibbles>
ACCULLM_SPARSE_AVX512_TARGET void RowsAvx512(const SparseRowsLayout& w, const Int8Activations& x, const int32_t* kept,
                                             int64_t k_begin, int64_t k_end, float* y) {
  thread_local RowActivations arranged;
  ArrangeActivations(w, x, arranged);
  arranged.metas.resize(static_cast<size_t>(16 * w.meta_stride));
  for (int64_t k = k_begin; k < k_end; k += 16) {
    const int valid = static_cast<int>(std::min<int64_t>(16, k_end - k));
    int32_t rows[16];
    for (int r = 0; r < 16; ++r) rows[r] = r < valid ? kept[k + r] : static_cast<int32_t>(w.out);  // the zero row
    // The next batch's rows (the zero row past the end) and its steps and zeros.
    int32_t next_rows[16];
    for (int r = 0; r < 16; ++r) next_rows[r] = k + 16 + r < k_end ? kept[k + 16 + r] : static_cast<int32_t>(w.out);
    for (int64_t r = k + 16; r < std::min(k_end, k + 32); ++r) {
      const char* meta = reinterpret_cast<const char*>(w.row_meta(kept[r]));
      for (int64_t byte = 0; byte < 4 * w.meta_stride; byte += 64) _mm_prefetch(meta + byte, _MM_HINT_T0);
    }
    RowBatchAvx512<kNibbles>(w, x, arranged.lo.data(), arranged.hi.data(), arranged.metas.data(), rows, next_rows,
                             y + k, valid);
  }
}

// Four strips' bytes a[0..3] (64 outputs in the segment order of sparse_ffn_layouts.h) as
// q[k] dword i = (a0, a1, a2, a3) of output 16k + i.
ACCULLM_SPARSE_AVX512_TARGET inline void InterleaveFour(const __m512i (&a)[4], __m512i* q) {
  const __m512i p01lo = _mm512_unpacklo_epi8(a[0], a[1]), p01hi = _mm512_unpackhi_epi8(a[0], a[1]);
  const __m512i p23lo = _mm512_unpacklo_epi8(a[2], a[3]), p23hi = _mm512_unpackhi_epi8(a[2], a[3]);
  q[0] = _mm512_unpacklo_epi16(p01lo, p23lo);
  q[1] = _mm512_unpackhi_epi16(p01lo, p23lo);
  q[2] = _mm512_unpacklo_epi16(p01hi, p23hi);
  q[3] = _mm512_unpackhi_epi16(p01hi, p23hi);
}

// A thread's int32 group sums and float accumulators for its outputs (8 KB each for 2048
// outputs: L1-resident while the kept strips stream through).
struct DownScratch {
  std::vector<int32_t> dot;
  std::vector<float> acc;
};

// acc + 0.f: what the dense fma(0, factor ≥ 0, acc) of a skipped group leaves (−0.f → +0.f).
ACCULLM_SPARSE_AVX512_TARGET inline void AddZero(float* acc, int64_t n) {
  for (int64_t i = 0; i < n; i += 16)
    _mm512_storeu_ps(acc + i, _mm512_add_ps(_mm512_loadu_ps(acc + i), _mm512_setzero_ps()));
}

template <bool kNibbles>
ACCULLM_SPARSE_AVX512_TARGET void DownAvx512(const SparseColumnsLayout& w, const Int8Activations& x,
                                             const SparseNeurons& nonzero, int64_t b0, int64_t b1, float* y) {
  const int64_t blocks = b1 - b0, n = blocks * kSparseDownBlockOutputs, o0 = b0 * kSparseDownBlockOutputs;
  if (blocks <= 0) return;
  thread_local DownScratch scratch;
  if (static_cast<int64_t>(scratch.dot.size()) < n) {
    scratch.dot.resize(static_cast<size_t>(n));
    scratch.acc.resize(static_cast<size_t>(n));
  }
  int32_t* dot = scratch.dot.data();
  float* acc = scratch.acc.data();
  std::fill(acc, acc + n, 0.f);
  const int frac = w.zero_frac_bits;
  const float inv_frac = 1.f / static_cast<float>(1 << frac);
  const __m512i low_nibbles = _mm512_set1_epi8(0x0F), high_nibbles = _mm512_set1_epi8(static_cast<char>(0xF0));
  const __m512i symmetric_zero = _mm512_set1_epi32(1 << (w.bits - 1));
  const int8_t* q = x.row(0);
  const int64_t strip_offset = kNibbles ? o0 / 2 : o0;
  const int64_t block_bytes = kNibbles ? 64 : 128;
  bool add_zero = false;  // skipped empty groups owe acc + 0.f (once: x + 0 + 0 = x + 0)
  for (int64_t g = 0; g < w.groups(); ++g) {
    const int32_t ib = nonzero.group_begin[g], ie = nonzero.group_begin[g + 1];
    const float xs = x.scales[g];
    if (ib == ie && EmptyGroupSkippable(w, xs)) {
      add_zero = true;
      continue;
    }
    if (add_zero) AddZero(acc, n);
    add_zero = false;
    if (ib == ie) std::fill(dot, dot + n, 0);
    // Eight nonzero neurons per pass over the outputs (two interleaved quads): the int32 sums
    // go through L1 once per eight strips. Padding neurons multiply any strip by 0.
    for (int32_t i = ib; i < ie; i += 8) {
      const uint8_t* s[8];
      uint32_t q4[2] = {0, 0};
      for (int t = 0; t < 8; ++t) {
        const bool real = i + t < ie;
        const int32_t j = nonzero.neurons[real ? i + t : ib];
        s[t] = w.strip(j) + strip_offset;
        q4[t / 4] |= static_cast<uint32_t>(static_cast<uint8_t>(real ? q[j] : 0)) << (8 * (t % 4));
      }
      // The next pass's strips, fetched line by line while this pass runs: a strip is too short
      // (16 lines at 2048 outputs) for the hardware prefetchers to pick it up in time.
      const uint8_t* next[8];
      int prefetched = 0;
      for (int32_t t = i + 8; t < std::min(ie, i + 16); ++t)
        next[prefetched++] = w.strip(nonzero.neurons[t]) + strip_offset;
      if (prefetched == 0 && g + 1 < w.groups()) {  // the next group's first pass
        const int32_t nb = nonzero.group_begin[g + 1], ne = nonzero.group_begin[g + 2];
        for (int32_t t = nb; t < std::min(ne, nb + 8); ++t)
          next[prefetched++] = w.strip(nonzero.neurons[t]) + strip_offset;
      }
      const __m512i xa = _mm512_set1_epi32(static_cast<int32_t>(q4[0]));
      const __m512i xb = _mm512_set1_epi32(static_cast<int32_t>(q4[1]));
      const bool first = i == ib;
      for (int64_t b = 0; b < blocks; ++b) {
        for (int t = 0; t < prefetched; ++t) {
          _mm_prefetch(reinterpret_cast<const char*>(next[t] + b * block_bytes), _MM_HINT_T1);
          if constexpr (!kNibbles)
            _mm_prefetch(reinterpret_cast<const char*>(next[t] + b * block_bytes + 64), _MM_HINT_T1);
        }
        int32_t* d = dot + b * kSparseDownBlockOutputs;
        __m512i sums[8];
        for (int k = 0; k < 8; ++k) sums[k] = first ? _mm512_setzero_si512() : _mm512_loadu_si512(d + 16 * k);
        for (int half = 0; half < 2; ++half) {
          const __m512i xq = half == 0 ? xa : xb;
          __m512i a[4], quads[4];
          if constexpr (kNibbles) {
            // Interleave the packed bytes (two outputs each), then split: low nibbles are
            // outputs 0..63 of the block, high ones 64..127, kept as 16·code (their sums are
            // 16 × the true ones until the epilogue).
            for (int t = 0; t < 4; ++t) a[t] = _mm512_loadu_si512(s[4 * half + t] + b * block_bytes);
            InterleaveFour(a, quads);
            for (int k = 0; k < 4; ++k) {
              sums[k] = _mm512_dpbusd_epi32(sums[k], _mm512_and_si512(quads[k], low_nibbles), xq);
              sums[4 + k] = _mm512_dpbusd_epi32(sums[4 + k], _mm512_and_si512(quads[k], high_nibbles), xq);
            }
          } else {
            for (int seg = 0; seg < 2; ++seg) {
              for (int t = 0; t < 4; ++t) a[t] = _mm512_loadu_si512(s[4 * half + t] + b * block_bytes + 64 * seg);
              InterleaveFour(a, quads);
              for (int k = 0; k < 4; ++k) sums[4 * seg + k] = _mm512_dpbusd_epi32(sums[4 * seg + k], quads[k], xq);
            }
          }
        }
        for (int k = 0; k < 8; ++k) _mm512_storeu_si512(d + 16 * k, sums[k]);
      }
    }
    // The dense epilogue for every output of the range, group g.
    const __m512i sum = _mm512_set1_epi32(x.sums[g]);
    const __m512 xfactor = _mm512_set1_ps(xs * inv_frac);
    const int64_t meta0 = g * w.out_padded + o0;
    for (int64_t i = 0; i < n; i += 16) {
      const int64_t at = meta0 + i;
      __m512 ws;
      if (w.scale_codes.empty()) {
        ws = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.scales.data() + at)));
      } else {
        const __m512 codes = _mm512_cvtepi32_ps(
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.scale_codes.data() + at))));
        ws = _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(w.row_scales.data() + o0 + i), codes),
                           _mm512_set1_ps(1.f / 255.f));
      }
      const __m512i zero =
          w.zeros.empty()
              ? symmetric_zero
              : _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.zeros.data() + at)));
      __m512i dsum = _mm512_loadu_si512(dot + i);
      if (kNibbles && i % kSparseDownBlockOutputs >= 64) dsum = _mm512_srai_epi32(dsum, 4);  // exact: 16 | dsum
      const __m512i d =
          _mm512_sub_epi32(_mm512_slli_epi32(dsum, static_cast<unsigned>(frac)), _mm512_mullo_epi32(zero, sum));
      _mm512_storeu_ps(acc + i,
                       _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(ws, xfactor), _mm512_loadu_ps(acc + i)));
    }
  }
  if (add_zero) AddZero(acc, n);
  const int64_t o_end = std::min(w.out, b1 * kSparseDownBlockOutputs);
  std::memcpy(y + o0, acc, static_cast<size_t>(o_end - o0) * sizeof(float));
}

// ---- AVX2 (no vpdpbusd: vpmaddubsw + vpmaddwd, exact for codes ≤ 127 and |q| ≤ 127) ----

#define ACCULLM_SPARSE_AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

// Σ over each 4-byte lane of u8 × s8 as int32; exact for u8 ≤ 127 (a pair ≤ 2·127·127).
ACCULLM_SPARSE_AVX2_TARGET inline __m256i DotLanes256(__m256i u8, __m256i s8) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u8, s8), _mm256_set1_epi16(1));
}

// Lane c (of 8) = the exact int32 dot of one row's code word c with its activations (xl: word
// c's low-nibble or byte columns, xh: its high-nibble columns). 8-bit codes overflow
// vpmaddubsw's pairs: code = 16·hi + lo, both exact.
template <bool kNibbles, bool kEightBit>
ACCULLM_SPARSE_AVX2_TARGET inline __m256i RowWordDots256(const uint32_t* words, __m256i xl, __m256i xh) {
  const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(words));
  const __m256i low_nibbles = _mm256_set1_epi8(0x0F);
  if constexpr (kNibbles) {
    const __m256i lo = _mm256_and_si256(v, low_nibbles);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low_nibbles);
    // Pairs ≤ 2·15·127 each, their sum ≤ 7620: exact in 16 bits before one widening.
    return _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo, xl), _mm256_maddubs_epi16(hi, xh)),
                             _mm256_set1_epi16(1));
  } else if constexpr (kEightBit) {
    const __m256i lo = _mm256_and_si256(v, low_nibbles);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low_nibbles);
    return _mm256_add_epi32(DotLanes256(lo, xl), _mm256_slli_epi32(DotLanes256(hi, xl), 4));
  } else {
    return DotLanes256(v, xl);
  }
}

// r[i] dword c becomes r[c] dword i (8 × 8 32-bit words).
ACCULLM_SPARSE_AVX2_TARGET inline void Transpose8x8(__m256i (&r)[8]) {
  __m256i t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {  // u[i + c] lane L: column 4L + c of rows i..i+3
    u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
    u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
    u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
    u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2x128_si256(u[c], u[4 + c], 0x20);
    r[4 + c] = _mm256_permute2x128_si256(u[c], u[4 + c], 0x31);
  }
}

// 8 kept rows at once, as RowBatchAvx512 does 16: each row's words multiplied in place, the
// int32 word dots transposed and summed so that per window of 8 words sums[L] lane r = Σ of
// row r's words 4L..4L+3; a group is `lanes` such sums; then the tiles' epilogue per row, in
// group order (AccumulateGroup256, the dense AVX2 kernels' float steps).
template <bool kNibbles, bool kEightBit>
ACCULLM_SPARSE_AVX2_TARGET void RowBatchAvx2(const SparseRowsLayout& w, const Int8Activations& x, const int8_t* xlo,
                                             const int8_t* xhi, uint32_t* metas, const int32_t (&rows)[8],
                                             const int32_t (&next_rows)[8], float* y, int valid) {
  const int64_t groups = w.groups(), lanes = w.group_words() / 4;
  const int frac = w.zero_frac_bits;
  const float inv_frac = 1.f / static_cast<float>(1 << frac);
  const __m256i low_byte = _mm256_set1_epi32(0xFF), low_half = _mm256_set1_epi32(0xFFFF);
  const __m256i symmetric_zero = _mm256_set1_epi32(1 << (w.bits - 1));
  const uint32_t* src[8];
  const uint32_t* next[8];
  alignas(32) float row_scale[8];
  for (int r = 0; r < 8; ++r) {
    src[r] = w.row(rows[r]);
    next[r] = w.row(next_rows[r]);
    row_scale[r] = w.has_scale_codes ? w.row_scales[rows[r]] : 0.f;
  }
  const __m256 row_scales = _mm256_load_ps(row_scale);
  for (int64_t g0 = 0; g0 < w.meta_stride; g0 += 8) {  // metas[8·g + r] = row r's word of group g
    __m256i v[8];
    for (int r = 0; r < 8; ++r) v[r] = _mm256_load_si256(reinterpret_cast<const __m256i*>(w.row_meta(rows[r]) + g0));
    Transpose8x8(v);
    for (int k = 0; k < 8; ++k) _mm256_store_si256(reinterpret_cast<__m256i*>(metas + 8 * (g0 + k)), v[k]);
  }
  __m256 acc = _mm256_setzero_ps();
  __m256i dot = _mm256_setzero_si256();
  int64_t g = 0, lane = 0;
  for (int64_t at = 0; g < groups; at += 8) {
    if (at % 16 == 0)  // one line per row per 16 words
      for (int r = 0; r < 8; ++r) _mm_prefetch(reinterpret_cast<const char*>(next[r] + at), _MM_HINT_T1);
    const __m256i xl = _mm256_load_si256(reinterpret_cast<const __m256i*>(xlo + 4 * at));
    const __m256i xh = kNibbles ? _mm256_load_si256(reinterpret_cast<const __m256i*>(xhi + 4 * at)) : xl;
    __m256i t[4];  // rows in pairs: t[p] lane L = (a_0+a_2, b_0+b_2, a_1+a_3, b_1+b_3) of words 4L..
    for (int p = 0; p < 4; ++p) {
      const __m256i p0 = RowWordDots256<kNibbles, kEightBit>(src[2 * p] + at, xl, xh);
      const __m256i p1 = RowWordDots256<kNibbles, kEightBit>(src[2 * p + 1] + at, xl, xh);
      t[p] = _mm256_add_epi32(_mm256_unpacklo_epi32(p0, p1), _mm256_unpackhi_epi32(p0, p1));
    }
    // u[b] lane L dword m = row 4b+m's words 4L..4L+3.
    const __m256i u0 = _mm256_add_epi32(_mm256_unpacklo_epi64(t[0], t[1]), _mm256_unpackhi_epi64(t[0], t[1]));
    const __m256i u1 = _mm256_add_epi32(_mm256_unpacklo_epi64(t[2], t[3]), _mm256_unpackhi_epi64(t[2], t[3]));
    const __m256i sums[2] = {_mm256_permute2x128_si256(u0, u1, 0x20), _mm256_permute2x128_si256(u0, u1, 0x31)};
    for (int l = 0; l < 2 && g < groups; ++l) {
      dot = _mm256_add_epi32(dot, sums[l]);
      if (++lane < lanes) continue;
      const __m256i meta = _mm256_load_si256(reinterpret_cast<const __m256i*>(metas + 8 * g));
      __m256 ws;
      if (w.has_scale_codes) {
        ws = _mm256_mul_ps(_mm256_mul_ps(row_scales, _mm256_cvtepi32_ps(_mm256_and_si256(meta, low_byte))),
                           _mm256_set1_ps(1.f / 255.f));
      } else {  // the low 16 bits of each word, packed, as F16
        const __m256i packed = _mm256_permute4x64_epi64(
            _mm256_packus_epi32(_mm256_and_si256(meta, low_half), _mm256_setzero_si256()), 0x08);
        ws = _mm256_cvtph_ps(_mm256_castsi256_si128(packed));
      }
      const __m256i zero = w.has_zeros ? _mm256_and_si256(_mm256_srli_epi32(meta, 16), low_byte) : symmetric_zero;
      acc = tiles_avx2::AccumulateGroup256(dot, ws, zero, x, g, frac, inv_frac, acc);
      dot = _mm256_setzero_si256();
      lane = 0;
      ++g;
    }
  }
  alignas(32) float out[8];
  _mm256_store_ps(out, acc);
  for (int r = 0; r < valid; ++r) y[r] = out[r];
}

template <bool kNibbles, bool kEightBit>
ACCULLM_SPARSE_AVX2_TARGET void RowsAvx2(const SparseRowsLayout& w, const Int8Activations& x, const int32_t* kept,
                                         int64_t k_begin, int64_t k_end, float* y) {
  thread_local RowActivations arranged;
  ArrangeActivations(w, x, arranged);
  arranged.metas.resize(static_cast<size_t>(8 * w.meta_stride));
  for (int64_t k = k_begin; k < k_end; k += 8) {
    const int valid = static_cast<int>(std::min<int64_t>(8, k_end - k));
    int32_t rows[8], next_rows[8];
    for (int r = 0; r < 8; ++r) {
      rows[r] = r < valid ? kept[k + r] : static_cast<int32_t>(w.out);  // the zero row
      next_rows[r] = k + 8 + r < k_end ? kept[k + 8 + r] : static_cast<int32_t>(w.out);
    }
    for (int64_t r = k + 8; r < std::min(k_end, k + 16); ++r) {
      const char* meta = reinterpret_cast<const char*>(w.row_meta(kept[r]));
      for (int64_t byte = 0; byte < 4 * w.meta_stride; byte += 64) _mm_prefetch(meta + byte, _MM_HINT_T0);
    }
    RowBatchAvx2<kNibbles, kEightBit>(w, x, arranged.lo.data(), arranged.hi.data(), arranged.metas.data(), rows,
                                      next_rows, y + k, valid);
  }
}

// Four strips' 32 bytes (half h of a 64-output segment, sparse_ffn_layouts.h) as q[k] dword
// i = (a0, a1, a2, a3) of segment output 16k + 8h + i: the 128-bit lanes of InterleaveFour.
ACCULLM_SPARSE_AVX2_TARGET inline void InterleaveFour256(const __m256i (&a)[4], __m256i* q) {
  const __m256i p01lo = _mm256_unpacklo_epi8(a[0], a[1]), p01hi = _mm256_unpackhi_epi8(a[0], a[1]);
  const __m256i p23lo = _mm256_unpacklo_epi8(a[2], a[3]), p23hi = _mm256_unpackhi_epi8(a[2], a[3]);
  q[0] = _mm256_unpacklo_epi16(p01lo, p23lo);
  q[1] = _mm256_unpackhi_epi16(p01lo, p23lo);
  q[2] = _mm256_unpacklo_epi16(p01hi, p23hi);
  q[3] = _mm256_unpackhi_epi16(p01hi, p23hi);
}

ACCULLM_SPARSE_AVX2_TARGET inline void AddZero256(float* acc, int64_t n) {
  for (int64_t i = 0; i < n; i += 8)
    _mm256_storeu_ps(acc + i, _mm256_add_ps(_mm256_loadu_ps(acc + i), _mm256_setzero_ps()));
}

// Down, as DownAvx512: per group, eight nonzero neurons per pass (two quads of four, their
// codes interleaved into one output's four codes per dword), int32 sums per output kept in L1
// for the thread's outputs, then the dense epilogue per group. Nibble codes keep the true sums
// (the high nibble is shifted down, not kept as 16·code: vpmaddubsw would saturate).
template <bool kNibbles, bool kEightBit>
ACCULLM_SPARSE_AVX2_TARGET void DownAvx2(const SparseColumnsLayout& w, const Int8Activations& x,
                                         const SparseNeurons& nonzero, int64_t b0, int64_t b1, float* y) {
  const int64_t blocks = b1 - b0, n = blocks * kSparseDownBlockOutputs, o0 = b0 * kSparseDownBlockOutputs;
  if (blocks <= 0) return;
  thread_local DownScratch scratch;
  if (static_cast<int64_t>(scratch.dot.size()) < n) {
    scratch.dot.resize(static_cast<size_t>(n));
    scratch.acc.resize(static_cast<size_t>(n));
  }
  int32_t* dot = scratch.dot.data();
  float* acc = scratch.acc.data();
  std::fill(acc, acc + n, 0.f);
  const int frac = w.zero_frac_bits;
  const float inv_frac = 1.f / static_cast<float>(1 << frac);
  const __m256i low_nibbles = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  const __m256i symmetric_zero = _mm256_set1_epi32(1 << (w.bits - 1));
  const int8_t* q = x.row(0);
  const int64_t strip_offset = kNibbles ? o0 / 2 : o0;
  const int64_t block_bytes = kNibbles ? 64 : 128;
  bool add_zero = false;
  for (int64_t g = 0; g < w.groups(); ++g) {
    const int32_t ib = nonzero.group_begin[g], ie = nonzero.group_begin[g + 1];
    const float xs = x.scales[g];
    if (ib == ie && EmptyGroupSkippable(w, xs)) {
      add_zero = true;
      continue;
    }
    if (add_zero) AddZero256(acc, n);
    add_zero = false;
    if (ib == ie) std::fill(dot, dot + n, 0);
    for (int32_t i = ib; i < ie; i += 8) {
      const uint8_t* s[8];
      uint32_t q4[2] = {0, 0};
      for (int t = 0; t < 8; ++t) {
        const bool real = i + t < ie;
        const int32_t j = nonzero.neurons[real ? i + t : ib];
        s[t] = w.strip(j) + strip_offset;
        q4[t / 4] |= static_cast<uint32_t>(static_cast<uint8_t>(real ? q[j] : 0)) << (8 * (t % 4));
      }
      const uint8_t* next[8];
      int prefetched = 0;
      for (int32_t t = i + 8; t < std::min(ie, i + 16); ++t)
        next[prefetched++] = w.strip(nonzero.neurons[t]) + strip_offset;
      if (prefetched == 0 && g + 1 < w.groups()) {
        const int32_t nb = nonzero.group_begin[g + 1], ne = nonzero.group_begin[g + 2];
        for (int32_t t = nb; t < std::min(ne, nb + 8); ++t)
          next[prefetched++] = w.strip(nonzero.neurons[t]) + strip_offset;
      }
      const __m256i xq[2] = {_mm256_set1_epi32(static_cast<int32_t>(q4[0])),
                             _mm256_set1_epi32(static_cast<int32_t>(q4[1]))};
      const bool first = i == ib;
      for (int64_t b = 0; b < blocks; ++b) {
        for (int t = 0; t < prefetched; ++t) {
          _mm_prefetch(reinterpret_cast<const char*>(next[t] + b * block_bytes), _MM_HINT_T1);
          if constexpr (!kNibbles)
            _mm_prefetch(reinterpret_cast<const char*>(next[t] + b * block_bytes + 64), _MM_HINT_T1);
        }
        int32_t* d = dot + b * kSparseDownBlockOutputs;
        // 32-byte pieces of the block: nibbles, h = 0, 1 (each holding segments 0 and 1 in
        // its low and high nibbles); bytes, (segment, h) = 4 pieces.
        constexpr int kPieces = kNibbles ? 2 : 4;
        for (int piece = 0; piece < kPieces; ++piece) {
          const int h = piece % 2;
          const int64_t byte_at = kNibbles ? 32 * h : 64 * (piece / 2) + 32 * h;
          __m256i codes[2][4];  // per quad
          for (int quad = 0; quad < 2; ++quad) {
            __m256i a[4];
            for (int t = 0; t < 4; ++t)
              a[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s[4 * quad + t] + b * block_bytes + byte_at));
            InterleaveFour256(a, codes[quad]);
          }
          for (int k = 0; k < 4; ++k) {
            if constexpr (kNibbles) {
              // Low nibbles: segment 0's outputs, high: segment 1's. Two quads' pairs
              // (≤ 2·15·127 each) add exactly in 16 bits.
              const __m256i lo =
                  _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_and_si256(codes[0][k], low_nibbles), xq[0]),
                                   _mm256_maddubs_epi16(_mm256_and_si256(codes[1][k], low_nibbles), xq[1]));
              const __m256i hi = _mm256_add_epi16(
                  _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(codes[0][k], 4), low_nibbles), xq[0]),
                  _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(codes[1][k], 4), low_nibbles), xq[1]));
              int32_t* dl = d + 16 * k + 8 * h;
              int32_t* dh = dl + 64;
              const __m256i sl = _mm256_madd_epi16(lo, ones), sh = _mm256_madd_epi16(hi, ones);
              _mm256_storeu_si256(
                  reinterpret_cast<__m256i*>(dl),
                  first ? sl : _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<__m256i*>(dl)), sl));
              _mm256_storeu_si256(
                  reinterpret_cast<__m256i*>(dh),
                  first ? sh : _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<__m256i*>(dh)), sh));
            } else {
              int32_t* dl = d + 64 * (piece / 2) + 16 * k + 8 * h;
              __m256i sum;
              if constexpr (kEightBit) {  // code = 16·hi + lo, each nibble's dots exact
                const __m256i lo =
                    _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_and_si256(codes[0][k], low_nibbles), xq[0]),
                                     _mm256_maddubs_epi16(_mm256_and_si256(codes[1][k], low_nibbles), xq[1]));
                const __m256i hi = _mm256_add_epi16(
                    _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(codes[0][k], 4), low_nibbles), xq[0]),
                    _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(codes[1][k], 4), low_nibbles), xq[1]));
                sum = _mm256_add_epi32(_mm256_madd_epi16(lo, ones), _mm256_slli_epi32(_mm256_madd_epi16(hi, ones), 4));
              } else {  // codes ≤ 127: a pair ≤ 2·127·127, two quads' would not fit 16 bits
                sum = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(codes[0][k], xq[0]), ones),
                                       _mm256_madd_epi16(_mm256_maddubs_epi16(codes[1][k], xq[1]), ones));
              }
              _mm256_storeu_si256(
                  reinterpret_cast<__m256i*>(dl),
                  first ? sum : _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<__m256i*>(dl)), sum));
            }
          }
        }
      }
    }
    // The dense epilogue for every output of the range, group g.
    const __m256i sum = _mm256_set1_epi32(x.sums[g]);
    const __m256 xfactor = _mm256_set1_ps(xs * inv_frac);
    const int64_t meta0 = g * w.out_padded + o0;
    for (int64_t i = 0; i < n; i += 8) {
      const int64_t at = meta0 + i;
      __m256 ws;
      if (w.scale_codes.empty()) {
        ws = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.scales.data() + at)));
      } else {
        const __m256 codes = _mm256_cvtepi32_ps(
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w.scale_codes.data() + at))));
        ws = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(w.row_scales.data() + o0 + i), codes),
                           _mm256_set1_ps(1.f / 255.f));
      }
      const __m256i zero =
          w.zeros.empty()
              ? symmetric_zero
              : _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w.zeros.data() + at)));
      const __m256i dsum = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(dot + i));
      const __m256i dd = _mm256_sub_epi32(_mm256_slli_epi32(dsum, frac), _mm256_mullo_epi32(zero, sum));
      _mm256_storeu_ps(acc + i,
                       _mm256_fmadd_ps(_mm256_cvtepi32_ps(dd), _mm256_mul_ps(ws, xfactor), _mm256_loadu_ps(acc + i)));
    }
  }
  if (add_zero) AddZero256(acc, n);
  const int64_t o_end = std::min(w.out, b1 * kSparseDownBlockOutputs);
  std::memcpy(y + o0, acc, static_cast<size_t>(o_end - o0) * sizeof(float));
}
}  // namespace

bool SparseRowsInt8Avx512(const SparseRowsLayout& w, const Int8Activations& x, const int32_t* kept, int64_t k_begin,
                          int64_t k_end, float* y) {
  if (DetectedIsa() < Isa::kAvx512) return false;
  if (w.group_words() % 4 != 0) {  // groups that are not whole 128-bit lanes of words
    SparseRowsInt8Scalar(w, x, kept, k_begin, k_end, y);
    return true;
  }
  if (w.nibbles()) RowsAvx512<true>(w, x, kept, k_begin, k_end, y);
  else RowsAvx512<false>(w, x, kept, k_begin, k_end, y);
  return true;
}

bool SparseDownInt8Avx512(const SparseColumnsLayout& w, const Int8Activations& x, const SparseNeurons& nonzero,
                          int64_t block_begin, int64_t block_end, float* y) {
  if (DetectedIsa() < Isa::kAvx512) return false;
  if (w.nibbles()) DownAvx512<true>(w, x, nonzero, block_begin, block_end, y);
  else DownAvx512<false>(w, x, nonzero, block_begin, block_end, y);
  return true;
}

bool SparseRowsInt8Avx2(const SparseRowsLayout& w, const Int8Activations& x, const int32_t* kept, int64_t k_begin,
                        int64_t k_end, float* y) {
  if (DetectedIsa() < Isa::kAvx2) return false;
  if (w.group_words() % 4 != 0) {  // groups that are not whole 128-bit lanes of words
    SparseRowsInt8Scalar(w, x, kept, k_begin, k_end, y);
    return true;
  }
  if (w.nibbles()) RowsAvx2<true, false>(w, x, kept, k_begin, k_end, y);
  else if (w.bits == 8) RowsAvx2<false, true>(w, x, kept, k_begin, k_end, y);
  else RowsAvx2<false, false>(w, x, kept, k_begin, k_end, y);
  return true;
}

bool SparseDownInt8Avx2(const SparseColumnsLayout& w, const Int8Activations& x, const SparseNeurons& nonzero,
                        int64_t block_begin, int64_t block_end, float* y) {
  if (DetectedIsa() < Isa::kAvx2) return false;
  if (w.nibbles()) DownAvx2<true, false>(w, x, nonzero, block_begin, block_end, y);
  else if (w.bits == 8) DownAvx2<false, true>(w, x, nonzero, block_begin, block_end, y);
  else DownAvx2<false, false>(w, x, nonzero, block_begin, block_end, y);
  return true;
}

#else
bool SparseRowsInt8Avx512(const SparseRowsLayout&, const Int8Activations&, const int32_t*, int64_t, int64_t, float*) {
  return false;
}
bool SparseDownInt8Avx512(const SparseColumnsLayout&, const Int8Activations&, const SparseNeurons&, int64_t, int64_t,
                          float*) {
  return false;
}
bool SparseRowsInt8Avx2(const SparseRowsLayout&, const Int8Activations&, const int32_t*, int64_t, int64_t, float*) {
  return false;
}
bool SparseDownInt8Avx2(const SparseColumnsLayout&, const Int8Activations&, const SparseNeurons&, int64_t, int64_t,
                        float*) {
  return false;
}
#endif

void SparseRowsInt8(const SparseRowsLayout& w, const Int8Activations& x, const int32_t* kept, int64_t k_begin,
                    int64_t k_end, float* y) {
  if (ActiveIsa() >= Isa::kAvx512 && SparseRowsInt8Avx512(w, x, kept, k_begin, k_end, y)) return;
  if (ActiveIsa() >= Isa::kAvx2 && SparseRowsInt8Avx2(w, x, kept, k_begin, k_end, y)) return;
  SparseRowsInt8Scalar(w, x, kept, k_begin, k_end, y);
}

void SparseDownInt8(const SparseColumnsLayout& w, const Int8Activations& x, const SparseNeurons& nonzero,
                    int64_t block_begin, int64_t block_end, float* y) {
  if (ActiveIsa() >= Isa::kAvx512 && SparseDownInt8Avx512(w, x, nonzero, block_begin, block_end, y)) return;
  if (ActiveIsa() >= Isa::kAvx2 && SparseDownInt8Avx2(w, x, nonzero, block_begin, block_end, y)) return;
  SparseDownInt8Scalar(w, x, nonzero, block_begin, block_end, y);
}

}  // namespace accullm::kernels
