// Malformed-file tests for the safetensors and config.json loaders: every bad input gets a
// clear error naming the file and the problem, and never a crash (DESIGN.md, "Formats").
#include "model/safetensors.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/dtype.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/model_config.h"
#include "tests/support/test_support.h"

namespace accullm::model {
namespace {

using ::testing::HasSubstr;

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// Fails unless `s` is an error whose message contains every word (case-insensitive).
void ExpectErrorMentions(const absl::Status& s, std::initializer_list<std::string_view> words) {
  ASSERT_FALSE(s.ok()) << "expected an error mentioning " << *words.begin();
  const std::string msg = Lower(std::string(s.message()));
  for (std::string_view w : words) {
    EXPECT_THAT(msg, HasSubstr(Lower(w))) << "status: " << s;
  }
}

std::string U64Le(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return out;
}

// 8-byte LE header length + header (space-padded to a multiple of 8, as HF writes) + data.
std::string SafetensorsBytes(std::string header, const std::string& data, bool pad = true) {
  if (pad) header.append((8 - header.size() % 8) % 8, ' ');
  return U64Le(header.size()) + header + data;
}

template <typename T>
std::string Raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.empty()) << "no scratch directory"; }

  std::string Write(const std::string& name, const std::string& bytes) {
    const std::string path = dir_ + "/" + name;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    EXPECT_TRUE(out.good()) << "writing " << path;
    return path;
  }

  // Opens a file holding `bytes`; the error (if any) must name the file.
  absl::Status OpenBytes(const std::string& bytes, const std::string& name = "t.safetensors") {
    const std::string path = Write(name, bytes);
    auto f = SafetensorsFile::Open(path);
    if (!f.ok()) {
      EXPECT_THAT(std::string(f.status().message()), HasSubstr(path));
    }
    return f.status();
  }

  // One F32 tensor "w" of shape [2, 2] with the given header entry, and 16 data bytes.
  absl::Status OpenWithEntry(const std::string& entry) {
    const std::vector<float> data = {1, 2, 3, 4};
    return OpenBytes(SafetensorsBytes("{\"w\":" + entry + "}", Raw(data)));
  }

  test_support::ScopedTempDir tmp_{"accullm_safetensors"};  // removed after each test
  const std::string dir_ = tmp_.path();
};

// --- SafetensorsFile: the 8-byte length and the header ------------------------------------

TEST_F(LoaderTest, EmptyFile) { ExpectErrorMentions(OpenBytes(""), {"truncated"}); }

TEST_F(LoaderTest, ShorterThanHeaderLength) {
  ExpectErrorMentions(OpenBytes(std::string("\x10\x00\x00", 3)), {"truncated"});
  ExpectErrorMentions(OpenBytes(std::string(7, '\0')), {"truncated"});
}

TEST_F(LoaderTest, MissingFileNamesPath) {
  auto f = SafetensorsFile::Open(dir_ + "/does_not_exist.safetensors");
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("does_not_exist.safetensors"));
}

TEST_F(LoaderTest, HeaderLengthBeyondFileSize) {
  ExpectErrorMentions(OpenBytes(U64Le(1000) + "{}      "), {"header"});
  // Exactly one byte too many.
  ExpectErrorMentions(OpenBytes(U64Le(9) + "{}      "), {"header"});
}

TEST_F(LoaderTest, HeaderLengthAbsurd) {
  ExpectErrorMentions(OpenBytes(U64Le(uint64_t{1} << 60) + "{}      "), {"header"});
  ExpectErrorMentions(OpenBytes(U64Le(~uint64_t{0}) + "{}      "), {"header"});
  ExpectErrorMentions(OpenBytes(U64Le(~uint64_t{0} - 7) + "{}      "), {"header"});
}

TEST_F(LoaderTest, HeaderNotJson) {
  ExpectErrorMentions(OpenBytes(SafetensorsBytes("{\"w\": {\"dtype\": ", "")), {"JSON"});
  ExpectErrorMentions(OpenBytes(SafetensorsBytes("not json at all", "")), {"JSON"});
  ExpectErrorMentions(OpenBytes(SafetensorsBytes(std::string("{\0}", 3), "")), {"JSON"});
}

TEST_F(LoaderTest, HeaderJsonNotAnObject) {
  ExpectErrorMentions(OpenBytes(SafetensorsBytes("[1, 2, 3]", "")), {"object"});
  ExpectErrorMentions(OpenBytes(SafetensorsBytes("42", "")), {"object"});
  ExpectErrorMentions(OpenBytes(SafetensorsBytes("\"w\"", "")), {"object"});
}

TEST_F(LoaderTest, TensorEntryNotAnObject) {
  ExpectErrorMentions(OpenWithEntry("[\"F32\", [2, 2], [0, 16]]"), {"\"w\""});
}

TEST_F(LoaderTest, EmptyHeaderObjectIsAValidEmptyFile) {
  const std::string path = Write("empty.safetensors", SafetensorsBytes("{}", ""));
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE((*f)->tensors().empty());
}

// --- SafetensorsFile: tensor entries ------------------------------------------------------

TEST_F(LoaderTest, EntryMissingDtype) {
  ExpectErrorMentions(OpenWithEntry(R"({"shape": [2, 2], "data_offsets": [0, 16]})"), {"missing", "dtype", "w"});
}

TEST_F(LoaderTest, EntryMissingShape) {
  ExpectErrorMentions(OpenWithEntry(R"({"dtype": "F32", "data_offsets": [0, 16]})"), {"missing", "shape"});
}

TEST_F(LoaderTest, EntryMissingDataOffsets) {
  ExpectErrorMentions(OpenWithEntry(R"({"dtype": "F32", "shape": [2, 2]})"), {"missing", "data_offsets"});
}

TEST_F(LoaderTest, EntryFieldsOfWrongType) {
  ExpectErrorMentions(OpenWithEntry(R"({"dtype": 32, "shape": [2, 2], "data_offsets": [0, 16]})"), {"dtype"});
  ExpectErrorMentions(OpenWithEntry(R"({"dtype": "F32", "shape": "2x2", "data_offsets": [0, 16]})"), {"shape"});
  ExpectErrorMentions(OpenWithEntry(R"({"dtype": "F32", "shape": [2, 2], "data_offsets": "0-16"})"), {"data_offsets"});
  ExpectErrorMentions(OpenWithEntry(R"({"dtype": "F32", "shape": [2, 2], "data_offsets": [0]})"), {"data_offsets"});
  ExpectErrorMentions(OpenWithEntry(R"({"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16, 32]})"),
                      {"data_offsets"});
  ExpectErrorMentions(OpenWithEntry(R"({"dtype": "F32", "shape": [2, 2], "data_offsets": [0.5, 16]})"),
                      {"data_offsets"});
  ExpectErrorMentions(OpenWithEntry(R"({"dtype": "F32", "shape": [2, 2], "data_offsets": [-16, 16]})"),
                      {"data_offsets"});
}

TEST_F(LoaderTest, UnsupportedDtype) {
  for (const char* dt : {"F64", "I8", "I64", "BOOL", "F8_E4M3", "f32", ""}) {
    SCOPED_TRACE(dt);
    ExpectErrorMentions(
        OpenWithEntry(std::string(R"({"dtype": ")") + dt + R"(", "shape": [2, 2], "data_offsets": [0, 16]})"),
        {"dtype"});
  }
}

TEST_F(LoaderTest, DataOffsetsOutsideDataSection) {
  ExpectErrorMentions(OpenWithEntry(R"({"dtype": "F32", "shape": [2, 2], "data_offsets": [16, 32]})"), {"offset"});
  ExpectErrorMentions(OpenWithEntry(R"({"dtype": "F32", "shape": [2, 2], "data_offsets": [4, 20]})"), {"offset"});
  // Offsets that would wrap around a 64-bit pointer.
  ExpectErrorMentions(OpenWithEntry(R"({"dtype": "F32", "shape": [2, 2], "data_offsets": [18446744073709551608, 8]})"),
                      {"offset"});
  ExpectErrorMentions(
      OpenWithEntry(
          R"({"dtype": "F32", "shape": [2, 2], "data_offsets": [18446744073709551600, 18446744073709551615]})"),
      {"offset"});
}

TEST_F(LoaderTest, DataOffsetsEndBeforeBegin) {
  ExpectErrorMentions(OpenWithEntry(R"({"dtype": "F32", "shape": [2, 2], "data_offsets": [16, 0]})"), {"offset"});
}

TEST_F(LoaderTest, ShapeTimesDtypeSizeDiffersFromByteRange) {
  ExpectErrorMentions(OpenWithEntry(R"({"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 8]})"), {"shape"});
  ExpectErrorMentions(OpenWithEntry(R"({"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 16]})"), {"shape"});
  ExpectErrorMentions(OpenWithEntry(R"({"dtype": "F32", "shape": [3], "data_offsets": [0, 16]})"), {"shape"});
  ExpectErrorMentions(OpenWithEntry(R"({"dtype": "F32", "shape": [], "data_offsets": [0, 16]})"), {"shape"});
}

TEST_F(LoaderTest, NegativeOrNonIntegerDims) {
  ExpectErrorMentions(OpenWithEntry(R"({"dtype": "F32", "shape": [-2, -2], "data_offsets": [0, 16]})"), {"shape"});
  ExpectErrorMentions(OpenWithEntry(R"({"dtype": "F32", "shape": [-1, 4], "data_offsets": [0, 16]})"), {"shape"});
  ExpectErrorMentions(OpenWithEntry(R"({"dtype": "F32", "shape": [2.0, 2], "data_offsets": [0, 16]})"), {"shape"});
  ExpectErrorMentions(OpenWithEntry(R"({"dtype": "F32", "shape": ["2", 2], "data_offsets": [0, 16]})"), {"shape"});
}

TEST_F(LoaderTest, ShapeWhoseElementCountOverflows) {
  // 2^62 * 4 * 4 bytes wraps to 0 in 64 bits: must not be taken for a 0-byte tensor.
  EXPECT_FALSE(OpenWithEntry(R"({"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 0]})").ok());
  EXPECT_FALSE(
      OpenWithEntry(R"({"dtype": "F32", "shape": [4294967296, 4294967296, 16], "data_offsets": [0, 0]})").ok());
  EXPECT_FALSE(OpenWithEntry(R"({"dtype": "F32", "shape": [18446744073709551615], "data_offsets": [0, 4]})").ok());
}

TEST_F(LoaderTest, ZeroElementTensorIsAccepted) {
  const std::string path =
      Write("zero.safetensors", SafetensorsBytes(R"({"e":{"dtype":"F32","shape":[0, 3],"data_offsets":[0,0]}})", ""));
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->tensors().at("e").nbytes, 0u);
  EXPECT_EQ((*f)->tensors().at("e").numel(), 0);
}

TEST_F(LoaderTest, OverlappingRangesDoNotCrash) {
  // HF's loader rejects non-contiguous layouts; ours may accept them, but every view it hands
  // out must stay inside the data section.
  const std::vector<float> data = {1, 2, 3, 4};
  const std::string path =
      Write("overlap.safetensors", SafetensorsBytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},)"
                                                    R"("b":{"dtype":"F32","shape":[3],"data_offsets":[4,16]}})",
                                                    Raw(data)));
  auto f = SafetensorsFile::Open(path);
  if (f.ok()) {
    for (const auto& [name, t] : (*f)->tensors()) {
      std::vector<float> out(t.numel());
      ConvertToF32(t.dtype, t.data, out.data(), out.size());
      EXPECT_EQ(out.size(), 3u) << name;
    }
  }
}

TEST_F(LoaderTest, TruncatedDataSection) {
  std::vector<float> a(64), b(64);
  for (int i = 0; i < 64; ++i) a[i] = b[i] = static_cast<float>(i);
  const std::string full = SafetensorsBytes(R"({"a":{"dtype":"F32","shape":[8,8],"data_offsets":[0,256]},)"
                                            R"("b":{"dtype":"F32","shape":[8,8],"data_offsets":[256,512]}})",
                                            Raw(a) + Raw(b));
  ASSERT_TRUE(OpenBytes(full, "full.safetensors").ok());
  // Cut in the middle of "b", at the boundary between them, and in the middle of "a".
  for (size_t cut : {size_t{128}, size_t{256}, size_t{384}, size_t{511}}) {
    SCOPED_TRACE(cut);
    ExpectErrorMentions(OpenBytes(full.substr(0, full.size() - cut), "cut.safetensors"), {"truncated"});
  }
}

// --- Valid files ---------------------------------------------------------------------------

TEST_F(LoaderTest, ValidFileRoundTripF32F16BF16) {
  const std::vector<float> f32 = {1.5f, -2.25f, 0.0f, 3.0e-3f, 65504.0f, -1.0e-8f};
  const std::vector<uint16_t> f16 = {0x3C00, 0xC000, 0x3800, 0x7BFF, 0x0001, 0x8000};  // 1 -2 .5 65504 2^-24 -0
  const std::vector<uint16_t> bf16 = {0x3F80, 0xC000, 0x4049, 0x0000};                 // 1 -2 3.140625 0
  const std::string header = R"({"__metadata__":{"format":"pt","note":"x"},)"
                             R"("a32":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
                             R"("b16":{"dtype":"F16","shape":[6],"data_offsets":[24,36]},)"
                             R"("c_bf":{"dtype":"BF16","shape":[2,1,2],"data_offsets":[36,44]}})";
  const std::string path = Write("valid.safetensors", SafetensorsBytes(header, Raw(f32) + Raw(f16) + Raw(bf16)));
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  const auto& ts = (*f)->tensors();
  ASSERT_EQ(ts.size(), 3u);
  EXPECT_EQ((*f)->metadata().at("format"), "pt");

  const TensorView& a = ts.at("a32");
  EXPECT_EQ(a.dtype, DType::kF32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.nbytes, 24u);
  EXPECT_EQ(a.file, path);
  std::vector<float> out(6);
  ConvertToF32(a.dtype, a.data, out.data(), 6);
  EXPECT_EQ(out, f32);

  const TensorView& b = ts.at("b16");
  EXPECT_EQ(b.dtype, DType::kF16);
  EXPECT_EQ(b.shape, (std::vector<int64_t>{6}));
  ConvertToF32(b.dtype, b.data, out.data(), 6);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.0f);
  EXPECT_EQ(out[2], 0.5f);
  EXPECT_EQ(out[3], 65504.0f);
  EXPECT_EQ(out[4], std::ldexp(1.0f, -24));
  EXPECT_EQ(out[5], 0.0f);
  EXPECT_TRUE(std::signbit(out[5]));

  const TensorView& c = ts.at("c_bf");
  EXPECT_EQ(c.dtype, DType::kBF16);
  EXPECT_EQ(c.shape, (std::vector<int64_t>{2, 1, 2}));
  EXPECT_EQ(c.numel(), 4);
  out.resize(4);
  ConvertToF32(c.dtype, c.data, out.data(), 4);
  EXPECT_EQ(out, (std::vector<float>{1.0f, -2.0f, 3.140625f, 0.0f}));
}

TEST_F(LoaderTest, UnpaddedHeaderIsAccepted) {
  // Alignment padding is a convention of writers, not a requirement of the format.
  const std::vector<float> data = {7, 8};
  const std::string path =
      Write("unpadded.safetensors",
            SafetensorsBytes(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", Raw(data), false));
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  float v[2];
  std::memcpy(v, (*f)->tensors().at("x").data, 8);
  EXPECT_EQ(v[1], 8.0f);
}

TEST_F(LoaderTest, RealFixtureOpens) {
  auto store = TensorStore::OpenDirectory(test_support::ModelDir());
  ASSERT_TRUE(store.ok()) << store.status();
  auto emb = (*store)->Get("model.embed_tokens.weight");
  ASSERT_TRUE(emb.ok()) << emb.status();
  EXPECT_EQ(emb->shape, (std::vector<int64_t>{2048, 256}));
  EXPECT_TRUE((*store)->Has("lm_head.weight"));
}

// --- TensorStore: single file and sharded index ------------------------------------------

class TensorStoreTest : public LoaderTest {
 protected:
  // Shard holding F32 tensors `names`, each of shape [2] with values {i, i + 0.5}.
  std::string Shard(const std::vector<std::string>& names) {
    std::string header = "{", data;
    for (size_t i = 0; i < names.size(); ++i) {
      if (i) header += ",";
      header += "\"" + names[i] + "\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[" + std::to_string(8 * i) +
                "," + std::to_string(8 * i + 8) + "]}";
      data += Raw(std::vector<float>{static_cast<float>(i), static_cast<float>(i) + 0.5f});
    }
    return SafetensorsBytes(header + "}", data);
  }
  void WriteIndex(const std::string& weight_map_json) {
    Write("model.safetensors.index.json", R"({"metadata": {"total_size": 32}, "weight_map": )" + weight_map_json + "}");
  }
  void WriteTwoShards() {
    Write("model-00001-of-00002.safetensors", Shard({"a", "b"}));
    Write("model-00002-of-00002.safetensors", Shard({"c", "d"}));
  }
};

TEST_F(TensorStoreTest, SingleFile) {
  Write("model.safetensors", Shard({"x", "y"}));
  auto store = TensorStore::OpenDirectory(dir_);
  ASSERT_TRUE(store.ok()) << store.status();
  auto y = (*store)->Get("y");
  ASSERT_TRUE(y.ok()) << y.status();
  float v[2];
  std::memcpy(v, y->data, 8);
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[1], 1.5f);
  auto missing = (*store)->Get("no.such.tensor");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("no.such.tensor"));
}

TEST_F(TensorStoreTest, EmptyDirectory) {
  auto store = TensorStore::OpenDirectory(dir_);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(std::string(store.status().message()), HasSubstr(dir_));
}

TEST_F(TensorStoreTest, BadSingleFileNamesIt) {
  Write("model.safetensors", "");
  auto store = TensorStore::OpenDirectory(dir_);
  ExpectErrorMentions(store.status(), {"model.safetensors", "truncated"});
}

TEST_F(TensorStoreTest, ShardedValid) {
  WriteTwoShards();
  WriteIndex(R"({"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
                 "c": "model-00002-of-00002.safetensors", "d": "model-00002-of-00002.safetensors"})");
  auto store = TensorStore::OpenDirectory(dir_);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->tensors().size(), 4u);
  auto d = (*store)->Get("d");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->file, HasSubstr("model-00002-of-00002.safetensors"));
  float v[2];
  std::memcpy(v, d->data, 8);
  EXPECT_EQ(v[1], 1.5f);
}

TEST_F(TensorStoreTest, IndexNamesMissingShard) {
  WriteTwoShards();
  WriteIndex(R"({"a": "model-00001-of-00002.safetensors", "c": "model-00003-of-00003.safetensors"})");
  ExpectErrorMentions(TensorStore::OpenDirectory(dir_).status(), {"model-00003-of-00003.safetensors"});
}

TEST_F(TensorStoreTest, IndexPointsTensorToShardThatLacksIt) {
  WriteTwoShards();
  WriteIndex(R"({"a": "model-00001-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"})");
  ExpectErrorMentions(TensorStore::OpenDirectory(dir_).status(),
                      {"\"c\"", "model-00001-of-00002.safetensors", "model.safetensors.index.json"});
}

TEST_F(TensorStoreTest, IndexWithoutWeightMap) {
  WriteTwoShards();
  Write("model.safetensors.index.json", R"({"metadata": {}})");
  ExpectErrorMentions(TensorStore::OpenDirectory(dir_).status(), {"weight_map", "model.safetensors.index.json"});
  Write("model.safetensors.index.json", R"({"weight_map": ["a"]})");
  ExpectErrorMentions(TensorStore::OpenDirectory(dir_).status(), {"weight_map"});
  Write("model.safetensors.index.json", R"({"weight_map": {"a": 1}})");
  EXPECT_FALSE(TensorStore::OpenDirectory(dir_).ok());
}

TEST_F(TensorStoreTest, IndexNotJson) {
  WriteTwoShards();
  Write("model.safetensors.index.json", R"({"weight_map": {"a": )");
  ExpectErrorMentions(TensorStore::OpenDirectory(dir_).status(), {"JSON", "model.safetensors.index.json"});
}

TEST_F(TensorStoreTest, IndexShardNameEscapingTheDirectory) {
  WriteTwoShards();
  for (const char* shard : {"../model-00001-of-00002.safetensors", "/etc/passwd", "..", ""}) {
    SCOPED_TRACE(shard);
    WriteIndex(std::string(R"({"a": ")") + shard + "\"}");
    EXPECT_FALSE(TensorStore::OpenDirectory(dir_).ok());
  }
}

TEST_F(TensorStoreTest, IndexWithCorruptShard) {
  Write("model-00001-of-00002.safetensors", Shard({"a", "b"}));
  Write("model-00002-of-00002.safetensors", std::string("\x05\x00", 2));
  WriteIndex(R"({"a": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"})");
  ExpectErrorMentions(TensorStore::OpenDirectory(dir_).status(), {"model-00002-of-00002.safetensors", "truncated"});
}

// --- Fuzz-ish: corrupt the header region of a valid file ----------------------------------

TEST_F(LoaderTest, RandomHeaderCorruptionsNeverCrash) {
  std::vector<float> a(12), b(6);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i) * 0.25f;
  std::vector<uint16_t> h = {0x3C00, 0x4000, 0x4200, 0x4400, 0x4500, 0x4600};
  const std::string valid = SafetensorsBytes(
      R"({"__metadata__":{"format":"pt"},"model.a":{"dtype":"F32","shape":[3,4],"data_offsets":[0,48]},)"
      R"("model.b":{"dtype":"F32","shape":[6],"data_offsets":[48,72]},)"
      R"("model.h":{"dtype":"F16","shape":[2,3],"data_offsets":[72,84]}})",
      Raw(a) + Raw(b) + Raw(h));
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(valid[i]);
  const size_t header_end = 8 + header_len;
  ASSERT_TRUE(OpenBytes(valid, "valid.safetensors").ok());

  std::mt19937_64 rng(20240611);
  const char interesting[] = {'"', '{', '}', '[', ']', ',', ':', '-', '0', '9', 'e', ' ', '\0', '\xff'};
  int opened_ok = 0;
  for (int iter = 0; iter < 600; ++iter) {
    std::string bytes = valid;
    switch (iter % 4) {
      case 0:  // random byte anywhere in the length field or header
        bytes[rng() % header_end] = static_cast<char>(rng() & 0xff);
        break;
      case 1:  // a JSON-significant byte in the header
        bytes[8 + rng() % header_len] = interesting[rng() % sizeof(interesting)];
        break;
      case 2:  // truncation inside the header region or the data
        bytes.resize(rng() % valid.size());
        break;
      case 3:  // two corruptions, one of them in a digit of the header when possible
        for (int k = 0; k < 2; ++k) {
          const size_t pos = 8 + rng() % header_len;
          if (std::isdigit(static_cast<unsigned char>(bytes[pos]))) {
            bytes[pos] = static_cast<char>('0' + rng() % 10);
          } else {
            bytes[pos] = static_cast<char>(rng() & 0xff);
          }
        }
        break;
    }
    const std::string path = Write("fuzz.safetensors", bytes);
    auto f = SafetensorsFile::Open(path);
    if (!f.ok()) {
      EXPECT_FALSE(f.status().message().empty());
      continue;
    }
    ++opened_ok;
    // Whatever was accepted must be readable in full and consistent with its shape.
    for (const auto& [name, t] : (*f)->tensors()) {
      ASSERT_EQ(t.nbytes, static_cast<size_t>(t.numel()) * DTypeSize(t.dtype)) << name << " iter " << iter;
      ASSERT_LE(t.nbytes, bytes.size()) << name << " iter " << iter;
      std::vector<uint8_t> copy(t.nbytes);
      if (t.nbytes) std::memcpy(copy.data(), t.data, t.nbytes);
    }
  }
  RecordProperty("opened_ok", opened_ok);
  // Some corruptions are harmless (e.g. in padding or metadata); most must be rejected.
  EXPECT_LT(opened_ok, 600);
}

// --- config.json ---------------------------------------------------------------------------

constexpr char kValidConfig[] = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "vocab_size": 512, "hidden_size": 256, "intermediate_size": 688,
  "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2,
  "max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
  "hidden_act": "silu", "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": [2, 7]
})";

// kValidConfig with `from` replaced by `to` (which must occur).
std::string ConfigWith(const std::string& from, const std::string& to) {
  std::string s = kValidConfig;
  const size_t pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  if (pos != std::string::npos) s.replace(pos, from.size(), to);
  return s;
}

absl::Status ParseConfig(const std::string& text) {
  auto c = ModelConfig::Parse(text, "/models/m/config.json");
  if (!c.ok()) {
    EXPECT_THAT(std::string(c.status().message()), HasSubstr("/models/m/config.json"));
  }
  return c.status();
}

TEST(ModelConfigTest, ValidConfigParses) {
  auto c = ModelConfig::Parse(kValidConfig, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model_type, "llama");
  EXPECT_EQ(c->hidden_size, 256);
  EXPECT_EQ(c->num_heads, 8);
  EXPECT_EQ(c->num_kv_heads, 2);
  EXPECT_EQ(c->head_dim, 32);
  EXPECT_EQ(c->num_layers, 2);
  EXPECT_DOUBLE_EQ(c->rope_theta, 500000.0);
  EXPECT_EQ(c->rope_scaling.type, "");
  EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{2, 7}));
  EXPECT_FALSE(c->attention_bias);
}

TEST(ModelConfigTest, FixtureLoads) {
  auto c = ModelConfig::Load(test_support::ModelDir());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->vocab_size, 2048);
  EXPECT_EQ(c->num_layers, 8);
  EXPECT_EQ(c->head_dim, 32);
  EXPECT_EQ(c->num_kv_heads, 4);
}

TEST(ModelConfigTest, Qwen2DefaultsToQkvBias) {
  auto c = ModelConfig::Parse(ConfigWith("\"llama\"", "\"qwen2\""), "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->attention_bias);
}

TEST(ModelConfigTest, HeadDimMayDifferFromHiddenOverHeads) {
  auto c =
      ModelConfig::Parse(ConfigWith("\"num_hidden_layers\"", "\"head_dim\": 64, \"num_hidden_layers\""), "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 64);
}

TEST(ModelConfigTest, Llama3RopeScaling) {
  auto c = ModelConfig::Parse(
      ConfigWith("\"rope_theta\"", R"("rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 64}, "rope_theta")"),
      "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 8.0);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 64);
}

TEST(ModelConfigTest, BadJson) {
  ExpectErrorMentions(ParseConfig(R"({"model_type": "llama", "hidden_size": )"), {"JSON"});
  ExpectErrorMentions(ParseConfig(""), {"JSON"});
  ExpectErrorMentions(ParseConfig("[1, 2]"), {"object"});
}

TEST(ModelConfigTest, MissingHiddenSize) {
  ExpectErrorMentions(ParseConfig(ConfigWith("\"hidden_size\": 256,", "")), {"missing", "hidden_size"});
  ExpectErrorMentions(ParseConfig(ConfigWith("\"num_hidden_layers\": 2,", "")), {"num_hidden_layers"});
  ExpectErrorMentions(ParseConfig(ConfigWith("\"vocab_size\": 512,", "")), {"vocab_size"});
}

TEST(ModelConfigTest, WrongFieldType) {
  ExpectErrorMentions(ParseConfig(ConfigWith("\"hidden_size\": 256", "\"hidden_size\": \"256\"")), {"hidden_size"});
  ExpectErrorMentions(ParseConfig(ConfigWith("\"hidden_size\": 256", "\"hidden_size\": 256.5")), {"hidden_size"});
  ExpectErrorMentions(ParseConfig(ConfigWith("\"rope_theta\": 500000.0", "\"rope_theta\": \"big\"")), {"rope_theta"});
  ExpectErrorMentions(ParseConfig(ConfigWith("\"tie_word_embeddings\": false", "\"tie_word_embeddings\": 0")),
                      {"tie_word_embeddings"});
}

TEST(ModelConfigTest, UnsupportedArchitecture) {
  ExpectErrorMentions(ParseConfig(ConfigWith("\"model_type\": \"llama\"", "\"model_type\": \"gpt2\"")), {"gpt2"});
  ExpectErrorMentions(ParseConfig(ConfigWith("\"model_type\": \"llama\",", "")), {"model_type"});
}

TEST(ModelConfigTest, NonPositiveSizes) {
  ExpectErrorMentions(ParseConfig(ConfigWith("\"hidden_size\": 256", "\"hidden_size\": 0")), {"hidden_size"});
  ExpectErrorMentions(ParseConfig(ConfigWith("\"vocab_size\": 512", "\"vocab_size\": -5")), {"vocab_size"});
  ExpectErrorMentions(ParseConfig(ConfigWith("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 0")),
                      {"num_hidden_layers"});
  ExpectErrorMentions(ParseConfig(ConfigWith("\"hidden_size\": 256", "\"hidden_size\": 1e300")), {"hidden_size"});
}

TEST(ModelConfigTest, HeadsNotDividingHidden) {
  ExpectErrorMentions(ParseConfig(ConfigWith("\"num_attention_heads\": 8, \"num_key_value_heads\": 2",
                                             "\"num_attention_heads\": 6, \"num_key_value_heads\": 2")),
                      {"num_attention_heads"});
}

TEST(ModelConfigTest, KvHeadsNotDividingHeads) {
  ExpectErrorMentions(ParseConfig(ConfigWith("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3")),
                      {"num_key_value_heads"});
  ExpectErrorMentions(ParseConfig(ConfigWith("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 16")),
                      {"num_key_value_heads"});
}

TEST(ModelConfigTest, OddHeadDim) {
  ExpectErrorMentions(ParseConfig(ConfigWith("\"num_hidden_layers\"", "\"head_dim\": 33, \"num_hidden_layers\"")),
                      {"head_dim"});
}

TEST(ModelConfigTest, UnsupportedRopeScaling) {
  ExpectErrorMentions(ParseConfig(ConfigWith("\"rope_theta\"",
                                             R"("rope_scaling": {"rope_type": "yarn", "factor": 4.0}, "rope_theta")")),
                      {"rope_scaling", "yarn"});
  ExpectErrorMentions(
      ParseConfig(ConfigWith("\"rope_theta\"", R"("rope_scaling": {"type": "linear", "factor": 2.0}, "rope_theta")")),
      {"linear"});
  ExpectErrorMentions(ParseConfig(ConfigWith("\"rope_theta\"", R"("rope_scaling": "llama3", "rope_theta")")),
                      {"rope_scaling"});
  // llama3 without its parameters.
  EXPECT_FALSE(
      ParseConfig(ConfigWith("\"rope_theta\"", R"("rope_scaling": {"rope_type": "llama3"}, "rope_theta")")).ok());
}

TEST(ModelConfigTest, UnsupportedActivation) {
  ExpectErrorMentions(ParseConfig(ConfigWith("\"silu\"", "\"gelu\"")), {"gelu"});
}

TEST_F(LoaderTest, ConfigLoadNamesThePath) {
  auto missing = ModelConfig::Load(dir_);
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr(dir_ + "/config.json"));
  Write("config.json", "{\"model_type\": ");
  ExpectErrorMentions(ModelConfig::Load(dir_).status(), {"JSON", "config.json"});
  EXPECT_THAT(std::string(ModelConfig::Load(dir_).status().message()), HasSubstr(dir_));
}

}  // namespace
}  // namespace accullm::model
