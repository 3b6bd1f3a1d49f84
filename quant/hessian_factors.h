// Factorisations of calibration Hessians: GPTQ's inverse factor and the Cholesky factor that
// input-mismatch correction solves with. At TinyLlama's MLP width (5632) each is ~10^11
// multiply-adds, minutes in the textbook loops, so the work is spread over the thread pool
// (rows of a step, or columns of the inverse, are independent) and each thread runs four
// rows' (or columns') sums side by side: one sum's chain of dependent subtractions leaves the
// core idle most of the time. Every entry is still summed in the textbook loop's order, so
// the factors — and the packs — are bit-identical to the references kept beside them, at any
// thread count.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/thread_pool.h"

namespace accullm::quant {

// Cholesky factorisation A = L Lᵀ of a symmetric [n, n] matrix, in place (L in the lower
// triangle, zeros above); false when A is not positive definite. pool null: one thread.
bool CholeskyLower(std::vector<double>& a, int64_t n, ThreadPool* pool = nullptr);
bool CholeskyLowerReference(std::vector<double>& a, int64_t n);

// GPTQ's U: the upper Cholesky factor of H⁻¹ (H⁻¹ = Uᵀ U), for a dampened Hessian h [n, n].
absl::StatusOr<std::vector<double>> InverseHessianUpperFactor(std::vector<double> h, int64_t n,
                                                              ThreadPool* pool = nullptr);
absl::StatusOr<std::vector<double>> InverseHessianUpperFactorReference(std::vector<double> h, int64_t n);

}  // namespace accullm::quant
