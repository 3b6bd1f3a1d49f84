// A crash report on stderr: the signal, the faulting address and a symbolized stack, printed
// from the signal handler before the process dies as it would have (core dump included).
#pragma once

namespace accullm::cli {

// Installs handlers for SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT (on an alternate stack, so
// a stack overflow is reported too). argv0 locates the binary's symbols. Not under mpirun:
// Open MPI prints its own stack for these signals and warns when it finds another handler;
// nor in an ASan build, whose own reports say more.
void InstallCrashReport(const char* argv0);

}  // namespace accullm::cli
