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

std::unique_ptr<grpc::ClientContext> NewContext(std::string_view auth, absl::Duration timeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  if (!auth.empty()) ctx->AddMetadata("authorization", std::string(auth));
  return ctx;
}

template <typename Service, typename Req, typename Resp>
absl::StatusOr<Resp> Unary(const daemon::DeferredStub<Service>& stub,
                           grpc::Status (Service::Stub::*method)(grpc::ClientContext*, const Req&,
                                                                 Resp*),
                           std::string_view auth, const Req& req, absl::Duration timeout) {
  auto s = stub.get();
  if (!s.ok()) return s.status();
  auto ctx = NewContext(auth, timeout);
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
    const pb::RegisterAccountRequest& req) {
  return Unary(stubs_->identity, &pb::Identity::Stub::RegisterAccount, "", req, timeout_);
}
absl::StatusOr<pb::Account> Backend::ConfirmRegistration(
    const pb::ConfirmRegistrationRequest& req) {
  return Unary(stubs_->identity, &pb::Identity::Stub::ConfirmRegistration, "", req, timeout_);
}
absl::StatusOr<pb::StartLoginResponse> Backend::StartLogin(const pb::StartLoginRequest& req) {
  return Unary(stubs_->identity, &pb::Identity::Stub::StartLogin, "", req, timeout_);
}
absl::StatusOr<pb::AwaitLoginResponse> Backend::AwaitLogin(const pb::AwaitLoginRequest& req) {
  return Unary(stubs_->identity, &pb::Identity::Stub::AwaitLogin, "", req,
               WaitOf(req.max_wait(), timeout_));
}
absl::Status Backend::Logout(std::string_view auth) {
  return Unary(stubs_->identity, &pb::Identity::Stub::Logout, auth, pb::LogoutRequest(), timeout_)
      .status();
}
absl::StatusOr<pb::Account> Backend::GetAccount(std::string_view auth,
                                                const pb::GetAccountRequest& req) {
  return Unary(stubs_->identity, &pb::Identity::Stub::GetAccount, auth, req, timeout_);
}
absl::StatusOr<pb::ProofIdentityResponse> Backend::ProofIdentity(
    std::string_view auth, const pb::ProofIdentityRequest& req) {
  return Unary(stubs_->identity, &pb::Identity::Stub::ProofIdentity, auth, req, timeout_);
}

absl::StatusOr<pb::GetStatusResponse> Backend::GetStatus(std::string_view auth,
                                                         const pb::GetStatusRequest& req) {
  return Unary(stubs_->lifecycle, &pb::Lifecycle::Stub::GetStatus, auth, req, timeout_);
}
absl::StatusOr<pb::ListCertificatesResponse> Backend::ListCertificates(
    std::string_view auth, const pb::ListCertificatesRequest& req) {
  return Unary(stubs_->lifecycle, &pb::Lifecycle::Stub::ListCertificates, auth, req, timeout_);
}
absl::StatusOr<pb::Contract> Backend::GetContract(std::string_view auth,
                                                  const pb::GetContractRequest& req) {
  return Unary(stubs_->lifecycle, &pb::Lifecycle::Stub::GetContract, auth, req, timeout_);
}
absl::StatusOr<pb::ContractAcceptance> Backend::AcceptContract(
    std::string_view auth, const pb::AcceptContractRequest& req) {
  return Unary(stubs_->lifecycle, &pb::Lifecycle::Stub::AcceptContract, auth, req, timeout_);
}
// Issuing, renewing and revoking generate or destroy HSM keys: more time than a lookup.
absl::StatusOr<pb::Certificate> Backend::Issue(std::string_view auth, const pb::IssueRequest& req) {
  return Unary(stubs_->lifecycle, &pb::Lifecycle::Stub::Issue, auth, req, 6 * timeout_);
}
absl::StatusOr<pb::Certificate> Backend::Renew(std::string_view auth, const pb::RenewRequest& req) {
  return Unary(stubs_->lifecycle, &pb::Lifecycle::Stub::Renew, auth, req, 6 * timeout_);
}
absl::StatusOr<pb::Certificate> Backend::Revoke(std::string_view auth,
                                                const pb::RevokeRequest& req) {
  return Unary(stubs_->lifecycle, &pb::Lifecycle::Stub::Revoke, auth, req, 6 * timeout_);
}
absl::StatusOr<pb::RevokeAllResponse> Backend::RevokeAll(std::string_view auth,
                                                         const pb::RevokeAllRequest& req) {
  return Unary(stubs_->lifecycle, &pb::Lifecycle::Stub::RevokeAll, auth, req, 6 * timeout_);
}
absl::StatusOr<pb::LegalPersonApproval> Backend::ApproveLegalPerson(
    std::string_view auth, const pb::ApproveLegalPersonRequest& req) {
  return Unary(stubs_->lifecycle, &pb::Lifecycle::Stub::ApproveLegalPerson, auth, req, timeout_);
}

absl::StatusOr<pb::EnrollDeviceResponse> Backend::EnrollDevice(const pb::EnrollDeviceRequest& req) {
  return Unary(stubs_->consent, &pb::Consent::Stub::EnrollDevice, "", req, timeout_);
}
absl::StatusOr<pb::GetChallengeResponse> Backend::GetChallenge(const pb::GetChallengeRequest& req) {
  return Unary(stubs_->consent, &pb::Consent::Stub::GetChallenge, "", req, timeout_);
}
absl::StatusOr<pb::GetApprovalChallengeResponse> Backend::GetApprovalChallenge(
    const pb::GetApprovalChallengeRequest& req) {
  return Unary(stubs_->consent, &pb::Consent::Stub::GetApprovalChallenge, "", req, timeout_);
}
absl::StatusOr<pb::ApproveResponse> Backend::Approve(const pb::ApproveRequest& req) {
  return Unary(stubs_->consent, &pb::Consent::Stub::Approve, "", req, timeout_);
}
absl::StatusOr<pb::ChangePinResponse> Backend::ChangePin(const pb::ChangePinRequest& req) {
  return Unary(stubs_->consent, &pb::Consent::Stub::ChangePin, "", req, timeout_);
}
absl::StatusOr<pb::ResetPinResponse> Backend::ResetPin(const pb::ResetPinRequest& req) {
  return Unary(stubs_->consent, &pb::Consent::Stub::ResetPin, "", req, timeout_);
}
absl::StatusOr<pb::AuthorizeResponse> Backend::Authorize(std::string_view auth,
                                                         const pb::AuthorizeRequest& req) {
  return Unary(stubs_->consent, &pb::Consent::Stub::Authorize, auth, req, timeout_);
}
absl::StatusOr<pb::AwaitAuthorizationResponse> Backend::AwaitAuthorization(
    std::string_view auth, const pb::AwaitAuthorizationRequest& req) {
  return Unary(stubs_->consent, &pb::Consent::Stub::AwaitAuthorization, auth, req,
               WaitOf(req.max_wait(), timeout_));
}
absl::StatusOr<pb::UnblockPinResponse> Backend::UnblockPin(std::string_view auth,
                                                           const pb::UnblockPinRequest& req) {
  return Unary(stubs_->consent, &pb::Consent::Stub::UnblockPin, auth, req, timeout_);
}
absl::StatusOr<pb::SignHashResponse> Backend::SignHash(std::string_view auth,
                                                       const pb::SignHashRequest& req) {
  return Unary(stubs_->signer, &pb::Signer::Stub::SignHash, auth, req, timeout_);
}

absl::StatusOr<WatchResult> Backend::Watch(const pb::WatchRequestsRequest& req,
                                           const absl::flat_hash_set<std::string>& known,
                                           absl::Duration wait) {
  auto stub = stubs_->consent.get();
  if (!stub.ok()) return stub.status();
  grpc::ClientContext ctx;
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
