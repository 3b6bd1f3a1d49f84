#include "model/weight_check.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace accullm::model {

namespace {

// An element is NaN or ±Inf exactly when its exponent bits are all ones, i.e. when its
// magnitude bits are >= the pattern of +Inf. The max over a block is branch-free (the
// compiler vectorizes it); only a block that holds a bad element is searched again.
template <typename Bits>
int64_t FirstNonFiniteBits(const uint8_t* data, int64_t n, Bits magnitude, Bits inf) {
  constexpr int64_t kBlock = 4096;
  auto at = [&](int64_t i) {
    Bits v;
    std::memcpy(&v, data + i * static_cast<int64_t>(sizeof(Bits)), sizeof(Bits));  // may be unaligned
    return static_cast<Bits>(v & magnitude);
  };
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = std::min(n, b + kBlock);
    Bits mx = 0;
    for (int64_t i = b; i < e; ++i) mx = std::max(mx, at(i));
    if (mx < inf) continue;
    for (int64_t i = b; i < e; ++i)
      if (at(i) >= inf) return i;
  }
  return -1;
}

// "NaN", "Inf" or "-Inf" for a non-finite element.
const char* Describe(DType t, const uint8_t* element) {
  float f = 0;
  ConvertToF32(t, element, &f, 1);
  return f != f ? "NaN" : f > 0 ? "Inf" : "-Inf";
}

absl::Status NonFiniteError(const TensorView& t, int64_t i) {
  // The element's coordinates, e.g. [3, 17], are easier to act on than a flat index.
  std::vector<int64_t> coords(t.shape.size());
  int64_t rest = i;
  for (size_t d = t.shape.size(); d-- > 0;) {
    coords[d] = t.shape[d] > 0 ? rest % t.shape[d] : 0;
    rest = t.shape[d] > 0 ? rest / t.shape[d] : 0;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      t.file, ": tensor \"", t.name, "\" (", DTypeName(t.dtype), " [", absl::StrJoin(t.shape, ", "), "]) holds ",
      Describe(t.dtype, t.data + i * static_cast<int64_t>(DTypeSize(t.dtype))), " at [", absl::StrJoin(coords, ", "),
      "]: a corrupt or badly converted file; NaN and Inf weights are refused"));
}

bool IsFloat(DType t) { return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16; }

}  // namespace

int64_t FirstNonFinite(DType t, const uint8_t* data, int64_t n) {
  switch (t) {
    case DType::kF32: return FirstNonFiniteBits<uint32_t>(data, n, 0x7fffffffu, 0x7f800000u);
    case DType::kF16: return FirstNonFiniteBits<uint16_t>(data, n, 0x7fff, 0x7c00);
    case DType::kBF16: return FirstNonFiniteBits<uint16_t>(data, n, 0x7fff, 0x7f80);
    default: return -1;
  }
}

absl::Status CheckFinite(const TensorView& t) {
  const int64_t i = FirstNonFinite(t.dtype, t.data, t.numel());
  return i < 0 ? absl::OkStatus() : NonFiniteError(t, i);
}

absl::Status CheckFinite(const TensorStore& store, const std::function<bool(const std::string&)>& select,
                         ThreadPool* pool) {
  // Large tensors are cut into chunks so every thread has work (an embedding table or an LM
  // head is often the largest tensor by far).
  constexpr int64_t kChunkElements = int64_t{1} << 20;
  struct Chunk {
    const TensorView* tensor;
    int64_t begin, end;
  };
  std::vector<Chunk> chunks;
  for (const auto& [name, t] : store.tensors()) {  // by name: the first bad chunk is the first bad tensor
    if (!IsFloat(t.dtype) || (select && !select(name))) continue;
    const int64_t n = t.numel();
    for (int64_t b = 0; b < n; b += kChunkElements) chunks.push_back({&t, b, std::min(n, b + kChunkElements)});
  }
  std::vector<int64_t> first_bad(chunks.size(), -1);
  auto scan = [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const Chunk& k = chunks[c];
      const int64_t esize = static_cast<int64_t>(DTypeSize(k.tensor->dtype));
      const int64_t i = FirstNonFinite(k.tensor->dtype, k.tensor->data + k.begin * esize, k.end - k.begin);
      if (i >= 0) first_bad[c] = k.begin + i;
    }
  };
  const int64_t n = static_cast<int64_t>(chunks.size());
  if (pool != nullptr) {
    pool->ParallelFor(n, scan);
  } else {
    scan(0, n);
  }
  for (size_t c = 0; c < chunks.size(); ++c)
    if (first_bad[c] >= 0) return NonFiniteError(*chunks[c].tensor, first_bad[c]);
  return absl::OkStatus();
}

}  // namespace accullm::model
