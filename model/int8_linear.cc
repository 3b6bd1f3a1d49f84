#include "model/int8_linear.h"

#include <algorithm>
#include <cmath>

#include "common/dtype.h"

namespace accullm::model {

Int8Quantized QuantizeInt8Rows(const float* w, int64_t out, int64_t in) {
  Int8Quantized q;
  q.out = out;
  q.in = in;
  q.codes.resize(static_cast<size_t>(out * in));
  q.scales.resize(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) {
    const float* row = w + o * in;
    float amax = 0.f;
    for (int64_t i = 0; i < in; ++i) amax = std::max(amax, std::fabs(row[i]));
    // The stored (F16) step is what the kernel multiplies by: round with that one.
    q.scales[o] = F32ToF16(amax / 127.f);
    const float step = F16ToF32(q.scales[o]);
    for (int64_t i = 0; i < in; ++i) {
      const int v = step > 0 ? static_cast<int>(std::nearbyint(row[i] / step)) : 0;
      q.codes[o * in + i] = static_cast<uint8_t>(std::clamp(v, -127, 127) + 128);
    }
  }
  return q;
}

absl::StatusOr<std::unique_ptr<Int8Linear>> Int8Linear::Create(Int8Data d, std::vector<float> bias) {
  if (d.out <= 0 || d.in <= 0) return absl::InvalidArgumentError("INT8 matrix: bad shape");
  if (d.codes == nullptr || d.scales == nullptr) return absl::InvalidArgumentError("INT8 matrix: missing arrays");
  if (!bias.empty() && static_cast<int64_t>(bias.size()) != d.out)
    return absl::InvalidArgumentError("INT8 matrix: bias size");
  auto l = std::unique_ptr<Int8Linear>(new Int8Linear());
  l->m_ = kernels::Int8Matrix{d.codes, d.scales, d.in};
  l->d_ = std::move(d);
  l->bias_ = std::move(bias);
  return l;
}

void Int8Linear::Forward(const float* x, int64_t n, float* y, ThreadPool& pool) const {
  const int64_t out = d_.out;
  pool.ParallelFor(
      out,
      [&](int64_t o0, int64_t o1) {
        kernels::Int8LinearRows(m_, x, n, o0, o1, y, out);
        if (!bias_.empty()) {
          for (int64_t r = 0; r < n; ++r)
            for (int64_t o = o0; o < o1; ++o) y[r * out + o] += bias_[o];
        }
      },
      /*min_chunk=*/16);
}

}  // namespace accullm::model
