#include "model/linear_group.h"

#include <algorithm>
#include <vector>

#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/int8_activations.h"
#include "kernels/cpu/low_bit_tiles.h"
#include "model/low_bit_linear.h"

namespace accullm::model {

namespace {

// The INT8 low-bit linear behind `op`, or null when `op` is not one.
const LowBitLinear* Int8LowBit(const LinearOp* op) {
  const auto* l = dynamic_cast<const LowBitLinear*>(op);
  return l != nullptr && l->uses_int8_activations() ? l : nullptr;
}

}  // namespace

void ForwardSameInput(std::initializer_list<LinearOutput> linears, const float* x, int64_t n, ThreadPool& pool) {
  constexpr size_t kMax = 4;
  const LowBitLinear* low_bit[kMax] = {};
  const kernels::LowBitTiles* tiles[kMax] = {};
  int64_t first_tile[kMax + 1] = {};
  bool shared = linears.size() <= kMax && linears.size() > 0;
  size_t i = 0;
  for (const LinearOutput& l : linears) {
    if (!shared) break;
    low_bit[i] = Int8LowBit(l.op);
    shared = low_bit[i] != nullptr && low_bit[i]->SharesInt8Input(*low_bit[0]);
    ++i;
  }
  if (!shared) {
    for (const LinearOutput& l : linears) l.op->Forward(x, n, l.y, pool);
    return;
  }
  const size_t count = linears.size();
  for (size_t j = 0; j < count; ++j) {
    tiles[j] = &low_bit[j]->Tiles(pool);
    first_tile[j + 1] = first_tile[j] + tiles[j]->tiles;
  }
  kernels::Int8Activations& xq = LowBitLinear::InputScratch();
  low_bit[0]->QuantizeInput(x, n, xq);
  const LinearOutput* outs = linears.begin();
  // One index space over every linear's tiles; a chunk may straddle two linears.
  pool.ParallelFor(first_tile[count], [&](int64_t b, int64_t e) {
    for (size_t j = 0; j < count; ++j) {
      const int64_t t0 = std::max(b, first_tile[j]) - first_tile[j];
      const int64_t t1 = std::min(e, first_tile[j + 1]) - first_tile[j];
      if (t0 < t1) low_bit[j]->ForwardTiles(*tiles[j], xq, x, n, t0, t1, outs[j].y);
    }
  });
}

void ForwardGateUpSilu(const LinearOp& gate, const LinearOp& up, const float* x, int64_t n, float* gate_out,
                       float* up_scratch, ThreadPool& pool) {
  const int64_t inter = gate.out_features();
  const LowBitLinear* g = Int8LowBit(&gate);
  const LowBitLinear* u = Int8LowBit(&up);
  if (g == nullptr || u == nullptr || !g->SharesInt8Input(*u) || up.out_features() != inter) {
    gate.Forward(x, n, gate_out, pool);
    up.Forward(x, n, up_scratch, pool);
    kernels::SiluMul(gate_out, up_scratch, n * inter, gate_out);
    return;
  }
  const kernels::LowBitTiles& gate_tiles = g->Tiles(pool);
  const kernels::LowBitTiles& up_tiles = u->Tiles(pool);
  kernels::Int8Activations& xq = LowBitLinear::InputScratch();
  g->QuantizeInput(x, n, xq);
  pool.ParallelFor(gate_tiles.tiles, [&](int64_t t0, int64_t t1) {
    g->ForwardTiles(gate_tiles, xq, x, n, t0, t1, gate_out);
    u->ForwardTiles(up_tiles, xq, x, n, t0, t1, up_scratch);
    // SiLU·up is elementwise, so applying it to these columns alone gives the same bits.
    const int64_t o0 = t0 * kernels::kTileRows, o1 = std::min(inter, t1 * kernels::kTileRows);
    for (int64_t r = 0; r < n; ++r)
      kernels::SiluMul(gate_out + r * inter + o0, up_scratch + r * inter + o0, o1 - o0, gate_out + r * inter + o0);
  });
}

}  // namespace accullm::model
