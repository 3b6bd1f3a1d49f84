// The one layout of a cached K or V row (one position, one layer, every KV head), shared by the
// write path (the transformer encodes each new row), the storage (its bytes per row: the serve
// budget, the stage plan and the stage pools all follow KvRowFormat::row_bytes) and every
// attention kernel (which reads the stored values directly, converting inside its blocked
// loop: no dequantized copy of the cache).
//
// A row is num_kv_heads head records back to back; head h's record starts at h · head_bytes():
//   f32   head_dim floats
//   f16   head_dim IEEE binary16 (round-to-nearest-even from FP32)
//   bf16  head_dim bfloat16 (round-to-nearest-even from FP32)
//   int8  one float scale, then head_dim int8 codes: value = code · scale (the scale starts at
//         absmax/127 of the head's row and is refitted by least squares: KvInt8Rounding). A
//         scale per (position, head), never per block: a block still filling during decode
//         would otherwise be re-quantized, and a block's bytes must depend only on its own
//         tokens and their prefix (prefix reuse, preemption and rollback stay exact).
// Every record is a multiple of 2 bytes and the int8 scale is 4-byte aligned when head_dim is
// a multiple of 4 (every real model); readers still load it with memcpy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace accullm::kernels {

// Stable values: the wire (pipeline/wire.cc) maps them explicitly.
enum class KvDType : uint8_t { kF32 = 0, kF16 = 1, kBF16 = 2, kInt8 = 3 };

const char* KvDTypeName(KvDType t);  // the --kv-cache-dtype spelling: "f32", "f16", "bf16", "int8"
absl::StatusOr<KvDType> ParseKvDType(std::string_view name);
std::string KvDTypeNames();  // "f32, f16, bf16, int8"

// How INT8 codes and the scale are chosen from a head's FP32 row (the first three keep the
// scale absmax/127):
// - kNearest: round each value to the nearest code (ties to even).
// - kErrorFeedback: left to right along the head dimension, each value carries the previous
//   one's rounding error (the errors' sum along the row telescopes to the last one).
// - kStochastic: round up with probability equal to the fraction, the draw a counter-based
//   hash of (layer, K or V, position, head, dim): deterministic, independent of threads and
//   batches, and a function of the row's own position only.
// - kRefitScale: nearest, then the scale refitted by least squares to the codes (Σ x·c / Σ c²),
//   the codes rounded again at that scale and the scale refitted once more: each step can only
//   lower the row's squared error, and the error ends orthogonal to the stored row, so a query
//   aligned with a key sees no systematic shrink or stretch of its score.
// kKvInt8Rounding is what `int8` stores: refit, the one that beat nearest (KL −21% against an
// f32 cache on the fixture; docs/accuracy.md, "KV cache dtype", measured all four).
enum class KvInt8Rounding : uint8_t { kNearest = 0, kErrorFeedback = 1, kStochastic = 2, kRefitScale = 3 };
inline constexpr KvInt8Rounding kKvInt8Rounding = KvInt8Rounding::kRefitScale;
const char* KvInt8RoundingName(KvInt8Rounding r);  // "nearest", "feedback", "stochastic", "refit"
absl::StatusOr<KvInt8Rounding> ParseKvInt8Rounding(std::string_view name);

struct KvRowFormat {
  KvDType dtype = KvDType::kF32;
  int64_t num_kv_heads = 0, head_dim = 0;
  KvInt8Rounding int8_rounding = kKvInt8Rounding;  // the write path's; readers ignore it

  int64_t kv_dim() const { return num_kv_heads * head_dim; }
  // Bytes of one head's record and of one row (every head).
  int64_t head_bytes() const;
  int64_t row_bytes() const { return num_kv_heads * head_bytes(); }
};

// Bytes of one head's record of `head_dim` values in `t` (KvRowFormat::head_bytes).
int64_t KvHeadBytes(KvDType t, int64_t head_dim);

// Where a row's value comes from, for the stochastic draw's key.
struct KvRowKey {
  int64_t layer = 0, position = 0;
  int kv = 0;  // 0 for K, 1 for V
};

// Stores the FP32 row `src` (kv_dim values, head after head) as `format` at `dst`
// (row_bytes bytes). Scalar on every ISA: one row per token and layer is cheap, and the
// stored bytes must not depend on the machine.
void EncodeKvRow(const KvRowFormat& format, const float* src, const KvRowKey& key, void* dst);

// Head `head`'s values of a stored row as FP32 (exact for f32/f16/bf16; code · scale, one
// float multiply, for int8): the reference the SIMD readers match bit for bit.
void DecodeKvHeadScalar(KvDType t, const void* row, int64_t head, int64_t head_dim, float* out);

// The start of head `head`'s record in a stored row.
inline const uint8_t* KvHeadRecord(KvDType t, const void* row, int64_t head, int64_t head_dim) {
  return static_cast<const uint8_t*>(row) + head * KvHeadBytes(t, head_dim);
}

}  // namespace accullm::kernels
