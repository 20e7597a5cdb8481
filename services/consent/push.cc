#include "services/consent/push.h"

#include <httplib.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/strings.h"

namespace qsign::consent {

absl::StatusOr<std::unique_ptr<HttpWebhookPushGateway>> HttpWebhookPushGateway::New(
    std::string_view url, SecretString bearer_secret, absl::Duration timeout) {
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos ||
      (url.substr(0, scheme_end) != "http" && url.substr(0, scheme_end) != "https")) {
    return absl::InvalidArgumentError("push webhook url: must start with http:// or https://");
  }
  size_t path_start = url.find('/', scheme_end + 3);
  std::string base(url.substr(0, path_start));
  std::string path =
      path_start == std::string_view::npos ? "/" : std::string(url.substr(path_start));
  if (base.size() <= scheme_end + 3) {
    return absl::InvalidArgumentError("push webhook url: no host");
  }
  if (timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("push webhook timeout: must be positive");
  }
  return std::unique_ptr<HttpWebhookPushGateway>(new HttpWebhookPushGateway(
      std::move(base), std::move(path), std::move(bearer_secret), timeout));
}

absl::Status HttpWebhookPushGateway::Send(const PushMessage& m) {
  std::string body = "{\"push_token\":";
  AppendJsonString(m.push_token, &body);
  body += ",\"request_id\":";
  AppendJsonString(m.request_id, &body);
  body += m.kind == RequestKind::kSign ? ",\"kind\":\"SIGN\"}" : ",\"kind\":\"LOGIN\"}";

  httplib::Client client(base_);
  const auto micros = absl::ToInt64Microseconds(timeout_);
  client.set_connection_timeout(micros / 1'000'000, micros % 1'000'000);
  client.set_read_timeout(micros / 1'000'000, micros % 1'000'000);
  client.set_write_timeout(micros / 1'000'000, micros % 1'000'000);
  httplib::Headers headers;
  if (!secret_.empty()) {
    headers.emplace("Authorization", absl::StrCat("Bearer ", Av(secret_.value())));
  }
  auto res = client.Post(path_.c_str(), headers, body, "application/json");
  if (!res) {
    return absl::UnavailableError(absl::StrCat("push webhook: ", httplib::to_string(res.error())));
  }
  if (res->status < 200 || res->status >= 300) {
    return absl::UnavailableError(absl::StrCat("push webhook: HTTP ", res->status));
  }
  return absl::OkStatus();
}

PushDispatcher::PushDispatcher(ConsentStore* store, PushGateway* gateway, const Clock* clock,
                               Options options)
    : store_(store), gateway_(gateway), clock_(clock), options_(options) {
  thread_ = std::thread([this] { Loop(); });
}

PushDispatcher::~PushDispatcher() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void PushDispatcher::Kick() {
  absl::MutexLock lock(&mu_);
  kicked_ = true;
}

absl::StatusOr<int> PushDispatcher::RunOnce() {
  int sent = 0;
  while (true) {
    const absl::Time now = clock_->Now();
    auto jobs = store_->ClaimPushJobs(now, now + options_.retry_after, options_.batch);
    if (!jobs.ok()) return jobs.status();
    for (const PushJob& job : *jobs) {
      absl::Status s = gateway_->Send(
          {.push_token = job.push_token, .request_id = job.request_id, .kind = job.kind});
      if (s.ok()) ++sent;
      if (!s.ok()) {
        Log(LogLevel::kWarning, "consent", "push failed",
            {{"consent_request_id", job.request_id}, {"status", s.ToString()}});
        if (job.attempts < options_.max_attempts) continue;  // Retried after retry_after.
        Log(LogLevel::kError, "consent", "push dropped after max attempts",
            {{"consent_request_id", job.request_id}});
      }
      if (auto d = store_->DeletePushJob(job.id); !d.ok()) return d;
    }
    if (static_cast<int>(jobs->size()) < options_.batch) return sent;
  }
}

void PushDispatcher::Loop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(
                               +[](PushDispatcher* d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(d->mu_) {
                                 return d->kicked_ || d->stop_;
                               },
                               this),
                           options_.poll_interval);
      if (stop_) return;
      kicked_ = false;
    }
    if (auto s = RunOnce(); !s.ok()) {
      Log(LogLevel::kWarning, "consent", "push outbox pass failed",
          {{"status", s.status().ToString()}});
    }
  }
}

}  // namespace qsign::consent
