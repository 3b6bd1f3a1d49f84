// What this binary is: version, commit, the kernel level in use and the optional parts built
// (for --version and the accullm_build_info metric).
#pragma once

#include <map>
#include <string>

namespace accullm {

std::string VersionString();  // "accullm 0.1.0 (commit abc123def456)"
// version, commit, isa (the level kernels dispatch on now), mpi, nccl, cuda ("true"/"false").
std::map<std::string, std::string> BuildInfoLabels();

}  // namespace accullm
