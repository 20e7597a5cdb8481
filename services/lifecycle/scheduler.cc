#include "services/lifecycle/scheduler.h"

#include <utility>

#include "common/log.h"
#include "services/lifecycle/ca/ca_setup.h"

namespace qsign::lifecycle {

Scheduler::Scheduler(Lifecycle* lifecycle, std::unique_ptr<Mailer> mailer,
                     std::string_view component, absl::Duration period)
    : lifecycle_(lifecycle), mailer_(std::move(mailer)), component_(component), period_(period) {}

Scheduler::~Scheduler() { Stop(); }

void Scheduler::Start() {
  thread_ = std::thread([this] {
    do {
      RunOnce();
    } while (!stop_.WaitForNotificationWithTimeout(period_));
  });
}

void Scheduler::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

void Scheduler::RunOnce() {
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
