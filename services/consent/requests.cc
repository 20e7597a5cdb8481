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

void CountCreated(RequestKind kind) {
  metrics::Registry::Global().AddCounter("qsign_consent_requests_created_total",
                                         "Consent requests pushed to a device, by kind.",
                                         {{"kind", KindLabel(kind)}});
}

}  // namespace

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
  auto created = deps_.store->CreateRequest(record);
  if (!created.ok()) return created.status();
  CountCreated(record.kind);
  // The account's open stream sends it from this event, without reading it back.
  auto event = std::make_shared<AccountEvent>(
      AccountEvent{.kind = AccountEvent::Kind::kRequestCreated,
                   .request = record,
                   .active_device_id = std::move(created->device_id)});
  recent_.Add(record.request_id,
              std::make_pair(record, deps_.notifier->Notify(account_id, std::move(event))));
  if (created->pushed && deps_.push != nullptr) deps_.push->Kick();
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

void Consent::AwaitDecision(std::shared_ptr<WaitHandle> handle, std::string request_id,
                            absl::Duration max_wait, MaySee may_see, DecisionDone done) {
  // A request this process created lately needs no read: its record as created, and the
  // account's version right after, make the listening read if anything happened since.
  // Otherwise the account is learnt from a read; the notifier's versions, taken before it, tell
  // whether the account was notified between the read and the listening (then it reads again).
  absl::StatusOr<RequestRecord> record = absl::NotFoundError("");
  uint64_t read_at = 0;
  auto recent = recent_.Take(request_id);
  if (recent.has_value() && deps_.notifier->Version(recent->first.account_id) == recent->second) {
    record = std::move(recent->first);
    read_at = recent->second;
  } else {
    const AccountNotifier::Versions versions = deps_.notifier->Snapshot();
    record = deps_.store->GetRequest(request_id);
    if (!record.ok()) return std::move(done)(record.status());
    read_at = AccountNotifier::VersionOf(versions, record->account_id);
  }
  if (auto s = std::move(may_see)(*record); !s.ok()) return std::move(done)(s);
  if (EffectiveState(*record, Now()) != RequestState::kPending ||
      max_wait <= absl::ZeroDuration()) {
    return std::move(done)(*std::move(record));
  }
  const absl::Time deadline = absl::Now() + std::min(max_wait, config_.max_await);
  // The latest state, shared by the look that refreshes it and the answer.
  auto latest = std::make_shared<RequestRecord>(*std::move(record));
  const std::string account_id = latest->account_id;
  auto look = [this, latest](const AccountWake& wake) -> absl::StatusOr<bool> {
    if (wake.read) {
      auto again = deps_.store->GetRequest(latest->request_id);
      if (!again.ok()) return again.status();
      *latest = *std::move(again);
    } else {
      // This process decided it: the event holds the decision as committed.
      for (const auto& event : wake.events) {
        if (event->kind != AccountEvent::Kind::kRequestDecided ||
            event->request.request_id != latest->request_id) {
          continue;
        }
        latest->state = event->request.state;
        latest->decided_at = event->request.decided_at;
        latest->decided_by_device = event->request.decided_by_device;
        latest->sad = event->request.sad;
        latest->sad_expires_at = event->request.sad_expires_at;
      }
    }
    return EffectiveState(*latest, Now()) != RequestState::kPending;
  };
  auto answer = [latest, done = std::move(done)](absl::Status st) mutable {
    if (!st.ok()) return std::move(done)(st);
    std::move(done)(*latest);
  };
  handle->Attach(AccountWait::StartAfterRead(deps_.notifier, deps_.runner, account_id, read_at,
                                             deadline, config_.poll_interval, std::move(look),
                                             std::move(answer)));
}

std::shared_ptr<WaitHandle> Consent::AwaitAsCaller(std::string authorization,
                                                   std::string request_id, absl::Duration max_wait,
                                                   Admit admit, DecisionDone done) {
  auto handle = std::make_shared<WaitHandle>();
  deps_.runner->Post([this, handle, authorization = std::move(authorization),
                      request_id = std::move(request_id), max_wait, admit = std::move(admit),
                      done = std::move(done)]() mutable {
    if (handle->cancelled()) return std::move(done)(absl::CancelledError("the caller went away"));
    auto caller = Authenticate(authorization);
    if (!caller.ok()) return std::move(done)(caller.status());
    auto may_see = std::move(admit)(*caller);
    if (!may_see.ok()) return std::move(done)(may_see.status());
    if (auto s = ValidateRequestId(request_id); !s.ok()) return std::move(done)(s);
    if (max_wait < absl::ZeroDuration()) {
      return std::move(done)(absl::InvalidArgumentError("max_wait: must not be negative"));
    }
    AwaitDecision(handle, std::move(request_id), max_wait, *std::move(may_see), std::move(done));
  });
  return handle;
}

std::shared_ptr<WaitHandle> Consent::AwaitRequest(std::string authorization, std::string request_id,
                                                  absl::Duration max_wait, RequestStatusDone done) {
  return AwaitAsCaller(
      std::move(authorization), std::move(request_id), max_wait,
      [this](const Caller& caller) -> absl::StatusOr<MaySee> {
        if (auto s = RequireService(caller); !s.ok()) return s;
        // Any service may see any request (identity waits on its logins' requests).
        return MaySee([service = caller.id](const RequestRecord&) { return absl::OkStatus(); });
      },
      [this, done = std::move(done)](absl::StatusOr<RequestRecord> record) mutable {
        if (!record.ok()) return std::move(done)(record.status());
        std::move(done)(StatusOf(*record, Now()));
      });
}

}  // namespace qsign::consent
