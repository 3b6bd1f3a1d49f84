#include "model/sparse_ffn.h"

#include <algorithm>
#include <vector>

#include "common/grow_buffer.h"
#include "kernels/cpu/int8_activations.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/low_bit_tiles.h"
#include "kernels/cpu/silu_mul_mask.h"
#include "kernels/cpu/sparse_ffn_kernels.h"

namespace accullm::model {

namespace {

// The sparse kernels batch 16 kept rows: ranges of the kept list handed to threads are whole
// batches, so only the list's last batch runs padding rows.
constexpr int64_t kKeptUnit = 16;

// The calling thread's buffers (the pool's workers write into them through pointers); grown,
// never shrunk, so a warm decode step allocates nothing.
struct SparseFfnScratch {
  std::vector<float> gate, silu, up;
  std::vector<int32_t> kept;
  kernels::SparseNeurons nonzero;
};
SparseFfnScratch& Scratch() {
  thread_local SparseFfnScratch scratch;
  return scratch;
}

const LowBitLinear* Int8LowBit(const LinearOp& op) {
  const auto* l = dynamic_cast<const LowBitLinear*>(&op);
  return l != nullptr && l->uses_int8_activations() ? l : nullptr;
}

}  // namespace

double SparseFfnMaxKeptShare() { return kernels::ActiveIsa() == kernels::Isa::kAvx2 ? 1.0 : 0.75; }

std::optional<SparseFfnLinears> SparseFfnLinearsOf(const LinearOp& gate, const LinearOp& up, const LinearOp& down) {
  SparseFfnLinears l{Int8LowBit(gate), Int8LowBit(up), Int8LowBit(down)};
  if (l.gate == nullptr || l.up == nullptr || l.down == nullptr || !l.gate->SharesInt8Input(*l.up) ||
      up.out_features() != gate.out_features() || down.in_features() != gate.out_features())
    return std::nullopt;
  l.joint = l.gate->SparseFfnJoinable(*l.up, *l.down);
  l.up_down_joint = l.up->SparseUpDownJoinable(*l.down);
  return l;
}

namespace {

// Up's rows when the gate ran dense (CATS, the product rule): with down's strips, or alone.
const kernels::SparseRowsLayout& UpRowsAfterDenseGate(const SparseFfnLinears& l, ThreadPool& pool) {
  return l.up_down_joint ? l.up->SparseUpDown(*l.down, pool).rows : l.up->SparseRows(pool);
}

// Down's strips: in the joint layout of the kept list's kind, else down's own columns.
const kernels::SparseColumnsLayout& DownColumns(const SparseFfnLinears& l, bool predicted, ThreadPool& pool) {
  if (predicted && l.joint) return l.gate->SparseFfn(*l.up, *l.down, pool).down;
  if (!predicted && l.up_down_joint) return l.up->SparseUpDown(*l.down, pool).down;
  return l.down->SparseColumns(pool);
}

}  // namespace

void PrepareSparseFfn(const SparseFfnLinears& l, bool predicted, ThreadPool& pool) {
  if (!predicted) {
    UpRowsAfterDenseGate(l, pool);
  } else if (!l.joint) {
    l.gate->SparseRows(pool);
    l.up->SparseRows(pool);
  }
  DownColumns(l, predicted, pool);
  l.gate->Tiles(pool);
  l.up->Tiles(pool);  // a token that keeps most rows runs them
  l.down->Tiles(pool);
}

int64_t SparseGateUp(const SparseFfnLinears& l, const float* x, const int32_t* kept, int64_t kept_count,
                     float threshold, float product_threshold, float* h, ThreadPool& pool) {
  const int64_t inter = l.gate->out_features();
  SparseFfnScratch& scratch = Scratch();
  float* g = GrowBuffer(scratch.gate, inter);
  float* u = GrowBuffer(scratch.up, inter);
  kernels::Int8Activations& xq = LowBitLinear::InputScratch();
  l.gate->QuantizeInput(x, 1, xq);
  std::fill(h, h + inter, 0.0f);
  if (kept == nullptr) {
    // CATS: the gate over its tiles, then the survivors of the threshold.
    const kernels::LowBitTiles& gate_tiles = l.gate->Tiles(pool);
    float* silu = GrowBuffer(scratch.silu, inter);
    pool.ParallelFor(gate_tiles.tiles, [&](int64_t t0, int64_t t1) {
      l.gate->ForwardTiles(gate_tiles, xq, x, 1, t0, t1, g);
      const int64_t o0 = t0 * kernels::kTileRows, o1 = std::min(inter, t1 * kernels::kTileRows);
      kernels::SiluOfRange(g + o0, o1 - o0, silu + o0);  // elementwise: any split, the same bits
    });
    int32_t* survivors = GrowBuffer(scratch.kept, inter);
    kept_count = kernels::KeptAboveThreshold(silu, inter, threshold, survivors);
    kept = survivors;
    if (static_cast<double>(kept_count) > SparseFfnMaxKeptShare() * static_cast<double>(inter)) {
      const kernels::LowBitTiles& up_tiles = l.up->Tiles(pool);
      pool.ParallelFor(up_tiles.tiles,
                       [&](int64_t t0, int64_t t1) { l.up->ForwardTiles(up_tiles, xq, x, 1, t0, t1, u); });
      // The kept entries from the dense up: the same products as the sparse rows would give.
      for (int64_t k = 0; k < kept_count; ++k) h[kept[k]] = silu[kept[k]] * u[kept[k]];
      return kernels::ZeroSmallProducts(kept, kept_count, product_threshold, h);
    }
    // Up alone, from its own rows (beside down's strips where they join): CATS runs without a
    // predictor, so no pair layout exists (SparsePairRowsInt8 with gate == nullptr would read
    // the up half of one).
    const kernels::SparseRowsLayout& up_rows = UpRowsAfterDenseGate(l, pool);
    pool.ParallelFor((kept_count + kKeptUnit - 1) / kKeptUnit, [&](int64_t c0, int64_t c1) {
      const int64_t k0 = c0 * kKeptUnit, k1 = std::min(kept_count, c1 * kKeptUnit);
      l.up->ForwardSparseRows(up_rows, xq, x, kept, k0, k1, u);
      for (int64_t k = k0; k < k1; ++k) h[kept[k]] = silu[kept[k]] * u[k];
    });
    return kernels::ZeroSmallProducts(kept, kept_count, product_threshold, h);
  }
  // A predictor's list: gate and up over the kept rows alone.
  if (static_cast<double>(kept_count) > SparseFfnMaxKeptShare() * static_cast<double>(inter)) {
    const kernels::LowBitTiles& gate_tiles = l.gate->Tiles(pool);
    const kernels::LowBitTiles& up_tiles = l.up->Tiles(pool);
    pool.ParallelFor(gate_tiles.tiles, [&](int64_t t0, int64_t t1) {
      l.gate->ForwardTiles(gate_tiles, xq, x, 1, t0, t1, g);
      l.up->ForwardTiles(up_tiles, xq, x, 1, t0, t1, u);
    });
    for (int64_t k = 0; k < kept_count; ++k) h[kept[k]] = kernels::SiluOf(g[kept[k]]) * u[kept[k]];
    return kept_count;
  }
  if (l.joint) {  // a kept neuron's gate and up rows read as one run (its down strip after them)
    const kernels::SparseRowsLayout& pair = l.gate->SparseFfn(*l.up, *l.down, pool).rows;
    pool.ParallelFor((kept_count + kKeptUnit - 1) / kKeptUnit, [&](int64_t c0, int64_t c1) {
      const int64_t k0 = c0 * kKeptUnit, k1 = std::min(kept_count, c1 * kKeptUnit);
      l.gate->ForwardSparsePairRows(pair, *l.up, xq, x, kept, k0, k1, g, u);
      kernels::SiluMulScatter(g, u, kept, k0, k1, h);
    });
    return kept_count;
  }
  const kernels::SparseRowsLayout& gate_rows = l.gate->SparseRows(pool);
  const kernels::SparseRowsLayout& up_rows = l.up->SparseRows(pool);
  pool.ParallelFor((kept_count + kKeptUnit - 1) / kKeptUnit, [&](int64_t c0, int64_t c1) {
    const int64_t k0 = c0 * kKeptUnit, k1 = std::min(kept_count, c1 * kKeptUnit);
    l.gate->ForwardSparseRows(gate_rows, xq, x, kept, k0, k1, g);
    l.up->ForwardSparseRows(up_rows, xq, x, kept, k0, k1, u);
    kernels::SiluMulScatter(g, u, kept, k0, k1, h);
  });
  return kept_count;
}

void SparseDown(const SparseFfnLinears& l, bool predicted, const float* h, float* y, ThreadPool& pool) {
  const LowBitLinear& down = *l.down;
  kernels::Int8Activations& hq = LowBitLinear::InputScratch();
  down.QuantizeInput(h, 1, hq);
  kernels::SparseNeurons& nonzero = Scratch().nonzero;
  kernels::FindNonzeroNeurons(hq, nonzero);
  if (static_cast<double>(nonzero.neurons.size()) > SparseFfnMaxKeptShare() * static_cast<double>(down.in_features())) {
    const kernels::LowBitTiles& tiles = down.Tiles(pool);
    pool.ParallelFor(tiles.tiles, [&](int64_t t0, int64_t t1) { down.ForwardTiles(tiles, hq, h, 1, t0, t1, y); });
    return;
  }
  const kernels::SparseColumnsLayout& columns = DownColumns(l, predicted, pool);
  // Few ranges of blocks: every call walks the whole nonzero list (gathering eight
  // strips and their codes per pass), so many small ranges repeat that walk for few bytes
  // each (with the pool's default 2-block chunks, down took 13% of a 2-thread decode profile
  // on the TinyLlama geometry, 9.6% with one range per thread).
  // One range per thread: each range reads its part of every kept strip, so more ranges
  // read shorter runs (at two threads and 2048 outputs, 512 bytes a strip instead of 256).
  // Two ranges per thread (a descheduled thread's half could move to the other) measured
  // slower on this 2-core shared VM: TinyLlama-geometry guesser pack, text decode at two
  // threads, 9 alternated rounds: one range per thread faster in 7, by ~4% (docs/benchmarks.md).
  const int64_t ranges = std::max(1, pool.size());
  pool.ParallelFor(
      columns.blocks(), [&](int64_t b0, int64_t b1) { down.ForwardSparseColumns(columns, hq, nonzero, h, b0, b1, y); },
      /*min_chunk=*/std::max<int64_t>(4, (columns.blocks() + ranges - 1) / ranges));
}

}  // namespace accullm::model
