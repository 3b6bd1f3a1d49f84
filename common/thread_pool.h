// A fixed pool of worker threads for data-parallel loops (matmuls, attention heads).
//
// A decode step calls ParallelFor ~110 times (five per layer: q/k/v, attention, o, gate/up,
// down), each a few tens of microseconds of work: waking a sleeping worker through the
// kernel costs about as much as the work itself on a virtual machine. So workers spin on the job counter for a
// while after each job (kSpin) and only then sleep (a futex wait), as llama.cpp's threads do
// between the ops of a token; an idle server's workers are asleep after that spin. The
// spinning threads yield now and then, so on an oversubscribed machine they hand the core to
// whoever has work instead of burning their time slice.
// Work is claimed in chunks by an atomic counter, so a worker that is descheduled does not
// hold the others back; which thread runs a chunk never changes a result (every output row is
// computed by one chunk, in one fixed order).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/functional/function_ref.h"

namespace accullm {

class ThreadPool {
 public:
  // num_threads <= 0 picks std::thread::hardware_concurrency().
  explicit ThreadPool(int num_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end) over disjoint chunks covering [0, n); the calling thread takes part.
  // Chunks are at least `min_chunk` long so tiny loops do not pay for synchronisation.
  // One ParallelFor at a time per pool (callers from several threads are serialised); fn must
  // not call ParallelFor on the same pool. fn is borrowed (absl::FunctionRef), not copied: a
  // std::function would heap-allocate every capturing lambda bigger than two pointers, i.e.
  // ~110 times per decode step.
  void ParallelFor(int64_t n, absl::FunctionRef<void(int64_t, int64_t)> fn, int64_t min_chunk = 1);

  // How long a worker polls for the next job before it sleeps.
  static constexpr std::chrono::microseconds kSpin{200};

 private:
  void WorkerLoop();
  // Claims and runs chunks of the current job until none is left.
  void RunChunks();

  std::vector<std::thread> workers_;
  std::mutex call_mu_;  // one ParallelFor at a time per pool

  // The job. `generation_` is a sequence lock: odd while the caller rewrites the job, even once
  // it is ready; a worker announces itself in `active_` before reading the job and the caller
  // waits for `active_ == 0` before rewriting it (both seq_cst, so one of them sees the other).
  alignas(64) std::atomic<uint64_t> generation_{0};
  alignas(64) std::atomic<int> active_{0};
  alignas(64) std::atomic<int64_t> next_chunk_{0};
  alignas(64) std::atomic<int64_t> chunks_done_{0};
  alignas(64) const absl::FunctionRef<void(int64_t, int64_t)>* job_ = nullptr;  // the caller's argument
  int64_t job_n_ = 0;
  int64_t job_chunk_ = 0;
  int64_t num_chunks_ = 0;
  std::atomic<bool> stop_{false};
};

}  // namespace accullm
