#include "model/linear.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/cpu/linear_kernels.h"

namespace accullm::model {

namespace {
std::string ShapeString(const std::vector<int64_t>& s) { return absl::StrCat("[", absl::StrJoin(s, ", "), "]"); }
}  // namespace

absl::StatusOr<std::vector<float>> TensorToF32(const TensorView& t, int64_t expected_numel) {
  if (t.numel() != expected_numel) {
    return absl::InvalidArgumentError(absl::StrCat(t.file, ": tensor \"", t.name, "\" has shape ", ShapeString(t.shape),
                                                   " but the config needs ", expected_numel, " elements"));
  }
  if (t.dtype != DType::kF32 && t.dtype != DType::kF16 && t.dtype != DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat(t.file, ": tensor \"", t.name, "\" has dtype ", DTypeName(t.dtype),
                                                   "; expected F32, F16 or BF16"));
  }
  std::vector<float> out(static_cast<size_t>(expected_numel));
  ConvertToF32(t.dtype, t.data, out.data(), out.size());  // byte-wise copies: alignment-safe
  return out;
}

absl::StatusOr<std::unique_ptr<DenseLinear>> DenseLinear::Create(const TensorView& weight, const TensorView* bias) {
  if (weight.shape.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(weight.file, ": tensor \"", weight.name, "\" must be 2-D, has shape ", ShapeString(weight.shape)));
  }
  if (weight.dtype != DType::kF32 && weight.dtype != DType::kF16 && weight.dtype != DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat(weight.file, ": tensor \"", weight.name, "\" has dtype ",
                                                   DTypeName(weight.dtype), "; expected F32, F16 or BF16"));
  }
  auto l = std::unique_ptr<DenseLinear>(new DenseLinear());
  l->dtype_ = weight.dtype;
  l->out_ = weight.shape[0];
  l->in_ = weight.shape[1];
  l->data_ = weight.data;
  if (reinterpret_cast<uintptr_t>(weight.data) % DTypeSize(weight.dtype) != 0) {
    l->owned_.resize(weight.nbytes + 64);
    void* p = l->owned_.data();
    size_t space = l->owned_.size();
    p = std::align(64, weight.nbytes, p, space);
    std::memcpy(p, weight.data, weight.nbytes);
    l->data_ = p;
  }
  if (bias != nullptr) {
    auto b = TensorToF32(*bias, l->out_);
    if (!b.ok()) return b.status();
    l->bias_ = std::move(*b);
  }
  return l;
}

void DenseLinear::Forward(const float* x, int64_t n, float* y, ThreadPool& pool) const {
  // Split over output rows: every thread streams a disjoint slice of W once.
  pool.ParallelFor(
      out_,
      [&](int64_t o0, int64_t o1) {
        kernels::LinearRows(dtype_, data_, in_, x, n, o0, o1, y, out_);
        if (!bias_.empty()) {
          for (int64_t r = 0; r < n; ++r)
            for (int64_t o = o0; o < o1; ++o) y[r * out_ + o] += bias_[o];
        }
      },
      /*min_chunk=*/16);
}

}  // namespace accullm::model
