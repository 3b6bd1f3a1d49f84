#include "quant/low_bit_quantizer.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "common/enum_names.h"
#include "common/random.h"
#include "common/status.h"
#include "quant/hessian_factors.h"
#include "quant/range_search.h"

namespace accullm::quant {

namespace {
// The names are written into packs ("method"): never rename one. "optq" is GPTQ's other name
// (the paper's), accepted on input only.
constexpr EnumName<QuantMethod> kQuantMethodNames[] = {{QuantMethod::kRtn, "rtn"},
                                                       {QuantMethod::kGptq, "gptq"},
                                                       {QuantMethod::kGpfq, "gpfq"},
                                                       {QuantMethod::kGptq, "optq"}};
static_assert(NamesEveryValue(kQuantMethodNames, QuantMethod::kRtn, QuantMethod::kGpfq));
}  // namespace

absl::StatusOr<QuantMethod> ParseQuantMethod(const std::string& name) {
  return ParseName(kQuantMethodNames, name, "quantization method");
}

const char* QuantMethodName(QuantMethod m) { return NameOf(kQuantMethodNames, m); }

kernels::LowBitMatrix QuantizedMatrix::view() const {
  kernels::LowBitMatrix m = format;
  m.codes = codes.data();
  m.scales = scales.empty() ? nullptr : scales.data();
  m.scale_codes = scale_codes.empty() ? nullptr : scale_codes.data();
  m.row_scales = row_scales.empty() ? nullptr : row_scales.data();
  m.zeros = zeros.empty() ? nullptr : zeros.data();
  return m;
}

int QuantizedMatrix::IntegerWeight(int64_t o, int64_t i) const {
  const kernels::LowBitMatrix& f = format;
  const int code = kernels::ReadCode(codes.data() + o * kernels::CodeRowBytes(f.in, f.bits), i, f.bits);
  const int zero = zeros.empty() ? 1 << (f.bits - 1)
                                 : zeros[static_cast<size_t>(o * (f.in / f.group) + i / f.group)] >> f.zero_frac_bits;
  return code - zero;
}

int64_t QuantizedMatrix::StoredBytes() const {
  return kernels::StoredBytes(view()) + static_cast<int64_t>(outlier_weights.size() * 2 + outlier_cols.size() * 4);
}

int64_t AxeL1Budget(int bits) { return ((int64_t{1} << (bits - 1)) - 1) / 128; }

int NaiveMaxCodeMagnitude(int bits, int64_t group) {
  return static_cast<int>(std::min<int64_t>(8, ((int64_t{1} << (bits - 1)) - 1) / (128 * group)));
}

namespace {

constexpr int64_t kBlock = 128;  // lazy-update block (a multiple of every group size)

// Per-row state for one quantization pass.
struct RowQuantizer {
  const QuantOptions& opt;
  int64_t row;
  int64_t in;
  Grid grid;
  int64_t budget_left = 0;  // AXE: remaining Σ|v| in the current group

  // Integer zero point (AXE and the naive bound work on code - zero).
  int IntZero() const { return static_cast<int>(grid.zero); }

  int Round(float value, int64_t col) const {
    const int maxq = grid.maxq;
    if (grid.scale <= 0.f) return std::clamp(static_cast<int>(std::nearbyint(grid.zero)), 0, maxq);
    const float t = value / grid.scale + grid.zero;
    float code;
    if (opt.stochastic) {
      const uint64_t h = SplitMix64(opt.seed ^ SplitMix64(static_cast<uint64_t>(row * in + col)));
      const float u = UnitFloat24(h);
      code = std::floor(t) + (u < t - std::floor(t) ? 1.f : 0.f);
    } else {
      code = std::nearbyint(t);
    }
    int c = static_cast<int>(std::clamp(code, 0.f, static_cast<float>(maxq)));
    if (opt.max_code_magnitude > 0) {
      c = std::clamp(c - IntZero(), -opt.max_code_magnitude, opt.max_code_magnitude) + IntZero();
      c = std::clamp(c, 0, maxq);
    }
    if (opt.accumulator_bits > 0) {  // AXE: never spend more than the group's budget
      int v = c - IntZero();
      const int limit = static_cast<int>(std::min<int64_t>(budget_left, maxq));
      v = std::clamp(v, -limit, limit);
      c = std::clamp(v + IntZero(), 0, maxq);
    }
    return c;
  }
  float Value(int code) const { return (static_cast<float>(code) - grid.zero) * grid.scale; }
};

// AXE: enlarges the grid's scale until round-to-nearest fits the L1 budget, so error
// feedback starts from a feasible point instead of clipping most of the group.
void FitGridToBudget(Grid& g, const float* w, const bool* is_outlier, int64_t n, int64_t budget) {
  for (int iter = 0; iter < 64 && g.scale > 0; ++iter) {
    int64_t l1 = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (is_outlier[i]) continue;
      const int zero = static_cast<int>(g.zero);  // integer under AXE
      const int c = std::clamp(static_cast<int>(std::nearbyint(w[i] / g.scale)) + zero, 0, g.maxq);
      l1 += std::abs(c - zero);
    }
    if (l1 <= budget) return;
    g.scale = F16ToF32(F32ToF16(g.scale * std::max(1.02f, static_cast<float>(l1) / budget)));
  }
}

}  // namespace

namespace {

// Dampened full Hessian from the upper triangle; dead channels (never active) get 1 on the
// diagonal so the factorisations stay defined.
// The dampening scale is the mean diagonal over the INT4 channels only: an outlier channel's
// energy can be thousands of times the others', and letting it set the dampening would flatten
// the Hessian of every other channel (GPTQ would degrade towards round-to-nearest).
std::vector<double> DampedHessian(const std::vector<double>& upper, int64_t n, double damp_fraction,
                                  const std::vector<char>& is_outlier) {
  std::vector<double> h(static_cast<size_t>(n * n));
  double mean_diag = 0;
  int64_t counted = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (is_outlier[i]) continue;
    mean_diag += upper[i * n + i];
    ++counted;
  }
  mean_diag = counted > 0 ? mean_diag / counted : 0;
  if (!(mean_diag > 0)) mean_diag = 1;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i; j < n; ++j) h[i * n + j] = h[j * n + i] = upper[i * n + j];
  for (int64_t i = 0; i < n; ++i) {
    if (h[i * n + i] == 0) h[i * n + i] = 1;
    h[i * n + i] += damp_fraction * mean_diag;
  }
  return h;
}

void PackCode(QuantizedMatrix& q, int64_t o, int64_t i, int code) {
  kernels::WriteCode(q.codes.data() + o * kernels::CodeRowBytes(q.format.in, q.format.bits), i, q.format.bits, code);
}

}  // namespace

absl::StatusOr<QuantizedMatrix> QuantizeMatrix(const float* weights, int64_t out, int64_t in,
                                               const std::vector<double>* hessian,
                                               const std::vector<int32_t>& outlier_cols, const QuantOptions& opt,
                                               ThreadPool& pool) {
  const int64_t g = opt.group_size;
  if (g != 32 && g != 64 && g != 128) return absl::InvalidArgumentError("group size must be 32, 64 or 128");
  if (in % g != 0) {
    return absl::InvalidArgumentError(absl::StrCat("input width ", in, " is not a multiple of the group size ", g));
  }
  if (opt.accumulator_bits != 0 && (opt.accumulator_bits < 10 || opt.accumulator_bits > 32)) {
    return absl::InvalidArgumentError("accumulator bits must be in [10, 32]");
  }
  if (opt.tile != 0 && (opt.tile < 0 || g % opt.tile != 0)) {
    return absl::InvalidArgumentError("AXE tile must divide the group size");
  }
  const bool needs_h = opt.method != QuantMethod::kRtn;
  if (needs_h && (hessian == nullptr || static_cast<int64_t>(hessian->size()) != in * in)) {
    return absl::InvalidArgumentError("GPTQ/GPFQ need calibration statistics (Hessian) for this layer");
  }
  if (opt.bits < kernels::kMinCodeBits || opt.bits > kernels::kMaxCodeBits)
    return absl::InvalidArgumentError(absl::StrCat(opt.bits, "-bit weights: 3 to 8 bits are supported"));
  QuantizedMatrix q;
  q.format.bits = opt.bits;
  q.format.out = out;
  q.format.in = in;
  q.format.group = g;
  // Fractional zero points unless integer weights code - zero are needed (AXE, naive bound).
  const bool integer_weights = opt.accumulator_bits > 0 || opt.max_code_magnitude > 0;
  if (opt.zero_fraction_bits != 0 && opt.zero_fraction_bits != 4)
    return absl::InvalidArgumentError("zero-point fraction bits must be 0 or 4");
  q.format.zero_frac_bits =
      (opt.symmetric || integer_weights) ? 0 : kernels::ZeroFractionBits(opt.zero_fraction_bits, opt.bits);
  if (integer_weights && opt.bits != 4)
    return absl::InvalidArgumentError("accumulator bounds (AXE) are for 4-bit weights");
  if (opt.scale_bits != 16 && opt.scale_bits != 8) return absl::InvalidArgumentError("scale bits must be 16 or 8");
  const bool u8_scales = opt.scale_bits == 8;
  if (u8_scales && integer_weights) {
    return absl::InvalidArgumentError("8-bit scales and accumulator bounds (AXE) exclude each other");
  }
  q.codes.assign(static_cast<size_t>(out * kernels::CodeRowBytes(in, opt.bits)), 0);
  if (u8_scales) {
    q.scale_codes.assign(static_cast<size_t>(out * (in / g)), 0);
    q.row_scales.assign(static_cast<size_t>(out), 0);
  } else {
    q.scales.assign(static_cast<size_t>(out * (in / g)), 0);
  }
  if (!opt.symmetric) q.zeros.assign(static_cast<size_t>(out * (in / g)), static_cast<uint8_t>(1 << (opt.bits - 1)));
  q.outlier_cols = outlier_cols;
  q.outlier_weights.assign(outlier_cols.size() * static_cast<size_t>(out), 0);
  std::vector<char> is_outlier(static_cast<size_t>(in), 0);
  for (int32_t c : outlier_cols) is_outlier[c] = 1;
  const int64_t budget = opt.accumulator_bits > 0 ? AxeL1Budget(opt.accumulator_bits) : 0;

  // Column order: natural, or by decreasing Hessian diagonal ("act-order": the columns
  // whose inputs carry the most energy are rounded first, while the most unquantized columns
  // remain to absorb their error). Everything below works in that permuted order.
  std::vector<int64_t> perm(static_cast<size_t>(in));
  for (int64_t i = 0; i < in; ++i) perm[i] = i;
  const bool act_order = opt.act_order && needs_h;
  if (act_order) {
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return (*hessian)[a * in + a] > (*hessian)[b * in + b]; });
  }
  std::vector<double> h, u;
  if (needs_h) {
    const std::vector<double> damped = DampedHessian(*hessian, in, opt.dampening, is_outlier);
    h.resize(static_cast<size_t>(in * in));
    for (int64_t a = 0; a < in; ++a)
      for (int64_t b = 0; b < in; ++b) h[a * in + b] = damped[perm[a] * in + perm[b]];
    if (opt.method == QuantMethod::kGptq) {
      ASSIGN_OR_RETURN(u, InverseHessianUpperFactor(h, in, &pool));
    }
  }
  const int64_t groups = in / g;

  // Rows are quantized kTileRows at a time, in lockstep block by block, so GPTQ's lazy update
  // reads each stretch of U once for the whole tile instead of once per row (per row it
  // streamed all of U, in²/2 doubles: memory-bound). Every row's arithmetic, and its order,
  // is that of a row quantized alone: the bytes do not depend on the tiling or the threads.
  constexpr int64_t kTileRows = 8, kLazyColumns = 256;
  pool.ParallelFor(out, [&](int64_t o0, int64_t o1) {
    std::vector<float> w_all(static_cast<size_t>(kTileRows * in));  // permuted order
    std::vector<double> err_all(static_cast<size_t>(kTileRows * kBlock)),
        resid_all(static_cast<size_t>(kTileRows * in)), lazy_all(static_cast<size_t>(kTileRows * in));
    std::vector<Grid> grids_all(static_cast<size_t>(kTileRows * groups));
    std::vector<int64_t> budget_all(static_cast<size_t>(kTileRows * groups), budget);
    std::vector<float> row_scale_all(static_cast<size_t>(kTileRows), 0.f);  // 8-bit scales: each row's F16 step
    std::vector<float> target(static_cast<size_t>(g));
    std::vector<double> importance(static_cast<size_t>(g));
    auto set_grid = [&](int64_t r, int64_t o, int64_t grp, const float* values, const char* outl) {
      // Without a Hessian every weight counts alike (null importance: exactly as all ones).
      if (needs_h)
        for (int64_t j = 0; j < g; ++j) importance[j] = (*hessian)[(grp * g + j) * in + grp * g + j];
      // A group with outlier columns keeps an integer zero point: their INT4 code must stand
      // for exactly 0 (the FP16 part carries them).
      bool has_outlier = false;
      for (int64_t j = 0; j < g; ++j) has_outlier = has_outlier || outl[j];
      const int frac = has_outlier ? 0 : q.format.zero_frac_bits;
      const GridFormat format{opt.bits, opt.symmetric, frac, row_scale_all[r]};
      Grid grid = SearchGrid(values, reinterpret_cast<const bool*>(outl), needs_h ? importance.data() : nullptr, g,
                             format, opt.search_grid);
      if (budget > 0) FitGridToBudget(grid, values, reinterpret_cast<const bool*>(outl), g, budget);
      grids_all[r * groups + grp] = grid;
      if (u8_scales) {
        q.scale_codes[o * groups + grp] = static_cast<uint8_t>(grid.scale_code);
      } else {
        q.scales[o * groups + grp] = F32ToF16(grid.scale);
      }
      if (!opt.symmetric)
        q.zeros[o * groups + grp] = kernels::EncodeZeroPoint(grid.stored, frac, q.format.zero_frac_bits);
    };
    for (int64_t t0 = o0; t0 < o1; t0 += kTileRows) {
      const int64_t tile = std::min(kTileRows, o1 - t0);
      for (int64_t r = 0; r < tile; ++r) {
        const int64_t o = t0 + r;
        const float* row = weights + o * in;
        float* w = w_all.data() + r * in;
        for (int64_t k = 0; k < in; ++k) {  // dead channels carry no signal: zero them like GPTQ
          const int64_t col = perm[k];
          w[k] = (needs_h && (*hessian)[col * in + col] == 0 && !is_outlier[col]) ? 0.f : row[col];
        }
        std::fill(budget_all.begin() + r * groups, budget_all.begin() + (r + 1) * groups, budget);
        if (u8_scales) {
          // The row's step: the largest group step of the original weights, with headroom for
          // error feedback widening a later group's range (beyond it a group is clipped).
          float widest = 0.f;
          for (int64_t grp = 0; grp < groups; ++grp) {
            float lo = 0.f, hi = 0.f;
            for (int64_t j = grp * g; j < (grp + 1) * g; ++j) {
              if (is_outlier[j]) continue;
              lo = std::min(lo, row[j]);
              hi = std::max(hi, row[j]);
            }
            const float half = static_cast<float>(1 << (opt.bits - 1));
            widest =
                std::max(widest, opt.symmetric ? std::max(-lo, hi) / (half - 1.f) : (hi - lo) / (2.f * half - 1.f));
          }
          q.row_scales[o] = F32ToF16(widest * 1.15f);
          row_scale_all[r] = F16ToF32(q.row_scales[o]);
          if (!(row_scale_all[r] > 0.f)) row_scale_all[r] = 1e-8f;  // an all-zero row: any step will do
        }
        if (act_order) {  // static groups: grids from the original weights, before any update
          for (int64_t grp = 0; grp < groups; ++grp) set_grid(r, o, grp, row + grp * g, is_outlier.data() + grp * g);
        }
        std::fill(resid_all.begin() + r * in, resid_all.begin() + (r + 1) * in, 0.0);
      }
      for (int64_t b0 = 0; b0 < in; b0 += kBlock) {
        const int64_t b1 = std::min(in, b0 + kBlock);
        for (int64_t r = 0; r < tile; ++r) {
          const int64_t o = t0 + r;
          float* w = w_all.data() + r * in;
          double* err = err_all.data() + r * kBlock;
          double* resid = resid_all.data() + r * in;
          Grid* grids = grids_all.data() + r * groups;
          int64_t* budget_left = budget_all.data() + r * groups;
          for (int64_t k = b0; k < b1; ++k) {
            const int64_t col = perm[k], grp = col / g;
            if (!act_order && k % g == 0) {  // a new group: its grid from the current (error-corrected) weights
              for (int64_t j = 0; j < g; ++j) {
                target[j] = opt.method == QuantMethod::kGpfq
                                ? static_cast<float>(w[k + j] + resid[k + j] / h[(k + j) * in + k + j])
                                : w[k + j];
              }
              set_grid(r, o, grp, target.data(), is_outlier.data() + col);
            }
            const RowQuantizer rq{opt, o, in, grids[grp], budget_left[grp]};
            // What this column should represent, and what it will.
            const float want =
                opt.method == QuantMethod::kGpfq ? static_cast<float>(w[k] + resid[k] / h[k * in + k]) : w[k];
            float got;
            if (is_outlier[col]) {
              const size_t idx = std::lower_bound(outlier_cols.begin(), outlier_cols.end(), col) - outlier_cols.begin();
              const uint16_t f16 = F32ToF16(want);
              q.outlier_weights[o * outlier_cols.size() + idx] = f16;
              PackCode(q, o, col, rq.IntZero());  // contributes 0 in the INT4 part (integer zero here)
              got = F16ToF32(f16);
            } else {
              const int code = rq.Round(want, col);
              PackCode(q, o, col, code);
              budget_left[grp] -= std::abs(code - rq.IntZero());
              got = rq.Value(code);
            }
            if (opt.method == QuantMethod::kGptq) {
              const double e = (w[k] - got) / u[k * in + k];
              err[k - b0] = e;
              for (int64_t j = k + 1; j < b1; ++j) w[j] -= static_cast<float>(e * u[k * in + j]);
            } else if (opt.method == QuantMethod::kGpfq) {
              // Running residual of the output: r_j += H[j, k] (w_k - q_k) for later columns.
              const double d = w[k] - got;
              if (d != 0)
                for (int64_t j = k + 1; j < in; ++j) resid[j] += h[j * in + k] * d;
            }
          }
        }
        if (opt.method == QuantMethod::kGptq) {  // lazy update of the columns after the block
          // lazy_r[j] = Σ_k err_r[k] U[k][j], k in order for every row; a stretch of U's
          // columns at a time, shared by the tile's rows while it sits in cache.
          for (int64_t j0 = b1; j0 < in; j0 += kLazyColumns) {
            const int64_t j1 = std::min(in, j0 + kLazyColumns);
            for (int64_t r = 0; r < tile; ++r)
              std::fill(lazy_all.begin() + r * in + j0, lazy_all.begin() + r * in + j1, 0.0);
            for (int64_t k = b0; k < b1; ++k) {
              const double* uk = u.data() + k * in;
              for (int64_t r = 0; r < tile; ++r) {
                const double e = err_all[r * kBlock + k - b0];
                double* lazy = lazy_all.data() + r * in;
                for (int64_t j = j0; j < j1; ++j) lazy[j] += e * uk[j];
              }
            }
            for (int64_t r = 0; r < tile; ++r) {
              float* w = w_all.data() + r * in;
              const double* lazy = lazy_all.data() + r * in;
              for (int64_t j = j0; j < j1; ++j) w[j] -= static_cast<float>(lazy[j]);
            }
          }
        }
      }
    }
  });
  return q;
}

}  // namespace accullm::quant
