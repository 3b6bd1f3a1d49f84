#include "quant/pack_staging.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "model/pack/manifest.h"

namespace accullm::quant {

namespace fs = std::filesystem;

namespace {

// fsync of one file or directory: its data (or entries) on disk before anything points at it.
absl::Status Sync(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
  if (fd < 0) return absl::DataLossError(absl::StrCat("cannot open ", path, " to sync it: ", std::strerror(errno)));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return absl::DataLossError(absl::StrCat("fsync ", path, ": ", std::strerror(err)));
  return absl::OkStatus();
}

std::string StagingPrefix(const std::string& name) { return absl::StrCat(".", name, ".partial-"); }

}  // namespace

PackStaging::PackStaging(std::string out, std::string parent, std::string name)
    : out_(std::move(out)), parent_(std::move(parent)), name_(std::move(name)) {
  staging_ = (fs::path(parent_) / absl::StrCat(StagingPrefix(name_), ::getpid())).string();
}

PackStaging::~PackStaging() {
  if (created_ && !published_) {
    std::error_code ec;
    fs::remove_all(staging_, ec);
  }
}

absl::StatusOr<std::unique_ptr<PackStaging>> PackStaging::Prepare(const std::string& out,
                                                                  const std::string& source_dir) {
  std::error_code ec;
  fs::path path = fs::absolute(out, ec).lexically_normal();
  if (ec) return absl::InvalidArgumentError(absl::StrCat("--out ", out, ": ", ec.message()));
  if (path.filename().empty()) path = path.parent_path();  // "dir/"
  if (path.filename().empty() || path == path.root_path())
    return absl::InvalidArgumentError(absl::StrCat("--out ", out, ": not a directory name a pack can be written to"));
  if (fs::exists(path, ec)) {
    if (fs::equivalent(path, source_dir, ec))
      return absl::InvalidArgumentError("the pack directory must differ from the source model directory");
    if (!fs::is_directory(path, ec))
      return absl::AlreadyExistsError(absl::StrCat("--out ", out, " exists and is not a directory"));
    const bool empty = fs::is_empty(path, ec);
    if (!empty && !fs::exists(path / model::kPackManifestFile, ec))
      return absl::AlreadyExistsError(absl::StrCat(
          "--out ", out, " exists and is not an AccuLLM pack (no ", model::kPackManifestFile,
          "; perhaps one left half-written by an interrupted older version): remove it or choose another --out. An "
          "existing pack is replaced only once the new one is complete"));
  }
  return std::unique_ptr<PackStaging>(
      new PackStaging(path.string(), path.parent_path().string(), path.filename().string()));
}

absl::Status PackStaging::Create() {
  std::error_code ec;
  fs::create_directories(parent_, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create ", parent_, ": ", ec.message()));
  // What interrupted writers of the same --out left: their process is gone (a pid reused
  // since by an unrelated process keeps its directory until the next write after that).
  const std::string prefix = StagingPrefix(name_);
  for (const fs::directory_entry& e : fs::directory_iterator(parent_, ec)) {
    const std::string entry = e.path().filename().string();
    if (!absl::StartsWith(entry, prefix)) continue;
    const std::string rest = entry.substr(prefix.size());  // "<pid>" or "<pid>-old"
    int pid = 0;
    if (!absl::SimpleAtoi(rest.substr(0, rest.find('-')), &pid) || pid <= 0) continue;
    if (pid == ::getpid() || (::kill(pid, 0) != 0 && errno == ESRCH)) {
      std::error_code rm;
      fs::remove_all(e.path(), rm);
      if (rm) return absl::PermissionDeniedError(absl::StrCat("cannot remove ", e.path().string(), ": ", rm.message()));
    }
  }
  if (!fs::create_directory(staging_, ec) || ec)
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", staging_, ": ", ec ? ec.message() : std::string("it exists")));
  created_ = true;
  return absl::OkStatus();
}

absl::Status PackStaging::Publish() {
  if (!created_ || published_) return absl::FailedPreconditionError("nothing staged to publish");
  std::error_code ec;
  for (const fs::directory_entry& e : fs::recursive_directory_iterator(staging_, ec)) {
    if (e.is_regular_file()) RETURN_IF_ERROR(Sync(e.path().string(), false));
    if (e.is_directory()) RETURN_IF_ERROR(Sync(e.path().string(), true));
  }
  if (ec) return absl::DataLossError(absl::StrCat("cannot list ", staging_, ": ", ec.message()));
  RETURN_IF_ERROR(Sync(staging_, true));
  if (fs::exists(out_, ec)) {
    // The old pack and the new one trade places in one step; the old one is then removed.
    if (::renameat2(AT_FDCWD, staging_.c_str(), AT_FDCWD, out_.c_str(), RENAME_EXCHANGE) != 0) {
      if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
        return absl::PermissionDeniedError(
            absl::StrCat("cannot move ", staging_, " to ", out_, ": ", std::strerror(errno)));
      // A filesystem without the exchange: `out` is absent between the two renames.
      const std::string old = (fs::path(parent_) / absl::StrCat(StagingPrefix(name_), ::getpid(), "-old")).string();
      fs::rename(out_, old, ec);
      if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot move ", out_, " aside: ", ec.message()));
      fs::rename(staging_, out_, ec);
      if (ec)
        return absl::PermissionDeniedError(absl::StrCat("cannot move ", staging_, " to ", out_, ": ", ec.message()));
      published_ = true;
      fs::remove_all(old, ec);
    } else {
      published_ = true;
      fs::remove_all(staging_, ec);  // now the old pack
    }
  } else {
    fs::rename(staging_, out_, ec);
    if (ec)
      return absl::PermissionDeniedError(absl::StrCat("cannot move ", staging_, " to ", out_, ": ", ec.message()));
    published_ = true;
  }
  return Sync(parent_, true);
}

}  // namespace accullm::quant
