// The launcher's children do not outlive a program stopped by a signal.
#include "testing/process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

namespace komoku::process {
namespace {

// Whether `pid` is gone: no such process, or a zombie (its parent, the
// program that was stopped, can no longer reap it; init will).
bool Gone(pid_t pid) {
  if (kill(pid, 0) != 0) return true;
  FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (f == nullptr) return true;
  int ignored = 0;
  char state = '?';
  const int n = std::fscanf(f, "%d %*s %c", &ignored, &state);
  std::fclose(f);
  return n == 2 && state == 'Z';
}

TEST(ProcessTest, AStopSignalStopsTheChildrenFirst) {
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    const pid_t program = fork();
    ASSERT_GE(program, 0);
    if (program == 0) {
      // The program: one child that would sleep a minute, its PID told to
      // the test, then it waits for the signal.
      close(fds[0]);
      const std::string log = "/tmp/komoku-process-test-" + std::to_string(getpid()) + ".log";
      Process child({"/bin/sleep", "60"}, log);
      const pid_t pid = child.pid();
      (void)!write(fds[1], &pid, sizeof(pid));
      close(fds[1]);
      std::this_thread::sleep_for(std::chrono::seconds(30));
      _exit(3);
    }
    close(fds[1]);
    pid_t child = 0;
    ASSERT_EQ(read(fds[0], &child, sizeof(child)), static_cast<ssize_t>(sizeof(child)));
    close(fds[0]);
    ASSERT_GT(child, 0);
    EXPECT_FALSE(Gone(child));
    ASSERT_EQ(kill(program, sig), 0);
    int status = 0;
    ASSERT_EQ(waitpid(program, &status, 0), program);
    // The program still ends by the signal, as without the handler.
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == sig) << "status " << status;
    bool gone = false;
    for (int i = 0; i < 250 && !gone; ++i) {
      gone = Gone(child);
      if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_TRUE(gone) << "signal " << sig << ": the child " << child << " outlived the program";
    if (!gone) kill(child, SIGKILL);
    std::filesystem::remove("/tmp/komoku-process-test-" + std::to_string(program) + ".log");
  }
}

}  // namespace
}  // namespace komoku::process
