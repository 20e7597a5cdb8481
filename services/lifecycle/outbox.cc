// Mail: renewal reminders queued into the outbox, and the outbox delivered.
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "services/lifecycle/lifecycle.h"
#include "services/lifecycle/lifecycle_internal.h"

namespace qsign::lifecycle {

absl::StatusOr<int> Lifecycle::QueueRenewalReminders() {
  const absl::Time now = Now();
  auto due = store_->ListRenewalDue(now, config_.renew_window);
  if (!due.ok()) return due.status();
  int queued = 0;
  for (const CertRecord& c : *due) {
    auto successor = store_->FindRenewalOf(c.certificate_id);
    if (!successor.ok()) return successor.status();
    if (successor->has_value()) continue;
    auto account = identity_->GetAccount(c.account_id);
    if (!account.ok()) return account.status();
    OutboxMessage mail{
        .kind = "renewal_reminder",
        .recipient = account->username,
        .subject = "Your qualified certificate can be renewed now",
        .body = absl::StrCat("Your qualified certificate (serial ", c.serial_hex, ") expires at ",
                             TimeText(c.not_after),
                             ". You can renew it in the portal until then; the new certificate "
                             "has a new key and the old one stays valid until it expires.\n"),
        .created_at = now};
    auto q = store_->QueueReminder(c.certificate_id, mail);
    if (!q.ok()) return q.status();
    if (*q) ++queued;
  }
  return queued;
}

absl::StatusOr<OutboxRun> Lifecycle::DeliverOutbox(Mailer& mailer, int max) {
  return ::qsign::DeliverOutbox(
      mailer, max, "lifecycle",
      [&](int64_t after, absl::FunctionRef<absl::Status(const OutboxMessage&)> send) {
        return store_->DeliverNextOutbox(after, Now(),
                                         [&](const OutboxMessage& m) { return send(m); });
      });
}

}  // namespace qsign::lifecycle
