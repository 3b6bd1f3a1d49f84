#include "kernels/cpu/sparse_ffn_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/dtype.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/dot_bytes_avx512.h"
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
        const uint32_t word = words[w.word_index(g, c)];
        for (int j = 0; j < 4; ++j) {
          const int32_t byte = static_cast<int32_t>((word >> (8 * j)) & 0xFF);
          if (w.nibbles()) dot += (byte & 15) * xg[8 * c + j] + (byte >> 4) * xg[8 * c + 4 + j];
          else dot += byte * xg[4 * c + j];
        }
      }
      const int32_t zero = w.has_zeros ? static_cast<int32_t>(w.row_zeros(row)[g]) : (1 << (w.bits - 1));
      const int32_t d = dot * (1 << frac) - zero * x.sums[g];
      uint16_t step = 0;
      if (!w.has_scale_codes) std::memcpy(&step, w.row_steps(row) + 2 * g, 2);
      const float ws = w.has_scale_codes ? U8GroupScale(w.row_scales[row], w.row_steps(row)[g]) : F16ToF32(step);
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

// The activations and per-group constants of row 0, arranged as a row's words (a lane per group
// of a block, sparse_ffn_layouts.h), and a batch's scratch. Zero past `in` and past the groups.
struct RowActivations {
  WeightVector<int8_t> lo, hi;        // [row_words · 4]: word i's low-nibble (or byte) and high-nibble columns
  WeightVector<int32_t> sums;         // [meta_stride]: x.sums
  WeightVector<int32_t> neg_sums_lo;  // [meta_stride]: −x.sums in the low 16 bits (when it fits)
  WeightVector<float> factors;        // [meta_stride]: x.scales · 2^−frac, as the dense epilogue rounds it
  WeightVector<int32_t> d;            // a batch's integer group terms, [blocks, rows, 16 groups]
  WeightVector<float> f;              // a batch's float group factors, [blocks, rows, 16 groups]
};

// Whether −Σx of a group fits a signed 16-bit lane (|q| ≤ 128), so that zero · Σx can be one
// 16-bit multiply-add against the zero byte in a step-and-zero word.
inline bool SumsFit16(const SparseRowsLayout& w) { return w.group * 128 <= 32767; }

void ArrangeActivations(const SparseRowsLayout& w, const Int8Activations& x, int64_t batch_rows, RowActivations& out) {
  const size_t n = static_cast<size_t>(4 * w.row_words), groups_padded = static_cast<size_t>(w.meta_stride);
  out.lo.assign(n, 0);
  out.hi.assign(n, 0);
  out.sums.assign(groups_padded, 0);
  out.neg_sums_lo.assign(groups_padded, 0);
  out.factors.assign(groups_padded, 0.f);
  out.d.resize(groups_padded * static_cast<size_t>(batch_rows));
  out.f.resize(groups_padded * static_cast<size_t>(batch_rows));
  const float inv_frac = 1.f / static_cast<float>(1 << w.zero_frac_bits);
  const int8_t* q = x.row(0);
  const int64_t words = w.group_words(), cols = w.chunk_columns();
  for (int64_t g = 0; g < w.groups(); ++g) {
    out.sums[g] = x.sums[g];
    out.neg_sums_lo[g] = static_cast<int32_t>(static_cast<uint32_t>(-x.sums[g]) & 0xFFFF);
    out.factors[g] = x.scales[g] * inv_frac;
    for (int64_t j = 0; j < words; ++j) {
      const int64_t at = 4 * w.word_index(g, j);
      const int8_t* col = q + g * w.group + j * cols;
      std::memcpy(out.lo.data() + at, col, 4);
      if (w.nibbles()) std::memcpy(out.hi.data() + at, col + 4, 4);
    }
  }
}

// Block b's 16 steps of a row as floats (F16, or the 8-bit code times the row's step / 255 as
// U8GroupScale rounds it).
ACCULLM_SPARSE_AVX512_TARGET inline __m512 BlockSteps(bool scale_codes, const uint8_t* steps, int64_t b,
                                                      float row_scale) {
  if (scale_codes) {
    const __m512i codes = _mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(steps + 16 * b)));
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(row_scale), _mm512_cvtepi32_ps(codes)),
                         _mm512_set1_ps(1.f / 255.f));
  }
  return _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(steps + 32 * b)));
}

// A batch of 16 kept rows: lane r reads row rows[r] (the zero row for padding) and writes
// y[out_at[r]] (none when < 0); next_rows[r] is the row fetched by software along it.
struct RowBatch {
  int32_t rows[16], next_rows[16];
  int64_t out_at[16];
};

// The common row epilogue resolved at compile time: zero bytes with −Σx in 16 bits and F16
// steps (what quantize writes at ≤ 8 bits and g ≤ 255). Every other kind runs the general
// epilogue, which tests the layout's kinds at run time.
inline bool FastRowEpilogue(const SparseRowsLayout& w) { return w.has_zeros && SumsFit16(w) && !w.has_scale_codes; }

// Rows r0 .. r0+3 of a batch: row by row, one block of 16 groups at a time, the block's
// lines multiplied by the activations arranged to match (vpdpbusd) leave the exact group
// sums, a lane per group; the group's integer term d = sum · 2^frac − zero · Σx and float
// factor step · (xscale · 2^−frac) are formed there, as the tiles' epilogue forms them
// (TileAvx512 with kM = 1), and kept in L1 (d_out, f_out: [blocks, 16 rows, 16 groups]).
// Four rows at once with two chains each: vpdpbusd's latency would bound one chain.
// kWords > 0: the words per group fixed (a block's lines fully unrolled), with kFast the
// epilogue of FastRowEpilogue. A row's steps and zeros sit at fixed offsets after its codes,
// so only the row's base address is held: with a pointer each for codes, steps and zeros of
// this row and the next (28 live pointers a quad), GCC spilled them and reloaded one before
// every load (perf annotate of BM_RowsInL2: ~37% of samples on scalar reloads and branches).
// Measured on a Sapphire Rapids VM (2026-12-03, docs/benchmarks.md): ~17% less time per kept
// row in L2; from memory no difference, the rows pass being bound by its reads there.
template <bool kNibbles, int kWords, bool kFast>
ACCULLM_SPARSE_AVX512_TARGET void BatchGroupTerms(const SparseRowsLayout& w, const RowActivations& a,
                                                  const RowBatch& batch, int r0, int32_t* d_out, float* f_out) {
  constexpr int kR = 4;
  const int64_t blocks = w.row_blocks(), words = kWords > 0 ? kWords : w.group_words();
  const unsigned frac = static_cast<unsigned>(w.zero_frac_bits);
  const bool has_zeros = kFast || w.has_zeros, scale_codes = !kFast && w.has_scale_codes;
  const bool sums16 = kFast || SumsFit16(w);
  const __m512i low_nibbles = _mm512_set1_epi8(0x0F), high_nibbles = _mm512_set1_epi8(static_cast<char>(0xF0));
  const __m512i symmetric_zero = _mm512_set1_epi32(1 << (w.bits - 1));
  const int64_t step_block_bytes = 16 * w.step_bytes();
  const int64_t steps_at = w.steps_offset(), zeros_at = w.zeros_offset();
  const char* src[kR];
  const char* next[kR];
  float row_scale[kR];
  for (int i = 0; i < kR; ++i) {
    const int32_t row = batch.rows[r0 + i];
    src[i] = reinterpret_cast<const char*>(w.row(row));
    next[i] = reinterpret_cast<const char*>(w.row(batch.next_rows[r0 + i]));
    row_scale[i] = scale_codes ? w.row_scales[row] : 0.f;
  }
  const int32_t* neg_sums_lo = a.neg_sums_lo.data();
  const int32_t* sums = a.sums.data();
  const float* factors = a.factors.data();
  const int8_t* x_lo = a.lo.data();
  const int8_t* x_hi = a.hi.data();
  for (int64_t b = 0; b < blocks; ++b) {
    __m512i lo[kR], hi[kR];
    for (int i = 0; i < kR; ++i) lo[i] = hi[i] = _mm512_setzero_si512();
#pragma GCC unroll 16
    for (int64_t j = 0; j < words; ++j) {
      const int64_t at = 64 * (b * words + j);  // the line's byte offset in the row
      const __m512i xl = _mm512_load_si512(x_lo + at);
      const __m512i xh = kNibbles ? _mm512_load_si512(x_hi + at) : xl;
#pragma GCC unroll 4
      for (int i = 0; i < kR; ++i) {
        _mm_prefetch(next[i] + at, _MM_HINT_T1);
        const __m512i v = _mm512_load_si512(src[i] + at);
        if constexpr (kNibbles) {  // high nibbles in place: hi sums 16 · code · x (no shift per word)
          lo[i] = DotBytes512(lo[i], _mm512_and_si512(v, low_nibbles), xl);
          hi[i] = DotBytes512(hi[i], _mm512_and_si512(v, high_nibbles), xh);
        } else if (j % 2 == 0) {
          lo[i] = DotBytes512(lo[i], v, xl);
        } else {
          hi[i] = DotBytes512(hi[i], v, xl);
        }
      }
    }
    const __m512 factor = _mm512_load_ps(factors + 16 * b);
    const __m512i neg_sum = _mm512_load_si512(neg_sums_lo + 16 * b), sum = _mm512_load_si512(sums + 16 * b);
#pragma GCC unroll 4
    for (int i = 0; i < kR; ++i) {
      const int r = r0 + i;
      _mm_prefetch(next[i] + steps_at + step_block_bytes * b, _MM_HINT_T1);
      if (has_zeros) _mm_prefetch(next[i] + zeros_at + 16 * b, _MM_HINT_T1);
      // hi is a multiple of 16 at nibbles (exact in int32: ≤ 16 · 15 · 128 per column), so the
      // arithmetic shift recovers the true high-nibble sum.
      const __m512i hi_sum = kNibbles ? _mm512_srai_epi32(hi[i], 4) : hi[i];
      __m512i d = _mm512_slli_epi32(_mm512_add_epi32(lo[i], hi_sum), frac);
      const __m512i zero =
          has_zeros ? _mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(src[i] + zeros_at + 16 * b)))
                    : symmetric_zero;
      if (has_zeros && sums16) {  // + zero · (−Σx): the zero's high 16 bits (0) meet a 0
        d = _mm512_dpwssd_epi32(d, zero, neg_sum);
      } else {
        d = _mm512_sub_epi32(d, _mm512_mullo_epi32(zero, sum));
      }
      const __m512 ws = BlockSteps(scale_codes, reinterpret_cast<const uint8_t*>(src[i] + steps_at), b, row_scale[i]);
      _mm512_store_si512(d_out + (b * 16 + r) * 16, d);
      _mm512_store_ps(f_out + (b * 16 + r) * 16, _mm512_mul_ps(ws, factor));
    }
  }
}

// Blocks [b0, b1) of a batch's terms, transposed to a lane per row and accumulated with one
// fma per group, in group order: the dense kernel's float operations on every row.
ACCULLM_SPARSE_AVX512_TARGET inline __m512 AccumulateBlocks(const SparseRowsLayout& w, const int32_t* d_in,
                                                            const float* f_in, int64_t b0, int64_t b1, __m512 acc) {
  for (int64_t b = b0; b < b1; ++b) {
    __m512i dv[16], fv[16];
    for (int r = 0; r < 16; ++r) dv[r] = _mm512_load_si512(d_in + (b * 16 + r) * 16);
    Transpose16x16(dv);
    for (int r = 0; r < 16; ++r) fv[r] = _mm512_load_si512(f_in + (b * 16 + r) * 16);
    Transpose16x16(fv);
    const int64_t n = std::min<int64_t>(16, w.groups() - 16 * b);
    for (int64_t g = 0; g < n; ++g) acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dv[g]), _mm512_castsi512_ps(fv[g]), acc);
  }
  return acc;
}

// Batch after batch; the transposition and float accumulation of a batch (no weight reads)
// run in four slices between the four row quads of the next, so that weight lines are
// requested all along (run alone after its batch, it left the memory idle: at every row
// kept, bench/sparse_ffn_bench, the kernel took ~1.3x the dense time for 1.05x the bytes).
// The rows are split into four streams, each walking its quarter of the kept list in
// order (a row's lines in order): four far-apart ascending address streams, as the dense
// decode kernel reads four tiles at once.
template <bool kNibbles, int kWords, bool kFast>
ACCULLM_SPARSE_AVX512_TARGET void RowsAvx512(const SparseRowsLayout& w, const Int8Activations& x, const int32_t* kept,
                                             int64_t k_begin, int64_t k_end, float* y) {
  thread_local RowActivations arranged;
  ArrangeActivations(w, x, 32, arranged);  // two batches' terms: this one's and the previous one's
  const int64_t n = k_end - k_begin, len = (n + 3) / 4, batches = (len + 3) / 4;
  const int64_t blocks = w.row_blocks(), buffer = 16 * w.meta_stride;
  RowBatch batch[2];
  for (int64_t t = 0; t <= batches; ++t) {
    RowBatch& cur = batch[t % 2];
    const RowBatch& prev = batch[(t + 1) % 2];
    for (int s = 0; s < 4 && t < batches; ++s) {
      for (int i = 0; i < 4; ++i) {  // lane 4s + i: stream i's row 4t + s; fetched: its row 4t + s + 4
        const int lane = 4 * s + i;
        const int64_t pos = i * len + 4 * t + s, stream_end = std::min(n, (i + 1) * len);
        cur.rows[lane] = pos < stream_end ? kept[k_begin + pos] : static_cast<int32_t>(w.out);
        cur.out_at[lane] = pos < stream_end ? k_begin + pos : -1;
        cur.next_rows[lane] = pos + 4 < stream_end ? kept[k_begin + pos + 4] : static_cast<int32_t>(w.out);
      }
    }
    int32_t* d_cur = arranged.d.data() + (t % 2) * buffer;
    float* f_cur = arranged.f.data() + (t % 2) * buffer;
    const int32_t* d_prev = arranged.d.data() + ((t + 1) % 2) * buffer;
    const float* f_prev = arranged.f.data() + ((t + 1) % 2) * buffer;
    __m512 acc = _mm512_setzero_ps();
    for (int q = 0; q < 4; ++q) {
      if (t < batches) BatchGroupTerms<kNibbles, kWords, kFast>(w, arranged, cur, 4 * q, d_cur, f_cur);
      if (t > 0) acc = AccumulateBlocks(w, d_prev, f_prev, q * blocks / 4, (q + 1) * blocks / 4, acc);
    }
    if (t > 0) {
      alignas(64) float out[16];
      _mm512_store_ps(out, acc);
      for (int r = 0; r < 16; ++r)
        if (prev.out_at[r] >= 0) y[prev.out_at[r]] = out[r];
    }
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

// What one group's epilogue needs for a range of outputs, read once from the layout and x.
struct GroupEpilogue512 {
  int frac;
  bool sums16;
  __m512i sum, neg_sum_lo, symmetric_term;
  __m512 xfactor;
  const uint16_t* steps;      // F16, or null with step codes
  const uint8_t* step_codes;  // with row_scales
  const float* row_scales;
  const uint8_t* zeros;  // null: symmetric
};

// acc[i..i+16) = fma(d, step · xfactor, acc) for the outputs' int32 sums dsum.
ACCULLM_SPARSE_AVX512_TARGET inline void EpilogueVector(const GroupEpilogue512& e, int64_t i, __m512i dsum,
                                                        float* acc) {
  __m512 ws;
  if (e.steps != nullptr) {
    ws = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(e.steps + i)));
  } else {
    const __m512 codes =
        _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(e.step_codes + i))));
    ws = _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(e.row_scales + i), codes), _mm512_set1_ps(1.f / 255.f));
  }
  __m512i d = _mm512_slli_epi32(dsum, static_cast<unsigned>(e.frac));
  if (e.zeros == nullptr) {
    d = _mm512_sub_epi32(d, e.symmetric_term);
  } else {
    const __m512i zero = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(e.zeros + i)));
    d = e.sums16 ? _mm512_dpwssd_epi32(d, zero, e.neg_sum_lo) : _mm512_sub_epi32(d, _mm512_mullo_epi32(zero, e.sum));
  }
  _mm512_storeu_ps(acc + i,
                   _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(ws, e.xfactor), _mm512_loadu_ps(acc + i)));
}

// The dense epilogue of group g for outputs [o0, o0 + n) (whole blocks) from its int32 sums
// `dot`: acc[i] = fma(d, step · x_scale / 2^frac, acc[i]). zero · Σx as one 16-bit
// multiply-add when −Σx fits 16 bits (the zero's high 16 bits are 0), else vpmulld. The
// layout's arrays and kinds are read once, and a block's two nibble halves run as two loops:
// written inline per vector with the layout's fields, the stores to acc made the compiler
// reload every array pointer and test every kind each vector (perf annotate of BM_DownInL2
// put ~30% of the samples there). Measured gain: ~2% on BM_DownInL2 at half kept (six
// alternated runs, 2026-12-02 evening), none visible from memory.
template <bool kNibbles>
ACCULLM_SPARSE_AVX512_TARGET inline void EpilogueAvx512(const SparseColumnsLayout& w, const Int8Activations& x,
                                                        int64_t g, int64_t o0, int64_t n, const int32_t* dot,
                                                        float* acc) {
  const int32_t x_sum = x.sums[g];
  const int64_t meta0 = g * w.out_padded + o0;
  const bool coded = !w.scale_codes.empty();
  const GroupEpilogue512 e{
      w.zero_frac_bits,
      x_sum >= -32767 && x_sum <= 32767,
      _mm512_set1_epi32(x_sum),
      _mm512_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(-x_sum) & 0xFFFF)),
      _mm512_mullo_epi32(_mm512_set1_epi32(1 << (w.bits - 1)), _mm512_set1_epi32(x_sum)),
      _mm512_set1_ps(x.scales[g] * (1.f / static_cast<float>(1 << w.zero_frac_bits))),
      coded ? nullptr : w.scales.data() + meta0,
      coded ? w.scale_codes.data() + meta0 : nullptr,
      coded ? w.row_scales.data() + o0 : nullptr,  // no offset on an empty array's null data()
      w.zeros.empty() ? nullptr : w.zeros.data() + meta0,
  };
  float* const out = acc;
  for (int64_t b = 0; b < n; b += kSparseDownBlockOutputs) {
    if constexpr (kNibbles) {  // see DownAvx512's pass: lo = A − B, hi = B / 16 (exact: 16 | B)
      for (int64_t i = b; i < b + 64; i += 16)
        EpilogueVector(e, i, _mm512_sub_epi32(_mm512_loadu_si512(dot + i), _mm512_loadu_si512(dot + i + 64)), out);
      for (int64_t i = b + 64; i < b + kSparseDownBlockOutputs; i += 16)
        EpilogueVector(e, i, _mm512_srai_epi32(_mm512_loadu_si512(dot + i), 4), out);
    } else {
      for (int64_t i = b; i < b + kSparseDownBlockOutputs; i += 16)
        EpilogueVector(e, i, _mm512_loadu_si512(dot + i), out);
    }
  }
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
  const __m512i high_nibbles = _mm512_set1_epi8(static_cast<char>(0xF0));
  const int8_t* q = x.row(0);
  const int64_t strip_offset = kNibbles ? o0 / 2 : o0;
  const int64_t block_bytes = kNibbles ? 64 : 128;
  bool add_zero = false;  // skipped empty groups owe acc + 0.f (once: x + 0 + 0 = x + 0)
  for (int64_t g = 0; g < w.groups(); ++g) {
    const int32_t ib = nonzero.group_begin[g], ie = nonzero.group_begin[g + 1];
    if (ib == ie && EmptyGroupSkippable(w, x.scales[g])) {
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
      // Always eight (the rest this pass's first strip, in L1 already): a loop over a
      // variable count compiled to a chain of compares per block (~12% of perf's samples).
      const uint8_t* next[8];
      int prefetched = 0;
      for (int32_t t = i + 8; t < std::min(ie, i + 16); ++t)
        next[prefetched++] = w.strip(nonzero.neurons[t]) + strip_offset;
      if (prefetched == 0 && g + 1 < w.groups()) {  // the next group's first pass
        const int32_t nb = nonzero.group_begin[g + 1], ne = nonzero.group_begin[g + 2];
        for (int32_t t = nb; t < std::min(ne, nb + 8); ++t)
          next[prefetched++] = w.strip(nonzero.neurons[t]) + strip_offset;
      }
      for (int t = prefetched; t < 8; ++t) next[t] = s[0];
      const __m512i xa = _mm512_set1_epi32(static_cast<int32_t>(q4[0]));
      const __m512i xb = _mm512_set1_epi32(static_cast<int32_t>(q4[1]));
      const bool first = i == ib;
      for (int64_t b = 0; b < blocks; ++b) {
        for (int t = 0; t < 8; ++t) {
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
            // Interleave the packed bytes (two outputs each: low nibble = output o of the
            // block, high = o + 64). Whole bytes give A = Σ (lo + 16·hi)·q, high nibbles kept
            // as 16·code give B = 16·Σ hi·q; the epilogue takes lo = A − B and hi = B / 16,
            // exactly (one mask per quad instead of two).
            for (int t = 0; t < 4; ++t) a[t] = _mm512_loadu_si512(s[4 * half + t] + b * block_bytes);
            InterleaveFour(a, quads);
            for (int k = 0; k < 4; ++k) {
              sums[k] = DotBytes512(sums[k], quads[k], xq);
              sums[4 + k] = DotBytes512(sums[4 + k], _mm512_and_si512(quads[k], high_nibbles), xq);
            }
          } else {
            for (int seg = 0; seg < 2; ++seg) {
              for (int t = 0; t < 4; ++t) a[t] = _mm512_loadu_si512(s[4 * half + t] + b * block_bytes + 64 * seg);
              InterleaveFour(a, quads);
              for (int k = 0; k < 4; ++k) sums[4 * seg + k] = DotBytes512(sums[4 * seg + k], quads[k], xq);
            }
          }
        }
        for (int k = 0; k < 8; ++k) _mm512_storeu_si512(d + 16 * k, sums[k]);
      }
    }
    EpilogueAvx512<kNibbles>(w, x, g, o0, n, dot, acc);
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

// 8 kept rows at once, as RowBatchAvx512 does 16, a unit of 8 groups (half a block) at a time:
// each row's group sums, a lane per group, and their integer terms and float factors formed
// there and kept in L1, then per unit transposed to a lane per row and accumulated in group
// order with the dense AVX2 kernels' float steps (AccumulateGroup256's, split in two).
template <bool kNibbles, bool kEightBit>
ACCULLM_SPARSE_AVX2_TARGET void RowBatchAvx2(const SparseRowsLayout& w, RowActivations& a, const int32_t (&rows)[8],
                                             const int32_t (&next_rows)[8], float* y, int valid) {
  const int64_t units = 2 * w.row_blocks(), words = w.group_words(), lines = w.row_stride / 16;
  const int frac = w.zero_frac_bits;
  const bool sums16 = SumsFit16(w);
  const __m256i symmetric_zero = _mm256_set1_epi32(1 << (w.bits - 1));
  int32_t* d_out = a.d.data();
  float* f_out = a.f.data();
  for (int r = 0; r < 8; ++r) {
    const char* next = reinterpret_cast<const char*>(w.row(next_rows[r]));
    for (int64_t l = 0; l < lines; ++l) _mm_prefetch(next + 64 * l, _MM_HINT_T1);
    if (r >= valid) {
      for (int64_t u = 0; u < units; ++u) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(d_out + (u * 8 + r) * 8), _mm256_setzero_si256());
        _mm256_store_ps(f_out + (u * 8 + r) * 8, _mm256_setzero_ps());
      }
      continue;
    }
    const uint32_t* src = w.row(rows[r]);
    const uint8_t* steps_src = w.row_steps(rows[r]);
    const uint8_t* zeros_src = w.has_zeros ? w.row_zeros(rows[r]) : nullptr;
    const __m256 row_scale = _mm256_set1_ps(w.has_scale_codes ? w.row_scales[rows[r]] : 0.f);
    for (int64_t u = 0; u < units; ++u) {
      const int64_t b = u / 2, h = u % 2;
      __m256i sum = _mm256_setzero_si256();
      for (int64_t j = 0; j < words; ++j) {
        const int64_t at = (b * words + j) * 16 + 8 * h;
        const __m256i xl = _mm256_load_si256(reinterpret_cast<const __m256i*>(a.lo.data() + 4 * at));
        const __m256i xh = kNibbles ? _mm256_load_si256(reinterpret_cast<const __m256i*>(a.hi.data() + 4 * at)) : xl;
        sum = _mm256_add_epi32(sum, RowWordDots256<kNibbles, kEightBit>(src + at, xl, xh));
      }
      __m256i d = _mm256_slli_epi32(sum, frac);
      const __m256i zero =
          w.has_zeros ? _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(zeros_src + 8 * u)))
                      : symmetric_zero;
      if (w.has_zeros && sums16) {  // zero · (−Σx): the zero's high 16 bits (0) meet a 0
        d = _mm256_add_epi32(
            d,
            _mm256_madd_epi16(zero, _mm256_load_si256(reinterpret_cast<const __m256i*>(a.neg_sums_lo.data() + 8 * u))));
      } else {
        d = _mm256_sub_epi32(
            d, _mm256_mullo_epi32(zero, _mm256_load_si256(reinterpret_cast<const __m256i*>(a.sums.data() + 8 * u))));
      }
      __m256 ws;
      if (w.has_scale_codes) {
        const __m256i codes =
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(steps_src + 8 * u)));
        ws = _mm256_mul_ps(_mm256_mul_ps(row_scale, _mm256_cvtepi32_ps(codes)), _mm256_set1_ps(1.f / 255.f));
      } else {
        ws = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(steps_src + 16 * u)));
      }
      _mm256_store_si256(reinterpret_cast<__m256i*>(d_out + (u * 8 + r) * 8), d);
      _mm256_store_ps(f_out + (u * 8 + r) * 8, _mm256_mul_ps(ws, _mm256_load_ps(a.factors.data() + 8 * u)));
    }
  }
  __m256 acc = _mm256_setzero_ps();
  const int64_t groups = w.groups();
  for (int64_t u = 0; u < units && 8 * u < groups; ++u) {
    __m256i dv[8], fv[8];
    for (int r = 0; r < 8; ++r) dv[r] = _mm256_load_si256(reinterpret_cast<const __m256i*>(d_out + (u * 8 + r) * 8));
    Transpose8x8(dv);
    for (int r = 0; r < 8; ++r) fv[r] = _mm256_load_si256(reinterpret_cast<const __m256i*>(f_out + (u * 8 + r) * 8));
    Transpose8x8(fv);
    const int64_t n = std::min<int64_t>(8, groups - 8 * u);
    for (int64_t g = 0; g < n; ++g) acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dv[g]), _mm256_castsi256_ps(fv[g]), acc);
  }
  alignas(32) float out[8];
  _mm256_store_ps(out, acc);
  for (int r = 0; r < valid; ++r) y[r] = out[r];
}

template <bool kNibbles, bool kEightBit>
ACCULLM_SPARSE_AVX2_TARGET void RowsAvx2(const SparseRowsLayout& w, const Int8Activations& x, const int32_t* kept,
                                         int64_t k_begin, int64_t k_end, float* y) {
  thread_local RowActivations arranged;
  ArrangeActivations(w, x, 8, arranged);
  for (int64_t k = k_begin; k < k_end; k += 8) {
    const int valid = static_cast<int>(std::min<int64_t>(8, k_end - k));
    int32_t rows[8], next_rows[8];  // the zero row past the end
    for (int r = 0; r < 8; ++r) {
      rows[r] = r < valid ? kept[k + r] : static_cast<int32_t>(w.out);
      next_rows[r] = k + 8 + r < k_end ? kept[k + 8 + r] : static_cast<int32_t>(w.out);
    }
    RowBatchAvx2<kNibbles, kEightBit>(w, arranged, rows, next_rows, y + k, valid);
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
  // Words per group: 4 at 4 bits g32, 8 at 4 bits g64 or 8 bits g32.
  const bool fast = FastRowEpilogue(w);
  const int64_t words = w.group_words();
  if (w.nibbles()) {
    if (fast && words == 4) RowsAvx512<true, 4, true>(w, x, kept, k_begin, k_end, y);
    else if (fast && words == 8) RowsAvx512<true, 8, true>(w, x, kept, k_begin, k_end, y);
    else RowsAvx512<true, 0, false>(w, x, kept, k_begin, k_end, y);
  } else {
    if (fast && words == 8) RowsAvx512<false, 8, true>(w, x, kept, k_begin, k_end, y);
    else RowsAvx512<false, 0, false>(w, x, kept, k_begin, k_end, y);
  }
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

namespace {

// The pair layout's kept neurons as a row kernel's list (rows 2j, 2j + 1; or 2j + 1 alone
// without gate), run through `rows_kernel`, then split back into gate[k] and up[k].
template <typename RowsKernel>
bool PairRows(RowsKernel rows_kernel, const SparseRowsLayout& pair, const Int8Activations& x, const int32_t* kept,
              int64_t k_begin, int64_t k_end, float* gate, float* up) {
  thread_local std::vector<int32_t> rows;
  thread_local std::vector<float> ys;
  const int64_t n = k_end - k_begin, per = gate != nullptr ? 2 : 1;
  if (n <= 0) return true;
  rows.resize(static_cast<size_t>(n * per));
  ys.resize(rows.size());
  for (int64_t i = 0; i < n; ++i) {
    const int32_t j = kept[k_begin + i];
    if (gate != nullptr) {
      rows[2 * i] = 2 * j;
      rows[2 * i + 1] = 2 * j + 1;
    } else {
      rows[i] = 2 * j + 1;
    }
  }
  if (!rows_kernel(pair, x, rows.data(), 0, n * per, ys.data())) return false;
  for (int64_t i = 0; i < n; ++i) {
    if (gate != nullptr) {
      gate[k_begin + i] = ys[2 * i];
      up[k_begin + i] = ys[2 * i + 1];
    } else {
      up[k_begin + i] = ys[i];
    }
  }
  return true;
}

}  // namespace

void SparsePairRowsInt8Scalar(const SparseRowsLayout& pair, const Int8Activations& x, const int32_t* kept,
                              int64_t k_begin, int64_t k_end, float* gate, float* up) {
  PairRows(
      [](const SparseRowsLayout& w, const Int8Activations& a, const int32_t* r, int64_t b, int64_t e, float* y) {
        SparseRowsInt8Scalar(w, a, r, b, e, y);
        return true;
      },
      pair, x, kept, k_begin, k_end, gate, up);
}

bool SparsePairRowsInt8Avx512(const SparseRowsLayout& pair, const Int8Activations& x, const int32_t* kept,
                              int64_t k_begin, int64_t k_end, float* gate, float* up) {
  if (DetectedIsa() < Isa::kAvx512) return false;
  return PairRows(SparseRowsInt8Avx512, pair, x, kept, k_begin, k_end, gate, up);
}

bool SparsePairRowsInt8Avx2(const SparseRowsLayout& pair, const Int8Activations& x, const int32_t* kept,
                            int64_t k_begin, int64_t k_end, float* gate, float* up) {
  if (DetectedIsa() < Isa::kAvx2) return false;
  return PairRows(SparseRowsInt8Avx2, pair, x, kept, k_begin, k_end, gate, up);
}

void SparsePairRowsInt8(const SparseRowsLayout& pair, const Int8Activations& x, const int32_t* kept, int64_t k_begin,
                        int64_t k_end, float* gate, float* up) {
  PairRows(
      [](const SparseRowsLayout& w, const Int8Activations& a, const int32_t* r, int64_t b, int64_t e, float* y) {
        SparseRowsInt8(w, a, r, b, e, y);
        return true;
      },
      pair, x, kept, k_begin, k_end, gate, up);
}

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
