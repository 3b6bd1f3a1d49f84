// Writing a pack so that a crash, a kill or a full disk never leaves a half-written pack at
// `--out`: `accullm quantize` writes everything (weights, copied files, manifest, sparsity
// thresholds, guesser) into a staging directory beside `out` (same parent: same filesystem),
// fsyncs every file and the directory, and only then moves it to `out` in one rename. An
// existing pack at `out` is swapped out atomically (renameat2 RENAME_EXCHANGE; where the
// filesystem cannot, two renames, between which `out` is briefly absent) and then removed. So
// `out` holds, at every instant, the old pack intact, the new one complete, or nothing.
//
// `out` may be absent, an empty directory, or a pack (it has accullm.json); anything else (a
// file, a directory with other contents, e.g. a half-written pack from a version that wrote in
// place) is refused before any work starts, so that no unrelated directory is ever replaced.
// The staging directory is `.<name>.partial-<pid>` in `out`'s parent: removed when the write
// fails, and left behind only by a kill or crash, in which case the next write to the same
// `out` removes it (it never loads as `out`: it is not `out`).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace accullm::quant {

class PackStaging {
 public:
  // Checks `out` (see above; and that it is not `source_dir`). Creates nothing.
  static absl::StatusOr<std::unique_ptr<PackStaging>> Prepare(const std::string& out, const std::string& source_dir);
  ~PackStaging();  // not published: removes the staging directory
  PackStaging(const PackStaging&) = delete;
  PackStaging& operator=(const PackStaging&) = delete;

  // Removes the staging directories interrupted writers of `out` left (their process is
  // gone), then creates this one. Write the pack into dir().
  absl::Status Create();
  const std::string& dir() const { return staging_; }
  // fsyncs every file under dir() and dir() itself, moves it to `out` (replacing the old pack,
  // which is then removed), and fsyncs the parent directory.
  absl::Status Publish();

 private:
  PackStaging(std::string out, std::string parent, std::string name);
  std::string out_, parent_, name_, staging_;
  bool created_ = false, published_ = false;
};

}  // namespace accullm::quant
