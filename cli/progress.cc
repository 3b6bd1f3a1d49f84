#include "cli/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace accullm::cli {

namespace {

// "42s", "3m07s", "1h02m".
std::string Duration(double seconds) {
  const long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof(buf), "%lds", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof(buf), "%ldm%02lds", s / 60, s % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%ldh%02ldm", s / 3600, s % 3600 / 60);
  }
  return buf;
}

}  // namespace

Progress::Progress(std::string label)
    : label_(std::move(label)), start_(std::chrono::steady_clock::now()), tty_(::isatty(STDERR_FILENO) == 1) {}

Progress::~Progress() {
  if (tty_ && drawn_) std::fprintf(stderr, "\n");
}

void Progress::Update(int64_t done, int64_t total, const std::string& what) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string timing = Duration(elapsed);
  if (done > 0 && done < total) timing += ", ~" + Duration(elapsed / done * (total - done)) + " left";
  if (tty_) {
    constexpr int kWidth = 30;
    const int filled = total > 0 ? static_cast<int>(kWidth * std::min(done, total) / total) : 0;
    std::string bar(static_cast<size_t>(filled), '#');
    bar.append(static_cast<size_t>(kWidth - filled), '.');
    std::fprintf(stderr, "\r%s [%s] %lld/%lld %-24s %-22s", label_.c_str(), bar.c_str(), static_cast<long long>(done),
                 static_cast<long long>(total), what.c_str(), timing.c_str());
    drawn_ = true;
  } else {
    std::fprintf(stderr, "%s: %lld/%lld %s (%s)\n", label_.c_str(), static_cast<long long>(done),
                 static_cast<long long>(total), what.c_str(), timing.c_str());
  }
  std::fflush(stderr);
}

}  // namespace accullm::cli
