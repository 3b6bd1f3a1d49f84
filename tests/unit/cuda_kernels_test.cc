// The CUDA GEMV against the CPU scalar reference. Skips with the reason when the build has no
// CUDA or the machine has no GPU.
#include <random>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/linear_kernels.h"
#ifdef ACCULLM_HAVE_CUDA
#include "kernels/cuda/f16_gemv.h"
#endif

namespace accullm::kernels::cuda {
namespace {

TEST(CudaKernelsTest, F16GemvMatchesCpuReference) {
#ifndef ACCULLM_HAVE_CUDA
  GTEST_SKIP() << "built without CUDA (nvcc not found at configure time)";
#else
  std::string why;
  if (!cuda::DeviceAvailable(&why)) GTEST_SKIP() << "no GPU: " << why;
  const int in = 1000, out = 300;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<uint16_t> w(in * out);
  std::vector<float> x(in), y(out), ref(out);
  for (auto& v : w) v = F32ToF16(normal(rng));
  for (auto& v : x) v = normal(rng);
  std::string error;
  ASSERT_TRUE(cuda::F16GemvHost(w.data(), x.data(), y.data(), in, out, &error)) << error;
  kernels::LinearRowsScalar(DType::kF16, w.data(), in, x.data(), 1, 0, out, ref.data(), out);
  for (int o = 0; o < out; ++o) EXPECT_NEAR(y[o], ref[o], 1e-3f) << o;
#endif
}

}  // namespace
}  // namespace accullm::kernels::cuda
