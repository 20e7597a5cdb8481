// Lifecycle's background work from Start() until Stop(): every `sweep_period` (default 10 s) the
// sweeper (Lifecycle::Sweep: unfinished revoke-all jobs resumed, keys left by revocations
// destroyed, expired credentials ended); every `period` (10 minutes) also a fresh CRL of each CA
// before the last goes stale, renewal reminders queued, and (with a mailer) the outbox delivered.
#ifndef QSIGN_SERVICES_LIFECYCLE_SCHEDULER_H_
#define QSIGN_SERVICES_LIFECYCLE_SCHEDULER_H_

#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "services/lifecycle/lifecycle.h"
#include "common/mail/mailer.h"

namespace qsign::lifecycle {

class Scheduler {
 public:
  // `lifecycle` is not owned and must outlive this. `mailer`: nullptr sends no mail.
  // `component` names the log lines.
  Scheduler(Lifecycle* lifecycle, std::unique_ptr<Mailer> mailer, std::string_view component,
            absl::Duration period = absl::Minutes(10),
            absl::Duration sweep_period = absl::Seconds(10));
  ~Scheduler();  // Stop().
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Runs once now, then every period, on its own thread. Once.
  void Start();
  // Waits for a run in progress to finish. Idempotent.
  void Stop();
  // One full run (sweep included), on the caller's thread; failures are logged.
  void RunOnce();
  // The sweep alone, on the caller's thread; failures are logged.
  void Sweep();

 private:
  Lifecycle* const lifecycle_;  // Not owned.
  const std::unique_ptr<Mailer> mailer_;
  const std::string component_;
  const absl::Duration period_;
  const absl::Duration sweep_period_;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace qsign::lifecycle

#endif  // QSIGN_SERVICES_LIFECYCLE_SCHEDULER_H_
