// A study for issue #12's speed floor (docs/benchmarks.md, "Down with groups along outputs: a
// prototype", which has its figures and verdict: the integer pass scales with the kept neurons,
// the per-token fold eats the gain, so the pack keeps its layout):
// would a down projection stored with its quantization groups along the *outputs* make the
// sparse down memory-bound? Today's pack groups 32 consecutive neurons per output (the dense
// format), so every group of 32 neurons a token touches costs a float epilogue per output
// (steps, zeros, one fma: half of the dense kernel's cycles, BM_DownInL2 in sparse_ffn_bench),
// and at a 50% share of random-like kept neurons every group is touched.
//
// The prototype here (not a product kernel, not the pack's format): down stored neuron-major,
// INT4 codes, one F32 step and one zero per (neuron, 32 outputs). For a token, each kept
// neuron's activation is folded into its steps, b_jg = a_j · s_jg, and rounded to INT8 with one
// scale per output group (c_g = max_j |b_jg| / 127) — a second activation rounding the pack's
// path does not have (its accuracy is not measured here). Then the sum over every kept neuron
// is one integer dot per output (vpdpbusd over four neurons' interleaved codes, the same
// interleave as kernels/cpu/sparse_ffn_layouts.h's segments) and the float epilogue runs once
// per output per token: y_o = c_g · (Σ_j β_jg q_jo − Σ_j β_jg z_jg).
//
// Rows (one thread; compare ratios within one interleaved run):
//   BM_Down/kernel/kept_pct   kernel 0 = the pack's dense tiles (LowBitInt8Rows), 1 = the pack's
//                             sparse down (SparseDownInt8), 2 = this prototype (AVX-512 VNNI;
//                             skipped elsewhere), 3 = the prototype's integer pass alone (its fold
//                             made before the timing); TinyLlama's down (2048 outputs, 5632
//                             neurons), kLayers layers per iteration (from memory, as decode
//                             streams them); kernels 0–2 include their activation quantization
//   BM_DownInL2/kernel/kept_pct  the same on 512 outputs (L2-resident): instructions alone
// Every kernel-2 set-up checks the AVX-512 result against the scalar reference (bit-equal) and
// against the float product W·a (relative error printed once per kept share).
//   build/bench/down_out_groups_bench --benchmark_enable_random_interleaving=true
//     --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "common/dtype.h"
#include "kernels/cpu/int8_activations.h"
#include "kernels/cpu/low_bit_int8_kernels.h"
#include "kernels/cpu/low_bit_tiles.h"
#include "kernels/cpu/sparse_ffn_kernels.h"
#include "kernels/cpu/sparse_ffn_layouts.h"
#include "kernels/low_bit_matrix.h"

#if defined(__x86_64__)
// GCC 12's AVX-512 conversion intrinsics: see kernels/cpu/low_bit_int8_kernels.cc (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#define PROTOTYPE_AVX512 __attribute__((target("avx512f,avx512bw,avx512vnni")))
#endif

namespace accullm::kernels {
namespace {

constexpr int64_t kInter = 5632, kGroup = 32, kLayers = 4;
constexpr int64_t kOutGroup = 32;     // outputs per step in the prototype
constexpr int64_t kBlockOutputs = 128;  // outputs per 64-byte strip block (two nibbles a byte)
constexpr int64_t kPrefetchQuads = 8;   // how far ahead the integer pass asks for pieces

// ---- The prototype's layout and kernels ----

struct OutGroupsDown {
  int64_t out = 0, in = 0;
  // [out / 128][in][64]: block-major, so a pass over one block of 128 outputs reads the kept
  // neurons' 64-byte pieces in ascending order within one 64·in-byte region (neuron-major
  // strips, 1 KB apart per neuron, left every pass a scattered walk: 2.5x slower from memory).
  std::vector<uint8_t> codes;
  std::vector<float> steps;    // [in][out / kOutGroup]
  std::vector<uint8_t> zeros;  // [in][out / kOutGroup], 0..15
  int64_t groups() const { return out / kOutGroup; }
  const uint8_t* piece(int64_t j, int64_t b) const { return codes.data() + (b * in + j) * 64; }
  // Output o's code of neuron j. In a block, output 16t + 4L + m (t, L, m < 4) is byte
  // 16L + 4t + m's low nibble, output 64 + 16t + 4L + m its high one: interleaving four
  // strips' bytes per 128-bit lane then gives one output's four codes per dword, in order.
  int Code(int64_t j, int64_t o) const {
    const int64_t b = o / kBlockOutputs, r = o % kBlockOutputs, half = r / 64, t = (r % 64) / 16, l = (r % 16) / 4,
                  m = r % 4;
    const uint8_t byte = piece(j, b)[16 * l + 4 * t + m];
    return half == 0 ? byte & 15 : byte >> 4;
  }
};

OutGroupsDown RandomOutGroupsDown(int64_t out, int64_t in, std::mt19937& rng) {
  OutGroupsDown w;
  w.out = out;
  w.in = in;
  w.codes.resize(static_cast<size_t>(in * out / 2));
  w.steps.resize(static_cast<size_t>(in * w.groups()));
  w.zeros.resize(w.steps.size());
  std::normal_distribution<float> normal;
  for (auto& c : w.codes) c = static_cast<uint8_t>(rng());
  for (auto& s : w.steps) s = 0.01f + 0.001f * std::abs(normal(rng));
  for (auto& z : w.zeros) z = static_cast<uint8_t>(rng() % 16);
  return w;
}

// A token's kept neurons (padded to a multiple of four with a zero weight), their INT8 weights
// per output group packed four to a dword, the scale per group and Σ β·zero per group.
struct FoldedActivations {
  std::vector<int32_t> neurons;  // [quads · 4]
  std::vector<int32_t> beta;     // [quads][groups]: four int8 (neuron 4q + i in byte i)
  std::vector<float> scale;      // [groups]
  std::vector<int32_t> zero_sums;  // [groups]
  int64_t quads() const { return static_cast<int64_t>(neurons.size()) / 4; }
};

// Fold's steps shared by its scalar and vector forms: the kept list padded to whole quads,
// then (after the caller's max |a·s| per group into f.scale) the scales, their inverses and
// zeroed outputs.
void StartFold(const OutGroupsDown& w, const std::vector<int32_t>& kept, FoldedActivations& f) {
  const int64_t padded = (static_cast<int64_t>(kept.size()) + 3) / 4 * 4;
  f.neurons.assign(kept.begin(), kept.end());
  f.neurons.resize(static_cast<size_t>(padded), kept.empty() ? 0 : kept[0]);
  f.scale.assign(static_cast<size_t>(w.groups()), 0.f);
}

std::vector<float> FinishScales(const OutGroupsDown& w, FoldedActivations& f) {
  std::vector<float> inverse(static_cast<size_t>(w.groups()));
  for (int64_t g = 0; g < w.groups(); ++g) {
    f.scale[g] /= 127.f;
    inverse[g] = f.scale[g] > 0.f ? 1.f / f.scale[g] : 0.f;
  }
  f.beta.assign(static_cast<size_t>(f.quads() * w.groups()), 0);
  f.zero_sums.assign(static_cast<size_t>(w.groups()), 0);
  return inverse;
}

void Fold(const OutGroupsDown& w, const float* a, const std::vector<int32_t>& kept, FoldedActivations& f) {
  const int64_t groups = w.groups(), n = static_cast<int64_t>(kept.size());
  StartFold(w, kept, f);
  for (int64_t k = 0; k < n; ++k) {
    const float* s = w.steps.data() + kept[k] * groups;
    const float ak = std::abs(a[kept[k]]);
    for (int64_t g = 0; g < groups; ++g) f.scale[g] = std::max(f.scale[g], ak * s[g]);
  }
  const std::vector<float> inverse = FinishScales(w, f);
  for (int64_t k = 0; k < n; ++k) {
    const int64_t j = kept[k];
    const float* s = w.steps.data() + j * groups;
    const uint8_t* z = w.zeros.data() + j * groups;
    auto* row = reinterpret_cast<int8_t*>(f.beta.data() + (k / 4) * groups);
    for (int64_t g = 0; g < groups; ++g) {
      const auto beta = static_cast<int32_t>(std::nearbyint(a[j] * s[g] * inverse[g]));
      row[4 * g + k % 4] = static_cast<int8_t>(beta);
      f.zero_sums[g] += beta * z[g];
    }
  }
}

void DownScalar(const OutGroupsDown& w, const FoldedActivations& f, float* y) {
  for (int64_t o = 0; o < w.out; ++o) {
    const int64_t g = o / kOutGroup;
    int32_t acc = 0;
    for (int64_t q = 0; q < f.quads(); ++q) {
      const auto* beta = reinterpret_cast<const int8_t*>(f.beta.data() + q * w.groups() + g);
      for (int i = 0; i < 4; ++i) acc += beta[i] * w.Code(f.neurons[4 * q + i], o);
    }
    y[o] = f.scale[g] * static_cast<float>(acc - f.zero_sums[g]);
  }
}

#if defined(__x86_64__)
PROTOTYPE_AVX512 void DownAvx512(const OutGroupsDown& w, const FoldedActivations& f, float* y) {
  const __m512i low = _mm512_set1_epi8(0x0F);
  const int64_t groups = w.groups(), blocks = w.out / kBlockOutputs;
  for (int64_t b = 0; b < blocks; ++b) {
    __m512i acc[8];
    for (auto& v : acc) v = _mm512_setzero_si512();
    const int32_t* beta = f.beta.data() + 4 * b;  // group 4b + t/2 (low nibbles), 4b + 2 + t/2
    for (int64_t q = 0; q < f.quads(); ++q, beta += groups) {
      const int32_t* n = f.neurons.data() + 4 * q;
      if (q + kPrefetchQuads < f.quads())  // the hardware prefetchers do not follow kept pieces
        for (int i = 0; i < 4; ++i)
          _mm_prefetch(reinterpret_cast<const char*>(w.piece(n[4 * kPrefetchQuads + i], b)), _MM_HINT_T0);
      const __m512i s0 = _mm512_loadu_si512(w.piece(n[0], b));
      const __m512i s1 = _mm512_loadu_si512(w.piece(n[1], b));
      const __m512i s2 = _mm512_loadu_si512(w.piece(n[2], b));
      const __m512i s3 = _mm512_loadu_si512(w.piece(n[3], b));
      const __m512i p01l = _mm512_unpacklo_epi8(s0, s1), p01h = _mm512_unpackhi_epi8(s0, s1);
      const __m512i p23l = _mm512_unpacklo_epi8(s2, s3), p23h = _mm512_unpackhi_epi8(s2, s3);
      const __m512i d[4] = {_mm512_unpacklo_epi16(p01l, p23l), _mm512_unpackhi_epi16(p01l, p23l),
                            _mm512_unpacklo_epi16(p01h, p23h), _mm512_unpackhi_epi16(p01h, p23h)};
      for (int t = 0; t < 4; ++t) {
        const __m512i lo = _mm512_and_si512(d[t], low);
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(d[t], 4), low);
        acc[t] = _mm512_dpbusd_epi32(acc[t], lo, _mm512_set1_epi32(beta[t / 2]));
        acc[4 + t] = _mm512_dpbusd_epi32(acc[4 + t], hi, _mm512_set1_epi32(beta[2 + t / 2]));
      }
    }
    for (int z = 0; z < 8; ++z) {
      const int64_t g = 4 * b + z / 2;
      const __m512i d = _mm512_sub_epi32(acc[z], _mm512_set1_epi32(f.zero_sums[g]));
      _mm512_storeu_ps(y + b * kBlockOutputs + 16 * z,
                       _mm512_mul_ps(_mm512_set1_ps(f.scale[g]), _mm512_cvtepi32_ps(d)));
    }
  }
}
// Fold's vector form: four neurons at a time, 16 groups per step, the same float operations
// (a·s, then · 1/c, rounded to nearest even) as Fold, so the same β.
PROTOTYPE_AVX512 void FoldAvx512(const OutGroupsDown& w, const float* a, const std::vector<int32_t>& kept,
                                 FoldedActivations& f) {
  const int64_t groups = w.groups(), n = static_cast<int64_t>(kept.size());
  StartFold(w, kept, f);
  for (int64_t k = 0; k < n; ++k) {
    const float* s = w.steps.data() + kept[k] * groups;
    const __m512 ak = _mm512_set1_ps(std::abs(a[kept[k]]));
    for (int64_t g = 0; g < groups; g += 16)
      _mm512_storeu_ps(f.scale.data() + g, _mm512_max_ps(_mm512_loadu_ps(f.scale.data() + g),
                                                         _mm512_abs_ps(_mm512_mul_ps(ak, _mm512_loadu_ps(s + g)))));
  }
  const std::vector<float> inverse = FinishScales(w, f);
  const __m512i byte = _mm512_set1_epi32(0xFF);
  for (int64_t q = 0; q < f.quads(); ++q) {
    for (int64_t g = 0; g < groups; g += 16) {
      const __m512 inv = _mm512_loadu_ps(inverse.data() + g);
      __m512i packed = _mm512_setzero_si512(), zsum = _mm512_loadu_si512(f.zero_sums.data() + g);
      for (int i = 0; i < 4 && 4 * q + i < n; ++i) {
        const int64_t j = kept[4 * q + i];
        const __m512 b = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(a[j]), _mm512_loadu_ps(w.steps.data() + j * groups + g)), inv);
        const __m512i beta = _mm512_cvtps_epi32(b);
        const __m512i z = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.zeros.data() + j * groups + g)));
        zsum = _mm512_add_epi32(zsum, _mm512_mullo_epi32(beta, z));
        packed = _mm512_or_si512(packed, _mm512_slli_epi32(_mm512_and_si512(beta, byte), 8 * i));
      }
      _mm512_storeu_si512(f.beta.data() + q * groups + g, packed);
      _mm512_storeu_si512(f.zero_sums.data() + g, zsum);
    }
  }
}
#endif

bool HaveAvx512Vnni() {
#if defined(__x86_64__)
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

// ---- The pack's formats, on random weights of the same shape ----

struct PackDown {
  std::vector<uint8_t> codes, zeros;
  std::vector<uint16_t> scales;
  LowBitMatrix m;
  LowBitTiles tiles;
  SparseColumnsLayout columns;
};

std::unique_ptr<PackDown> RandomPackDown(int64_t out, int64_t in, std::mt19937& rng) {
  auto p = std::make_unique<PackDown>();
  std::normal_distribution<float> normal;
  const int frac = ZeroFractionBits(4, 4);
  p->codes.resize(static_cast<size_t>(out * CodeRowBytes(in, 4)));
  p->scales.resize(static_cast<size_t>(out * in / kGroup));
  p->zeros.resize(p->scales.size());
  for (auto& c : p->codes) c = static_cast<uint8_t>(rng());
  for (auto& s : p->scales) s = F32ToF16(0.01f + 0.001f * std::abs(normal(rng)));
  for (auto& z : p->zeros) z = static_cast<uint8_t>((rng() % 16) << frac);
  p->m.codes = p->codes.data();
  p->m.scales = p->scales.data();
  p->m.zeros = p->zeros.data();
  p->m.out = out;
  p->m.in = in;
  p->m.group = kGroup;
  p->m.zero_frac_bits = frac;
  p->m.bits = 4;
  p->tiles = TileLowBitMatrix(p->m);
  p->columns = MakeSparseColumns(p->m);
  return p;
}

struct Case {
  std::vector<std::unique_ptr<PackDown>> pack;
  std::vector<OutGroupsDown> proto;
  std::vector<float> h;                // the masked activations (zero where not kept)
  std::vector<int32_t> kept;           // sorted
};

// Sets of `layers` down projections of `out` outputs and a random kept set of kept_pct %.
const Case& MakeCase(int64_t out, int layers, int64_t kept_pct) {
  static std::map<std::tuple<int64_t, int, int64_t>, std::unique_ptr<Case>> made;
  auto& slot = made[{out, layers, kept_pct}];
  if (slot) return *slot;
  slot = std::make_unique<Case>();
  Case& c = *slot;
  std::mt19937 rng(static_cast<uint32_t>(7 + out + layers));
  for (int l = 0; l < layers; ++l) {
    c.pack.push_back(RandomPackDown(out, kInter, rng));
    c.proto.push_back(RandomOutGroupsDown(out, kInter, rng));
  }
  std::mt19937 pick(static_cast<uint32_t>(kept_pct));
  std::normal_distribution<float> normal;
  std::vector<int32_t> order(kInter);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), pick);
  c.kept.assign(order.begin(), order.begin() + kInter * kept_pct / 100);
  std::sort(c.kept.begin(), c.kept.end());
  c.h.assign(kInter, 0.f);
  for (int32_t j : c.kept) c.h[j] = normal(pick);
  if (HaveAvx512Vnni()) {
#if defined(__x86_64__)
    // The AVX-512 kernel against the scalar reference (bit-equal), and the rounding's error
    // against the float product.
    FoldedActivations f, fv;
    Fold(c.proto[0], c.h.data(), c.kept, f);
    FoldAvx512(c.proto[0], c.h.data(), c.kept, fv);
    if (fv.beta != f.beta || fv.scale != f.scale || fv.zero_sums != f.zero_sums || fv.neurons != f.neurons) {
      std::fprintf(stderr, "prototype: FoldAvx512 differs from Fold\n");
      std::abort();
    }
    std::vector<float> ref(out), got(out);
    DownScalar(c.proto[0], f, ref.data());
    DownAvx512(c.proto[0], f, got.data());
    for (int64_t o = 0; o < out; ++o)
      if (ref[o] != got[o]) {
        std::fprintf(stderr, "prototype: AVX-512 output %lld is %g, the scalar reference %g\n",
                     static_cast<long long>(o), got[o], ref[o]);
        std::abort();
      }
    double err = 0, norm = 0;
    const OutGroupsDown& w = c.proto[0];
    for (int64_t o = 0; o < out; ++o) {
      double exact = 0;
      for (int32_t j : c.kept) {
        const int64_t g = o / kOutGroup;
        exact += static_cast<double>(c.h[j]) * w.steps[j * w.groups() + g] * (w.Code(j, o) - w.zeros[j * w.groups() + g]);
      }
      err += (ref[o] - exact) * (ref[o] - exact);
      norm += exact * exact;
    }
    std::fprintf(stderr, "prototype, %lld outputs, %lld%% kept: AVX-512 = scalar; relative error of the INT8 fold %.2e\n",
                 static_cast<long long>(out), static_cast<long long>(kept_pct), std::sqrt(err / norm));
#endif
  }
  return c;
}

void RunDown(benchmark::State& state, int64_t out, int layers) {
  const int kernel = static_cast<int>(state.range(0));
  const int64_t kept_pct = state.range(1);
  if (kernel >= 2 && !HaveAvx512Vnni()) {
    state.SkipWithError("the prototype kernel needs AVX-512 VNNI");
    return;
  }
  const Case& c = MakeCase(out, layers, kept_pct);
  std::vector<float> y(static_cast<size_t>(out));
  Int8Activations hq;
  SparseNeurons nonzero;
  FoldedActivations folded;
  std::vector<FoldedActivations> prefolded(static_cast<size_t>(layers));
#if defined(__x86_64__)
  if (kernel == 3)
    for (int l = 0; l < layers; ++l) FoldAvx512(c.proto[l], c.h.data(), c.kept, prefolded[l]);
#endif
  for (auto _ : state) {
    for (int l = 0; l < layers; ++l) {
      if (kernel == 3) {
#if defined(__x86_64__)
        DownAvx512(c.proto[l], prefolded[l], y.data());
#endif
      } else if (kernel == 2) {
#if defined(__x86_64__)
        FoldAvx512(c.proto[l], c.h.data(), c.kept, folded);
        DownAvx512(c.proto[l], folded, y.data());
#endif
      } else {
        const PackDown& p = *c.pack[l];
        QuantizeInt8Blocks(c.h.data(), 1, kInter, kGroup, nullptr, hq);
        if (kernel == 0) {
          LowBitInt8Rows(p.m, p.tiles, hq, 0, p.tiles.tiles, y.data(), out);
        } else {
          FindNonzeroNeurons(hq, nonzero);
          SparseDownInt8(p.columns, hq, nonzero, 0, p.columns.blocks(), y.data());
        }
      }
      benchmark::DoNotOptimize(y.data());
    }
  }
}

void BM_Down(benchmark::State& state) { RunDown(state, 2048, kLayers); }
BENCHMARK(BM_Down)
    ->ArgNames({"kernel", "kept_pct"})
    ->ArgsProduct({{0, 1, 2, 3}, {100, 50, 30}})
    ->Unit(benchmark::kMillisecond);

void BM_DownInL2(benchmark::State& state) { RunDown(state, 512, 1); }
BENCHMARK(BM_DownInL2)->ArgNames({"kernel", "kept_pct"})->ArgsProduct({{0, 1, 2, 3}, {100, 50}});

}  // namespace
}  // namespace accullm::kernels

BENCHMARK_MAIN();
