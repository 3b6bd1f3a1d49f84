// The forward pass allocates nothing per layer per token once warm (issue 11: "no heap
// allocation per layer per token"): every buffer of a step is per-thread scratch that grows to
// the largest shape seen and is then reused, and a ParallelFor passes its loop body by
// reference. This executable replaces the global operator new to count allocations, on every
// thread (the pool's workers too), while decode steps and a batched step run.
#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "gtest/gtest.h"
#include "model/transformer.h"
#include "quant/calibration.h"
#include "quant/model_quantizer.h"
#include "quant/pack_writer.h"
#include "sharding/precision_plan.h"
#include "tests/support/test_support.h"

// The replaced operators below pair malloc with free on purpose; GCC 12 cannot see that the
// global operator new it matches is this one.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace {
std::atomic<int64_t> g_allocations{0};
}  // namespace

void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n != 0 ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n != 0 ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace accullm::model {
namespace {

TEST(ForwardAllocationTest, CounterSeesAllocations) {
  const int64_t before = g_allocations.load();
  auto* v = new std::vector<float>(100);
  delete v;
  EXPECT_GE(g_allocations.load() - before, 2);  // the vector and its elements
}

// Warms `model` up, then counts allocations over decode steps and batched steps: at most
// `first_touch` (0 with a one-thread pool). With workers, chunks are claimed dynamically, so a
// worker may first run some kind of chunk (and grow its per-thread scratch, e.g. a dense
// kernel's row buffer) only during the counted steps: a few allocations once per thread, far
// below the one per layer per step (64 over 8 steps of 8 layers) this test exists to catch.
void ExpectWarmStepsAllocateNothing(Transformer& model, int64_t first_touch,
                                    kernels::KvDType kv_dtype = kernels::KvDType::kF32) {
  const int64_t vocab = model.config().vocab_size;
  std::vector<int32_t> prompt(40);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 37 + 5) % vocab);
  KvCache cache = model.NewCache(256, kv_dtype), other = model.NewCache(256, kv_dtype);
  std::vector<float> logits(2 * vocab);
  // Warm-up: a 40-row prefill sizes the row buffers, two decode steps the per-position tables.
  ASSERT_TRUE(model.Forward(prompt.data(), static_cast<int64_t>(prompt.size()), cache, logits.data()).ok());
  ASSERT_TRUE(model.Forward(prompt.data(), static_cast<int64_t>(prompt.size()), other, logits.data()).ok());
  // The per-position tables grow with the longest context seen: a longer sequence first, so
  // the steps below (however many warm rounds run) stay inside what it grew.
  {
    std::vector<int32_t> long_prompt(160);
    for (size_t i = 0; i < long_prompt.size(); ++i) long_prompt[i] = static_cast<int32_t>((i * 53 + 3) % vocab);
    KvCache long_cache = model.NewCache(256, kv_dtype);
    ASSERT_TRUE(model.Forward(long_prompt.data(), 160, long_cache, logits.data()).ok());
  }
  int32_t token = 7;
  const int32_t pair[2] = {11, 12};
  // Until three rounds in a row allocate nothing: the pool's workers claim chunks dynamically,
  // so on a busy machine a worker may not have run every kind of chunk (and grown its
  // per-thread scratch) in the first rounds.
  const std::vector<BatchSegment> warm_segments = {BatchSegment{&cache, 1}, BatchSegment{&other, 1}};
  for (int round = 0, clean = 0; clean < 3; ++round) {
    ASSERT_LT(round, 64) << "the forward pass keeps allocating";
    const int64_t at = g_allocations.load();
    for (int i = 0; i < 2; ++i) ASSERT_TRUE(model.Forward(&token, 1, cache, logits.data()).ok());
    ASSERT_TRUE(model.ForwardBatch(pair, warm_segments, logits.data()).ok());
    clean = g_allocations.load() == at ? clean + 1 : 0;
  }

  const int64_t before = g_allocations.load();
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(model.Forward(&token, 1, cache, logits.data()).ok());
  EXPECT_LE(g_allocations.load() - before, first_touch)
      << "over 8 decode steps of " << model.config().num_layers << " layers";

  // Two fresh sequences, shorter together than the ones above: the per-position tables grow
  // geometrically with the longest context seen (O(log length) allocations in all); here
  // they must fit what is already there.
  KvCache c2 = model.NewCache(256, kv_dtype), o2 = model.NewCache(256, kv_dtype);
  ASSERT_TRUE(model.Forward(prompt.data(), 20, c2, logits.data()).ok());
  ASSERT_TRUE(model.Forward(prompt.data(), 20, o2, logits.data()).ok());
  const std::vector<BatchSegment> segments = {BatchSegment{&c2, 1}, BatchSegment{&o2, 1}};  // built outside
  const int64_t before_batch = g_allocations.load();
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(model.ForwardBatch(pair, segments, logits.data()).ok());
  EXPECT_LE(g_allocations.load() - before_batch, first_touch) << "over 4 batched steps of two sequences";
}

TEST(ForwardAllocationTest, DenseModelStepsAllocateNothingOnceWarm) {
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    std::unique_ptr<Transformer> model = test_support::LoadModelOrFail(test_support::ModelDir(), &pool);
    ASSERT_NE(model, nullptr);
    ExpectWarmStepsAllocateNothing(*model, threads == 1 ? 0 : 4);
  }
}

// A compact KV cache (the serving default f16, and int8): the attention kernels decode each
// block into a per-thread tile grown once, and the write path encodes in place.
TEST(ForwardAllocationTest, CompactKvCacheStepsAllocateNothingOnceWarm) {
  for (kernels::KvDType dt : {kernels::KvDType::kF16, kernels::KvDType::kInt8}) {
    for (int threads : {1, 2}) {
      ThreadPool pool(threads);
      std::unique_ptr<Transformer> model = test_support::LoadModelOrFail(test_support::ModelDir(), &pool);
      ASSERT_NE(model, nullptr);
      ExpectWarmStepsAllocateNothing(*model, threads == 1 ? 0 : 4, dt);
    }
  }
}

// The serving path of a pack: low-bit linears with INT8 activations and integer kernels (a
// round-to-nearest INT4 pack of the fixture, written to a scratch directory).
TEST(ForwardAllocationTest, LowBitPackStepsAllocateNothingOnceWarm) {
  test_support::ScopedTempDir tmp("accullm_forward_allocation");
  const std::string pack_dir = tmp.Path("pack");
  {
    ThreadPool pool(2);
    std::unique_ptr<Transformer> source = test_support::LoadModelOrFail(test_support::ModelDir(), &pool);
    ASSERT_NE(source, nullptr);
    quant::CalibrationStats stats(&pool, 6.0f);
    std::vector<int32_t> chunk = {1};
    for (int i = 0; i < 15; ++i) chunk.push_back(3 + i * 37 % 2000);
    ASSERT_TRUE(quant::RunCalibration(*source, {chunk}, stats).ok());
    auto plan = sharding::PrecisionPlan::FromFp16Spec("", source->config().num_layers);
    ASSERT_TRUE(plan.ok()) << plan.status();
    quant::ModelQuantOptions opts;
    opts.quant.method = quant::QuantMethod::kRtn;
    auto mats = quant::QuantizeModel(*source, stats, *plan, opts, pool);
    ASSERT_TRUE(mats.ok()) << mats.status();
    quant::PackDescription desc;
    desc.source_dir = test_support::ModelDir();
    desc.plan = *plan;
    desc.options = opts;
    auto bytes = quant::WritePack(*source, *mats, desc, pack_dir);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
  }
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    auto model = Transformer::Load(pack_dir, &pool);
    ASSERT_TRUE(model.ok()) << model.status();
    ExpectWarmStepsAllocateNothing(**model, threads == 1 ? 0 : 4);
  }
}

}  // namespace
}  // namespace accullm::model
