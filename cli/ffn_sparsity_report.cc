#include "cli/ffn_sparsity_report.h"

namespace accullm::cli {

FfnSparsityReport SparsityOf(const std::vector<model::FfnSparsityCounts>& counts) {
  FfnSparsityReport r;
  int64_t total = 0, kept = 0, active = 0, kept_active = 0;
  auto share = [](int64_t part, int64_t whole, double none) {
    return whole > 0 ? static_cast<double>(part) / static_cast<double>(whole) : none;
  };
  for (const auto& c : counts) {
    total += c.total;
    kept += c.kept;
    active += c.active;
    kept_active += c.kept_active;
    r.layer_skipped.push_back(share(c.total - c.kept, c.total, 0));
    r.layer_recall.push_back(c.kept == c.total ? 1.0 : share(c.kept_active, c.active, 1));
  }
  r.neurons = total;
  r.skipped = share(total - kept, total, 0);
  r.recall = kept == total ? 1.0 : share(kept_active, active, 1);
  return r;
}

}  // namespace accullm::cli
