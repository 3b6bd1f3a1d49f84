#include "model/rope.h"

#include <cmath>

#include "kernels/cpu/rope.h"

namespace accullm::model {

Rope::Rope(const ModelConfig& c) : head_dim_(c.head_dim) {
  const int64_t half = head_dim_ / 2;
  inv_freq_.resize(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim_);
    inv_freq_[i] = 1.0f / static_cast<float>(std::pow(c.rope_theta, static_cast<double>(exponent)));
  }
  if (c.rope_scaling.type == "llama3") {
    // transformers' _compute_llama3_parameters: long wavelengths are slowed by `factor`,
    // short ones kept, the band between interpolated smoothly.
    const auto& s = c.rope_scaling;
    const double old_ctx = static_cast<double>(s.original_max_position_embeddings);
    const double low_wavelen = old_ctx / s.low_freq_factor;
    const double high_wavelen = old_ctx / s.high_freq_factor;
    for (auto& f : inv_freq_) {
      const double wavelen = 2.0 * M_PI / f;
      double scaled = wavelen > low_wavelen ? f / s.factor : f;
      if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
        const double smooth = (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        scaled = (1.0 - smooth) * scaled / s.factor + smooth * scaled;
      }
      f = static_cast<float>(scaled);
    }
  }
}

void Rope::Apply(float* x, int64_t num_heads, int64_t pos) const {
  kernels::ApplyRope(x, num_heads, head_dim_, inv_freq_.data(), pos);
}

}  // namespace accullm::model
