#include "model/pack/pack_reader.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "kernels/low_bit_matrix.h"
#include "model/int8_linear.h"
#include "model/low_bit_linear.h"
#include "model/pack/tensor_names.h"

namespace accullm::model {

namespace {

absl::StatusOr<TensorView> GetChecked(const TensorStore& store, const std::string& name, DType dtype,
                                      const std::vector<int64_t>& shape) {
  ASSIGN_OR_RETURN(TensorView t, store.Get(name));
  if (t.dtype != dtype) {
    return absl::InvalidArgumentError(absl::StrCat(t.file, ": tensor \"", name, "\" has dtype ", DTypeName(t.dtype),
                                                   ", expected ", DTypeName(dtype)));
  }
  if (t.shape != shape) return ShapeError(t, shape);
  return t;
}

// Arrays from the mmap'd file are used in place when aligned, else copied once.
template <typename T>
const T* Aligned(const TensorView& t, std::vector<std::shared_ptr<std::vector<uint8_t>>>& copies) {
  if (reinterpret_cast<uintptr_t>(t.data) % alignof(T) == 0) return reinterpret_cast<const T*>(t.data);
  auto copy = std::make_shared<std::vector<uint8_t>>(t.data, t.data + t.nbytes + sizeof(T));
  void* p = copy->data();
  size_t space = copy->size();
  p = std::align(alignof(T), t.nbytes, p, space);
  std::memmove(p, t.data, t.nbytes);
  copies.push_back(copy);
  return static_cast<const T*>(p);
}

absl::StatusOr<std::unique_ptr<LinearOp>> LoadLowBitLinear(const TensorStore& store, const std::string& prefix,
                                                           int64_t out, int64_t in, int64_t group, bool symmetric,
                                                           int zero_frac_bits, int scale_bits, int bits,
                                                           int accumulator_bits, const std::vector<float>& bias) {
  if (group <= 0 || in % group != 0 || in % 8 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, ": group size ", group, " does not divide ", in));
  }
  auto copies = std::make_shared<std::vector<std::shared_ptr<std::vector<uint8_t>>>>();
  LowBitLinearWeights w;
  kernels::LowBitMatrix& m = w.matrix;
  m.out = out;
  m.in = in;
  m.group = group;
  m.bits = bits;
  // The manifest's zero-point resolution, capped so that zero·2^frac fits a byte at this width.
  m.zero_frac_bits = symmetric ? 0 : kernels::ZeroFractionBits(zero_frac_bits, bits);
  ASSIGN_OR_RETURN(TensorView codes, store.Get(prefix + pack_tensor::kCodes));
  if (codes.dtype != DType::kU8 || codes.shape != std::vector<int64_t>{out, in * bits / 8}) {
    return absl::InvalidArgumentError(absl::StrCat(codes.file, ": tensor \"", codes.name, "\" is ",
                                                   DTypeName(codes.dtype), " [", absl::StrJoin(codes.shape, ", "),
                                                   "] but accullm.json says ", bits, "-bit codes for a [", out, ", ",
                                                   in, "] matrix: U8 [", out, ", ", in * bits / 8, "]"));
  }
  m.codes = codes.data;
  if (scale_bits == 8) {
    ASSIGN_OR_RETURN(TensorView scales,
                     GetChecked(store, prefix + pack_tensor::kScales, DType::kU8, {out, in / group}));
    ASSIGN_OR_RETURN(TensorView rows, GetChecked(store, prefix + pack_tensor::kRowScales, DType::kF16, {out}));
    m.scale_codes = scales.data;
    m.row_scales = Aligned<uint16_t>(rows, *copies);
  } else {
    ASSIGN_OR_RETURN(TensorView scales,
                     GetChecked(store, prefix + pack_tensor::kScales, DType::kF16, {out, in / group}));
    m.scales = Aligned<uint16_t>(scales, *copies);
  }
  if (!symmetric) {
    ASSIGN_OR_RETURN(TensorView zeros, GetChecked(store, prefix + pack_tensor::kZeros, DType::kU8, {out, in / group}));
    m.zeros = zeros.data;
  } else if (store.Has(prefix + pack_tensor::kZeros)) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, pack_tensor::kZeros, " present but the pack says symmetric"));
  }
  if (store.Has(prefix + pack_tensor::kOutlierCols)) {
    ASSIGN_OR_RETURN(TensorView cols, store.Get(prefix + pack_tensor::kOutlierCols));
    if (cols.dtype != DType::kI32 || cols.shape.size() != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(cols.file, ": ", prefix, pack_tensor::kOutlierCols, " must be I32 [k]"));
    }
    const int64_t k = cols.shape[0];
    w.outlier_cols.resize(static_cast<size_t>(k));
    std::memcpy(w.outlier_cols.data(), cols.data, cols.nbytes);
    ASSIGN_OR_RETURN(TensorView ow, GetChecked(store, prefix + pack_tensor::kOutlierWeight, DType::kF16, {out, k}));
    w.outlier_weights = Aligned<uint16_t>(ow, *copies);
  }
  w.keep_alive = copies;
  w.accumulator_bits = accumulator_bits;
  ASSIGN_OR_RETURN(auto lin, LowBitLinear::Create(std::move(w), bias));
  return std::unique_ptr<LinearOp>(std::move(lin));
}

}  // namespace

absl::StatusOr<std::unique_ptr<LinearOp>> LoadLinear(const TensorStore& store, const std::string& prefix, int64_t out,
                                                     int64_t in, bool has_bias, const PackManifest* pack,
                                                     bool quantized_expected) {
  std::vector<float> bias;
  if (has_bias) {
    ASSIGN_OR_RETURN(TensorView b, store.Get(prefix + pack_tensor::kBias));
    ASSIGN_OR_RETURN(bias, TensorToF32(b, out));
  }
  const bool has_codes = store.Has(prefix + pack_tensor::kCodes);
  if (pack != nullptr && has_codes != quantized_expected) {
    return absl::InvalidArgumentError(absl::StrCat("pack plan disagrees with its tensors: ", prefix, " is ",
                                                   has_codes ? "low-bit" : "not low-bit", " but accullm.json says ",
                                                   quantized_expected ? "int4" : "fp16"));
  }
  if (has_codes) {
    if (pack == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(prefix, pack_tensor::kCodes, " found but there is no accullm.json manifest"));
    }
    // The accumulator guarantee covers the dot-product linears, not the embedding table (a
    // lookup, quantized without it; a head tied to it reads its weights, guarantee-less too).
    const int accumulator_bits = prefix == "model.embed_tokens" ? 0 : pack->accumulator_bits;
    return LoadLowBitLinear(store, prefix, out, in, pack->GroupOf(prefix), pack->symmetric, pack->zero_fraction_bits,
                            pack->scale_bits, pack->BitsOf(prefix), accumulator_bits, bias);
  }
  ASSIGN_OR_RETURN(TensorView w, store.Get(prefix + pack_tensor::kWeight));
  if (w.shape != std::vector<int64_t>{out, in}) return ShapeError(w, {out, in});
  ASSIGN_OR_RETURN(auto lin, DenseLinear::Create(w, nullptr));
  if (has_bias) lin->set_bias(std::move(bias));
  return std::unique_ptr<LinearOp>(std::move(lin));
}

absl::StatusOr<std::unique_ptr<LinearOp>> LoadInt8Linear(const TensorStore& store, const std::string& prefix,
                                                         int64_t out, int64_t in, int64_t integer_block) {
  auto copies = std::make_shared<std::vector<std::shared_ptr<std::vector<uint8_t>>>>();
  ASSIGN_OR_RETURN(TensorView codes, GetChecked(store, prefix + pack_tensor::kInt8Codes, DType::kU8, {out, in}));
  ASSIGN_OR_RETURN(TensorView scales, GetChecked(store, prefix + pack_tensor::kInt8Scales, DType::kF16, {out}));
  if (integer_block > 0) {
    if (in % integer_block != 0)
      return absl::InvalidArgumentError(
          absl::StrCat(prefix, ": ", in, " input channels are not a multiple of the block ", integer_block));
    const int64_t blocks = in / integer_block;
    const uint16_t* row_steps = Aligned<uint16_t>(scales, *copies);
    auto steps = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(out * blocks) * sizeof(uint16_t));
    auto* step = reinterpret_cast<uint16_t*>(steps->data());
    for (int64_t o = 0; o < out; ++o) std::fill(step + o * blocks, step + (o + 1) * blocks, row_steps[o]);
    auto zeros = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(out * blocks), uint8_t{128});
    copies->push_back(steps);
    copies->push_back(zeros);
    LowBitLinearWeights w;
    w.matrix.out = out;
    w.matrix.in = in;
    w.matrix.group = integer_block;
    w.matrix.bits = 8;
    w.matrix.codes = codes.data;
    w.matrix.scales = step;
    w.matrix.zeros = zeros->data();
    w.matrix.zero_frac_bits = 0;
    w.keep_alive = copies;
    ASSIGN_OR_RETURN(auto lin, LowBitLinear::Create(std::move(w), {}));
    return std::unique_ptr<LinearOp>(std::move(lin));
  }
  Int8Data d;
  d.out = out;
  d.in = in;
  d.codes = codes.data;
  d.scales = Aligned<uint16_t>(scales, *copies);
  d.keep_alive = copies;
  ASSIGN_OR_RETURN(auto lin, Int8Linear::Create(std::move(d), {}));
  return std::unique_ptr<LinearOp>(std::move(lin));
}

}  // namespace accullm::model
