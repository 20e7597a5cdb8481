#include "common/mail/outbox.h"

#include <string>

#include "common/log.h"

namespace qsign {

absl::StatusOr<OutboxRun> DeliverOutbox(Mailer& mailer, int max, std::string_view component,
                                        DeliverNextFn next) {
  OutboxRun run;
  int64_t after = 0;
  while (run.sent + run.failed < max) {
    auto attempt = next(after, [&](const OutboxMessage& m) {
      return mailer.Send(m.recipient, m.subject, m.body);
    });
    if (!attempt.ok()) return attempt.status();
    if (!attempt->has_value()) break;
    after = (*attempt)->id;
    if ((*attempt)->result.ok()) {
      ++run.sent;
    } else {
      ++run.failed;
      Log(LogLevel::kWarning, component, "outbox mail not delivered",
          {{"id", std::to_string(after)}, {"status", (*attempt)->result.ToString()}});
    }
  }
  return run;
}

}  // namespace qsign
