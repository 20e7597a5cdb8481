#include "common/task_runner.h"

#include <atomic>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/request_id.h"
#include "gtest/gtest.h"

namespace qsign {
namespace {

TEST(TaskRunnerTest, TimedTasksRunWhenDueInTimeOrderAndPostedOnesAtOnce) {
  TaskRunner runner(1);
  absl::Mutex mu;
  std::vector<int> order;
  absl::Notification last;
  const absl::Time start = absl::Now();
  std::atomic<int64_t> late_ran_after_ms{0};
  runner.PostAt(start + absl::Milliseconds(300), [&] {
    late_ran_after_ms = absl::ToInt64Milliseconds(absl::Now() - start);
    absl::MutexLock lock(&mu);
    order.push_back(3);
    last.Notify();
  });
  // Posted later but due earlier: the sleeping worker must wake for it.
  runner.PostAt(start + absl::Milliseconds(50), [&] {
    absl::MutexLock lock(&mu);
    order.push_back(2);
  });
  runner.Post([&] {
    absl::MutexLock lock(&mu);
    order.push_back(1);
  });
  ASSERT_TRUE(last.WaitForNotificationWithTimeout(absl::Seconds(5)));
  absl::MutexLock lock(&mu);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  EXPECT_GE(late_ran_after_ms, 300);
}

TEST(TaskRunnerTest, TasksNotYetDueAreDroppedUnrunAtDestruction) {
  std::atomic<bool> ran{false};
  {
    TaskRunner runner(2);
    runner.PostAt(absl::Now() + absl::Hours(1), [&] { ran = true; });
    EXPECT_EQ(runner.queued(), 1u);
  }
  EXPECT_FALSE(ran);
}

TEST(TaskRunnerTest, ATaskRunsUnderTheRequestIdItWasPostedUnder) {
  TaskRunner runner(1);
  std::string seen = "unset";
  absl::Notification ran;
  {
    request_id::ScopedRequestId scope("req-42");
    runner.Post([&] {
      seen = std::string(request_id::Current());
      ran.Notify();
    });
  }
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_EQ(seen, "req-42");
}

}  // namespace
}  // namespace qsign
