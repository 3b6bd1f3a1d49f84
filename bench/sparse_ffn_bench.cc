// FFN decode time, dense against sparse (kernels/cpu/sparse_ffn_kernels.h), on the TinyLlama
// FFN shape (hidden 2048, intermediate 5632, INT4 g32 with fractional zero points, F16
// steps), one thread, one token: gate and up (INT8 x), SiLU·up, INT8 h, down. Every iteration
// runs the FFN of g_layers layers in turn (20.5 MB of dense tiles a layer, as much of sparse
// layouts), as decode streams them: from memory, not from the last-level cache. Two lessons
// of this VM's 300 MB L3: with 4 layers (82 MB) every ratio was an L3 ratio (1.16x at 50% kept
// with the rank-32 guesser); with 12 layers and one fixed kept set per layer, the sparse rows
// an iteration read (~135 MB) stayed in the L3 for the next one, while the dense tiles did not,
// and the ratio swung 1.5-1.7x with what the VM's neighbours did to the L3. So every layer now
// cycles through kKeptSets random kept sets, one per iteration, as successive decode steps keep
// different neurons. The layer count is therefore sized to the machine: enough layers that the
// dense tiles alone are twice the L3 (sysconf's _SC_LEVEL3_CACHE_SIZE), at least 24 (~490 MB;
// a 2-core VM of 2026-12 reports a 508 MiB L3, where 24 layers ran from the L3: dense at
// ~32 GB/s, sparse 50% slower than dense). --layers=N sets it (the count used is the
// benchmark context's "layers").
//   BM_DenseFfn/part            the tiled dense kernels (LowBitInt8Rows)
//   BM_SparseFfn/kept_pct/part/cats/rank  the sparse kernels with a random kept set of kept_pct %
//                               of the neurons per layer (sorted, as a predictor emits them;
//                               kKeptSets of them per layer, in turn)
//   part: 0 = the whole FFN, 1 = gate + up only, 2 = down only (on the same masked h)
//   cats: 0 = a predictor's list (gate over the kept rows too), gate and up read side by side
//         from one pair layout (MakeSparsePairRows), as decode runs it; 2 = the same over two
//         separate gate and up layouts (before the pair layout); 1 = CATS (gate dense over its
//         tiles, SiLU and the threshold selection over every neuron, then up over the kept rows;
//         the kept set is the random one); 3 = as 0 from the joint layout (gate row, up row and
//         down strip per neuron: MakeSparseFfn, as decode runs it since 2026-12-02 afternoon);
//         4 = as 1 from the joint layout of up's rows and down's strips
//   rank: with cats 0 and part 0 or 1, the trained guesser's cost (model/ffn_guesser.h): every
//         layer first runs GuesserNeuronSelector::Select (its F16 `in` and integer `out` products, SiLU·up, the
//         threshold) on random rank-`rank` weights loaded from a guesser file, as decode does;
//         its kept list is computed and dropped (the kernels keep the random set, so the rows
//         compare the same kernel work). 0 = no guesser; kAutoRank = the rank `accullm
//         quantize --guesser-rank auto` picks for this FFN (F16 weights at most 10% of its
//         stored bytes, quant::DefaultGuesserRank).
//   gbits: with a rank, the guesser's `out` codes (--guesser-out-bits: 4, quantize's default,
//         or 8, packs before it); 0 without a guesser
// Compare ratios measured in one interleaved run on a noisy machine:
//   build/bench/sparse_ffn_bench --benchmark_enable_random_interleaving=true
//     --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// and, for the whole FFN, BM_FfnSpeedup's paired passes (its `speedup` counter). Separate
// benchmarks run one kind of pass back to back, so whatever of a pass's bytes the L3 still
// holds serves the next: with the sparse passes smaller than the dense ones, that favours
// sparse as long as the layers do not dwarf the L3 (2026-12-02, 508 MiB L3: 52 layers gave
// sparse 50% without a guesser 1.59-2.09x in separate benchmarks, 1.23-1.45x paired; with
// 100 layers the separate benchmarks fell to ~1.2-1.4x too). In a paired iteration the
// dense pass leaves nothing of the sparse layouts in the L3, as decoding a model larger than
// the L3 does.
// One FFN takes the iteration time / g_layers (counter ffn_per_s: FFNs per second).
// --down-group=128 quantizes down at group 128 (quantize --down-group), dense and sparse alike.
// --hidden=N --inter=N set another FFN shape (multiples of 128; e.g. Llama-2-7B's 4096 and
// 11008: rows and strips of 2 KB at 4 bits); the layer count and the guesser's label rank 77
// (then the rule's auto rank for that shape; BM_GuesserOut keeps its ranks as given) follow
// it, and `shape` is in the benchmark context.
// --threads=N runs every pass on a pool of N threads, split as decode splits them (dense: over
// tiles; sparse: gate/up over 16-row units of the kept list, down over one range of output
// blocks per thread; the guesser's select on the same pool). BM_SparseFfn's counter down_ms is
// the time a pass spends in down (h's codes, the nonzero list, the kernel): with part 0, the
// part of the pass the strips read after the rows cost.
//   BM_FfnSpeedup/kept_pct/rank/gbits/joint/cats  dense and sparse passes alternated within every iteration,
//                               each timed: counter speedup = dense time / sparse time (the
//                               floor's measure on a noisy machine, see below)
//   BM_FfnReadBound/kept_pct/mode  the same pairing over the passes' reads alone (every line
//                               touched once, nothing computed): counter bound = dense / sparse,
//                               the most a sparse kernel over these layouts can gain here
//   BM_DenseFfnSmallPages, BM_SparseFfnSmallPages  a subset of the two above on a second copy
//                               of the layers held on 4 KiB pages (ACCULLM_HUGE_PAGES=off's
//                               MADV_NOHUGEPAGE), for an in-process huge-page A/B
//                               (common/weight_memory.h); the others run on huge pages, as decode
//   BM_RowsInL2/kernel          the gate/up kernels on 512 L2-resident rows: instructions alone
//   BM_GuesserOut/rank/kind     the guesser's out product alone: F16 (before) against INT8 and INT4 rows
//   BM_DownInL2/kernel          down on 512 outputs (L2-resident): dense, sparse all / half / one per group
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "common/dtype.h"
#include "common/thread_pool.h"
#include "common/weight_memory.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/int8_activations.h"
#include "kernels/cpu/low_bit_int8_kernels.h"
#include "kernels/cpu/low_bit_tiles.h"
#include "kernels/cpu/scaled_rows.h"
#include "kernels/cpu/silu_mul_mask.h"
#include "kernels/cpu/sparse_ffn_kernels.h"
#include "kernels/cpu/sparse_ffn_layouts.h"
#include "model/ffn_guesser.h"
#include "model/linear.h"
#include "model/model_config.h"
#include "model/pack/manifest.h"
#include "quant/safetensors_writer.h"

namespace accullm::kernels {
namespace {

constexpr int64_t kGroup = 32;
// The FFN's shape: TinyLlama's unless --hidden=N / --inter=N (multiples of 128) set another,
// e.g. Llama-2-7B's 4096 / 11008, whose rows and strips are twice as long (2 KB at 4 bits).
constexpr int64_t kTinyLlamaHidden = 2048, kTinyLlamaInter = 5632;
int64_t g_hidden = kTinyLlamaHidden, g_inter = kTinyLlamaInter;
// Layers per iteration (see the top): --layers=N, else LayersBeyondL3().
int64_t g_layers = 0;
// Down's group (quantize --down-group): --down-group=N on the command line (32, 64 or 128),
// parsed before the benchmark library's flags. Gate and up keep kGroup.
int64_t g_down_group = kGroup;
// --threads=N: the dense and sparse passes split over a pool of N threads as decode splits
// them (dense tiles; gate/up over 16-row units of the kept list; down over output blocks).
int g_threads = 1;
ThreadPool& Pool() {
  static ThreadPool pool(g_threads);
  return pool;
}
// Kept sets per layer, one per iteration in turn: a decode step keeps other neurons than the
// last, so the rows one iteration reads are mostly not the ones the previous left in the L3.
constexpr int64_t kKeptSets = 4;
// quant::DefaultGuesserRank at 10% for this FFN: floor(0.1 · stored bytes of gate, up and down
// (INT4 codes, F16 steps, zero bytes: 20.5 MB) / (2 · (hidden + 2 · inter))); checked in Guesser().
constexpr int64_t kAutoRank = 77;

struct OwnedMatrix {
  std::vector<uint8_t> codes, zeros;
  std::vector<uint16_t> scales;
  LowBitMatrix m;
};

OwnedMatrix RandomMatrix(int64_t out, int64_t in, std::mt19937& rng, int64_t group = kGroup) {
  OwnedMatrix w;
  std::normal_distribution<float> normal;
  const int frac = ZeroFractionBits(4, 4);
  w.codes.resize(static_cast<size_t>(out * CodeRowBytes(in, 4)));
  w.scales.resize(static_cast<size_t>(out * in / group));
  w.zeros.resize(w.scales.size());
  for (auto& c : w.codes) c = static_cast<uint8_t>(rng());
  for (auto& s : w.scales) s = F32ToF16(0.01f + 0.001f * std::abs(normal(rng)));
  for (auto& z : w.zeros) z = static_cast<uint8_t>((rng() % 16) << frac);
  w.m.codes = w.codes.data();
  w.m.scales = w.scales.data();
  w.m.zeros = w.zeros.data();
  w.m.out = out;
  w.m.in = in;
  w.m.group = group;
  w.m.zero_frac_bits = frac;
  w.m.bits = 4;
  return w;
}

struct Layer {
  OwnedMatrix gate, up, down;
  LowBitTiles gate_tiles, up_tiles, down_tiles;
  SparseRowsLayout gate_rows, up_rows, gate_up_pair;
  SparseColumnsLayout down_columns;
  SparseFfnLayouts joint;    // gate, up and down's strips in one layout (cats 3)
  SparseFfnLayouts up_down;  // up and down's strips in one layout (cats 4: CATS)
};

// The layers' tiles and sparse layouts on huge pages (common/weight_memory.h, as decode holds
// them), or a second copy on 4 KiB pages for the *SmallPages benchmarks (the same weights).
const std::vector<Layer>& MakeLayers(bool small_pages) {
  const bool advised = HugePagesAdvised();
  SetHugePagesAdvised(!small_pages);
  auto* all = new std::vector<Layer>(g_layers);
  {
    std::mt19937 rng(1);
    for (Layer& l : *all) {
      l.gate = RandomMatrix(g_inter, g_hidden, rng);
      l.up = RandomMatrix(g_inter, g_hidden, rng);
      l.down = RandomMatrix(g_hidden, g_inter, rng, g_down_group);
      l.gate_tiles = TileLowBitMatrix(l.gate.m);
      l.up_tiles = TileLowBitMatrix(l.up.m);
      l.down_tiles = TileLowBitMatrix(l.down.m);
      l.gate_rows = MakeSparseRows(l.gate.m);
      l.up_rows = MakeSparseRows(l.up.m);
      l.gate_up_pair = MakeSparsePairRows(l.gate.m, l.up.m);
      l.down_columns = MakeSparseColumns(l.down.m);
      l.joint = MakeSparseFfn(&l.gate.m, l.up.m, l.down.m);
      l.up_down = MakeSparseFfn(nullptr, l.up.m, l.down.m);
    }
  }
  SetHugePagesAdvised(advised);
  return *all;
}

const std::vector<Layer>& Layers(bool small_pages = false) {
  if (small_pages) {
    static const std::vector<Layer>& layers = MakeLayers(true);
    return layers;
  }
  static const std::vector<Layer>& layers = MakeLayers(false);
  return layers;
}

std::vector<float> Input(uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(g_hidden));
  for (auto& v : x) v = normal(rng);
  return x;
}

// The guesser of g_layers layers at `rank`, random F16 weights, written to a scratch directory
// and loaded as a pack's (FfnGuesser::Load), with thresholds at the median score of Input(2)
// (about half the neurons kept).
struct BenchGuesser {
  std::unique_ptr<model::GuesserNeuronSelector> selector;
  std::unique_ptr<ThreadPool> pool;
};

const BenchGuesser& Guesser(int64_t rank, int out_bits) {
  static std::map<std::pair<int64_t, int>, BenchGuesser> made;  // node-based: references stay valid
  if (auto it = made.find({rank, out_bits}); it != made.end()) return it->second;
  const auto& layers = Layers();
  const int64_t ffn_bytes = StoredBytes(layers[0].gate.m) + StoredBytes(layers[0].up.m) + StoredBytes(layers[0].down.m);
  const auto auto_rank = static_cast<int64_t>(
      std::floor(0.1 * static_cast<double>(ffn_bytes) / (2.0 * static_cast<double>(g_hidden + 2 * g_inter))));
  const bool default_shape = g_hidden == kTinyLlamaHidden && g_inter == kTinyLlamaInter;
  if (default_shape && g_down_group == kGroup && auto_rank != kAutoRank) {  // another down group: "77" stays the label
    std::fprintf(stderr, "kAutoRank is %lld, DefaultGuesserRank's rule gives %lld\n", static_cast<long long>(kAutoRank),
                 static_cast<long long>(auto_rank));
    std::abort();
  }
  // At another shape the label kAutoRank runs the rule's rank for that shape.
  const int64_t label = rank;
  if (!default_shape && rank == kAutoRank) rank = auto_rank;
  std::mt19937 rng(static_cast<uint32_t>(rank));
  std::normal_distribution<float> normal(0.f, 1.f);
  quant::SafetensorsWriter writer;
  std::vector<std::vector<uint16_t>> tensors;
  for (int64_t l = 0; l < g_layers; ++l) {
    for (const auto& [name, rows, cols] : {std::tuple{model::GuesserInName(l), rank, g_hidden},
                                           std::tuple{model::GuesserOutName(l), 2 * g_inter, rank}}) {
      std::vector<uint16_t> t(static_cast<size_t>(rows * cols));
      const float scale = 1.f / std::sqrt(static_cast<float>(cols));
      for (auto& v : t) v = F32ToF16(scale * normal(rng));
      writer.Add(name, DType::kF16, {rows, cols}, t.data(), t.size() * sizeof(uint16_t));
    }
  }
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("sparse_ffn_bench_guesser_" + std::to_string(rank))).string();
  std::filesystem::create_directories(dir);
  const std::string file = dir + "/" + model::kGuesserFile;
  if (absl::Status s = writer.Write(file); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    std::abort();
  }
  model::ModelConfig config;
  config.hidden_size = g_hidden;
  config.intermediate_size = g_inter;
  config.num_layers = g_layers;
  model::PackSparsity sparsity;
  sparsity.predictor = "lowrank";
  sparsity.rank = rank;
  sparsity.guesser_out_bits = out_bits;
  auto loaded = model::FfnGuesser::Load(dir, config, sparsity);
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s\n", loaded.status().ToString().c_str());
    std::abort();
  }
  std::filesystem::remove_all(dir);  // the file stays mapped until the guesser goes
  std::shared_ptr<const model::FfnGuesser> guesser = std::move(*loaded);
  BenchGuesser g;
  g.pool = std::make_unique<ThreadPool>(1);
  const std::vector<float> x = Input(2);
  std::vector<float> thresholds;
  std::vector<float> scores(static_cast<size_t>(g_inter));
  for (int64_t l = 0; l < g_layers; ++l) {
    guesser->Scores(l, x.data(), 1, scores.data(), *g.pool);
    std::nth_element(scores.begin(), scores.begin() + g_inter / 2, scores.end());
    thresholds.push_back(scores[g_inter / 2]);
  }
  g.selector = std::make_unique<model::GuesserNeuronSelector>(guesser, thresholds);
  return made.emplace(std::pair{label, out_bits}, std::move(g)).first->second;
}

// One pass of the dense FFN over every layer (part: see the top).
class DenseRun {
 public:
  DenseRun(int part, bool small_pages)
      : part_(part), layers_(Layers(small_pages)), x_(Input(2)), gate_(g_inter), up_(g_inter), h_(g_inter),
        y_(g_hidden) {
    QuantizeInt8Blocks(x_.data(), 1, g_hidden, kGroup, nullptr, xq_);
  }
  void Pass() {
    for (const Layer& l : layers_) {
      if (part_ != 2) {
        QuantizeInt8Blocks(x_.data(), 1, g_hidden, kGroup, nullptr, xq_);
        Pool().ParallelFor(l.gate_tiles.tiles, [&](int64_t t0, int64_t t1) {
          LowBitInt8Rows(l.gate.m, l.gate_tiles, xq_, t0, t1, gate_.data(), g_inter);
          LowBitInt8Rows(l.up.m, l.up_tiles, xq_, t0, t1, up_.data(), g_inter);
        });
        SiluMul(gate_.data(), up_.data(), g_inter, h_.data());
      }
      if (part_ != 1) {
        QuantizeInt8Blocks(h_.data(), 1, g_inter, g_down_group, nullptr, hq_);
        Pool().ParallelFor(l.down_tiles.tiles, [&](int64_t t0, int64_t t1) {
          LowBitInt8Rows(l.down.m, l.down_tiles, hq_, t0, t1, y_.data(), g_hidden);
        });
      }
      benchmark::DoNotOptimize(y_.data());
      benchmark::DoNotOptimize(h_.data());
    }
  }

 private:
  int part_;
  const std::vector<Layer>& layers_;
  std::vector<float> x_, gate_, up_, h_, y_;
  Int8Activations xq_, hq_;
};

void DenseFfn(benchmark::State& state, bool small_pages) {
  DenseRun run(static_cast<int>(state.range(0)), small_pages);
  for (auto _ : state) run.Pass();
  state.counters["ffn_per_s"] =
      benchmark::Counter(static_cast<double>(g_layers), benchmark::Counter::kIsIterationInvariantRate);
}
void BM_DenseFfn(benchmark::State& state) { DenseFfn(state, false); }
void BM_DenseFfnSmallPages(benchmark::State& state) { DenseFfn(state, true); }
BENCHMARK(BM_DenseFfn)->ArgName("part")->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DenseFfnSmallPages)->ArgName("part")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

// Per layer, kKeptSets random sets of kept_pct % of the neurons ([layer · kKeptSets + set]),
// sorted, as a predictor emits them.
std::vector<std::vector<int32_t>> RandomKeptSets(int64_t kept_pct) {
  std::vector<std::vector<int32_t>> kept(static_cast<size_t>(g_layers * kKeptSets));
  std::mt19937 rng(3);
  for (auto& k : kept) {
    k.resize(g_inter);
    std::iota(k.begin(), k.end(), 0);
    std::shuffle(k.begin(), k.end(), rng);
    k.resize(static_cast<size_t>(g_inter * kept_pct / 100));
    std::sort(k.begin(), k.end());
  }
  return kept;
}

// One pass of the sparse FFN over every layer, each layer on the next of its kKeptSets random
// kept sets (kept_pct, part, cats, rank, gbits: see the top).
class SparseRun {
 public:
  SparseRun(int64_t kept_pct, int part, int64_t cats, int64_t rank, int gbits, bool small_pages)
      : part_(part), cats_(cats == 1 || cats == 4), separate_(cats == 2), joint_(cats == 3 || cats == 4),
        guesser_(rank > 0 ? &Guesser(rank, gbits) : nullptr), layers_(Layers(small_pages)), x_(Input(2)),
        kept_(RandomKeptSets(kept_pct)), masked_(g_layers * kKeptSets, std::vector<float>(g_inter, 0.f)),
        gate_(g_inter), up_(g_inter), h_(g_inter, 0.f), y_(g_hidden), silu_(g_inter), survivors_(g_inter) {
    // For part 2: the masked h of each layer and set, as parts 0 and 1 would make it.
    const std::vector<float> hidden = Input(4);
    for (size_t s = 0; s < kept_.size(); ++s)
      for (int32_t j : kept_[s]) masked_[s][j] = hidden[j % g_hidden];
  }

  void Pass() {
    const int64_t set = pass_++ % kKeptSets;
    for (int64_t li = 0; li < g_layers; ++li) {
      const Layer& l = layers_[li];
      const std::vector<int32_t>& k = kept_[li * kKeptSets + set];
      const int64_t n = static_cast<int64_t>(k.size());
      const float* down_in = masked_[li * kKeptSets + set].data();
      if (part_ != 2) {
        if (guesser_ != nullptr) {
          benchmark::DoNotOptimize(guesser_->selector->Select(li, x_.data(), 1, Pool(), predicted_));
          benchmark::DoNotOptimize(predicted_.neurons.data());
        }
        QuantizeInt8Blocks(x_.data(), 1, g_hidden, kGroup, nullptr, xq_);
        std::fill(h_.begin(), h_.end(), 0.f);
        if (cats_) {
          LowBitInt8Rows(l.gate.m, l.gate_tiles, xq_, 0, l.gate_tiles.tiles, gate_.data(), g_inter);
          SiluOfRange(gate_.data(), g_inter, silu_.data());
          benchmark::DoNotOptimize(KeptAboveThreshold(silu_.data(), g_inter, 0.1f, survivors_.data()));
          SparseRowsInt8(joint_ ? l.up_down.rows : l.up_rows, xq_, k.data(), 0, n, up_.data());
          for (int64_t i = 0; i < n; ++i) h_[k[i]] = silu_[k[i]] * up_[i];
        } else if (separate_) {
          SparseRowsInt8(l.gate_rows, xq_, k.data(), 0, n, gate_.data());
          SparseRowsInt8(l.up_rows, xq_, k.data(), 0, n, up_.data());
          SiluMulScatter(gate_.data(), up_.data(), k.data(), 0, n, h_.data());
        } else {
          const SparseRowsLayout& pair = joint_ ? l.joint.rows : l.gate_up_pair;
          Pool().ParallelFor((n + 15) / 16, [&](int64_t c0, int64_t c1) {
            const int64_t k0 = c0 * 16, k1 = std::min(n, c1 * 16);
            SparsePairRowsInt8(pair, xq_, k.data(), k0, k1, gate_.data(), up_.data());
            SiluMulScatter(gate_.data(), up_.data(), k.data(), k0, k1, h_.data());
          });
        }
        down_in = h_.data();
      }
      const auto down_start = std::chrono::steady_clock::now();
      if (part_ != 1) {
        QuantizeInt8Blocks(down_in, 1, g_inter, g_down_group, nullptr, hq_);
        FindNonzeroNeurons(hq_, nonzero_);
        const SparseColumnsLayout& columns = !joint_ ? l.down_columns : cats_ ? l.up_down.down : l.joint.down;
        const int64_t ranges = Pool().size();
        Pool().ParallelFor(
            columns.blocks(),
            [&](int64_t b0, int64_t b1) { SparseDownInt8(columns, hq_, nonzero_, b0, b1, y_.data()); },
            std::max<int64_t>(4, (columns.blocks() + ranges - 1) / ranges));
      }
      down_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - down_start).count();
      benchmark::DoNotOptimize(y_.data());
      benchmark::DoNotOptimize(h_.data());
    }
  }
  // Seconds spent in down (h's codes, the nonzero list, the kernel) over all passes.
  double down_seconds() const { return down_s_; }
  int64_t passes() const { return pass_; }

 private:
  double down_s_ = 0;
  int part_;
  bool cats_, separate_, joint_;
  const BenchGuesser* guesser_;
  const std::vector<Layer>& layers_;
  std::vector<float> x_;
  std::vector<std::vector<int32_t>> kept_;
  std::vector<std::vector<float>> masked_;
  std::vector<float> gate_, up_, h_, y_, silu_;
  std::vector<int32_t> survivors_;
  model::FfnKeptSets predicted_;
  Int8Activations xq_, hq_;
  SparseNeurons nonzero_;
  int64_t pass_ = 0;
};

void SparseFfn(benchmark::State& state, bool small_pages) {
  SparseRun run(state.range(0), static_cast<int>(state.range(1)), state.range(2), state.range(3),
                static_cast<int>(state.range(4)), small_pages);
  for (auto _ : state) run.Pass();
  state.counters["ffn_per_s"] =
      benchmark::Counter(static_cast<double>(g_layers), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["down_ms"] = 1e3 * run.down_seconds() / static_cast<double>(std::max<int64_t>(1, run.passes()));
}
void BM_SparseFfn(benchmark::State& state) { SparseFfn(state, false); }
void BM_SparseFfnSmallPages(benchmark::State& state) { SparseFfn(state, true); }
BENCHMARK(BM_SparseFfnSmallPages)
    ->ArgNames({"kept_pct", "part", "cats", "rank", "gbits"})
    ->ArgsProduct({{100, 50, 30}, {0, 1}, {0}, {0}, {0}})
    ->ArgsProduct({{50, 30}, {0}, {0}, {32}, {4}})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SparseFfn)
    ->ArgNames({"kept_pct", "part", "cats", "rank", "gbits"})
    ->ArgsProduct({{100, 50, 30, 10}, {0, 1, 2}, {0}, {0}, {0}})
    ->ArgsProduct({{100, 50, 30, 10}, {0, 1}, {2}, {0}, {0}})
    ->ArgsProduct({{100, 50, 30, 10}, {0}, {1}, {0}, {0}})
    ->ArgsProduct({{50, 30}, {0, 1, 2}, {3}, {0}, {0}})
    ->ArgsProduct({{50, 30, 10}, {0}, {0}, {32, kAutoRank}, {4, 8}})
    ->Unit(benchmark::kMillisecond);

// Every iteration one dense and one sparse pass, in alternating order, each timed alone:
// counter `ratio` = Σ dense time / Σ sparse time, dense_ms and sparse_ms the mean pass times.
template <typename DensePass, typename SparsePass>
void TimePairedPasses(benchmark::State& state, DensePass dense_pass, SparsePass sparse_pass, const char* ratio) {
  double dense_s = 0, sparse_s = 0;
  int64_t passes = 0;
  for (auto _ : state) {
    for (int k = 0; k < 2; ++k) {
      const bool run_dense = (k == 0) == (passes % 2 == 0);
      const auto t0 = std::chrono::steady_clock::now();
      if (run_dense) dense_pass();
      else sparse_pass();
      const std::chrono::duration<double> took = std::chrono::steady_clock::now() - t0;
      (run_dense ? dense_s : sparse_s) += took.count();
    }
    ++passes;
  }
  state.counters[ratio] = dense_s / sparse_s;
  state.counters["dense_ms"] = 1e3 * dense_s / static_cast<double>(passes);
  state.counters["sparse_ms"] = 1e3 * sparse_s / static_cast<double>(passes);
}

// The whole FFN's speedup with the machine's state taken out: every iteration runs one dense
// pass and one sparse pass (kept_pct, rank, gbits as above; joint: 1 = the joint layout, 0 =
// separate row and column layouts; cats: 1 = CATS, else a predictor's list), in
// alternating order, each timed alone; the counter `speedup` is Σ dense time / Σ sparse time
// over the repetition, `dense_ms` and `sparse_ms` the mean pass times. On this shared VM, whose
// memory rate swings ±30% from one second to the next, separate benchmarks interleaved at
// random still drift apart between their repetitions; passes a few tens of milliseconds apart
// see the same machine.
void BM_FfnSpeedup(benchmark::State& state) {
  DenseRun dense(0, false);
  const bool joint = state.range(3) == 1, cats = state.range(4) == 1;
  SparseRun sparse(state.range(0), 0, cats ? (joint ? 4 : 1) : (joint ? 3 : 0), state.range(1),
                   static_cast<int>(state.range(2)), false);
  dense.Pass();  // page tables, the guesser's file, the kept sets: untimed
  sparse.Pass();
  TimePairedPasses(
      state, [&] { dense.Pass(); }, [&] { sparse.Pass(); }, "speedup");
}
BENCHMARK(BM_FfnSpeedup)
    ->ArgNames({"kept_pct", "rank", "gbits", "joint", "cats"})
    ->ArgsProduct({{50, 30, 10}, {0}, {0}, {0, 1}, {0, 1}})
    ->ArgsProduct({{50, 30, 10}, {kAutoRank}, {4}, {0, 1}, {0}})
    ->Unit(benchmark::kMillisecond);

// What memory alone allows the sparse FFN on this machine: the passes' bytes touched once per
// 64-byte line, nothing computed (no kernel can beat its own reads). Dense: every line of a
// layer's tiles (gate, up, down), four tiles at once as the decode kernel reads them. Sparse: the kept neurons'
// units of the joint layout (pair rows, then down's strip), four at a time line by line, each
// unit's successor fetched by software a line per line read (the rows kernel's pattern); then
// down's steps and zero bytes of every group holding a kept neuron (the epilogue's reads).
// mode: how the units are read:
//   0  each unit whole, four streams over quarters of the kept list (a one-pass kernel's reads)
//   1  two phases as the kernels read them: every kept unit's pair rows, then every strip
//   2  each unit whole, one stream in list order, the unit 4 ahead fetched
//   3  each unit whole, four consecutive units at a time in list order (groups complete in
//      order, as down's epilogue needs them), the next four fetched
//   4  as 1, but the first phase reads every kept unit whole (its strip too), as if the rows
//      kernel fetched the strips for down, which then reads them again from the caches (on a
//      Sapphire Rapids VM, 2026-12-03: slower than mode 1, the second read costing more than
//      the longer runs save; docs/benchmarks.md)
//   5, 6, 7  as 3, 0 and 1 over a copy of the units in which each ends a slot of whole 4 KB
//      pages (3.4 KB in 4 KB at TinyLlama's shape: nothing after a unit in its page for the L2
//      streamer to fetch in vain, 18% more bytes held); a layout the product does not have
// The guesser's reads are not in it (its cost: BM_FfnSpeedup at rank 0 against kAutoRank).
// Split over --threads (dense: the four-tile steps in ranges, as the tiles are; sparse: the
// kept list in ranges, then down's groups in ranges).
class ReadBoundRun {
 public:
  ReadBoundRun(int64_t kept_pct, int mode) : layers_(Layers()), kept_(RandomKeptSets(kept_pct)), mode_(mode) {}

  void DensePass() {
    for (const Layer& l : layers_)
      for (const LowBitTiles* t : {&l.gate_tiles, &l.up_tiles, &l.down_tiles}) ReadTiles(*t);
  }

  void SparsePass() {
    const int64_t set = pass_++ % kKeptSets;
    for (int64_t li = 0; li < g_layers; ++li) {
      const SparseFfnLayouts& joint = layers_[li].joint;
      const std::vector<int32_t>& k = kept_[li * kKeptSets + set];
      UnitReads units;
      units.base = reinterpret_cast<const uint8_t*>(joint.rows.words.data());
      units.unit_bytes = 4 * joint.rows.unit_stride;
      units.stride = units.unit_bytes;
      if (mode_ >= 5) {  // each unit at the end of its own slot of whole 4 KB pages (a copy)
        const int64_t slot = (units.unit_bytes + 4095) / 4096 * 4096;
        if (padded_.size() < static_cast<size_t>(g_layers)) padded_.resize(static_cast<size_t>(g_layers));
        if (padded_[li].empty()) padded_[li].assign(static_cast<size_t>(slot * g_inter), 1);
        units.base = padded_[li].data() + slot - units.unit_bytes;
        units.stride = slot;
      }
      units.end_line = units.unit_bytes / 64;
      units.streams = mode_ == 2 ? 1 : 4;
      units.ordered = mode_ == 3 || mode_ == 5;
      units.ahead = mode_ == 2 ? 4 : 1;
      const int64_t n = static_cast<int64_t>(k.size());
      const auto read = [&] {
        Pool().ParallelFor(n, [&](int64_t k0, int64_t k1) { sink_ += ReadUnits(units, k.data() + k0, k1 - k0); });
      };
      if (mode_ == 1 || mode_ == 4 || mode_ == 7) {
        const int64_t rows_lines = 4 * (joint.rows.row_stride << joint.rows.unit_shift) / 64;
        units.end_line = mode_ == 4 ? units.unit_bytes / 64 : rows_lines;
        read();
        units.first_line = rows_lines;
        units.end_line = units.unit_bytes / 64;
      }
      read();
      const SparseColumnsLayout& down = joint.down;
      groups_.clear();
      for (int32_t j : k)
        if (groups_.empty() || groups_.back() != j / down.group)
          groups_.push_back(static_cast<int32_t>(j / down.group));
      const int64_t row = down.out_padded;
      Pool().ParallelFor(static_cast<int64_t>(groups_.size()), [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          ReadSerial(reinterpret_cast<const uint8_t*>(down.scales.data() + groups_[i] * row), 2 * row);
          if (!down.zeros.empty()) ReadSerial(down.zeros.data() + groups_[i] * row, row);
        }
      });
    }
  }
  uint64_t sink() const { return sink_; }

 private:
  static uint64_t Line(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  // Every line of a matrix's tiles as the decode kernel reads them: four tiles at once (one
  // from each quarter), group by group, each group's code lines with its steps and zero bytes.
  void ReadTiles(const LowBitTiles& t) {
    const int64_t per = (t.tiles + 3) / 4, groups = t.groups(), group_bytes = t.group_code_bytes();
    const auto* steps = reinterpret_cast<const uint8_t*>(t.scales.data());
    const uint8_t* zeros = t.zeros.data();
    Pool().ParallelFor(per, [&](int64_t p0, int64_t p1) {
      uint64_t acc = 0;
      for (int64_t p = p0; p < p1; ++p) {
        int64_t tile[4];
        int k = 0;
        for (int s = 0; s < 4; ++s)
          if (s * per + p < t.tiles) tile[k++] = s * per + p;
        for (int64_t g = 0; g < groups; ++g)
          for (int i = 0; i < k; ++i) {
            const uint8_t* codes = t.codes.data() + tile[i] * t.tile_code_bytes() + g * group_bytes;
            for (int64_t o = 0; o < group_bytes; o += 64) acc += Line(codes + o);
            const int64_t meta = tile[i] * groups + g;  // 16 steps (32 bytes) and 16 zero bytes a group
            if (steps != nullptr && meta % 2 == 0) acc += Line(steps + 32 * meta);
            if (zeros != nullptr && meta % 4 == 0) acc += Line(zeros + 16 * meta);
          }
      }
      sink_ += acc;
    });
  }
  void ReadSerial(const uint8_t* p, size_t bytes) {
    uint64_t acc = 0;
    for (size_t o = 0; o < bytes; o += 64) acc += Line(p + o);
    sink_ += acc;
  }
  struct UnitReads {
    const uint8_t* base = nullptr;
    int64_t unit_bytes = 0, first_line = 0, end_line = 0;  // lines [first, end) of each unit
    int64_t stride = 0;                                    // bytes from unit j to unit j + 1
    int streams = 4;
    bool ordered = false;  // stream s at step p reads unit p·streams + s, else s·len + p (quarters)
    int64_t ahead = 1;     // its unit this many steps on is fetched along it
  };
  // The units of kept[0..n), `streams` at a time a line of each in turn.
  static uint64_t ReadUnits(const UnitReads& u, const int32_t* kept, int64_t n) {
    const int64_t len = (n + u.streams - 1) / u.streams;
    const auto at = [&](int s, int64_t p) {
      const int64_t i = u.ordered ? p * u.streams + s : s * len + p;
      return u.base + kept[std::min(n - 1, i)] * u.stride;
    };
    uint64_t acc = 0;
    for (int64_t p = 0; p < len; ++p) {
      const uint8_t* cur[4];
      const uint8_t* next[4];
      for (int s = 0; s < u.streams; ++s) {
        cur[s] = at(s, p);
        next[s] = at(s, p + u.ahead);
      }
      for (int64_t l = u.first_line; l < u.end_line; ++l)
        for (int s = 0; s < u.streams; ++s) {
          __builtin_prefetch(next[s] + 64 * l, 0, 2);
          acc += Line(cur[s] + 64 * l);
        }
    }
    return acc;
  }

  const std::vector<Layer>& layers_;
  std::vector<std::vector<int32_t>> kept_;
  int mode_;
  std::vector<int32_t> groups_;                // down's groups holding a kept neuron, this layer
  std::vector<WeightVector<uint8_t>> padded_;  // modes 5-7: the units in page-aligned slots
  int64_t pass_ = 0;
  std::atomic<uint64_t> sink_{0};
};

// Dense and sparse read passes paired as BM_FfnSpeedup pairs the kernels' passes: the counter
// `bound` (Σ dense read time / Σ sparse read time) is the most any sparse kernel over these
// layouts can gain on this machine at kept_pct, to set beside BM_FfnSpeedup's `speedup`.
void BM_FfnReadBound(benchmark::State& state) {
  ReadBoundRun run(state.range(0), static_cast<int>(state.range(1)));
  run.DensePass();  // page tables: untimed
  run.SparsePass();
  TimePairedPasses(
      state, [&] { run.DensePass(); }, [&] { run.SparsePass(); }, "bound");
  benchmark::DoNotOptimize(run.sink());
}
BENCHMARK(BM_FfnReadBound)
    ->ArgNames({"kept_pct", "mode"})
    ->ArgsProduct({{50, 30, 10}, {0, 1, 2, 3, 4, 5, 6, 7}})
    ->Unit(benchmark::kMillisecond);

// The guesser's wide product alone (out [2·inter, rank] times the rank-r vector, g_layers
// layers' weights in turn, one thread), as it ran before (F16 weights through DenseLinear)
// and runs now (integer rows with F32 steps made at load, kernels/cpu/scaled_rows.h).
// kind: 0 = F16 DenseLinear, 1 = INT8 rows, 2 = INT4 rows.
void BM_GuesserOut(benchmark::State& state) {
  const int64_t rank = state.range(0);
  const int kind = static_cast<int>(state.range(1));
  std::mt19937 rng(static_cast<uint32_t>(rank));
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<std::vector<uint16_t>> f16(g_layers);
  std::vector<std::unique_ptr<model::DenseLinear>> dense;
  std::vector<ScaledRows> rows;
  for (auto& w : f16) {
    w.resize(static_cast<size_t>(2 * g_inter * rank));
    for (auto& v : w) v = F32ToF16(normal(rng) / std::sqrt(static_cast<float>(rank)));
    model::TensorView view;
    view.name = "out";
    view.dtype = DType::kF16;
    view.shape = {2 * g_inter, rank};
    view.data = reinterpret_cast<const uint8_t*>(w.data());
    view.nbytes = w.size() * sizeof(uint16_t);
    auto linear = model::DenseLinear::Create(view, nullptr);
    if (!linear.ok()) std::abort();
    dense.push_back(std::move(*linear));
    rows.push_back(QuantizeScaledRows(w.data(), 2 * g_inter, rank, kind == 2 ? 4 : 8));
  }
  ThreadPool pool(1);
  std::vector<float> low(static_cast<size_t>(rank)), y(static_cast<size_t>(2 * g_inter));
  for (auto& v : low) v = normal(rng);
  for (auto _ : state) {
    for (int64_t l = 0; l < g_layers; ++l) {
      if (kind == 0) dense[l]->Forward(low.data(), 1, y.data(), pool);
      else ScaledRowsForward(rows[l], low.data(), 1, 0, rows[l].blocks(), y.data());
      benchmark::DoNotOptimize(y.data());
    }
  }
  state.counters["bytes_per_layer"] = static_cast<double>(kind == 0 ? dense[0]->weight_bytes() : rows[0].bytes());
}
BENCHMARK(BM_GuesserOut)
    ->ArgNames({"rank", "kind"})
    ->ArgsProduct({{32, kAutoRank}, {0, 1, 2}})
    ->Unit(benchmark::kMicrosecond);

// The gate/up kernels' instruction cost alone: 512 rows of one matrix (1.3 MB of tiles, as
// much of sparse rows: L2-resident, so no memory stall), dense tiles against the sparse
// kernel with every row or a random half kept. kernel: 0 = dense, 1 = sparse all, 2 = sparse half.
void BM_RowsInL2(benchmark::State& state) {
  constexpr int64_t kRows = 512;
  static const auto* set = [] {
    struct Set {
      OwnedMatrix m;
      LowBitTiles tiles;
      SparseRowsLayout rows;
      std::vector<int32_t> all, half;
    };
    auto* s = new Set;
    std::mt19937 rng(9);
    s->m = RandomMatrix(kRows, g_hidden, rng);
    s->tiles = TileLowBitMatrix(s->m.m);
    s->rows = MakeSparseRows(s->m.m);
    for (int32_t i = 0; i < kRows; ++i) {
      s->all.push_back(i);
      if (rng() % 2 != 0) s->half.push_back(i);
    }
    return s;
  }();
  const int kernel = static_cast<int>(state.range(0));
  const std::vector<float> x = Input(2);
  std::vector<float> y(kRows);
  Int8Activations xq;
  QuantizeInt8Blocks(x.data(), 1, g_hidden, kGroup, nullptr, xq);
  const std::vector<int32_t>& kept = kernel == 1 ? set->all : set->half;
  for (auto _ : state) {
    if (kernel == 0) LowBitInt8Rows(set->m.m, set->tiles, xq, 0, set->tiles.tiles, y.data(), kRows);
    else SparseRowsInt8(set->rows, xq, kept.data(), 0, static_cast<int64_t>(kept.size()), y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["rows_per_s"] =
      benchmark::Counter(static_cast<double>(kernel == 0 ? kRows : static_cast<int64_t>(kept.size())),
                         benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_RowsInL2)->ArgName("kernel")->Arg(0)->Arg(1)->Arg(2);

// Down's instruction cost alone: 512 outputs over the 5632 neurons (1.7 MB of tiles, as much
// of strips and metadata: L2-resident), the dense tiles against the sparse kernel on a masked
// h keeping every neuron, a random half, or one per group (what every group's epilogue costs
// beside the fewest passes). kernel: 0 = dense, 1 = sparse all, 2 = sparse half, 3 = one per group.
void BM_DownInL2(benchmark::State& state) {
  constexpr int64_t kOutputs = 512;
  static const auto* set = [] {
    struct Set {
      OwnedMatrix m;
      LowBitTiles tiles;
      SparseColumnsLayout columns;
      std::vector<float> all, half, one;
    };
    auto* s = new Set;
    std::mt19937 rng(11);
    s->m = RandomMatrix(kOutputs, g_inter, rng);
    s->tiles = TileLowBitMatrix(s->m.m);
    s->columns = MakeSparseColumns(s->m.m);
    const std::vector<float> h = Input(4);
    for (int64_t j = 0; j < g_inter; ++j) {
      s->all.push_back(h[j % g_hidden]);
      s->half.push_back(rng() % 2 != 0 ? h[j % g_hidden] : 0.f);
      s->one.push_back(j % kGroup == 0 ? 1.f : 0.f);
    }
    return s;
  }();
  const int kernel = static_cast<int>(state.range(0));
  std::vector<float> y(kOutputs);
  Int8Activations hq;
  SparseNeurons nonzero;
  QuantizeInt8Blocks((kernel == 3   ? set->one
                      : kernel == 2 ? set->half
                                    : set->all)
                         .data(),
                     1, g_inter, kGroup, nullptr, hq);
  FindNonzeroNeurons(hq, nonzero);
  for (auto _ : state) {
    if (kernel == 0) LowBitInt8Rows(set->m.m, set->tiles, hq, 0, set->tiles.tiles, y.data(), kOutputs);
    else SparseDownInt8(set->columns, hq, nonzero, 0, set->columns.blocks(), y.data());
    benchmark::DoNotOptimize(y.data());
  }
}
BENCHMARK(BM_DownInL2)->ArgName("kernel")->Arg(0)->Arg(1)->Arg(2)->Arg(3);

}  // namespace

// Enough layers that one iteration's dense tiles are twice the L3 (so neither the dense nor the
// sparse pass finds the last one's bytes there), at least 24.
int64_t LayersBeyondL3() {
  // INT4 g32 codes (half a byte), F16 steps and zero bytes (3 bytes a group) of gate, up, down
  const double dense_layer_bytes = 3.0 * static_cast<double>(g_hidden * g_inter) * (0.5 + 3.0 / kGroup);
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  const auto beyond = static_cast<int64_t>(std::ceil(2.0 * static_cast<double>(std::max(0L, l3)) / dense_layer_bytes));
  return std::max<int64_t>(24, beyond);
}
}  // namespace accullm::kernels

int main(int argc, char** argv) {
  // --down-group, --layers, --threads, --hidden, --inter (ours) out of argv before the library sees them.
  int kept_args = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--layers=", 0) == 0) {
      const int64_t n = std::atoll(arg.c_str() + 9);
      if (n < 1 || n > 1024) {
        std::fprintf(stderr, "--layers must be 1..1024, not %s\n", arg.c_str() + 9);
        return 2;
      }
      accullm::kernels::g_layers = n;
    } else if (arg.rfind("--threads=", 0) == 0) {
      const int n = std::atoi(arg.c_str() + 10);
      if (n < 1 || n > 256) {
        std::fprintf(stderr, "--threads must be 1..256, not %s\n", arg.c_str() + 10);
        return 2;
      }
      accullm::kernels::g_threads = n;
    } else if (arg.rfind("--hidden=", 0) == 0 || arg.rfind("--inter=", 0) == 0) {
      const bool hidden = arg[2] == 'h';
      const int64_t n = std::atoll(arg.c_str() + (hidden ? 9 : 8));
      if (n < 128 || n > 65536 || n % 128 != 0) {
        std::fprintf(stderr, "%s must be a multiple of 128 in 128..65536\n", arg.c_str());
        return 2;
      }
      (hidden ? accullm::kernels::g_hidden : accullm::kernels::g_inter) = n;
    } else if (arg.rfind("--down-group=", 0) == 0) {
      const int64_t g = std::atoll(arg.c_str() + 13);
      if (g != 32 && g != 64 && g != 128) {
        std::fprintf(stderr, "--down-group must be 32, 64 or 128, not %s\n", arg.c_str() + 13);
        return 2;
      }
      accullm::kernels::g_down_group = g;
    } else {
      argv[kept_args++] = argv[i];
    }
  }
  argc = kept_args;
  if (accullm::kernels::g_layers == 0) accullm::kernels::g_layers = accullm::kernels::LayersBeyondL3();
  benchmark::AddCustomContext("layers", std::to_string(accullm::kernels::g_layers));
  benchmark::AddCustomContext("threads", std::to_string(accullm::kernels::g_threads));
  benchmark::AddCustomContext(
      "shape", std::to_string(accullm::kernels::g_hidden) + " x " + std::to_string(accullm::kernels::g_inter));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
