// The one interface every linear layer implements: dense F32/F16/BF16 now; INT4, sparse and
// CUDA kernels later. The transformer only ever calls LinearOp::Forward.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "common/thread_pool.h"
#include "model/safetensors.h"

namespace accullm::model {

class LinearOp {
 public:
  virtual ~LinearOp() = default;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  // y[r, :] = W · x[r, :] (+ bias) for r in [0, n); x is [n, in], y is [n, out], row-major.
  virtual void Forward(const float* x, int64_t n, float* y, ThreadPool& pool) const = 0;
  // Bytes of the weights as stored (a pack's bits per weight, memory plans).
  virtual size_t weight_bytes() const = 0;
  // Bytes a forward pass reads per row, in the layout the kernels use (bandwidth figures).
  virtual size_t streamed_bytes() const { return weight_bytes(); }
};

// Weights used in place from the mmap'd checkpoint (copied only when misaligned).
class DenseLinear final : public LinearOp {
 public:
  // `weight` must be 2-D [out, in]; `bias` (may be null) 1-D [out].
  static absl::StatusOr<std::unique_ptr<DenseLinear>> Create(const TensorView& weight, const TensorView* bias);

  int64_t in_features() const override { return in_; }
  int64_t out_features() const override { return out_; }
  void Forward(const float* x, int64_t n, float* y, ThreadPool& pool) const override;
  size_t weight_bytes() const override { return static_cast<size_t>(in_ * out_) * DTypeSize(dtype_); }
  void set_bias(std::vector<float> bias) { bias_ = std::move(bias); }
  DType dtype() const { return dtype_; }

 private:
  DType dtype_ = DType::kF32;
  int64_t in_ = 0, out_ = 0;
  const void* data_ = nullptr;
  std::vector<uint8_t> owned_;  // aligned copy when the file's bytes were misaligned
  std::vector<float> bias_;
};

// Converts a 1-D (or any) tensor to a float vector, checking its element count.
absl::StatusOr<std::vector<float>> TensorToF32(const TensorView& t, int64_t expected_numel);

}  // namespace accullm::model
