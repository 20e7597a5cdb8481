// Requests: created for the account's active device, read, and awaited until decided.

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/metrics.h"
#include "services/consent/consent.h"
#include "services/consent/consent_internal.h"

namespace qsign::consent {
namespace {

// How often a waiting thread looks at its cancellation flag when nothing else wakes it.
constexpr absl::Duration kCancelCheck = absl::Milliseconds(100);

void CountCreated(RequestKind kind) {
  metrics::Registry::Global().AddCounter("qsign_consent_requests_created_total",
                                         "Consent requests pushed to a device, by kind.",
                                         {{"kind", KindLabel(kind)}});
}

}  // namespace

absl::Status Consent::WaitOnAccount(std::string_view account_id, absl::Time deadline,
                                    absl::FunctionRef<bool()> cancelled,
                                    absl::FunctionRef<absl::StatusOr<bool>()> look) {
  auto sub = deps_.notifier->Subscribe(account_id);
  bool dirty = true;
  absl::Time next_look = absl::Now();
  while (true) {
    if (cancelled()) return absl::CancelledError("the caller went away");
    if (deps_.notifier->closed()) return absl::UnavailableError("the server is shutting down");
    const absl::Time real_now = absl::Now();
    if (dirty || real_now >= next_look) {
      auto done = look();
      if (!done.ok()) return done.status();
      if (*done) return absl::OkStatus();
      next_look = real_now + config_.poll_interval;
    }
    if (absl::Now() >= deadline) return absl::OkStatus();
    dirty = sub->Wait(std::min({deadline, next_look, absl::Now() + kCancelCheck}));
  }
}

absl::StatusOr<RequestRecord> Consent::CreateRequest(Statement statement,
                                                     std::string_view account_id,
                                                     std::string requester) {
  auto request_id = NewId(kRequestPrefix);
  if (!request_id.ok()) return request_id.status();
  statement.request_id = *request_id;
  statement.account_id = std::string(account_id);
  RequestRecord record{.request_id = *request_id,
                       .account_id = std::string(account_id),
                       .kind = statement.kind,
                       .state = RequestState::kPending,
                       .statement = EncodeStatement(statement),
                       .created_at = statement.created_at,
                       .expires_at = statement.expires_at,
                       .requester = std::move(requester)};
  auto pushed = deps_.store->CreateRequest(record);
  if (!pushed.ok()) return pushed.status();
  CountCreated(record.kind);
  deps_.notifier->Notify(account_id);
  if (*pushed && deps_.push != nullptr) deps_.push->Kick();
  return record;
}

absl::StatusOr<RequestStatus> Consent::CreateLoginRequest(const Caller& caller,
                                                          const LoginRequestInput& in,
                                                          const ClientInfo& client) {
  if (auto s = RequireService(caller); !s.ok()) return s;
  if (auto s = ValidateAccountId(in.account_id); !s.ok()) return s;
  if (auto s = ValidateText(in.login.verification_code, "login.verification_code", 1, 16);
      !s.ok()) {
    return s;
  }
  if (auto s = ValidateText(in.login.client_description, "login.client_description", 0, 256);
      !s.ok()) {
    return s;
  }
  auto lang = ParseDisplayLanguage(in.language);
  if (!lang.ok()) return lang.status();
  if (in.lifetime < absl::ZeroDuration() || in.lifetime > config_.max_lifetime) {
    return absl::InvalidArgumentError(absl::StrCat("lifetime: between 0 (the default) and ",
                                                   absl::FormatDuration(config_.max_lifetime)));
  }
  const absl::Time now = Now();
  Statement st{
      .kind = RequestKind::kLogin,
      .created_at = now,
      .expires_at = TruncateToMicros(
          now + (in.lifetime == absl::ZeroDuration() ? config_.login_lifetime : in.lifetime)),
      .display_text = LoginDisplayText(in.login, *lang),
      .login = in.login};
  auto record = CreateRequest(std::move(st), in.account_id, RequesterOf(caller));
  if (!record.ok()) return record.status();
  return StatusOf(*record, now);
}

absl::StatusOr<RequestStatus> Consent::GetRequest(const Caller& caller,
                                                  std::string_view request_id) {
  if (auto s = RequireService(caller); !s.ok()) return s;
  if (auto s = ValidateRequestId(request_id); !s.ok()) return s;
  auto record = deps_.store->GetRequest(request_id);
  if (!record.ok()) return record.status();
  return StatusOf(*record, Now());
}

absl::StatusOr<RequestRecord> Consent::AwaitDecision(
    std::string_view request_id, absl::Duration max_wait, absl::FunctionRef<bool()> cancelled,
    absl::FunctionRef<absl::Status(const RequestRecord&)> may_see) {
  auto record = deps_.store->GetRequest(request_id);
  if (!record.ok()) return record.status();
  if (auto s = may_see(*record); !s.ok()) return s;
  if (EffectiveState(*record, Now()) != RequestState::kPending ||
      max_wait <= absl::ZeroDuration()) {
    return record;
  }
  const absl::Time deadline = absl::Now() + std::min(max_wait, config_.max_await);
  absl::Status st =
      WaitOnAccount(record->account_id, deadline, cancelled, [&]() -> absl::StatusOr<bool> {
        auto again = deps_.store->GetRequest(request_id);
        if (!again.ok()) return again.status();
        *record = *std::move(again);
        return EffectiveState(*record, Now()) != RequestState::kPending;
      });
  if (!st.ok()) return st;
  return record;
}

std::shared_ptr<WaitHandle> Consent::AwaitRequest(std::string authorization, std::string request_id,
                                                  absl::Duration max_wait, RequestStatusDone done) {
  auto handle = std::make_shared<WaitHandle>();
  deps_.runner->Post([this, handle, authorization = std::move(authorization),
                      request_id = std::move(request_id), max_wait,
                      done = std::move(done)]() mutable {
    if (handle->cancelled()) return std::move(done)(absl::CancelledError("the caller went away"));
    auto caller = Authenticate(authorization);
    if (!caller.ok()) return std::move(done)(caller.status());
    if (auto s = RequireService(*caller); !s.ok()) return std::move(done)(s);
    if (auto s = ValidateRequestId(request_id); !s.ok()) return std::move(done)(s);
    if (max_wait < absl::ZeroDuration()) {
      return std::move(done)(absl::InvalidArgumentError("max_wait: must not be negative"));
    }
    auto record = deps_.store->GetRequest(request_id);
    if (!record.ok()) return std::move(done)(record.status());
    if (EffectiveState(*record, Now()) != RequestState::kPending ||
        max_wait <= absl::ZeroDuration()) {
      return std::move(done)(StatusOf(*record, Now()));
    }
    const absl::Time deadline = absl::Now() + std::min(max_wait, config_.max_await);
    // The latest read, shared by the look that refreshes it and the answer.
    auto latest = std::make_shared<RequestRecord>(*std::move(record));
    const std::string account_id = latest->account_id;
    auto look = [this, request_id, latest]() -> absl::StatusOr<bool> {
      auto again = deps_.store->GetRequest(request_id);
      if (!again.ok()) return again.status();
      *latest = *std::move(again);
      return EffectiveState(*latest, Now()) != RequestState::kPending;
    };
    auto answer = [this, latest, done = std::move(done)](absl::Status st) mutable {
      if (!st.ok()) return std::move(done)(st);
      std::move(done)(StatusOf(*latest, Now()));
    };
    handle->Attach(AccountWait::Start(deps_.notifier, deps_.runner, account_id, deadline,
                                      config_.poll_interval, std::move(look), std::move(answer)));
  });
  return handle;
}

}  // namespace qsign::consent
