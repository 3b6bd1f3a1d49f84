#include "cli/crash_report.h"

#include <execinfo.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "absl/debugging/symbolize.h"

// ASan reports a bad access itself, with more than a stack: its handler stays.
#if defined(__SANITIZE_ADDRESS__)
#define ACCULLM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ACCULLM_ASAN 1
#endif
#endif

namespace accullm::cli {

#ifndef ACCULLM_ASAN
namespace {

constexpr int kSignals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};

// Only async-signal-safe calls below: write(2), no allocation, no stdio.
void Write(const char* s) { (void)!write(STDERR_FILENO, s, std::strlen(s)); }

void WriteHex(uintptr_t v) {
  char buf[2 + 2 * sizeof v + 1];
  char* p = buf + sizeof buf - 1;
  *p = '\0';
  do {
    *--p = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v != 0);
  *--p = 'x';
  *--p = '0';
  Write(p);
}

void OnCrash(int sig, siginfo_t* info, void*) {
  Write("*** accullm crashed: ");
  Write(sigabbrev_np(sig) != nullptr ? sigabbrev_np(sig) : "signal");
  Write(" at address ");
  WriteHex(reinterpret_cast<uintptr_t>(info->si_addr));
  Write("; stack (innermost first):\n");
  // glibc's backtrace unwinds through the tables the compiler emits (no frame pointers needed);
  // absl's Symbolize reads the binary's own symbol table (no -rdynamic needed).
  void* frames[64];
  const int n = backtrace(frames, 64);
  for (int i = 0; i < n; ++i) {
    char name[512];
    // A return address points after its call: look up the call itself.
    const uintptr_t pc = reinterpret_cast<uintptr_t>(frames[i]) - (i > 0 ? 1 : 0);
    Write("    @ ");
    WriteHex(reinterpret_cast<uintptr_t>(frames[i]));
    Write("  ");
    Write(absl::Symbolize(reinterpret_cast<void*>(pc), name, sizeof name) ? name : "(unknown)");
    Write("\n");
  }
  // Die of the same signal, as without this handler (SA_RESETHAND restored the default).
  raise(sig);
}

}  // namespace
#endif

void InstallCrashReport(const char* argv0) {
#ifdef ACCULLM_ASAN
  (void)argv0;
#else
  if (std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr) return;
  absl::InitializeSymbolizer(argv0);
  void* warm[1];
  (void)backtrace(warm, 1);  // loads the unwinder now: doing it in the handler could allocate
  static char alt_stack[64 * 1024];
  stack_t ss{};
  ss.ss_sp = alt_stack;
  ss.ss_size = sizeof alt_stack;
  sigaltstack(&ss, nullptr);
  struct sigaction sa{};
  sa.sa_sigaction = OnCrash;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  for (int sig : kSignals) sigaction(sig, &sa, nullptr);
#endif
}

}  // namespace accullm::cli
