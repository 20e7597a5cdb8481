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

TEST(TaskRunnerTest, ACancelledTimedTaskNeverRunsAndLeavesNothingQueued) {
  TaskRunner runner(2);
  std::atomic<bool> cancelled_ran{false};
  absl::Notification other_ran;
  const TaskRunner::Timer timer =
      runner.PostAt(absl::Now() + absl::Milliseconds(100), [&] { cancelled_ran = true; });
  const TaskRunner::Timer other =
      runner.PostAt(absl::Now() + absl::Milliseconds(200), [&] { other_ran.Notify(); });
  EXPECT_EQ(runner.queued(), 2u);
  EXPECT_TRUE(runner.Cancel(timer));
  EXPECT_FALSE(runner.Cancel(timer));  // Dropped before.
  EXPECT_EQ(runner.queued(), 1u);
  ASSERT_TRUE(other_ran.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_FALSE(runner.Cancel(other));  // Ran.
  EXPECT_EQ(runner.queued(), 0u);
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(cancelled_ran);
}

TEST(TaskRunnerTest, ATimedTaskRunsOnTimeWhileTheOtherWorkersAreBusyOrTakePostedTasks) {
  TaskRunner runner(2);
  const absl::Time start = absl::Now();
  absl::Notification release, busy_started, quick_ran, timed_ran;
  std::atomic<int64_t> timed_after_ms{0};
  runner.PostAt(start + absl::Milliseconds(300), [&] {
    timed_after_ms = absl::ToInt64Milliseconds(absl::Now() - start);
    timed_ran.Notify();
  });
  // One worker stays busy; the other (asleep until the timed task) takes the next post and
  // still wakes for the timed one.
  runner.Post([&] {
    busy_started.Notify();
    release.WaitForNotificationWithTimeout(absl::Seconds(5));
  });
  ASSERT_TRUE(busy_started.WaitForNotificationWithTimeout(absl::Seconds(5)));
  runner.Post([&] { quick_ran.Notify(); });
  EXPECT_TRUE(quick_ran.WaitForNotificationWithTimeout(absl::Milliseconds(200)));
  ASSERT_TRUE(timed_ran.WaitForNotificationWithTimeout(absl::Seconds(3)));
  EXPECT_GE(timed_after_ms, 300);
  EXPECT_LT(timed_after_ms, 2000);
  release.Notify();
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
