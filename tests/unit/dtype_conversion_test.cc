// ConvertToF32 at its edges. The empty case matters under UBSan (the sanitizer tree, tests/fuzz):
// an empty vector's data() is null, and memcpy from null is undefined even for 0 bytes; the
// wire fuzzer found a batch whose empty activations reached it.
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"

namespace accullm {
namespace {

TEST(ConvertToF32Test, NothingToConvertFromEmptyBuffers) {
  const std::vector<uint8_t> none;
  std::vector<float> out;
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    ConvertToF32(t, none.data(), out.data(), 0);  // both pointers null: must not touch them
  }
  EXPECT_TRUE(out.empty());
}

TEST(ConvertToF32Test, ConvertsEachDType) {
  const std::vector<float> f32 = {1.5f, -2.0f};
  std::vector<float> out(2);
  ConvertToF32(DType::kF32, f32.data(), out.data(), 2);
  EXPECT_EQ(out, f32);
  const std::vector<uint16_t> f16 = {0x3E00, 0xC000};  // 1.5, -2
  ConvertToF32(DType::kF16, f16.data(), out.data(), 2);
  EXPECT_EQ(out, f32);
  const std::vector<uint16_t> bf16 = {0x3FC0, 0xC000};  // 1.5, -2
  ConvertToF32(DType::kBF16, bf16.data(), out.data(), 2);
  EXPECT_EQ(out, f32);
}

// safetensors data offsets need not be aligned: an F16/BF16/I32 tensor can start at an odd
// address (the pack fuzzer found one); UBSan refuses a misaligned uint16_t* load.
TEST(ConvertToF32Test, ReadsTensorsAtOddAddresses) {
  alignas(8) uint8_t bytes[1 + 8] = {0};
  const uint16_t f16[2] = {0x3E00, 0xC000};  // 1.5, -2
  std::memcpy(bytes + 1, f16, sizeof(f16));
  std::vector<float> out(2);
  ConvertToF32(DType::kF16, bytes + 1, out.data(), 2);
  EXPECT_EQ(out, (std::vector<float>{1.5f, -2.0f}));
  const int32_t i32[2] = {7, -9};
  std::memcpy(bytes + 1, i32, sizeof(i32));
  ConvertToF32(DType::kI32, bytes + 1, out.data(), 2);
  EXPECT_EQ(out, (std::vector<float>{7.0f, -9.0f}));
}

}  // namespace
}  // namespace accullm
