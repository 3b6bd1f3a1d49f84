#include "quant/hessian_factors.h"

#include <algorithm>
#include <cmath>
#include <functional>

namespace accullm::quant {

namespace {

// Below this many multiply-adds a step runs on the calling thread (a pool round trip costs
// more than it saves).
constexpr int64_t kParallelWork = int64_t{1} << 15;

void Run(ThreadPool* pool, int64_t n, int64_t work, const std::function<void(int64_t, int64_t)>& fn) {
  if (pool == nullptr || work < kParallelWork) {
    fn(0, n);
  } else {
    pool->ParallelFor(n, fn);
  }
}

}  // namespace

bool CholeskyLowerReference(std::vector<double>& a, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    double d = a[j * n + j];
    for (int64_t k = 0; k < j; ++k) d -= a[j * n + k] * a[j * n + k];
    if (!(d > 0)) return false;
    d = std::sqrt(d);
    a[j * n + j] = d;
    for (int64_t i = j + 1; i < n; ++i) {
      double s = a[i * n + j];
      for (int64_t k = 0; k < j; ++k) s -= a[i * n + k] * a[j * n + k];
      a[i * n + j] = s / d;
    }
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) a[i * n + j] = 0;
  return true;
}

bool CholeskyLower(std::vector<double>& a, int64_t n, ThreadPool* pool) {
  double* m = a.data();
  for (int64_t j = 0; j < n; ++j) {
    double* rj = m + j * n;
    double d = rj[j];
    for (int64_t k = 0; k < j; ++k) d -= rj[k] * rj[k];
    if (!(d > 0)) return false;
    d = std::sqrt(d);
    rj[j] = d;
    // Column j below the diagonal: row i needs only its own finished entries and row j's.
    const int64_t first = j + 1;
    Run(pool, n - first, (n - first) * j, [&](int64_t b0, int64_t b1) {
      int64_t i = first + b0;
      const int64_t end = first + b1;
      for (; i + 4 <= end; i += 4) {
        double *r0 = m + i * n, *r1 = r0 + n, *r2 = r1 + n, *r3 = r2 + n;
        double s0 = r0[j], s1 = r1[j], s2 = r2[j], s3 = r3[j];
        for (int64_t k = 0; k < j; ++k) {
          const double x = rj[k];
          s0 -= r0[k] * x;
          s1 -= r1[k] * x;
          s2 -= r2[k] * x;
          s3 -= r3[k] * x;
        }
        r0[j] = s0 / d;
        r1[j] = s1 / d;
        r2[j] = s2 / d;
        r3[j] = s3 / d;
      }
      for (; i < end; ++i) {
        double* r = m + i * n;
        double s = r[j];
        for (int64_t k = 0; k < j; ++k) s -= r[k] * rj[k];
        r[j] = s / d;
      }
    });
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) m[i * n + j] = 0;
  return true;
}

absl::StatusOr<std::vector<double>> InverseHessianUpperFactorReference(std::vector<double> h, int64_t n) {
  if (!CholeskyLowerReference(h, n)) return absl::FailedPreconditionError("Hessian is not positive definite");
  // H⁻¹ = L⁻ᵀ L⁻¹: invert L (lower triangular) column by column.
  std::vector<double> linv(static_cast<size_t>(n * n), 0.0);
  for (int64_t c = 0; c < n; ++c) {
    linv[c * n + c] = 1.0 / h[c * n + c];
    for (int64_t i = c + 1; i < n; ++i) {
      double s = 0;
      for (int64_t k = c; k < i; ++k) s -= h[i * n + k] * linv[k * n + c];
      linv[i * n + c] = s / h[i * n + i];
    }
  }
  std::vector<double> hinv(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      double s = 0;
      for (int64_t k = i; k < n; ++k) s += linv[k * n + i] * linv[k * n + j];
      hinv[i * n + j] = hinv[j * n + i] = s;
    }
  if (!CholeskyLowerReference(hinv, n))
    return absl::FailedPreconditionError("inverse Hessian is not positive definite");
  // Upper factor U = Lᵀ of H⁻¹'s lower factor.
  std::vector<double> u(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i; j < n; ++j) u[i * n + j] = hinv[j * n + i];
  return u;
}

absl::StatusOr<std::vector<double>> InverseHessianUpperFactor(std::vector<double> h, int64_t n, ThreadPool* pool) {
  if (!CholeskyLower(h, n, pool)) return absl::FailedPreconditionError("Hessian is not positive definite");
  const double* l = h.data();
  // L⁻¹ column by column, each column stored as a row of `lt` (lt[c][i] = L⁻¹[i][c]) so the
  // sums read memory in order; columns are independent, four run side by side.
  std::vector<double> lt(static_cast<size_t>(n * n), 0.0);
  const int64_t quads = (n + 3) / 4;
  Run(pool, quads, n * n * n / 6, [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t c = 4 * q, width = std::min<int64_t>(4, n - c);
      double* col[4];
      for (int64_t t = 0; t < width; ++t) {
        col[t] = lt.data() + (c + t) * n;
        col[t][c + t] = 1.0 / l[(c + t) * n + c + t];
      }
      // Rows inside the quad: only the columns already started, one at a time.
      for (int64_t i = c + 1; i < std::min(n, c + width); ++i) {
        const double* li = l + i * n;
        for (int64_t t = 0; t < i - c; ++t) {
          double s = 0;
          for (int64_t k = c + t; k < i; ++k) s -= li[k] * col[t][k];
          col[t][i] = s / li[i];
        }
      }
      for (int64_t i = c + width; i < n; ++i) {
        const double* li = l + i * n;
        if (width < 4) {
          for (int64_t t = 0; t < width; ++t) {
            double s = 0;
            for (int64_t k = c + t; k < i; ++k) s -= li[k] * col[t][k];
            col[t][i] = s / li[i];
          }
          continue;
        }
        // Column c + t sums k = c + t .. i - 1 in order: a three-step start, then all four.
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        s0 -= li[c] * col[0][c];
        s0 -= li[c + 1] * col[0][c + 1];
        s1 -= li[c + 1] * col[1][c + 1];
        s0 -= li[c + 2] * col[0][c + 2];
        s1 -= li[c + 2] * col[1][c + 2];
        s2 -= li[c + 2] * col[2][c + 2];
        for (int64_t k = c + 3; k < i; ++k) {
          const double x = li[k];
          s0 -= x * col[0][k];
          s1 -= x * col[1][k];
          s2 -= x * col[2][k];
          s3 -= x * col[3][k];
        }
        col[0][i] = s0 / li[i];
        col[1][i] = s1 / li[i];
        col[2][i] = s2 / li[i];
        col[3][i] = s3 / li[i];
      }
    }
  });
  // H⁻¹ = L⁻ᵀ L⁻¹: entry (i, j), j <= i, is Σ_{k >= i} L⁻¹[k][i] L⁻¹[k][j], in order of k.
  std::vector<double> hinv(static_cast<size_t>(n * n), 0.0);
  Run(pool, n, n * n * n / 6, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const double* a = lt.data() + i * n;
      int64_t j = 0;
      for (; j + 4 <= i + 1; j += 4) {
        const double *b0 = lt.data() + j * n, *b1 = b0 + n, *b2 = b1 + n, *b3 = b2 + n;
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (int64_t k = i; k < n; ++k) {
          const double x = a[k];
          s0 += x * b0[k];
          s1 += x * b1[k];
          s2 += x * b2[k];
          s3 += x * b3[k];
        }
        hinv[i * n + j] = hinv[j * n + i] = s0;
        hinv[i * n + j + 1] = hinv[(j + 1) * n + i] = s1;
        hinv[i * n + j + 2] = hinv[(j + 2) * n + i] = s2;
        hinv[i * n + j + 3] = hinv[(j + 3) * n + i] = s3;
      }
      for (; j <= i; ++j) {
        const double* b = lt.data() + j * n;
        double s = 0;
        for (int64_t k = i; k < n; ++k) s += a[k] * b[k];
        hinv[i * n + j] = hinv[j * n + i] = s;
      }
    }
  });
  if (!CholeskyLower(hinv, n, pool)) return absl::FailedPreconditionError("inverse Hessian is not positive definite");
  std::vector<double> u(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i; j < n; ++j) u[i * n + j] = hinv[j * n + i];
  return u;
}

}  // namespace accullm::quant
