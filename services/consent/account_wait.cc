#include "services/consent/account_wait.h"

#include <algorithm>
#include <utility>

#include "absl/time/clock.h"

namespace qsign::consent {

std::shared_ptr<AccountWait> AccountWait::Start(AccountNotifier* notifier, TaskRunner* runner,
                                                std::string_view account_id, absl::Time deadline,
                                                absl::Duration poll_interval, Look look,
                                                Done done) {
  return Begin(notifier, runner, account_id, std::nullopt, deadline, poll_interval, std::move(look),
               std::move(done));
}

std::shared_ptr<AccountWait> AccountWait::StartAfterRead(
    AccountNotifier* notifier, TaskRunner* runner, std::string_view account_id, uint64_t read_at,
    absl::Time deadline, absl::Duration poll_interval, Look look, Done done) {
  return Begin(notifier, runner, account_id, read_at, deadline, poll_interval, std::move(look),
               std::move(done));
}

std::shared_ptr<AccountWait> AccountWait::Begin(AccountNotifier* notifier, TaskRunner* runner,
                                                std::string_view account_id,
                                                std::optional<uint64_t> read_at,
                                                absl::Time deadline, absl::Duration poll_interval,
                                                Look look, Done done) {
  std::shared_ptr<AccountWait> wait(
      new AccountWait(notifier, runner, deadline, poll_interval, std::move(look), std::move(done)));
  std::weak_ptr<AccountWait> weak = wait;
  auto wake = [weak](std::shared_ptr<const AccountEvent> event) {
    if (auto w = weak.lock()) {
      const bool read = event == nullptr;
      w->Wake(read, std::move(event));
    }
  };
  {
    absl::MutexLock lock(&wait->mu_);
    // No Step runs before listener_ is set: wake-ups meanwhile only collect in woken_.
    wait->scheduled_ = true;
    // Without read_at, the first look reads: listening before it, so a change after that read
    // is never missed. With it, the first look comes with the first wake-up (Listen wakes at
    // once if the account was notified since the caller's read) or the poll interval.
    if (read_at.has_value()) {
      wait->next_look_ = absl::Now() + poll_interval;
    } else {
      wait->woken_.read = true;
    }
  }
  wait->listener_ = read_at.has_value() ? notifier->Listen(account_id, std::move(wake), *read_at)
                                        : notifier->Listen(account_id, std::move(wake));
  if (read_at.has_value()) {
    // Nothing to look at yet (no wake-up while listening began): the first Step would only arm
    // the timer, so arm it here and save the runner a hop (an AwaitRequest's first).
    absl::MutexLock lock(&wait->mu_);
    if (!wait->again_ && !wait->woken_.read && wait->woken_.events.empty()) {
      wait->scheduled_ = false;
      wait->ArmTimer(std::min(deadline, wait->next_look_));
      return wait;
    }
  }
  runner->Post([wait] { wait->Step(); });
  return wait;
}

void AccountWait::Cancel() {
  {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
  }
  Wake(/*read=*/false);
}

void AccountWait::Wake(bool read, std::shared_ptr<const AccountEvent> event) {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  if (read) woken_.read = true;
  // Events after a read-wake are kept too: the look may read before or after they committed.
  if (event != nullptr) woken_.events.push_back(std::move(event));
  if (scheduled_) {
    again_ = true;  // The Step queued or running goes round once more.
    return;
  }
  scheduled_ = true;
  runner_->Post([self = shared_from_this()] { self->Step(); });
}

void AccountWait::ArmTimer(absl::Time when) {
  if (when >= timer_at_) return;
  timer_at_ = when;
  if (timer_.has_value()) runner_->Cancel(*timer_);
  const uint64_t generation = ++timer_generation_;
  // Weak: a timer alone does not keep an abandoned wait alive.
  timer_ = runner_->PostAt(when, [weak = weak_from_this(), generation] {
    auto self = weak.lock();
    if (self == nullptr) return;
    {
      absl::MutexLock lock(&self->mu_);
      if (generation != self->timer_generation_) return;  // Replaced by an earlier one.
      self->timer_at_ = absl::InfiniteFuture();
      self->timer_.reset();
    }
    self->Wake(/*read=*/false);
  });
}

void AccountWait::Step() {
  while (true) {
    bool cancelled = false;
    AccountWake woken;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      again_ = false;
      cancelled = cancelled_;
      woken = std::move(woken_);
      woken_ = AccountWake{};
      // The safety net: a read every poll interval whatever came (or did not) meanwhile.
      if (absl::Now() >= next_look_) woken.read = true;
    }
    if (cancelled) return Finish(absl::CancelledError("the caller went away"));
    if (notifier_->closed()) return Finish(absl::UnavailableError("the server is shutting down"));
    if (woken.read || !woken.events.empty()) {
      const absl::Time looked_at = absl::Now();
      absl::StatusOr<bool> done = look_(woken);
      if (!done.ok()) return Finish(done.status());
      if (*done) return Finish(absl::OkStatus());
      if (woken.read) {
        absl::MutexLock lock(&mu_);
        next_look_ = looked_at + poll_interval_;
      }
    }
    if (absl::Now() >= deadline_) return Finish(absl::OkStatus());
    absl::MutexLock lock(&mu_);
    if (again_) continue;  // Woken while this Step ran.
    scheduled_ = false;
    ArmTimer(std::min(deadline_, next_look_));
    return;
  }
}

void AccountWait::Finish(absl::Status status) {
  std::optional<TaskRunner::Timer> timer;
  {
    absl::MutexLock lock(&mu_);
    finished_ = true;
    timer.swap(timer_);
  }
  if (timer.has_value()) runner_->Cancel(*timer);
  listener_.reset();
  std::move(done_)(std::move(status));
}

}  // namespace qsign::consent
