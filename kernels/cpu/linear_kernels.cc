#include "kernels/cpu/linear_kernels.h"

#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/isa.h"

namespace accullm::kernels {

namespace {

// Loads W[o, :] as float into `dst` (or returns the row in place when it is already F32).
const float* RowAsF32(DType wtype, const void* w, int64_t in, int64_t o, float* dst) {
  const auto* base = static_cast<const uint8_t*>(w) + static_cast<size_t>(o) * in * DTypeSize(wtype);
  if (wtype == DType::kF32) return reinterpret_cast<const float*>(base);
  ConvertToF32(wtype, base, dst, static_cast<size_t>(in));
  return dst;
}

}  // namespace

void LinearRowsScalar(DType wtype, const void* w, int64_t in, const float* x, int64_t n, int64_t o_begin, int64_t o_end,
                      float* y, int64_t y_stride) {
  // Per calling thread, grown once: the forward pass allocates nothing per layer per token.
  thread_local std::vector<float> row;
  if (row.size() < static_cast<size_t>(in)) row.resize(static_cast<size_t>(in));
  for (int64_t o = o_begin; o < o_end; ++o) {
    const float* wr = RowAsF32(wtype, w, in, o, row.data());
    for (int64_t r = 0; r < n; ++r) {
      const float* xr = x + r * in;
      float acc = 0.f;
      for (int64_t i = 0; i < in; ++i) acc += xr[i] * wr[i];
      y[r * y_stride + o] = acc;
    }
  }
}

#if ACCULLM_HAVE_X86_SIMD
namespace {

constexpr int kRowBlock = 4;  // weight rows that share each load of x

__attribute__((target("avx2,fma,f16c"))) inline float HorizontalSum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
  return _mm_cvtss_f32(lo);
}

// Converts one weight row to F32 with SIMD (F16 via F16C, BF16 via a shift).
__attribute__((target("avx2,fma,f16c"))) void ConvertRowAvx2(DType wtype, const void* src, float* dst, int64_t in) {
  const auto* s = static_cast<const uint16_t*>(src);
  int64_t i = 0;
  if (wtype == DType::kF16) {
    for (; i + 8 <= in; i += 8) {
      __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    for (; i < in; ++i) dst[i] = F16ToF32(s[i]);
  } else {
    for (; i + 8 <= in; i += 8) {
      __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
      __m256i wide = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
      _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(wide));
    }
    for (; i < in; ++i) dst[i] = Bf16ToF32(s[i]);
  }
}

// Loads 8 stored weights as floats: F16 through F16C, BF16 by a shift into the high half.
__attribute__((target("avx2,fma,f16c"))) inline __m256 Load8(DType wtype, const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  if (wtype == DType::kF16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// Loads 8 stored weights of any dense type as floats.
__attribute__((target("avx2,fma,f16c"))) inline __m256 Load8Any(DType wtype, const void* row, int64_t i) {
  if (wtype == DType::kF32) return _mm256_loadu_ps(static_cast<const float*>(row) + i);
  return Load8(wtype, static_cast<const uint16_t*>(row) + i);
}

__attribute__((target("avx2,fma,f16c"))) inline float WeightAt(DType wtype, const void* row, int64_t i) {
  if (wtype == DType::kF32) return static_cast<const float*>(row)[i];
  const uint16_t h = static_cast<const uint16_t*>(row)[i];
  // F16C, as Load8 converts the rest of the row (the same exact widening): the out-of-line
  // F16ToF32 made the 5 tail columns of the rank-77 guesser's rows ~6% of a sparse decode's
  // FFN time (bench/sparse_ffn_bench, rank:77).
  return wtype == DType::kF16 ? _cvtsh_ss(h) : Bf16ToF32(h);
}

// Four weight rows as the kernels read them: as stored (converted 8 at a time in registers)
// or already converted to F32 (LinearRowsAvx2's scratch, or F32 weights in place).
struct StoredRows {
  DType wtype;
  const void* row[4];
  __attribute__((target("avx2,fma,f16c"))) __m256 Load(int j, int64_t i) const { return Load8Any(wtype, row[j], i); }
  __attribute__((target("avx2,fma,f16c"))) float At(int j, int64_t i) const { return WeightAt(wtype, row[j], i); }
};
struct F32Rows {
  const float* row[4];
  __attribute__((target("avx2,fma,f16c"))) __m256 Load(int j, int64_t i) const { return _mm256_loadu_ps(row[j] + i); }
  float At(int j, int64_t i) const { return row[j][i]; }
};

// Four weight rows against every activation row, two at a time (8 accumulators), then an odd
// last one: y[b, o[j]] for j < valid. Every dense AVX2 kernel computes each (weight row,
// activation row) result with this one chain (8-lane accumulator over the columns in order,
// HorizontalSum, then the scalar tail), so a row's bits never depend on the kernel, the batch
// or which rows share it.
template <class Rows>
__attribute__((target("avx2,fma,f16c"))) inline void FourRowsAllActivations(const Rows& w, const float* x, int64_t n,
                                                                            int64_t in, const int64_t o[4], int valid,
                                                                            float* y, int64_t y_stride) {
  const int64_t in8 = in & ~int64_t{7};
  int64_t b = 0;
  for (; b + 2 <= n; b += 2) {
    const float* xa = x + b * in;
    const float* xb = xa + in;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps(), b2 = _mm256_setzero_ps(), b3 = _mm256_setzero_ps();
    for (int64_t i = 0; i < in8; i += 8) {
      const __m256 w0 = w.Load(0, i), w1 = w.Load(1, i), w2 = w.Load(2, i), w3 = w.Load(3, i);
      const __m256 xva = _mm256_loadu_ps(xa + i), xvb = _mm256_loadu_ps(xb + i);
      a0 = _mm256_fmadd_ps(xva, w0, a0);
      a1 = _mm256_fmadd_ps(xva, w1, a1);
      a2 = _mm256_fmadd_ps(xva, w2, a2);
      a3 = _mm256_fmadd_ps(xva, w3, a3);
      b0 = _mm256_fmadd_ps(xvb, w0, b0);
      b1 = _mm256_fmadd_ps(xvb, w1, b1);
      b2 = _mm256_fmadd_ps(xvb, w2, b2);
      b3 = _mm256_fmadd_ps(xvb, w3, b3);
    }
    float sa[4] = {HorizontalSum(a0), HorizontalSum(a1), HorizontalSum(a2), HorizontalSum(a3)};
    float sb[4] = {HorizontalSum(b0), HorizontalSum(b1), HorizontalSum(b2), HorizontalSum(b3)};
    for (int64_t i = in8; i < in; ++i) {
      for (int j = 0; j < 4; ++j) {
        const float wv = w.At(j, i);
        sa[j] += xa[i] * wv;
        sb[j] += xb[i] * wv;
      }
    }
    for (int j = 0; j < valid; ++j) {
      y[b * y_stride + o[j]] = sa[j];
      y[(b + 1) * y_stride + o[j]] = sb[j];
    }
  }
  if (b < n) {  // an odd last activation row (decode's only one)
    const float* xa = x + b * in;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    for (int64_t i = 0; i < in8; i += 8) {
      const __m256 xv = _mm256_loadu_ps(xa + i);
      a0 = _mm256_fmadd_ps(xv, w.Load(0, i), a0);
      a1 = _mm256_fmadd_ps(xv, w.Load(1, i), a1);
      a2 = _mm256_fmadd_ps(xv, w.Load(2, i), a2);
      a3 = _mm256_fmadd_ps(xv, w.Load(3, i), a3);
    }
    float sa[4] = {HorizontalSum(a0), HorizontalSum(a1), HorizontalSum(a2), HorizontalSum(a3)};
    for (int64_t i = in8; i < in; ++i) {
      for (int j = 0; j < 4; ++j) sa[j] += xa[i] * w.At(j, i);
    }
    for (int j = 0; j < valid; ++j) y[b * y_stride + o[j]] = sa[j];
  }
}

// Decode and a few activation rows (1..kSmallBatch: one token, a verification pass of k + 1
// draft rows, a small decode batch): bound by streaming the weights, so each weight byte is
// read from DRAM once and converted in registers. The four rows that share each load of x come
// from four far-apart parts of [o_begin, o_end), not from neighbours: four independent DRAM
// streams keep enough reads in flight for one core to reach its read bandwidth, where four
// adjacent rows (one 16 KB region, each row a fresh 4 KB page for the prefetcher) stall at ~70%
// of it (bench/decode_stream_bench BM_DecodeStreamF16). After the first pair of activation rows
// the four weight rows come from L1/L2. LinearRowsAvx2 converts neighbouring rows into scratch
// first, which at n = 2 cost three decode steps of F16 weights instead of about one.
constexpr int64_t kSmallBatch = 16;

__attribute__((target("avx2,fma,f16c"))) void StreamedRowsAvx2(DType wtype, const void* w, int64_t in, const float* x,
                                                               int64_t n, int64_t o_begin, int64_t o_end, float* y,
                                                               int64_t y_stride) {
  const size_t row_bytes = static_cast<size_t>(in) * DTypeSize(wtype);
  const auto* base = static_cast<const uint8_t*>(w);
  const int64_t part = (o_end - o_begin) / 4;
  StoredRows rows{wtype, {}};
  int64_t o[4];
  for (int64_t k = 0; k < part; ++k) {
    for (int j = 0; j < 4; ++j) {
      o[j] = o_begin + k + j * part;
      rows.row[j] = base + static_cast<size_t>(o[j]) * row_bytes;
    }
    FourRowsAllActivations(rows, x, n, in, o, 4, y, y_stride);
  }
  // The rows left over (fewer than four) as one more group, padded with the first of them
  // (computed twice, stored once).
  const int left = static_cast<int>(o_end - o_begin - 4 * part);
  if (left > 0) {
    for (int j = 0; j < 4; ++j) {
      o[j] = o_begin + 4 * part + std::min(j, left - 1);
      rows.row[j] = base + static_cast<size_t>(o[j]) * row_bytes;
    }
    FourRowsAllActivations(rows, x, n, in, o, left, y, y_stride);
  }
}

// Prefill (more than kSmallBatch rows): compute-bound, so four neighbouring weight rows are
// converted once into scratch and reused for every activation row.
__attribute__((target("avx2,fma,f16c"))) void LinearRowsAvx2(DType wtype, const void* w, int64_t in, const float* x,
                                                             int64_t n, int64_t o_begin, int64_t o_end, float* y,
                                                             int64_t y_stride) {
  const size_t esize = DTypeSize(wtype);
  thread_local std::vector<float> scratch;
  if (wtype != DType::kF32 && scratch.size() < static_cast<size_t>(kRowBlock * in)) {
    scratch.resize(static_cast<size_t>(kRowBlock * in));
  }
  for (int64_t o0 = o_begin; o0 < o_end; o0 += kRowBlock) {
    const int rows = static_cast<int>(std::min<int64_t>(kRowBlock, o_end - o0));
    F32Rows wr{};
    int64_t o[kRowBlock];
    for (int k = 0; k < rows; ++k) {
      o[k] = o0 + k;
      const auto* src = static_cast<const uint8_t*>(w) + static_cast<size_t>(o0 + k) * in * esize;
      if (wtype == DType::kF32) {
        wr.row[k] = reinterpret_cast<const float*>(src);
      } else {
        float* dst = scratch.data() + k * in;
        ConvertRowAvx2(wtype, src, dst, in);
        wr.row[k] = dst;
      }
    }
    for (int k = rows; k < kRowBlock; ++k) {  // harmless duplicate work, result dropped
      wr.row[k] = wr.row[0];
      o[k] = o[0];
    }
    FourRowsAllActivations(wr, x, n, in, o, rows, y, y_stride);
  }
}

}  // namespace

bool LinearRowsUsesAvx2() { return ActiveIsa() >= Isa::kAvx2; }

void LinearRows(DType wtype, const void* w, int64_t in, const float* x, int64_t n, int64_t o_begin, int64_t o_end,
                float* y, int64_t y_stride) {
  const bool avx2 = ActiveIsa() >= Isa::kAvx2;  // kAvx512 runs the AVX2 variants (no AVX-512 code yet)
  if (avx2 && n <= kSmallBatch && (wtype == DType::kF32 || wtype == DType::kF16 || wtype == DType::kBF16)) {
    StreamedRowsAvx2(wtype, w, in, x, n, o_begin, o_end, y, y_stride);
  } else if (avx2 && (wtype == DType::kF32 || wtype == DType::kF16 || wtype == DType::kBF16)) {
    LinearRowsAvx2(wtype, w, in, x, n, o_begin, o_end, y, y_stride);
  } else {
    LinearRowsScalar(wtype, w, in, x, n, o_begin, o_end, y, y_stride);
  }
}
#else
bool LinearRowsUsesAvx2() { return false; }
void LinearRows(DType wtype, const void* w, int64_t in, const float* x, int64_t n, int64_t o_begin, int64_t o_end,
                float* y, int64_t y_stride) {
  LinearRowsScalar(wtype, w, in, x, n, o_begin, o_end, y, y_stride);
}
#endif

}  // namespace accullm::kernels
