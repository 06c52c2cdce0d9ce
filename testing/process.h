// Child processes for the integration tests and the benchmarks that run the
// real service (integration/harness, bench/real_service): one launcher, so
// both start, stop and reap a process the same way. Every process is
// stopped by its PID, never by name.
//
// Not thread-safe: a Process belongs to the thread that made it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace komoku::process {

// A child process with stdout and stderr appended to `log_path` and stdin
// read from `stdin_path` (/dev/null when empty). It starts with the default
// disposition of SIGTERM, SIGINT and SIGPIPE and no signal blocked, whatever
// its parent has. Stopped (Stop()) when it goes away. The constructor throws
// std::runtime_error when the program cannot be started.
//
// The first Process started also makes SIGTERM, SIGINT and SIGHUP, where the
// program left them at their default action, stop the live children first:
// each gets SIGTERM, then the signal ends the program as it would have.
// Otherwise a benchmark or a test binary stopped by Ctrl-C or a timeout
// would leave its Mosquitto, komoku or Prometheus running (no destructor
// runs when a signal ends a program).
class Process {
 public:
  Process(std::vector<std::string> argv, std::string log_path, const std::string& stdin_path = "");
  ~Process();  // Stop()
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // -1 once the process has been reaped.
  pid_t pid() const { return pid_; }
  // Reaps the process if it has ended.
  bool Running();
  // SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status
  // (128+signal when killed by a signal), -1 if it was never reaped.
  int Stop(std::chrono::milliseconds grace = std::chrono::milliseconds(10000));
  // SIGKILL at once (a crash), then reap.
  void Kill();
  // Waits for the process to exit by itself; its exit status or -1 on timeout.
  int Wait(std::chrono::milliseconds timeout);
  // What it wrote to its log so far.
  std::string Output() const;
  const std::string& log_path() const { return log_path_; }
  // User plus system CPU time the process has used so far (/proc/PID/stat),
  // 0 when it cannot be read. A second view beside wall time: it does not
  // count time spent waiting for a core, but cache and SMT contention still
  // move it (up to 70 % between runs of one binary at load 10-14).
  double CpuSeconds() const;

 private:
  int Reap(bool block);

  pid_t pid_ = -1;
  int status_ = -1;
  std::string log_path_;
};

// A port on 127.0.0.1 that was free a moment ago (another process may take
// it before the caller binds it: retry). Throws std::runtime_error when
// none can be found.
int FreeLoopbackPort();

}  // namespace komoku::process
