// A service's e-mail outbox, as every service with one keeps it: the message row (queued in the
// transaction of the change it reports) and the delivery loop that hands each one to a Mailer.
#ifndef QSIGN_COMMON_MAIL_OUTBOX_H_
#define QSIGN_COMMON_MAIL_OUTBOX_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/mail/mailer.h"

namespace qsign {

struct OutboxMessage {
  int64_t id = 0;
  std::string kind;  // "contract", "renewal_reminder", "registration_link", ...
  std::string recipient;
  std::string subject;
  std::string body;
  absl::Time created_at;
  // Delivery: failed attempts so far and the last error (empty when none failed).
  int attempts = 0;
  std::string last_error;
};

// One delivery step: which message was tried and how it went.
struct OutboxAttempt {
  int64_t id = 0;
  absl::Status result;
};

struct OutboxRun {
  int sent = 0;
  int failed = 0;
};

// The store's step: hands the oldest unsent message after `after_id` to `send`, records the
// outcome, and answers it; nullopt when none is left.
using DeliverNextFn = absl::FunctionRef<absl::StatusOr<std::optional<OutboxAttempt>>(
    int64_t after_id, absl::FunctionRef<absl::Status(const OutboxMessage&)> send)>;

// Sends up to `max` messages through `mailer`, oldest first. A failed send is logged under
// `component` and stays queued for the next run; a store error stops the run.
absl::StatusOr<OutboxRun> DeliverOutbox(Mailer& mailer, int max, std::string_view component,
                                        DeliverNextFn next);

}  // namespace qsign

#endif  // QSIGN_COMMON_MAIL_OUTBOX_H_
