// Host entry points of the CUDA kernels (plain C++ header, so .cc files can call them).
#pragma once

#include <cstdint>
#include <string>

namespace accullm::kernels::cuda {

// False with a reason when no GPU can be used (tests skip with that message).
bool DeviceAvailable(std::string* why);

// y[o] = sum_i x[i] * W[o, i] for F16 W [out, in]; copies in and out (a correctness path,
// not the serving path). False with `error` set on any CUDA failure.
bool F16GemvHost(const uint16_t* w_f16, const float* x, float* y, int in, int out, std::string* error);

}  // namespace accullm::kernels::cuda
