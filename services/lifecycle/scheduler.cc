#include "services/lifecycle/scheduler.h"

#include <algorithm>
#include <utility>

#include "common/log.h"
#include "services/lifecycle/ca/ca_setup.h"

namespace qsign::lifecycle {

Scheduler::Scheduler(Lifecycle* lifecycle, std::unique_ptr<Mailer> mailer,
                     std::string_view component, absl::Duration period, absl::Duration sweep_period)
    : lifecycle_(lifecycle),
      mailer_(std::move(mailer)),
      component_(component),
      period_(period),
      sweep_period_(std::min(sweep_period, period)) {}

Scheduler::~Scheduler() { Stop(); }

void Scheduler::Start() {
  thread_ = std::thread([this] {
    absl::Time next_full = absl::InfinitePast();
    do {
      if (absl::Now() >= next_full) {
        next_full = absl::Now() + period_;
        RunOnce();
      } else {
        Sweep();
      }
    } while (!stop_.WaitForNotificationWithTimeout(sweep_period_));
  });
}

void Scheduler::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

void Scheduler::Sweep() {
  auto swept = lifecycle_->Sweep();
  if (!swept.ok()) {
    Log(LogLevel::kError, component_, "sweep failed", {{"status", swept.status().ToString()}});
    return;
  }
  if (swept->jobs_resumed + swept->keys_destroyed + swept->keys_expired + swept->failures > 0) {
    Log(swept->failures > 0 ? LogLevel::kWarning : LogLevel::kInfo, component_, "swept",
        {{"jobs_resumed", std::to_string(swept->jobs_resumed)},
         {"jobs_finished", std::to_string(swept->jobs_finished)},
         {"keys_destroyed", std::to_string(swept->keys_destroyed)},
         {"keys_expired", std::to_string(swept->keys_expired)},
         {"failures", std::to_string(swept->failures)}});
  }
}

void Scheduler::RunOnce() {
  Sweep();
  for (std::string_view ca : {kRootCa, kQualifiedCa, kDeviceCa}) {
    if (auto crl = lifecycle_->CurrentCrl(ca); !crl.ok()) {
      Log(LogLevel::kError, component_, "scheduled CRL failed",
          {{"ca", ca}, {"status", crl.status().ToString()}});
    }
  }
  if (auto n = lifecycle_->QueueRenewalReminders(); !n.ok()) {
    Log(LogLevel::kError, component_, "renewal reminders failed",
        {{"status", n.status().ToString()}});
  }
  if (mailer_ == nullptr) return;
  if (auto run = lifecycle_->DeliverOutbox(*mailer_, 500); !run.ok()) {
    Log(LogLevel::kError, component_, "outbox delivery failed",
        {{"status", run.status().ToString()}});
  } else if (run->sent + run->failed > 0) {
    Log(LogLevel::kInfo, component_, "outbox delivered",
        {{"sent", std::to_string(run->sent)}, {"failed", std::to_string(run->failed)}});
  }
}

}  // namespace qsign::lifecycle
