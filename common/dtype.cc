#include "common/dtype.h"

#include "common/enum_names.h"

namespace accullm {

size_t DTypeSize(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
    case DType::kU8: return 1;
    case DType::kI32: return 4;
  }
  return 0;
}

namespace {

constexpr EnumName<DType> kDTypeNames[] = {
    {DType::kF32, "F32"}, {DType::kF16, "F16"}, {DType::kBF16, "BF16"}, {DType::kU8, "U8"}, {DType::kI32, "I32"},
};
static_assert(NamesEveryValue(kDTypeNames, DType::kF32, DType::kI32));

}  // namespace

const char* DTypeName(DType t) { return NameOf(kDTypeNames, t, "?"); }

absl::StatusOr<DType> ParseDType(std::string_view s) { return ParseName(kDTypeNames, s, "dtype"); }

float F16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t F32ToF16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t absx = x & 0x7fffffffu;
  if (absx > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (absx >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: inf
  if (absx < 0x38800000u) {                        // below smallest normal: subnormal or zero
    if (absx < 0x33000000u) return sign;           // < 2^-25 rounds to zero
    const uint32_t e = absx >> 23;
    const uint32_t m = (absx & 0x7fffffu) | 0x800000u;
    // value = m * 2^(e-150); f16 subnormal unit = 2^-24 -> q = m * 2^(e-126)
    const uint32_t drop = 126 - e;  // number of low bits of m to drop
    uint32_t q = m >> drop;
    const uint32_t rem = m & ((1u << drop) - 1);
    const uint32_t half = 1u << (drop - 1);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return sign | static_cast<uint16_t>(q);
  }
  uint32_t e = (absx >> 23) - 127 + 15;
  uint32_t m = absx & 0x7fffffu;
  uint32_t q = (e << 10) | (m >> 13);
  const uint32_t rem = m & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) ++q;  // carry may roll into exponent: correct
  return sign | static_cast<uint16_t>(q);
}

namespace {

// One element of a tensor that may sit at any byte offset: safetensors data offsets need not be
// multiples of the element size, and a misaligned uint16_t* / int32_t* load is undefined (the
// pack fuzzer found an F16 tensor at an odd offset). memcpy compiles to the same single load.
template <typename T>
T LoadElement(const uint8_t* bytes, size_t i) {
  T v;
  std::memcpy(&v, bytes + i * sizeof(T), sizeof(T));
  return v;
}

}  // namespace

void ConvertToF32(DType t, const void* src, float* dst, size_t n) {
  // Nothing to convert: an empty vector's data() may be null, and memcpy from or to null is
  // undefined even for 0 bytes (found by the wire fuzzer, tests/fuzz).
  if (n == 0) return;
  const auto* s = static_cast<const uint8_t*>(src);
  switch (t) {
    case DType::kF32: std::memcpy(dst, src, n * 4); return;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) dst[i] = F16ToF32(LoadElement<uint16_t>(s, i));
      return;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) dst[i] = Bf16ToF32(LoadElement<uint16_t>(s, i));
      return;
    case DType::kU8:
      for (size_t i = 0; i < n; ++i) dst[i] = s[i];
      return;
    case DType::kI32:
      for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(LoadElement<int32_t>(s, i));
      return;
  }
}

}  // namespace accullm
