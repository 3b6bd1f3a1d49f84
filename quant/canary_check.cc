#include "quant/canary_check.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "quant/evaluation.h"

namespace accullm::quant {

absl::StatusOr<std::vector<CanaryResult>> CheckCanaries(model::Transformer& model) {
  std::vector<CanaryResult> out;
  if (!model.pack().has_value()) return out;
  const int64_t vocab = model.config().vocab_size;
  for (const model::PackCanary& c : model.pack()->canaries) {
    if (c.ids.empty() || static_cast<int64_t>(c.ids.size()) > model.config().max_position_embeddings)
      return absl::InvalidArgumentError(absl::StrCat("canary \"", c.prompt, "\" has ", c.ids.size(), " ids"));
    ASSIGN_OR_RETURN(model::TensorView t, model.tensors().Get(c.logits_tensor));
    if (t.dtype != DType::kF32 || t.shape != std::vector<int64_t>{vocab}) {
      return absl::InvalidArgumentError(absl::StrCat(c.logits_tensor, " must be F32 [", vocab, "]"));
    }
    ASSIGN_OR_RETURN(std::vector<float> want, model::TensorToF32(t, vocab));
    std::vector<float> got(static_cast<size_t>(vocab));
    const int64_t n = static_cast<int64_t>(c.ids.size());
    model::KvCache cache = model.NewCache(n);
    RETURN_IF_ERROR(model.Forward(c.ids.data(), n, cache, got.data()));
    std::vector<double> lp_want, lp_got;
    LogSoftmax(want.data(), vocab, lp_want);
    LogSoftmax(got.data(), vocab, lp_got);
    CanaryResult r;
    r.prompt = c.prompt;
    r.finite = AllFinite(want.data(), vocab) && AllFinite(got.data(), vocab);
    r.kl = r.finite ? KlDivergence(lp_want, lp_got) : std::numeric_limits<double>::infinity();
    r.top1_match = r.finite && std::max_element(want.begin(), want.end()) - want.begin() ==
                                   std::max_element(got.begin(), got.end()) - got.begin();
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace accullm::quant
