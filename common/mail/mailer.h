// Sending a service's outbox e-mail (the mail-relay interface): Mailer, SmtpMailer (an SMTP
// client on libcurl) and MailDropMailer (each message a file in a directory: a laptop's and the
// journey's mailbox). Lifecycle::DeliverOutbox and Identity::DeliverOutbox hand each queued
// message to a Mailer.
#ifndef QSIGN_COMMON_MAIL_MAILER_H_
#define QSIGN_COMMON_MAIL_MAILER_H_

#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace qsign {

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

// Writes each message, as FormatMail makes it, to `<dir>/<unix micros>-<n>.eml` (mode 0600),
// written to a temporary name and renamed, so a reader never sees half a message. For laptops and
// the journey: the registration link is read there. Not for production (nothing is sent).
class MailDropMailer final : public Mailer {
 public:
  MailDropMailer(std::string dir, std::string from) : dir_(std::move(dir)), from_(std::move(from)) {}
  absl::Status Send(std::string_view to, std::string_view subject,
                    std::string_view body) override;

 private:
  const std::string dir_;
  const std::string from_;
};

// The RFC 5322 message SmtpMailer sends (headers, CRLF line ends); exposed for tests.
std::string FormatMail(std::string_view from, std::string_view to, std::string_view subject,
                       std::string_view body, absl::Time date);

}  // namespace qsign

#endif  // QSIGN_COMMON_MAIL_MAILER_H_
