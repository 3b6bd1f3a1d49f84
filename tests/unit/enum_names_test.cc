// common/enum_names.h, and the enums whose names are tables: every name parses back to its
// value, aliases parse but never print, unknown names are refused listing the valid ones.
#include "common/enum_names.h"

#include <string>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/activation_quant.h"
#include "pipeline/wire.h"
#include "quant/low_bit_quantizer.h"
#include "sharding/precision_plan.h"

namespace accullm {
namespace {

enum class Fruit { kApple, kPear, kPlum };
constexpr EnumName<Fruit> kFruitNames[] = {
    {Fruit::kApple, "apple"}, {Fruit::kPear, "pear"}, {Fruit::kPlum, "plum"}, {Fruit::kPear, "poire"}};
static_assert(NamesEveryValue(kFruitNames, Fruit::kApple, Fruit::kPlum));
constexpr EnumName<Fruit> kNoPear[] = {{Fruit::kApple, "apple"}, {Fruit::kPlum, "plum"}};
static_assert(!NamesEveryValue(kNoPear, Fruit::kApple, Fruit::kPlum));
static_assert(std::string_view(NameOf(kFruitNames, Fruit::kPear)) == "pear");  // usable at compile time

TEST(EnumNames, NameOfGivesTheFirstSpelling) {
  EXPECT_STREQ(NameOf(kFruitNames, Fruit::kApple), "apple");
  EXPECT_STREQ(NameOf(kFruitNames, Fruit::kPear), "pear");
  EXPECT_STREQ(NameOf(kNoPear, Fruit::kPear), "unknown");
  EXPECT_STREQ(NameOf(kNoPear, Fruit::kPear, "?"), "?");
}

TEST(EnumNames, ParseAcceptsNamesAndAliases) {
  EXPECT_EQ(*ParseName(kFruitNames, "plum", "fruit"), Fruit::kPlum);
  EXPECT_EQ(*ParseName(kFruitNames, "poire", "fruit"), Fruit::kPear);
  EXPECT_EQ(NameList(kFruitNames), "apple, pear, plum, poire");
}

TEST(EnumNames, ParseRefusesOtherSpellingsListingTheValidOnes) {
  for (const char* bad : {"", "Apple", "apple ", "fig"}) {
    const auto r = ParseName(kFruitNames, bad, "fruit");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(std::string(r.status().message()),
              "unknown fruit \"" + std::string(bad) + "\" (valid: apple, pear, plum, poire)");
  }
}

TEST(EnumNames, DTypeNamesRoundTrip) {
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kU8, DType::kI32}) {
    auto parsed = ParseDType(DTypeName(t));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, t);
  }
  EXPECT_STREQ(DTypeName(DType::kBF16), "BF16");  // the safetensors spelling
  const auto bad = ParseDType("F64");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("F32, F16, BF16, U8, I32"), std::string::npos) << bad.status();
}

TEST(EnumNames, LayerPrecisionNamesRoundTrip) {
  for (sharding::LayerPrecision p : {sharding::LayerPrecision::kFp16, sharding::LayerPrecision::kLowBit})
    EXPECT_EQ(*sharding::ParseLayerPrecision(sharding::LayerPrecisionName(p)), p);
  EXPECT_STREQ(sharding::LayerPrecisionName(sharding::LayerPrecision::kLowBit),
               "int4");  // written into packs: never renamed
  EXPECT_FALSE(sharding::ParseLayerPrecision("int5").ok());
}

TEST(EnumNames, QuantMethodNamesRoundTripAndOptqIsGptq) {
  for (quant::QuantMethod m : {quant::QuantMethod::kRtn, quant::QuantMethod::kGptq, quant::QuantMethod::kGpfq})
    EXPECT_EQ(*quant::ParseQuantMethod(quant::QuantMethodName(m)), m);
  EXPECT_EQ(*quant::ParseQuantMethod("optq"), quant::QuantMethod::kGptq);
  EXPECT_STREQ(quant::QuantMethodName(quant::QuantMethod::kGptq), "gptq");  // written into packs
  const auto bad = quant::ParseQuantMethod("awq");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(std::string(bad.status().message()), "unknown quantization method \"awq\" (valid: rtn, gptq, gpfq, optq)");
}

TEST(EnumNames, ActRoundingNamesRoundTrip) {
  for (kernels::ActRounding r : {kernels::ActRounding::kNearest, kernels::ActRounding::kStochastic})
    EXPECT_EQ(*kernels::ParseActRounding(kernels::ActRoundingName(r)), r);
  EXPECT_STREQ(kernels::ActRoundingName(kernels::ActRounding::kStochastic), "stochastic");
  // No silent fallback to nearest: "off" is eval's flag value, not a rounding.
  EXPECT_FALSE(kernels::ParseActRounding("off").ok());
  EXPECT_FALSE(kernels::ParseActRounding("Stochastic").ok());
}

TEST(EnumNames, WireNames) {
  EXPECT_STREQ(pipeline::MessageTypeName(pipeline::MessageType::kHelloAck), "hello-ack");
  EXPECT_STREQ(pipeline::MessageTypeName(static_cast<pipeline::MessageType>(99)), "unknown");
  for (auto t : {pipeline::ActivationTransport::kMpi, pipeline::ActivationTransport::kNccl})
    EXPECT_EQ(*pipeline::ParseActivationTransport(pipeline::ActivationTransportName(t)), t);
}

}  // namespace
}  // namespace accullm
