// Push wake-ups (FCM/APNs style) for a consent app whose stream is closed. A wake-up carries no
// request content, only the request id and kind: the app opens WatchRequests and gets the
// request from us. Jobs come from the push outbox, written with the request in one transaction,
// and are sent at least once by whichever replica claims them.
#ifndef QSIGN_SERVICES_CONSENT_PUSH_H_
#define QSIGN_SERVICES_CONSENT_PUSH_H_

#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/secret.h"
#include "services/consent/consent_store.h"

namespace qsign::consent {

struct PushMessage {
  std::string push_token;
  std::string request_id;
  RequestKind kind = RequestKind::kLogin;
};

class PushGateway {
 public:
  virtual ~PushGateway() = default;
  // OK once the provider accepted the message; any error is retried later.
  virtual absl::Status Send(const PushMessage& message) = 0;
};

// POSTs {"push_token":..,"request_id":..,"kind":"LOGIN"|"SIGN"} as JSON to a webhook (the
// deployment's bridge to FCM/APNs), with `authorization: Bearer <secret>` when a secret is set.
class HttpWebhookPushGateway final : public PushGateway {
 public:
  // `url`: http://host[:port]/path or https://host[:port]/path.
  static absl::StatusOr<std::unique_ptr<HttpWebhookPushGateway>> New(std::string_view url,
                                                                     SecretString bearer_secret,
                                                                     absl::Duration timeout);
  absl::Status Send(const PushMessage& message) override;

 private:
  HttpWebhookPushGateway(std::string base, std::string path, SecretString secret,
                         absl::Duration timeout)
      : base_(std::move(base)),
        path_(std::move(path)),
        secret_(std::move(secret)),
        timeout_(timeout) {}
  const std::string base_;  // scheme://host:port
  const std::string path_;
  const SecretString secret_;
  const absl::Duration timeout_;
};

// Sends the outbox: a thread that claims due jobs and hands them to the gateway, woken by Kick()
// after a request is created and otherwise every `poll_interval`. A job that fails is retried
// after `retry_after`, and dropped after `max_attempts`.
class PushDispatcher {
 public:
  struct Options {
    absl::Duration poll_interval = absl::Seconds(1);
    absl::Duration retry_after = absl::Seconds(10);
    int max_attempts = 10;
    int batch = 50;
  };
  // None of the pointers is owned; all must outlive the dispatcher.
  PushDispatcher(ConsentStore* store, PushGateway* gateway, const Clock* clock, Options options);
  ~PushDispatcher();

  void Kick();
  // One pass over the due jobs (also what the thread runs). Answers how many were sent.
  absl::StatusOr<int> RunOnce();

 private:
  void Loop();

  ConsentStore* store_;   // Not owned.
  PushGateway* gateway_;  // Not owned.
  const Clock* clock_;    // Not owned.
  const Options options_;
  absl::Mutex mu_;
  bool kicked_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace qsign::consent

#endif  // QSIGN_SERVICES_CONSENT_PUSH_H_
