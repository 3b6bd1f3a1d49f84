// CUDA GEMV over F16 weights with FP32 accumulation: y[o] = sum_i x[i] * W[o, i].
// The GPU counterpart of kernels/cpu/linear_kernels (decode is a GEMV per layer). One warp
// per output row; lanes stride over the row so global loads coalesce.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "kernels/cuda/f16_gemv.h"

namespace accullm::kernels::cuda {

namespace {

__global__ void F16GemvKernel(const __half* __restrict__ w, const float* __restrict__ x, float* __restrict__ y, int in,
                              int out) {
  const int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (warp >= out) return;
  const __half* row = w + static_cast<size_t>(warp) * in;
  float acc = 0.f;
  for (int i = lane; i < in; i += 32) acc += __half2float(row[i]) * x[i];
  for (int offset = 16; offset > 0; offset /= 2) acc += __shfl_down_sync(0xffffffffu, acc, offset);
  if (lane == 0) y[warp] = acc;
}

std::string Describe(cudaError_t e) { return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e); }

}  // namespace

bool DeviceAvailable(std::string* why) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    if (why) *why = "no usable CUDA device (" + Describe(e) + ")";
    return false;
  }
  if (count == 0) {
    if (why) *why = "no CUDA device present";
    return false;
  }
  return true;
}

bool F16GemvHost(const uint16_t* w_f16, const float* x, float* y, int in, int out, std::string* error) {
  __half* dw = nullptr;
  float *dx = nullptr, *dy = nullptr;
  const size_t wbytes = static_cast<size_t>(in) * out * sizeof(__half);
  cudaError_t e = cudaMalloc(&dw, wbytes);
  if (e == cudaSuccess) e = cudaMalloc(&dx, in * sizeof(float));
  if (e == cudaSuccess) e = cudaMalloc(&dy, out * sizeof(float));
  if (e == cudaSuccess) e = cudaMemcpy(dw, w_f16, wbytes, cudaMemcpyHostToDevice);
  if (e == cudaSuccess) e = cudaMemcpy(dx, x, in * sizeof(float), cudaMemcpyHostToDevice);
  if (e == cudaSuccess) {
    const int threads = 256;
    const int blocks = (out * 32 + threads - 1) / threads;
    F16GemvKernel<<<blocks, threads>>>(dw, dx, dy, in, out);
    e = cudaGetLastError();
  }
  if (e == cudaSuccess) e = cudaMemcpy(y, dy, out * sizeof(float), cudaMemcpyDeviceToHost);
  if (e != cudaSuccess && error) *error = Describe(e);
  cudaFree(dw);
  cudaFree(dx);
  cudaFree(dy);
  return e == cudaSuccess;
}

}  // namespace accullm::kernels::cuda
