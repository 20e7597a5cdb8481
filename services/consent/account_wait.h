// One wait on an account that holds no thread while it waits (an open WatchRequests stream, an
// AwaitRequest, an AwaitAuthorization): its `look` runs on a TaskRunner after each notification
// of the account (with what woke it: events this process committed, or "read") and every poll
// interval (a read), until it answers true, fails, the deadline passes, the waiter is cancelled
// (the caller went away) or the notifier closes (server shutdown).
#ifndef QSIGN_SERVICES_CONSENT_ACCOUNT_WAIT_H_
#define QSIGN_SERVICES_CONSENT_ACCOUNT_WAIT_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/task_runner.h"
#include "services/consent/notifier.h"

namespace qsign::consent {

class AccountWait : public std::enable_shared_from_this<AccountWait> {
 public:
  // True: done (the wait ends OK). An error ends the wait with it. `wake.read`: read the
  // database (the first look unless Start was given `read_at`, each poll, any wake-up without
  // an event); otherwise `wake.events` say everything that happened since the last look.
  using Look = absl::AnyInvocable<absl::StatusOr<bool>(const AccountWake& wake)>;
  // Once: OK (look answered true, or `deadline` passed), look's error, CANCELLED (Cancel) or
  // UNAVAILABLE (the notifier closed).
  using Done = absl::AnyInvocable<void(absl::Status) &&>;

  // Starts at once: the first look, a read, is posted. `look` and `done` run on `runner`, one
  // at a time, never after `done`. `notifier` and `runner` must outlive every step posted.
  static std::shared_ptr<AccountWait> Start(AccountNotifier* notifier, TaskRunner* runner,
                                            std::string_view account_id, absl::Time deadline,
                                            absl::Duration poll_interval, Look look, Done done);
  // The caller read the database just now, after notifier->Version(account_id) answered
  // `read_at`: the first look comes with the first wake-up (a read if the account was notified
  // since `read_at`), or at the poll interval.
  static std::shared_ptr<AccountWait> StartAfterRead(AccountNotifier* notifier, TaskRunner* runner,
                                                     std::string_view account_id, uint64_t read_at,
                                                     absl::Time deadline,
                                                     absl::Duration poll_interval, Look look,
                                                     Done done);

  // The caller went away: ends the wait with CANCELLED (unless it ended before).
  void Cancel();

 private:
  AccountWait(AccountNotifier* notifier, TaskRunner* runner, absl::Time deadline,
              absl::Duration poll_interval, Look look, Done done)
      : notifier_(notifier),
        runner_(runner),
        deadline_(deadline),
        poll_interval_(poll_interval),
        look_(std::move(look)),
        done_(std::move(done)) {}

  static std::shared_ptr<AccountWait> Begin(AccountNotifier* notifier, TaskRunner* runner,
                                            std::string_view account_id,
                                            std::optional<uint64_t> read_at, absl::Time deadline,
                                            absl::Duration poll_interval, Look look, Done done);
  // Posts a Step unless one is posted or running (which then goes round once more). `read`: a
  // wake-up without an event; `event`: one with.
  void Wake(bool read, std::shared_ptr<const AccountEvent> event = nullptr);
  void Step();
  // Posts a timer for `when` unless an earlier one is pending.
  void ArmTimer(absl::Time when) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Finish(absl::Status status);

  AccountNotifier* const notifier_;  // Not owned.
  TaskRunner* const runner_;         // Not owned.
  const absl::Time deadline_;
  const absl::Duration poll_interval_;
  Look look_;                                            // Used by the one running Step only.
  Done done_;                                            // Likewise.
  std::unique_ptr<AccountNotifier::Listener> listener_;  // Set once by Start.

  absl::Mutex mu_;
  bool scheduled_ ABSL_GUARDED_BY(mu_) = false;  // A Step is posted or running.
  bool again_ ABSL_GUARDED_BY(mu_) = false;      // Woken while scheduled_.
  AccountWake woken_ ABSL_GUARDED_BY(mu_);       // Since the last look.
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time next_look_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time timer_at_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  uint64_t timer_generation_ ABSL_GUARDED_BY(mu_) = 0;
  // The pending timer, cancelled when replaced by an earlier one or when the wait ends: a wait
  // answered before its poll leaves nothing in the runner to wake it.
  std::optional<TaskRunner::Timer> timer_ ABSL_GUARDED_BY(mu_);
};

// What the caller holds while a wait starts and runs: the checks before an AccountWait (on the
// runner) may still be going on when the caller goes away.
class WaitHandle {
 public:
  // Ends the wait with CANCELLED, or keeps it from starting.
  void Cancel() {
    std::shared_ptr<AccountWait> wait;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      wait = wait_;
    }
    if (wait) wait->Cancel();
  }
  bool cancelled() const {
    absl::MutexLock lock(&mu_);
    return cancelled_;
  }
  // The wait started for this handle (cancelled at once when the handle was).
  void Attach(std::shared_ptr<AccountWait> wait) {
    bool cancelled;
    {
      absl::MutexLock lock(&mu_);
      wait_ = wait;
      cancelled = cancelled_;
    }
    if (cancelled) wait->Cancel();
  }

 private:
  mutable absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<AccountWait> wait_ ABSL_GUARDED_BY(mu_);
};

}  // namespace qsign::consent

#endif  // QSIGN_SERVICES_CONSENT_ACCOUNT_WAIT_H_
