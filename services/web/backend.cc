#include "services/web/backend.h"

#include <grpcpp/grpcpp.h>

#include <thread>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "consent/statement.h"
#include "qsign/v1/consent.grpc.pb.h"
#include "qsign/v1/identity.grpc.pb.h"
#include "qsign/v1/lifecycle.grpc.pb.h"
#include "qsign/v1/signer.grpc.pb.h"

namespace qsign::web {
namespace {

// After the first new request on the stream, how long the rest of a burst may take to arrive.
constexpr absl::Duration kBurst = absl::Milliseconds(150);

void AddCaller(grpc::ClientContext& ctx, const Caller& caller) {
  if (!caller.auth.empty()) ctx.AddMetadata("authorization", std::string(caller.auth));
  if (!caller.address.empty()) {
    ctx.AddMetadata(std::string(kForwardedFor), std::string(caller.address));
  }
}

std::unique_ptr<grpc::ClientContext> NewContext(const Caller& caller, absl::Duration timeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  AddCaller(*ctx, caller);
  return ctx;
}

template <typename Service, typename Req, typename Resp>
absl::StatusOr<Resp> Unary(const daemon::DeferredStub<Service>& stub,
                           grpc::Status (Service::Stub::*method)(grpc::ClientContext*, const Req&,
                                                                 Resp*),
                           const Caller& caller, const Req& req, absl::Duration timeout) {
  auto s = stub.get();
  if (!s.ok()) return s.status();
  auto ctx = NewContext(caller, timeout);
  Resp resp;
  grpc::Status status = ((*s)->*method)(ctx.get(), req, &resp);
  if (!status.ok()) return FromGrpcStatus(status);
  return resp;
}

// The server's own cap on a wait, plus the call's own time.
absl::Duration WaitOf(const google::protobuf::Duration& max_wait, absl::Duration timeout) {
  return absl::Seconds(max_wait.seconds()) + timeout;
}

}  // namespace

struct Backend::Stubs {
  daemon::DeferredStub<pb::Identity> identity;
  daemon::DeferredStub<pb::Consent> consent;
  daemon::DeferredStub<pb::Lifecycle> lifecycle;
  daemon::DeferredStub<pb::Signer> signer;
};

Backend::Backend(std::shared_ptr<const daemon::DeferredChannel> identity,
                 std::shared_ptr<const daemon::DeferredChannel> consent,
                 std::shared_ptr<const daemon::DeferredChannel> lifecycle,
                 std::shared_ptr<const daemon::DeferredChannel> signer, absl::Duration timeout)
    : stubs_(new Stubs{daemon::DeferredStub<pb::Identity>(std::move(identity)),
                       daemon::DeferredStub<pb::Consent>(std::move(consent)),
                       daemon::DeferredStub<pb::Lifecycle>(std::move(lifecycle)),
                       daemon::DeferredStub<pb::Signer>(std::move(signer))}),
      timeout_(timeout) {}

Backend::~Backend() = default;

absl::StatusOr<pb::RegisterAccountResponse> Backend::RegisterAccount(
    const Caller& caller, const pb::RegisterAccountRequest& req) {
  return Unary(stubs_->identity, &pb::Identity::Stub::RegisterAccount, caller, req, timeout_);
}
absl::StatusOr<pb::Account> Backend::ConfirmRegistration(
    const Caller& caller, const pb::ConfirmRegistrationRequest& req) {
  return Unary(stubs_->identity, &pb::Identity::Stub::ConfirmRegistration, caller, req, timeout_);
}
absl::StatusOr<pb::StartLoginResponse> Backend::StartLogin(const Caller& caller,
                                                           const pb::StartLoginRequest& req) {
  return Unary(stubs_->identity, &pb::Identity::Stub::StartLogin, caller, req, timeout_);
}
absl::StatusOr<pb::AwaitLoginResponse> Backend::AwaitLogin(const Caller& caller,
                                                           const pb::AwaitLoginRequest& req) {
  return Unary(stubs_->identity, &pb::Identity::Stub::AwaitLogin, caller, req,
               WaitOf(req.max_wait(), timeout_));
}
absl::Status Backend::Logout(const Caller& caller) {
  return Unary(stubs_->identity, &pb::Identity::Stub::Logout, caller, pb::LogoutRequest(), timeout_)
      .status();
}
absl::StatusOr<pb::Account> Backend::GetAccount(const Caller& caller,
                                                const pb::GetAccountRequest& req) {
  return Unary(stubs_->identity, &pb::Identity::Stub::GetAccount, caller, req, timeout_);
}
absl::StatusOr<pb::ProofIdentityResponse> Backend::ProofIdentity(
    const Caller& caller, const pb::ProofIdentityRequest& req) {
  return Unary(stubs_->identity, &pb::Identity::Stub::ProofIdentity, caller, req, timeout_);
}

absl::StatusOr<pb::Account> Backend::CorrectIdentity(const Caller& caller,
                                                     const pb::CorrectIdentityRequest& req) {
  return Unary(stubs_->identity, &pb::Identity::Stub::CorrectIdentity, caller, req, timeout_);
}
absl::StatusOr<pb::ListAccountAuditResponse> Backend::ListAccountAudit(
    AuditSource source, const Caller& caller, const pb::ListAccountAuditRequest& req) {
  switch (source) {
    case AuditSource::kIdentity:
      return Unary(stubs_->identity, &pb::Identity::Stub::ListAccountAudit, caller, req, timeout_);
    case AuditSource::kLifecycle:
      return Unary(stubs_->lifecycle, &pb::Lifecycle::Stub::ListAccountAudit, caller, req,
                   timeout_);
    case AuditSource::kConsent:
      return Unary(stubs_->consent, &pb::Consent::Stub::ListAccountAudit, caller, req, timeout_);
  }
  return absl::InvalidArgumentError("audit source: unknown");
}

absl::StatusOr<pb::GetStatusResponse> Backend::GetStatus(const Caller& caller,
                                                         const pb::GetStatusRequest& req) {
  return Unary(stubs_->lifecycle, &pb::Lifecycle::Stub::GetStatus, caller, req, timeout_);
}
absl::StatusOr<pb::ListCertificatesResponse> Backend::ListCertificates(
    const Caller& caller, const pb::ListCertificatesRequest& req) {
  return Unary(stubs_->lifecycle, &pb::Lifecycle::Stub::ListCertificates, caller, req, timeout_);
}
absl::StatusOr<pb::Contract> Backend::GetContract(const Caller& caller,
                                                  const pb::GetContractRequest& req) {
  return Unary(stubs_->lifecycle, &pb::Lifecycle::Stub::GetContract, caller, req, timeout_);
}
absl::StatusOr<pb::ContractAcceptance> Backend::AcceptContract(
    const Caller& caller, const pb::AcceptContractRequest& req) {
  return Unary(stubs_->lifecycle, &pb::Lifecycle::Stub::AcceptContract, caller, req, timeout_);
}
// Issuing, renewing and revoking generate or destroy HSM keys: more time than a lookup.
absl::StatusOr<pb::Certificate> Backend::Issue(const Caller& caller, const pb::IssueRequest& req) {
  return Unary(stubs_->lifecycle, &pb::Lifecycle::Stub::Issue, caller, req, 6 * timeout_);
}
absl::StatusOr<pb::Certificate> Backend::Renew(const Caller& caller, const pb::RenewRequest& req) {
  return Unary(stubs_->lifecycle, &pb::Lifecycle::Stub::Renew, caller, req, 6 * timeout_);
}
absl::StatusOr<pb::Certificate> Backend::Revoke(const Caller& caller,
                                                const pb::RevokeRequest& req) {
  return Unary(stubs_->lifecycle, &pb::Lifecycle::Stub::Revoke, caller, req, 6 * timeout_);
}
absl::StatusOr<pb::RevokeAllResponse> Backend::RevokeAll(const Caller& caller,
                                                         const pb::RevokeAllRequest& req) {
  return Unary(stubs_->lifecycle, &pb::Lifecycle::Stub::RevokeAll, caller, req, 6 * timeout_);
}
absl::StatusOr<pb::LegalPersonApproval> Backend::ApproveLegalPerson(
    const Caller& caller, const pb::ApproveLegalPersonRequest& req) {
  return Unary(stubs_->lifecycle, &pb::Lifecycle::Stub::ApproveLegalPerson, caller, req, timeout_);
}

absl::StatusOr<pb::EnrollDeviceResponse> Backend::EnrollDevice(const Caller& caller,
                                                               const pb::EnrollDeviceRequest& req) {
  return Unary(stubs_->consent, &pb::Consent::Stub::EnrollDevice, caller, req, timeout_);
}
absl::StatusOr<pb::GetChallengeResponse> Backend::GetChallenge(const Caller& caller,
                                                               const pb::GetChallengeRequest& req) {
  return Unary(stubs_->consent, &pb::Consent::Stub::GetChallenge, caller, req, timeout_);
}
absl::StatusOr<pb::GetApprovalChallengeResponse> Backend::GetApprovalChallenge(
    const Caller& caller, const pb::GetApprovalChallengeRequest& req) {
  return Unary(stubs_->consent, &pb::Consent::Stub::GetApprovalChallenge, caller, req, timeout_);
}
absl::StatusOr<pb::ApproveResponse> Backend::Approve(const Caller& caller,
                                                     const pb::ApproveRequest& req) {
  return Unary(stubs_->consent, &pb::Consent::Stub::Approve, caller, req, timeout_);
}
absl::StatusOr<pb::ChangePinResponse> Backend::ChangePin(const Caller& caller,
                                                         const pb::ChangePinRequest& req) {
  return Unary(stubs_->consent, &pb::Consent::Stub::ChangePin, caller, req, timeout_);
}
absl::StatusOr<pb::ResetPinResponse> Backend::ResetPin(const Caller& caller,
                                                       const pb::ResetPinRequest& req) {
  return Unary(stubs_->consent, &pb::Consent::Stub::ResetPin, caller, req, timeout_);
}
absl::StatusOr<pb::AuthorizeResponse> Backend::Authorize(const Caller& caller,
                                                         const pb::AuthorizeRequest& req) {
  return Unary(stubs_->consent, &pb::Consent::Stub::Authorize, caller, req, timeout_);
}
absl::StatusOr<pb::AwaitAuthorizationResponse> Backend::AwaitAuthorization(
    const Caller& caller, const pb::AwaitAuthorizationRequest& req) {
  return Unary(stubs_->consent, &pb::Consent::Stub::AwaitAuthorization, caller, req,
               WaitOf(req.max_wait(), timeout_));
}
absl::StatusOr<pb::UnblockPinResponse> Backend::UnblockPin(const Caller& caller,
                                                           const pb::UnblockPinRequest& req) {
  return Unary(stubs_->consent, &pb::Consent::Stub::UnblockPin, caller, req, timeout_);
}
absl::StatusOr<pb::SignHashResponse> Backend::SignHash(const Caller& caller,
                                                       const pb::SignHashRequest& req) {
  return Unary(stubs_->signer, &pb::Signer::Stub::SignHash, caller, req, timeout_);
}

absl::StatusOr<WatchResult> Backend::Watch(const Caller& caller,
                                           const pb::WatchRequestsRequest& req,
                                           const absl::flat_hash_set<std::string>& known,
                                           absl::Duration wait) {
  auto stub = stubs_->consent.get();
  if (!stub.ok()) return stub.status();
  grpc::ClientContext ctx;
  AddCaller(ctx, caller);
  const absl::Time deadline = absl::Now() + wait;
  ctx.set_deadline(absl::ToChronoTime(deadline + timeout_));
  auto reader = (*stub)->WatchRequests(&ctx, req);

  // A watchdog ends the stream at the deadline, or shortly after the first new request.
  absl::Mutex mu;
  absl::Time cancel_at = deadline;
  bool done = false;
  std::thread watchdog([&] {
    absl::MutexLock lock(&mu);
    while (!done) {
      const absl::Time until = cancel_at;
      if (absl::Now() >= until) break;
      auto changed = [&] { return done || cancel_at != until; };
      mu.AwaitWithDeadline(absl::Condition(&changed), until);
    }
    if (!done) ctx.TryCancel();
  });

  WatchResult result;
  reader->WaitForInitialMetadata();
  const auto& md = ctx.GetServerInitialMetadata();
  const bool opened = md.find(std::string(consent::kWatchOpenMetadata)) != md.end();
  pb::ConsentRequest msg;
  while (opened && reader->Read(&msg)) {
    if (known.contains(msg.request_id())) continue;
    result.requests.push_back(msg);
    absl::MutexLock lock(&mu);
    cancel_at = std::min(cancel_at, absl::Now() + kBurst);
  }
  const grpc::Status status = reader->Finish();
  {
    absl::MutexLock lock(&mu);
    done = true;
  }
  watchdog.join();
  switch (status.error_code()) {
    case grpc::StatusCode::OK:
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      if (!opened && status.error_code() == grpc::StatusCode::OK) {
        return absl::UnavailableError("consent: the stream closed before opening");
      }
      return result;
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      result.inactive = true;
      return result;
    default:
      return FromGrpcStatus(status);
  }
}

}  // namespace qsign::web
