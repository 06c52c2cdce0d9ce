// What each HTTP status from a remote write receiver does to its batch
// (remote_write.h, ActionFor; docs/prometheus.md#remote-write). The real
// receivers answering them are integration/36 and 37.
#include <gtest/gtest.h>

#include "remote_write/remote_write.h"

namespace komoku::remote_write {
namespace {

TEST(ActionForTest, EachStatusAcknowledgesRetriesOrSkips) {
  const struct {
    int status;
    Action action;
  } kCases[] = {
      {200, Action::kAck},
      {204, Action::kAck},
      {299, Action::kAck},
      // The receiver is away, busy or broken: the same batch again.
      {500, Action::kRetry},
      {502, Action::kRetry},
      {503, Action::kRetry},
      {429, Action::kRetry},
      {408, Action::kRetry},
      // Credentials or the URL are wrong: nothing is lost while they are.
      {401, Action::kRetry},
      {403, Action::kRetry},
      {407, Action::kRetry},
      {404, Action::kRetry},
      // The batch itself is refused: sending it again would be refused
      // again and hold back everything after it.
      {400, Action::kSkip},
      {409, Action::kSkip},
      {413, Action::kSkip},
      {422, Action::kSkip},
      // Nothing acknowledged: not followed, not skipped.
      {301, Action::kRetry},
      {100, Action::kRetry},
  };
  for (const auto& c : kCases) {
    EXPECT_EQ(ActionFor(c.status), c.action) << "HTTP " << c.status;
  }
}

}  // namespace
}  // namespace komoku::remote_write
