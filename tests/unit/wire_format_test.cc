// The coordinator ↔ stage wire format: round trips, and every malformed message refused
// (truncation at every byte, each header field, forged counts and sizes, trailing bytes).
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "gtest/gtest.h"
#include "pipeline/wire.h"

namespace accullm::pipeline {
namespace {

Batch SampleBatch() {
  Batch b;
  NewSequence s;
  s.seq = 7;
  s.sampling.temperature = 0.8f;
  s.sampling.seed = 42;
  s.logprobs = 2;
  b.opened.push_back(s);
  b.released = {3, 4};
  b.truncated = {{7, 2}};
  b.items = {{7, 0, 3, true, {5, 2}}, {9, 12, 1, true, {}}};  // 9 is mid-block: no new id
  b.tokens = {1, 2, 3, 40};  // a later stage's batch: tokens relayed beside the activations
  b.act = DType::kF32;
  b.rows = 4;
  b.width = 2;
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8};
  b.activations = PackActivations(x.data(), x.size(), b.act);
  return b;
}

Result SampleResult() {
  Result r;
  r.tokens.push_back({7, 11, -0.5f, {{11, -0.5f}, {12, -1.5f}}});
  r.compute_seconds = 0.25;
  return r;
}

Hello SampleHello() {
  Hello h;
  h.stage = 1, h.num_stages = 2, h.layer_begin = 4, h.layer_end = 8, h.num_layers = 8;
  h.hidden = 256, h.vocab = 2048, h.model_fingerprint = 99, h.kv_block_size = 16, h.kv_blocks = 10, h.context = 512;
  h.heartbeat_ms = 100, h.timeout_ms = 1000;
  return h;
}

std::vector<std::vector<uint8_t>> AllSamples() {
  return {Encode({5, SampleBatch()}),         Encode({6, SampleResult()}),
          Encode({0, SampleHello()}),         Encode({0, HelloAck{1, 99, false, "mismatch"}}),
          Encode({0, Heartbeat{2, 10, 1.5}}), Encode({0, Shutdown{}})};
}

TEST(WireFormat, RoundTrips) {
  auto bytes = Encode({5, SampleBatch()});
  auto m = Decode(bytes.data(), bytes.size());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->batch_id, 5u);
  const auto& b = std::get<Batch>(m->body);
  ASSERT_EQ(b.opened.size(), 1u);
  EXPECT_EQ(b.tokens, (std::vector<int32_t>{1, 2, 3, 40}));
  ASSERT_EQ(b.truncated.size(), 1u);
  EXPECT_EQ(b.truncated[0].seq, 7u);
  EXPECT_EQ(b.truncated[0].length, 2);
  EXPECT_EQ(b.opened[0].sampling.seed, 42u);
  EXPECT_FLOAT_EQ(b.opened[0].sampling.temperature, 0.8f);
  EXPECT_EQ(b.released, (std::vector<uint64_t>{3, 4}));
  ASSERT_EQ(b.items.size(), 2u);
  EXPECT_EQ(b.items[1].position, 12);
  EXPECT_EQ(b.items[0].blocks, (std::vector<int32_t>{5, 2}));
  EXPECT_TRUE(b.items[1].blocks.empty());
  EXPECT_TRUE(ValidateBatch(b, false, 2).ok());
  std::vector<float> back(8);
  UnpackActivations(b.activations, b.act, back.data());
  EXPECT_EQ(back[7], 8.f);

  auto rb = Encode({6, SampleResult()});
  auto r = Decode(rb.data(), rb.size());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(std::get<Result>(r->body).tokens[0].top[1].first, 12);
  for (const auto& s : AllSamples()) EXPECT_TRUE(Decode(s.data(), s.size()).ok());
}

TEST(WireFormat, RefusesEveryTruncation) {
  for (const auto& full : AllSamples()) {
    for (size_t n = 0; n < full.size(); ++n) {
      // Truncated with the header's size left as is, and with it patched to match: both refused.
      EXPECT_FALSE(Decode(full.data(), n).ok()) << "prefix " << n;
      if (n >= kHeaderBytes) {
        std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
        const uint32_t body = static_cast<uint32_t>(n - kHeaderBytes);
        std::memcpy(cut.data() + 12, &body, 4);
        if (n < full.size()) {
          // Shutdown has an empty body: a 24-byte prefix is the whole message.
          EXPECT_FALSE(Decode(cut.data(), cut.size()).ok()) << "patched prefix " << n;
        }
      }
    }
  }
}

TEST(WireFormat, RefusesTrailingBytesAndBadHeaders) {
  auto good = Encode({1, SampleBatch()});
  auto longer = good;
  longer.push_back(0);
  EXPECT_FALSE(Decode(longer.data(), longer.size()).ok());  // body size mismatch
  uint32_t body = static_cast<uint32_t>(longer.size() - kHeaderBytes);
  std::memcpy(longer.data() + 12, &body, 4);
  auto st = Decode(longer.data(), longer.size());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(std::string(st.status().message()).find("trailing"), std::string::npos) << st.status();

  auto patch = [&](size_t at, const void* v, size_t n) {
    auto b = good;
    std::memcpy(b.data() + at, v, n);
    return Decode(b.data(), b.size());
  };
  const uint32_t bad_magic = 0x12345678;
  EXPECT_FALSE(patch(0, &bad_magic, 4).ok());
  for (uint16_t bad_version : {uint16_t(kWireVersion - 1), uint16_t(kWireVersion + 1)})
    EXPECT_FALSE(patch(4, &bad_version, 2).ok());
  for (uint16_t type : {uint16_t{0}, uint16_t{7}, uint16_t{0xffff}}) EXPECT_FALSE(patch(6, &type, 2).ok());
  // Another known type over a batch body: the layout does not fit.
  const uint16_t result = static_cast<uint16_t>(MessageType::kResult);
  EXPECT_FALSE(patch(6, &result, 2).ok());
  const uint32_t flags = 1;
  EXPECT_FALSE(patch(8, &flags, 4).ok());
  const uint32_t huge = 0xffffffff;
  EXPECT_FALSE(patch(12, &huge, 4).ok());
}

TEST(WireFormat, RefusesForgedCountsAndSizes) {
  auto good = Encode({1, SampleBatch()});
  // The opened-sequence count is the first body field: claim 1e9 sequences.
  auto b = good;
  const uint32_t many = 1000000000;
  std::memcpy(b.data() + kHeaderBytes, &many, 4);
  auto st = Decode(b.data(), b.size());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(std::string(st.status().message()).find("exceeds"), std::string::npos) << st.status();

  // Activation byte count and shape that disagree.
  Batch wrong = SampleBatch();
  wrong.rows = 3;  // 3 × 2 × 4 = 24 bytes, carries 32
  auto w = Encode({1, wrong});
  EXPECT_FALSE(Decode(w.data(), w.size()).ok());
  Batch neg = SampleBatch();
  neg.width = -2;
  auto n = Encode({1, neg});
  EXPECT_FALSE(Decode(n.data(), n.size()).ok());

  // Field values outside their ranges.
  Batch bad_item = SampleBatch();
  bad_item.items[0].n_tokens = 0;
  auto bi = Encode({1, bad_item});
  EXPECT_FALSE(Decode(bi.data(), bi.size()).ok());
  Batch bad_pos = SampleBatch();
  bad_pos.items[0].position = -1;
  auto bp = Encode({1, bad_pos});
  EXPECT_FALSE(Decode(bp.data(), bp.size()).ok());
  Batch bad_sampling = SampleBatch();
  bad_sampling.opened[0].sampling.temperature = -1;
  auto bs = Encode({1, bad_sampling});
  EXPECT_FALSE(Decode(bs.data(), bs.size()).ok());
  Batch bad_lp = SampleBatch();
  // The bound is far above the API's limit (drift canaries ask for the whole vocabulary).
  bad_lp.opened[0].logprobs = static_cast<int32_t>(kMaxTopLogprobs + 1);
  auto bl = Encode({1, bad_lp});
  EXPECT_FALSE(Decode(bl.data(), bl.size()).ok());
  bad_lp.opened[0].logprobs = -2;
  auto bn = Encode({1, bad_lp});
  EXPECT_FALSE(Decode(bn.data(), bn.size()).ok());

  Hello h = SampleHello();
  h.layer_end = 9;  // beyond num_layers
  auto hb = Encode({0, h});
  EXPECT_FALSE(Decode(hb.data(), hb.size()).ok());
  Hello h2 = SampleHello();
  h2.stage = 2;  // not < num_stages
  auto h2b = Encode({0, h2});
  EXPECT_FALSE(Decode(h2b.data(), h2b.size()).ok());

  Result r = SampleResult();
  r.tokens[0].id = -3;
  auto rb = Encode({1, r});
  EXPECT_FALSE(Decode(rb.data(), rb.size()).ok());
  Result r2 = SampleResult();
  r2.compute_seconds = std::numeric_limits<double>::quiet_NaN();
  auto r2b = Encode({1, r2});
  EXPECT_FALSE(Decode(r2b.data(), r2b.size()).ok());
}

// Version 4: an opened sequence carries no prompt (it travels as the rows' tokens): 48 bytes,
// 56 since version 8 added its cached prefix's two counts; a truncation 16 (no next token),
// and a negative token id is refused.
TEST(WireFormat, OpenedSequencesCarryNoPromptAndTokensAreChecked) {
  Batch one = SampleBatch();
  Batch two = SampleBatch();
  two.opened.push_back(two.opened[0]);
  two.opened[1].seq = 8;
  EXPECT_EQ(Encode({1, two}).size() - Encode({1, one}).size(), 56u);
  Batch cut = SampleBatch();
  cut.truncated.push_back({9, 5});
  EXPECT_EQ(Encode({1, cut}).size() - Encode({1, one}).size(), 16u);
  Batch neg = SampleBatch();
  neg.tokens[2] = -1;
  auto nb = Encode({1, neg});
  auto st = Decode(nb.data(), nb.size());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(std::string(st.status().message()).find("negative token id"), std::string::npos) << st.status();
  // A version 3 peer (which sent prompts) is refused by version, not misparsed.
  auto v3 = Encode({1, one});
  const uint16_t three = 3;
  std::memcpy(v3.data() + 4, &three, 2);
  auto old = Decode(v3.data(), v3.size());
  ASSERT_FALSE(old.ok());
  EXPECT_NE(std::string(old.status().message()).find("version 3, this build speaks " + std::to_string(kWireVersion)),
            std::string::npos)
      << old.status();
}

// Version 5: an item carries the block ids newly appended to its sequence's table (a uint32
// count, then the ids): 29 bytes without ids (37 since version 7 added item.verify), 4 more per id. The count is
// bounded by the bytes left, an id must not be negative (whether it lies in the pool is the stage's check: the decoder
// does not know the pool), and a version 4 peer (items without ids) is refused.
TEST(WireFormat, ItemsCarryTheirNewBlockIds) {
  const Batch base = SampleBatch();
  Batch more = SampleBatch();
  more.items[1].blocks = {0, 7, 3};
  EXPECT_EQ(Encode({1, more}).size() - Encode({1, base}).size(), 12u);
  Batch extra = SampleBatch();
  extra.items.push_back({11, 4, 1, false, {}});
  extra.rows += 1, extra.tokens.push_back(5), extra.activations.resize(extra.activations.size() + 8);
  EXPECT_EQ(Encode({1, extra}).size() - Encode({1, base}).size(), 37u + 4u + 8u);  // item, token, activations
  auto mb = Encode({1, more});
  auto m = Decode(mb.data(), mb.size());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(std::get<Batch>(m->body).items[1].blocks, (std::vector<int32_t>{0, 7, 3}));

  // Item 0's id count: after the opened (4 + 56), released (4 + 2 × 8), truncated (4 + 16) and
  // item count (4) fields, and the item's seq, position, n_tokens (8 each) and sample (1).
  const size_t count_at = kHeaderBytes + 4 + 56 + 4 + 16 + 4 + 16 + 4 + 25;
  auto bytes = Encode({1, base});
  uint32_t count = 0;
  std::memcpy(&count, bytes.data() + count_at, 4);
  ASSERT_EQ(count, 2u);
  // A forged count: one id more than the bytes after it could hold, and a huge one.
  const size_t left = bytes.size() - count_at - 4;
  for (uint32_t forged : {static_cast<uint32_t>(left / 4 + 1), uint32_t{0xffffffff}}) {
    auto f = bytes;
    std::memcpy(f.data() + count_at, &forged, 4);
    auto st = Decode(f.data(), f.size());
    ASSERT_FALSE(st.ok()) << forged;
    EXPECT_NE(std::string(st.status().message()).find("item.blocks count"), std::string::npos) << st.status();
  }
  // A count that claims fewer ids than sent: here the rest misparses into later fields, refused.
  for (uint32_t fewer : {uint32_t{0}, uint32_t{1}}) {
    auto f = bytes;
    std::memcpy(f.data() + count_at, &fewer, 4);
    EXPECT_FALSE(Decode(f.data(), f.size()).ok()) << fewer;
  }
  Batch neg = SampleBatch();
  neg.items[0].blocks[1] = -4;
  auto nb = Encode({1, neg});
  auto st = Decode(nb.data(), nb.size());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(std::string(st.status().message()).find("negative block id -4"), std::string::npos) << st.status();
  // Any non-negative id decodes: the stage holding the pool refuses one outside it.
  Batch far = SampleBatch();
  far.items[0].blocks[0] = std::numeric_limits<int32_t>::max();
  auto fb = Encode({1, far});
  EXPECT_TRUE(Decode(fb.data(), fb.size()).ok());
  auto v4 = Encode({1, base});
  const uint16_t four = 4;
  std::memcpy(v4.data() + 4, &four, 2);
  auto old = Decode(v4.data(), v4.size());
  ASSERT_FALSE(old.ok());
  EXPECT_NE(std::string(old.status().message()).find("version 4, this build speaks " + std::to_string(kWireVersion)),
            std::string::npos)
      << old.status();
}

// Version 7: an item may verify a draft (its last `verify` rows): it round-trips, and the
// decoder refuses a negative count, one that leaves no row for the newest token (verify must
// be below n_tokens), and a verification of an item that does not sample.
TEST(WireFormat, ItemsCarryTheirDraftLength) {
  Batch b = SampleBatch();
  b.items[0].verify = 2;  // 3 rows: the newest token and two draft tokens
  auto bytes = Encode({1, b});
  auto m = Decode(bytes.data(), bytes.size());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(std::get<Batch>(m->body).items[0].verify, 2);
  EXPECT_EQ(std::get<Batch>(m->body).items[1].verify, 0);
  for (auto [verify, sample] : {std::pair<int64_t, bool>{-1, true}, {3, true}, {7, true}, {1, false}}) {
    Batch bad = SampleBatch();
    bad.items[0].verify = verify;
    bad.items[0].sample = sample;
    auto e = Encode({1, bad});
    auto st = Decode(e.data(), e.size());
    ASSERT_FALSE(st.ok()) << verify << " " << sample;
    EXPECT_NE(std::string(st.status().message()).find("verifies"), std::string::npos) << st.status();
  }
}

TEST(WireFormat, RefusesBooleansOtherThanZeroOrOne) {
  auto ack = Encode({0, HelloAck{1, 99, true, ""}});
  ack[kHeaderBytes + 12] = 2;  // stage(4) + fingerprint(8), then ok
  EXPECT_FALSE(Decode(ack.data(), ack.size()).ok());
}

TEST(WireFormat, ValidateBatchChecksRowsAgainstItems) {
  Batch b = SampleBatch();
  EXPECT_TRUE(ValidateBatch(b, false, 2).ok());
  EXPECT_FALSE(ValidateBatch(b, false, 3).ok());  // width differs from the model's hidden
  EXPECT_FALSE(ValidateBatch(b, true, 2).ok());   // stage 0 takes no activations
  Batch stage0 = SampleBatch();
  stage0.activations.clear(), stage0.width = 0;
  EXPECT_TRUE(ValidateBatch(stage0, true, 2).ok());
  stage0.tokens.pop_back();  // one token per row, at stage 0 ...
  EXPECT_FALSE(ValidateBatch(stage0, true, 2).ok());
  Batch later = SampleBatch();
  later.tokens.clear();  // ... and at every later stage (the last one's history)
  EXPECT_FALSE(ValidateBatch(later, false, 2).ok());
  b.items[0].n_tokens = 2;  // items cover 3 rows, header says 4
  EXPECT_FALSE(ValidateBatch(b, false, 2).ok());
  Batch empty = SampleBatch();
  empty.items.clear();
  EXPECT_FALSE(ValidateBatch(empty, false, 2).ok());
}

TEST(WireFormat, HelloCarriesTheActivationTransport) {
  Hello h = SampleHello();
  h.activation_transport = ActivationTransport::kNccl;
  auto bytes = Encode({0, h});
  auto m = Decode(bytes.data(), bytes.size());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(std::get<Hello>(m->body).activation_transport, ActivationTransport::kNccl);
  // The field is the hello's last byte: values other than mpi (0) and nccl (1) are refused.
  bytes.back() = 2;
  auto bad = Decode(bytes.data(), bytes.size());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("activation transport"), std::string::npos) << bad.status();
  EXPECT_EQ(*ParseActivationTransport("mpi"), ActivationTransport::kMpi);
  EXPECT_EQ(*ParseActivationTransport("nccl"), ActivationTransport::kNccl);
  EXPECT_FALSE(ParseActivationTransport("gloo").ok());
}

// Version 6: the hello's KV dtype, one byte (KvDType's stable value) after kv_blocks, at a
// fixed offset: header, then stage and num_stages (4 each) and eight 8-byte fields. Every
// dtype round-trips; a byte past int8 is refused, so no stage can build a pool of an unknown
// layout.
TEST(WireFormat, HelloCarriesTheKvCacheDType) {
  const size_t at = kHeaderBytes + 4 + 4 + 8 * 8;
  for (kernels::KvDType t :
       {kernels::KvDType::kF32, kernels::KvDType::kF16, kernels::KvDType::kBF16, kernels::KvDType::kInt8}) {
    Hello h = SampleHello();
    h.kv_dtype = t;
    auto bytes = Encode({0, h});
    EXPECT_EQ(bytes[at], static_cast<uint8_t>(t)) << kernels::KvDTypeName(t);
    auto m = Decode(bytes.data(), bytes.size());
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(std::get<Hello>(m->body).kv_dtype, t);
    EXPECT_EQ(std::get<Hello>(m->body).context, 512);  // the fields after it still line up
    for (uint8_t bad : {uint8_t{4}, uint8_t{0xFF}}) {
      bytes[at] = bad;
      auto refused = Decode(bytes.data(), bytes.size());
      ASSERT_FALSE(refused.ok());
      EXPECT_NE(std::string(refused.status().message()).find("KV cache dtype"), std::string::npos) << refused.status();
    }
  }
}

Batch NcclBatch() {
  Batch b = SampleBatch();
  b.activations.clear();
  b.activations_over_nccl = true;
  return b;
}

TEST(WireFormat, BatchWithActivationsOverNcclRoundTrips) {
  auto bytes = Encode({3, NcclBatch()});
  auto m = Decode(bytes.data(), bytes.size());
  ASSERT_TRUE(m.ok()) << m.status();
  const auto& b = std::get<Batch>(m->body);
  EXPECT_TRUE(b.activations_over_nccl);
  EXPECT_TRUE(b.activations.empty());
  EXPECT_EQ(ActivationBytes(b), 4u * 2u * 4u);  // [4, 2] f32 follow on the NCCL channel
  // Announced over NCCL and carried inline as well: refused at decode.
  Batch both = SampleBatch();
  both.activations_over_nccl = true;
  auto bb = Encode({3, both});
  auto st = Decode(bb.data(), bb.size());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(std::string(st.status().message()).find("NCCL"), std::string::npos) << st.status();
  // The flag is a strict boolean; it precedes the 8-byte activation byte count (0 here).
  auto flag = bytes;
  const size_t at = flag.size() - 8 - 1;
  ASSERT_EQ(flag[at], 1);
  flag[at] = 2;
  EXPECT_FALSE(Decode(flag.data(), flag.size()).ok());
}

TEST(WireFormat, ValidateBatchAcceptsNcclActivationsOnlyInNcclPipelines) {
  const Batch nccl = NcclBatch();
  const Batch inline_ = SampleBatch();
  EXPECT_TRUE(ValidateBatch(nccl, false, 2, ActivationTransport::kNccl).ok());
  EXPECT_TRUE(ValidateBatch(inline_, false, 2, ActivationTransport::kMpi).ok());
  auto st = ValidateBatch(nccl, false, 2, ActivationTransport::kMpi);  // an MPI pipeline: refused
  ASSERT_FALSE(st.ok());
  EXPECT_NE(std::string(st.message()).find("over NCCL"), std::string::npos) << st;
  EXPECT_FALSE(ValidateBatch(nccl, false, 2).ok());                                 // the default is MPI
  EXPECT_FALSE(ValidateBatch(inline_, false, 2, ActivationTransport::kNccl).ok());  // must come over NCCL
  EXPECT_FALSE(ValidateBatch(nccl, false, 3, ActivationTransport::kNccl).ok());     // width still checked
  Batch both = NcclBatch();
  both.activations = inline_.activations;
  EXPECT_FALSE(ValidateBatch(both, false, 2, ActivationTransport::kNccl).ok());
  Batch stage0 = NcclBatch();
  stage0.tokens = {1, 2, 3, 4};
  EXPECT_FALSE(ValidateBatch(stage0, true, 2, ActivationTransport::kNccl).ok());  // stage 0 takes tokens
}

TEST(WireFormat, HalfPrecisionActivationsRoundTrip) {
  std::vector<float> x = {1.f, -2.5f, 0.333f, 1000.f};
  for (DType t : {DType::kF16, DType::kBF16}) {
    auto bytes = PackActivations(x.data(), x.size(), t);
    EXPECT_EQ(bytes.size(), x.size() * 2);
    std::vector<float> y(x.size());
    UnpackActivations(bytes, t, y.data());
    for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(y[i], x[i], std::abs(x[i]) * 1e-2) << ActivationDTypeName(t);
  }
}

// No rows: every dtype packs to no bytes and unpacks to nothing (an empty vector's data() is
// null, which memcpy must never see: UBSan in the sanitizer tree).
TEST(WireFormat, EmptyActivationsPackToNothing) {
  std::vector<float> none;
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    auto bytes = PackActivations(none.data(), 0, t);
    EXPECT_TRUE(bytes.empty()) << ActivationDTypeName(t);
    UnpackActivations(bytes, t, none.data());
  }
}

// The activation dtype is one byte whose values wire version 3 fixed (0 f32, 1 f16, 2 bf16),
// whatever DType's own numbering; no other byte and no other DType crosses the wire.
TEST(WireFormat, ActivationDTypeBytesAreFixed) {
  const std::pair<DType, uint8_t> kBytes[] = {{DType::kF32, 0}, {DType::kF16, 1}, {DType::kBF16, 2}};
  for (const auto& [dtype, byte] : kBytes) {
    Hello h = SampleHello();
    h.activations = dtype;
    auto bytes = Encode({0, h});
    // The hello ends with activations (1), heartbeat_ms (4), timeout_ms (4), transport (1).
    const size_t at = bytes.size() - 10;
    EXPECT_EQ(bytes[at], byte) << ActivationDTypeName(dtype);
    auto m = Decode(bytes.data(), bytes.size());
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(std::get<Hello>(m->body).activations, dtype);
    for (uint8_t bad : {uint8_t{3}, uint8_t{0xFF}}) {
      bytes[at] = bad;
      auto refused = Decode(bytes.data(), bytes.size());
      ASSERT_FALSE(refused.ok());
      EXPECT_NE(std::string(refused.status().message()).find("activation dtype"), std::string::npos)
          << refused.status();
    }
    EXPECT_TRUE(CheckActivationDType(dtype).ok());
    EXPECT_EQ(*ParseActivationDType(ActivationDTypeName(dtype)), dtype);
  }
  for (DType other : {DType::kU8, DType::kI32}) {
    const absl::Status st = CheckActivationDType(other);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(std::string(st.message()).find("f32, f16, bf16"), std::string::npos) << st;
  }
  const auto unknown = ParseActivationDType("fp8");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(
      std::string(unknown.status().message()).find("unknown activation precision \"fp8\" (valid: f32, f16, bf16)"),
      std::string::npos)
      << unknown.status();
}

// A cheap fuzz: random byte flips of valid messages never crash, and whatever decodes
// re-encodes to a message that decodes again.
TEST(WireFormat, RandomCorruptionNeverCrashes) {
  uint64_t state = 12345;
  auto next = [&] { return state = state * 6364136223846793005ull + 1442695040888963407ull; };
  for (const auto& base : AllSamples()) {
    for (int round = 0; round < 2000; ++round) {
      auto b = base;
      const int flips = 1 + static_cast<int>(next() % 4);
      for (int f = 0; f < flips; ++f) b[next() % b.size()] ^= static_cast<uint8_t>(1u << (next() % 8));
      auto m = Decode(b.data(), b.size());
      if (m.ok()) {
        auto again = Encode(*m);
        EXPECT_TRUE(Decode(again.data(), again.size()).ok());
      }
    }
  }
}

// Version 8: an opened sequence may start on cached blocks (prefix caching): their ids and the
// tokens of their positions, 4 bytes each after two counts; negative values are refused, and a
// count beyond the bytes left too.
TEST(WireFormat, OpenedSequencesCarryTheirCachedPrefix) {
  const Batch base = SampleBatch();
  Batch cached = SampleBatch();
  cached.opened[0].prefix_blocks = {4, 0};
  cached.opened[0].prefix_tokens = std::vector<int32_t>(32, 9);
  EXPECT_EQ(Encode({1, cached}).size() - Encode({1, base}).size(), 4u * (2 + 32));
  auto bytes = Encode({1, cached});
  auto m = Decode(bytes.data(), bytes.size());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(std::get<Batch>(m->body).opened[0].prefix_blocks, (std::vector<int32_t>{4, 0}));
  EXPECT_EQ(std::get<Batch>(m->body).opened[0].prefix_tokens, std::vector<int32_t>(32, 9));
  Batch neg = cached;
  neg.opened[0].prefix_blocks[1] = -3;
  auto nb = Encode({1, neg});
  EXPECT_FALSE(Decode(nb.data(), nb.size()).ok());
  neg = cached;
  neg.opened[0].prefix_tokens[5] = -1;
  nb = Encode({1, neg});
  EXPECT_FALSE(Decode(nb.data(), nb.size()).ok());
  // The block-id count, right after the opened sequence's fixed 48 bytes: forged huge.
  auto f = bytes;
  const uint32_t huge = 0xffffffff;
  std::memcpy(f.data() + kHeaderBytes + 4 + 48, &huge, 4);
  auto st = Decode(f.data(), f.size());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(std::string(st.status().message()).find("opened.prefix_blocks"), std::string::npos) << st.status();
}

}  // namespace
}  // namespace accullm::pipeline
