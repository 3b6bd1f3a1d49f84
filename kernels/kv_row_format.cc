#include "kernels/kv_row_format.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/dtype.h"
#include "common/enum_names.h"
#include "common/random.h"

namespace accullm::kernels {

namespace {

constexpr EnumName<KvDType> kKvDTypeNames[] = {
    {KvDType::kF32, "f32"}, {KvDType::kF16, "f16"}, {KvDType::kBF16, "bf16"}, {KvDType::kInt8, "int8"}};
static_assert(NamesEveryValue(kKvDTypeNames, KvDType::kF32, KvDType::kInt8));

constexpr EnumName<KvInt8Rounding> kKvInt8RoundingNames[] = {{KvInt8Rounding::kNearest, "nearest"},
                                                             {KvInt8Rounding::kErrorFeedback, "feedback"},
                                                             {KvInt8Rounding::kStochastic, "stochastic"},
                                                             {KvInt8Rounding::kRefitScale, "refit"}};
static_assert(NamesEveryValue(kKvInt8RoundingNames, KvInt8Rounding::kNearest, KvInt8Rounding::kRefitScale));

float ClampCode(float c) { return std::clamp(c, -127.f, 127.f); }

// One head's INT8 record: the scale, then the codes.
void EncodeInt8Head(const float* x, int64_t n, KvInt8Rounding rounding, const KvRowKey& key, int64_t head,
                    uint8_t* dst) {
  float absmax = 0.f;
  for (int64_t d = 0; d < n; ++d) absmax = std::max(absmax, std::fabs(x[d]));
  const float scale = absmax > 0.f ? absmax / 127.f : 0.f;
  const float inv = absmax > 0.f ? 127.f / absmax : 0.f;
  auto* codes = reinterpret_cast<int8_t*>(dst + sizeof(float));
  if (rounding == KvInt8Rounding::kRefitScale) {
    float s = scale;
    for (int pass = 0; pass < 2 && s > 0.f; ++pass) {
      const float inv_s = 1.f / s;
      double xc = 0, cc = 0;
      for (int64_t d = 0; d < n; ++d) {
        const float c = ClampCode(std::nearbyint(x[d] * inv_s));
        codes[d] = static_cast<int8_t>(c);
        xc += static_cast<double>(x[d]) * c;
        cc += static_cast<double>(c) * c;
      }
      if (cc > 0) s = static_cast<float>(xc / cc);
    }
    std::memcpy(dst, &s, sizeof(float));
    if (!(s > 0.f)) std::memset(codes, 0, static_cast<size_t>(n));
    return;
  }
  std::memcpy(dst, &scale, sizeof(float));
  switch (rounding) {
    case KvInt8Rounding::kNearest:
      for (int64_t d = 0; d < n; ++d) codes[d] = static_cast<int8_t>(ClampCode(std::nearbyint(x[d] * inv)));
      break;
    case KvInt8Rounding::kErrorFeedback: {
      float carried = 0.f;
      for (int64_t d = 0; d < n; ++d) {
        const float target = x[d] + carried;
        const float c = ClampCode(std::nearbyint(target * inv));
        codes[d] = static_cast<int8_t>(c);
        carried = target - c * scale;
      }
      break;
    }
    case KvInt8Rounding::kRefitScale: break;  // above
    case KvInt8Rounding::kStochastic: {
      const uint64_t row_key =
          SplitMix64(SplitMix64(static_cast<uint64_t>(key.layer) * 2 + static_cast<uint64_t>(key.kv)) ^
                     static_cast<uint64_t>(key.position));
      for (int64_t d = 0; d < n; ++d) {
        const float u = UnitFloat24(SplitMix64(row_key ^ static_cast<uint64_t>(head * n + d)));
        codes[d] = static_cast<int8_t>(ClampCode(std::floor(x[d] * inv + u)));
      }
      break;
    }
  }
}

}  // namespace

const char* KvDTypeName(KvDType t) { return NameOf(kKvDTypeNames, t); }
absl::StatusOr<KvDType> ParseKvDType(std::string_view name) { return ParseName(kKvDTypeNames, name, "KV cache dtype"); }
std::string KvDTypeNames() { return NameList(kKvDTypeNames); }

const char* KvInt8RoundingName(KvInt8Rounding r) { return NameOf(kKvInt8RoundingNames, r); }
absl::StatusOr<KvInt8Rounding> ParseKvInt8Rounding(std::string_view name) {
  return ParseName(kKvInt8RoundingNames, name, "INT8 KV rounding");
}

int64_t KvHeadBytes(KvDType t, int64_t head_dim) {
  switch (t) {
    case KvDType::kF32: return head_dim * 4;
    case KvDType::kF16:
    case KvDType::kBF16: return head_dim * 2;
    case KvDType::kInt8: return static_cast<int64_t>(sizeof(float)) + head_dim;
  }
  return head_dim * 4;
}

int64_t KvRowFormat::head_bytes() const { return KvHeadBytes(dtype, head_dim); }

void EncodeKvRow(const KvRowFormat& f, const float* src, const KvRowKey& key, void* dst) {
  const int64_t hd = f.head_dim, n = f.kv_dim();
  switch (f.dtype) {
    case KvDType::kF32: std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float)); return;
    case KvDType::kF16: {
      auto* out = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) out[i] = F32ToF16(src[i]);
      return;
    }
    case KvDType::kBF16: {
      auto* out = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) out[i] = F32ToBf16(src[i]);
      return;
    }
    case KvDType::kInt8:
      for (int64_t h = 0; h < f.num_kv_heads; ++h)
        EncodeInt8Head(src + h * hd, hd, f.int8_rounding, key, h, static_cast<uint8_t*>(dst) + h * f.head_bytes());
      return;
  }
}

void DecodeKvHeadScalar(KvDType t, const void* row, int64_t head, int64_t head_dim, float* out) {
  const uint8_t* rec = KvHeadRecord(t, row, head, head_dim);
  switch (t) {
    case KvDType::kF32: std::memcpy(out, rec, static_cast<size_t>(head_dim) * sizeof(float)); return;
    case KvDType::kF16: {
      const auto* h = reinterpret_cast<const uint16_t*>(rec);
      for (int64_t d = 0; d < head_dim; ++d) out[d] = F16ToF32(h[d]);
      return;
    }
    case KvDType::kBF16: {
      const auto* h = reinterpret_cast<const uint16_t*>(rec);
      for (int64_t d = 0; d < head_dim; ++d) out[d] = Bf16ToF32(h[d]);
      return;
    }
    case KvDType::kInt8: {
      float scale;
      std::memcpy(&scale, rec, sizeof(float));
      const auto* codes = reinterpret_cast<const int8_t*>(rec + sizeof(float));
      for (int64_t d = 0; d < head_dim; ++d) out[d] = static_cast<float>(codes[d]) * scale;
      return;
    }
  }
}

}  // namespace accullm::kernels
