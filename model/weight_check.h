// NaN/Inf scan of stored weights. A checkpoint or pack holding them is refused at load,
// naming the tensor: served, it answers NaN logits, NaN logprobs and a canary check that
// cannot tell (see quant/canary_check.h). One linear pass over the F32/F16/BF16 tensors
// (including the F16 steps and outlier weights of INT-code linears; the codes themselves are
// integers and cannot be non-finite), bound by memory bandwidth: 13-19 GB/s on one core of
// the development machine, so a 14 GB F16 model costs about a second from the page cache,
// less over the thread pool; from disk it reads the pages the first forward pass would.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "common/dtype.h"
#include "common/thread_pool.h"
#include "model/safetensors.h"

namespace accullm::model {

// Index of the first NaN or ±Inf among `n` stored elements of type `t`, or -1 when there is
// none (always -1 for integer types).
int64_t FirstNonFinite(DType t, const uint8_t* data, int64_t n);

// OK, or InvalidArgument naming the file, the tensor, what it holds (NaN, Inf, -Inf) and where.
absl::Status CheckFinite(const TensorView& t);

// CheckFinite over the tensors of `store` that `select` picks (every tensor when `select` is
// empty), split into chunks over `pool` (may be null). Of several bad tensors, the first by
// name is reported, so the message does not depend on the thread count.
absl::Status CheckFinite(const TensorStore& store, const std::function<bool(const std::string&)>& select,
                         ThreadPool* pool);

}  // namespace accullm::model
