// Progress for long commands: a redrawn bar on a terminal, plain lines otherwise (logs, CI),
// with the time spent and, once a step is done, an estimate of the time left (the mean time
// per step so far times the steps left).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace accullm::cli {

class Progress {
 public:
  explicit Progress(std::string label);
  ~Progress();
  void Update(int64_t done, int64_t total, const std::string& what);

 private:
  std::string label_;
  std::chrono::steady_clock::time_point start_;
  bool tty_;
  bool drawn_ = false;
};

}  // namespace accullm::cli
