// AccountWait on a real TaskRunner and AccountNotifier (no database: the looks here take the
// events they are woken with).
#include "services/consent/account_wait.h"

#include <atomic>
#include <memory>
#include <string>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/task_runner.h"
#include "gtest/gtest.h"
#include "services/consent/notifier.h"

namespace qsign::consent {
namespace {

std::shared_ptr<const AccountEvent> Decided(std::string request_id) {
  auto event = std::make_shared<AccountEvent>();
  event->kind = AccountEvent::Kind::kRequestDecided;
  event->request.request_id = std::move(request_id);
  return event;
}

// A wait answered before its poll interval (an AwaitRequest on a login decided in milliseconds)
// cancels its poll timer: the runner holds nothing for it and never wakes for it. Before, every
// such wait left a timer that woke the runner's workers a poll interval later.
TEST(AccountWaitTest, AWaitAnsweredBeforeItsPollLeavesNothingInTheRunner) {
  TaskRunner runner(4);
  AccountNotifier notifier;
  absl::Notification done;
  absl::Status result = absl::UnknownError("not done");
  auto wait = AccountWait::StartAfterRead(
      &notifier, &runner, "acc-1", notifier.Version("acc-1"), absl::Now() + absl::Seconds(30),
      /*poll_interval=*/absl::Seconds(1),
      [](const AccountWake& wake) -> absl::StatusOr<bool> {
        for (const auto& e : wake.events) {
          if (e->request.request_id == "req-1") return true;
        }
        return false;
      },
      [&](absl::Status st) {
        result = st;
        done.Notify();
      });
  // The first step has run and armed the poll timer: one timed task.
  const absl::Time until = absl::Now() + absl::Seconds(5);
  while (runner.queued() != 1 && absl::Now() < until) absl::SleepFor(absl::Milliseconds(1));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(runner.queued(), 1u);
  notifier.Notify("acc-1", Decided("req-1"));
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_TRUE(result.ok()) << result;
  EXPECT_EQ(runner.queued(), 0u);
}

// A wait that nothing answers still polls at its interval (the timer kept while it waits) and
// ends at its deadline.
TEST(AccountWaitTest, AnUnansweredWaitPollsAndEndsAtItsDeadline) {
  TaskRunner runner(2);
  AccountNotifier notifier;
  absl::Notification done;
  std::atomic<int> reads{0};
  const absl::Time start = absl::Now();
  auto wait = AccountWait::StartAfterRead(
      &notifier, &runner, "acc-2", notifier.Version("acc-2"), start + absl::Milliseconds(450),
      /*poll_interval=*/absl::Milliseconds(100),
      [&](const AccountWake& wake) -> absl::StatusOr<bool> {
        if (wake.read) ++reads;
        return false;
      },
      [&](absl::Status) { done.Notify(); });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(450));
  EXPECT_GE(reads.load(), 3);
  EXPECT_EQ(runner.queued(), 0u);
}

}  // namespace
}  // namespace qsign::consent
