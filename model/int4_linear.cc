#include "model/int4_linear.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"

namespace accullm {

absl::StatusOr<std::unique_ptr<Int4Linear>> Int4Linear::Create(Int4Data d, std::vector<float> bias) {
  if (d.out <= 0 || d.in <= 0 || d.in % 8 != 0) return absl::InvalidArgumentError("quantized matrix: bad shape");
  if (d.group <= 0 || d.in % d.group != 0) {
    return absl::InvalidArgumentError(absl::StrCat("INT4 matrix: group size ", d.group, " does not divide ", d.in));
  }
  if (d.codes == nullptr || (d.scales == nullptr && (d.scale_codes == nullptr || d.row_scales == nullptr)))
    return absl::InvalidArgumentError("INT4 matrix: missing arrays");
  if (d.bits < kernels::kMinCodeBits || d.bits > kernels::kMaxCodeBits) {
    return absl::InvalidArgumentError(absl::StrCat("quantized matrix: ", d.bits, "-bit codes (3 to 8 supported)"));
  }
  if (d.zero_frac_bits < 0 || d.zero_frac_bits > kernels::ZeroFractionBits(4, d.bits)) {
    return absl::InvalidArgumentError(absl::StrCat("quantized matrix: zero points with ", d.zero_frac_bits,
                                                   " fraction bits (at most ", kernels::ZeroFractionBits(4, d.bits), " at ", d.bits,
                                                   " bits)"));
  }
  for (size_t i = 0; i < d.outlier_cols.size(); ++i) {
    if (d.outlier_cols[i] < 0 || d.outlier_cols[i] >= d.in || (i > 0 && d.outlier_cols[i] <= d.outlier_cols[i - 1])) {
      return absl::InvalidArgumentError("INT4 matrix: outlier channels must be sorted, unique and < in");
    }
  }
  if (!d.outlier_cols.empty() && d.outlier_weights == nullptr) {
    return absl::InvalidArgumentError("INT4 matrix: outlier channels without weights");
  }
  if (!bias.empty() && static_cast<int64_t>(bias.size()) != d.out) return absl::InvalidArgumentError("INT4 matrix: bias size");
  auto l = std::unique_ptr<Int4Linear>(new Int4Linear());
  l->m_ = kernels::Int4Matrix{d.codes,         d.scales,         d.zeros,      d.in, d.group,
                              d.zero_frac_bits, d.scale_codes, d.row_scales, d.bits};
  l->d_ = std::move(d);
  l->bias_ = std::move(bias);
  l->outlier_mask_.assign(static_cast<size_t>(l->d_.in), 0);
  for (int32_t c : l->d_.outlier_cols) l->outlier_mask_[c] = 1;
  return l;
}

size_t Int4Linear::weight_bytes() const {
  const size_t groups = static_cast<size_t>(d_.out * (d_.in / d_.group));
  const size_t scale_bytes = d_.scale_codes != nullptr ? groups + static_cast<size_t>(d_.out) * 2 : groups * 2;
  return static_cast<size_t>(d_.out * kernels::CodeRowBytes(d_.in, d_.bits)) + scale_bytes + (d_.zeros ? groups : 0) +
         d_.outlier_cols.size() * static_cast<size_t>(d_.out) * 2;
}

void Int4Linear::DequantizeRow(int64_t o, float* dst) const {
  kernels::DequantizeInt4Row(m_, o, dst);
  const size_t k = d_.outlier_cols.size();
  for (size_t j = 0; j < k; ++j) dst[d_.outlier_cols[j]] = F16ToF32(d_.outlier_weights[o * k + j]);
}

void Int4Linear::Forward(const float* x, int64_t n, float* y, ThreadPool& pool) const {
  std::vector<float> quantized;
  if (act_quant_ != nullptr) {
    quantized.assign(x, x + n * d_.in);
    kernels::QuantizeActivationsInt8(quantized.data(), n, d_.in, outlier_mask_, *act_quant_, act_calls_++);
    x = quantized.data();
  }
  const int64_t out = d_.out, k = static_cast<int64_t>(d_.outlier_cols.size());
  pool.ParallelFor(
      out,
      [&](int64_t o0, int64_t o1) {
        kernels::Int4LinearRows(m_, x, n, o0, o1, y, out);
        if (k > 0) {  // the sparse FP16 part: a few columns, so a plain loop
          for (int64_t o = o0; o < o1; ++o) {
            const uint16_t* w = d_.outlier_weights + o * k;
            for (int64_t r = 0; r < n; ++r) {
              float acc = 0.f;
              for (int64_t j = 0; j < k; ++j) acc += F16ToF32(w[j]) * x[r * d_.in + d_.outlier_cols[j]];
              y[r * out + o] += acc;
            }
          }
        }
        if (!bias_.empty()) {
          for (int64_t r = 0; r < n; ++r)
            for (int64_t o = o0; o < o1; ++o) y[r * out + o] += bias_[o];
        }
      },
      /*min_chunk=*/16);
}

}  // namespace accullm
