// Progress for long commands: a redrawn bar on a terminal, plain lines otherwise (logs, CI).
#pragma once

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
  bool tty_;
  bool drawn_ = false;
};

}  // namespace accullm::cli
