#include "cli/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace accullm::cli {

Progress::Progress(std::string label) : label_(std::move(label)), tty_(::isatty(STDERR_FILENO) == 1) {}

Progress::~Progress() {
  if (tty_ && drawn_) std::fprintf(stderr, "\n");
}

void Progress::Update(int64_t done, int64_t total, const std::string& what) {
  if (tty_) {
    constexpr int kWidth = 30;
    const int filled = total > 0 ? static_cast<int>(kWidth * std::min(done, total) / total) : 0;
    std::string bar(static_cast<size_t>(filled), '#');
    bar.append(static_cast<size_t>(kWidth - filled), '.');
    std::fprintf(stderr, "\r%s [%s] %lld/%lld %-40s", label_.c_str(), bar.c_str(), static_cast<long long>(done),
                 static_cast<long long>(total), what.c_str());
    drawn_ = true;
  } else {
    std::fprintf(stderr, "%s: %lld/%lld %s\n", label_.c_str(), static_cast<long long>(done),
                 static_cast<long long>(total), what.c_str());
  }
  std::fflush(stderr);
}

}  // namespace accullm::cli
