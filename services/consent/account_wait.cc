#include "services/consent/account_wait.h"

#include <algorithm>
#include <utility>

#include "absl/time/clock.h"

namespace qsign::consent {

std::shared_ptr<AccountWait> AccountWait::Start(AccountNotifier* notifier, TaskRunner* runner,
                                                std::string_view account_id, absl::Time deadline,
                                                absl::Duration poll_interval, Look look,
                                                Done done) {
  std::shared_ptr<AccountWait> wait(
      new AccountWait(notifier, runner, deadline, poll_interval, std::move(look), std::move(done)));
  // Subscribed before the first look, so a change after that look is never missed.
  std::weak_ptr<AccountWait> weak = wait;
  wait->listener_ = notifier->Listen(account_id, [weak] {
    if (auto w = weak.lock()) w->Wake(/*dirty=*/true);
  });
  wait->Wake(/*dirty=*/true);
  return wait;
}

void AccountWait::Cancel() {
  {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
  }
  Wake(/*dirty=*/false);
}

void AccountWait::Wake(bool dirty) {
  absl::MutexLock lock(&mu_);
  if (dirty) dirty_ = true;
  if (finished_) return;
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
  const uint64_t generation = ++timer_generation_;
  // Weak: a timer alone does not keep an abandoned wait alive.
  runner_->PostAt(when, [weak = weak_from_this(), generation] {
    auto self = weak.lock();
    if (self == nullptr) return;
    {
      absl::MutexLock lock(&self->mu_);
      if (generation != self->timer_generation_) return;  // Replaced by an earlier one.
      self->timer_at_ = absl::InfiniteFuture();
    }
    self->Wake(/*dirty=*/false);
  });
}

void AccountWait::Step() {
  while (true) {
    bool cancelled = false;
    bool look_now = false;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      again_ = false;
      cancelled = cancelled_;
      look_now = dirty_ || absl::Now() >= next_look_;
      dirty_ = false;
    }
    if (cancelled) return Finish(absl::CancelledError("the caller went away"));
    if (notifier_->closed()) return Finish(absl::UnavailableError("the server is shutting down"));
    if (look_now) {
      const absl::Time looked_at = absl::Now();
      absl::StatusOr<bool> done = look_();
      if (!done.ok()) return Finish(done.status());
      if (*done) return Finish(absl::OkStatus());
      absl::MutexLock lock(&mu_);
      next_look_ = looked_at + poll_interval_;
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
  {
    absl::MutexLock lock(&mu_);
    finished_ = true;
  }
  listener_.reset();
  std::move(done_)(std::move(status));
}

}  // namespace qsign::consent
