// Rotary position embedding in Hugging Face's rotate_half convention: within each head,
// dimension i rotates with dimension i + head_dim/2. Frequencies follow HF (float32
// inverse frequencies, optional llama3 scaling) so logits match the reference closely.
// This class owns the model's frequencies; the rotation is the kernels/cpu/rope.h op.
#pragma once

#include <cstdint>
#include <vector>

#include "model/model_config.h"

namespace accullm::model {

class Rope {
 public:
  Rope(const ModelConfig& config);
  // Rotates `num_heads` heads of `head_dim` stored contiguously at `x`, for position `pos`.
  void Apply(float* x, int64_t num_heads, int64_t pos) const;
  const std::vector<float>& inv_freq() const { return inv_freq_; }

 private:
  int64_t head_dim_;
  std::vector<float> inv_freq_;
};

}  // namespace accullm::model
