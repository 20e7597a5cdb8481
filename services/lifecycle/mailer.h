// Sending the lifecycle outbox's e-mail: the Mailer interface and SmtpMailer, an SMTP client on
// libcurl. Lifecycle::DeliverOutbox hands each queued message to a Mailer.
#ifndef QSIGN_SERVICES_LIFECYCLE_MAILER_H_
#define QSIGN_SERVICES_LIFECYCLE_MAILER_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace qsign::lifecycle {

class Mailer {
 public:
  virtual ~Mailer() = default;
  // Sends one plain-text (UTF-8) message. OK only when the server accepted it.
  virtual absl::Status Send(std::string_view to, std::string_view subject,
                            std::string_view body) = 0;
};

struct SmtpConfig {
  // smtp://host:port (or smtps://...). Credentials, if any, in the URL's userinfo.
  std::string url;
  // The envelope sender and the From header.
  std::string from;
  absl::Duration timeout = absl::Seconds(30);
};

// A libcurl SMTP client: one connection per message. Thread-compatible per call (each Send
// uses its own curl handle).
class SmtpMailer final : public Mailer {
 public:
  explicit SmtpMailer(SmtpConfig config);
  absl::Status Send(std::string_view to, std::string_view subject,
                    std::string_view body) override;

 private:
  const SmtpConfig config_;
};

// The RFC 5322 message SmtpMailer sends (headers, CRLF line ends); exposed for tests.
std::string FormatMail(std::string_view from, std::string_view to, std::string_view subject,
                       std::string_view body, absl::Time date);

}  // namespace qsign::lifecycle

#endif  // QSIGN_SERVICES_LIFECYCLE_MAILER_H_
