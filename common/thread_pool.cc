#include "common/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace accullm {

namespace {

// Tells the core this is a spin loop (less power, and the sibling hyperthread runs faster).
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) num_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(2);  // stays even: wakes every worker, which then sees stop_
  generation_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::RunChunks() {
  const auto* fn = job_;
  const int64_t n = job_n_, chunk = job_chunk_, chunks = num_chunks_;
  for (;;) {
    const int64_t c = next_chunk_.fetch_add(1, std::memory_order_relaxed);
    if (c >= chunks) return;
    (*fn)(c * chunk, std::min(n, (c + 1) * chunk));
    chunks_done_.fetch_add(1, std::memory_order_release);
  }
}

void ThreadPool::ParallelFor(int64_t n, absl::FunctionRef<void(int64_t, int64_t)> fn, int64_t min_chunk) {
  if (n <= 0) return;
  min_chunk = std::max<int64_t>(1, min_chunk);
  const int64_t threads = size();
  if (threads == 1 || n <= min_chunk) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> call_lock(call_mu_);
  // A few chunks per thread balance uneven work (and a descheduled thread) without much overhead.
  const int64_t chunk = std::max(min_chunk, (n + threads * 4 - 1) / (threads * 4));
  const int64_t num_chunks = (n + chunk - 1) / chunk;

  // Odd: the job is being rewritten. Wait until no worker is still reading the previous one.
  const uint64_t writing = generation_.fetch_add(1) + 1;
  while (active_.load() != 0) CpuRelax();
  job_ = &fn;
  job_n_ = n;
  job_chunk_ = chunk;
  num_chunks_ = num_chunks;
  next_chunk_.store(0, std::memory_order_relaxed);
  chunks_done_.store(0, std::memory_order_relaxed);
  generation_.store(writing + 1);  // even: ready
  generation_.notify_all();

  RunChunks();  // the caller works too
  // A worker still running a chunk: poll, and give the core away now and then, since on a
  // busy machine that worker may be waiting for this very core.
  for (int polls = 1; chunks_done_.load(std::memory_order_acquire) != num_chunks; ++polls) {
    if (polls % 64 == 0) std::this_thread::yield();
    else CpuRelax();
  }
}

void ThreadPool::WorkerLoop() {
  uint64_t seen = generation_.load();
  seen &= ~uint64_t{1};
  for (;;) {
    // Spin for the next ready job, then sleep until the generation moves.
    auto spin_until = std::chrono::steady_clock::now() + kSpin;
    uint64_t g;
    for (int polls = 0;; ++polls) {
      g = generation_.load(std::memory_order_acquire);
      if (g != seen && (g & 1) == 0) break;
      if (stop_.load(std::memory_order_relaxed)) return;
      if (polls % 64 == 63) {
        if (std::chrono::steady_clock::now() > spin_until) {
          generation_.wait(g);  // returns once the value differs from g
          spin_until = std::chrono::steady_clock::now() + kSpin;
        } else {
          std::this_thread::yield();  // a no-op on an idle core; lets others run on a busy one
        }
      } else {
        CpuRelax();
      }
    }
    if (stop_.load()) return;
    active_.fetch_add(1);
    if (generation_.load() == g) RunChunks();  // else a newer job is being written: look again
    active_.fetch_sub(1);
    seen = g;
  }
}

}  // namespace accullm
