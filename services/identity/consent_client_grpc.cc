#include "services/identity/consent_client_grpc.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_request_id.h"
#include "common/grpc_status.h"
#include "common/proto_time.h"
#include "common/strings.h"

namespace qsign::identity {
namespace {

using ::qsign::FromProto;

namespace pb = ::qsign::v1;

// Time for one CreateRequest, and what AwaitRequest may take beyond its max_wait.
constexpr absl::Duration kCallTimeout = absl::Seconds(10);

google::protobuf::Duration ToProto(absl::Duration d) {
  google::protobuf::Duration out;
  const int64_t nanos = absl::ToInt64Nanoseconds(d);
  out.set_seconds(nanos / 1'000'000'000);
  out.set_nanos(static_cast<int32_t>(nanos % 1'000'000'000));
  return out;
}

absl::StatusOr<ConsentRequestStatus> FromProto(const pb::ConsentRequestStatus& s) {
  ConsentRequestStatus out;
  out.request_id = s.request_id();
  out.account_id = s.account_id();
  out.expires_at = FromProto(s.expires_at());
  if (s.has_decided_at()) out.decided_at = FromProto(s.decided_at());
  switch (s.state()) {
    case pb::CONSENT_REQUEST_STATE_PENDING:
      out.state = ConsentState::kPending;
      break;
    case pb::CONSENT_REQUEST_STATE_APPROVED:
      out.state = ConsentState::kApproved;
      break;
    case pb::CONSENT_REQUEST_STATE_DENIED:
      out.state = ConsentState::kDenied;
      break;
    case pb::CONSENT_REQUEST_STATE_EXPIRED:
      out.state = ConsentState::kExpired;
      break;
    case pb::CONSENT_REQUEST_STATE_CANCELLED:
      out.state = ConsentState::kCancelled;
      break;
    default:
      return absl::InternalError(
          absl::StrCat("consent: request ", s.request_id(), " has no state"));
  }
  return out;
}

}  // namespace

GrpcConsentClient::GrpcConsentClient(std::shared_ptr<const daemon::DeferredChannel> channel,
                                     std::string_view client_id, const SecretString& secret)
    : stub_(std::move(channel)),
      authorization_(absl::StrCat("Service ", Av(client_id), ".", Av(secret.value()))) {}

absl::StatusOr<ConsentRequestStatus> GrpcConsentClient::CreateLoginRequest(
    const LoginRequestParams& params) {
  pb::CreateRequestRequest req;
  req.set_account_id(params.account_id);
  req.set_kind(pb::CONSENT_REQUEST_KIND_LOGIN);
  *req.mutable_lifetime() = ToProto(params.lifetime);
  req.mutable_login()->set_verification_code(params.verification_code);
  req.mutable_login()->set_client_description(params.client_description);
  req.set_language(params.language);
  auto stub = stub_.get();
  if (!stub.ok()) return stub.status();
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", std::string(authorization_.value()));
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
  request_id::ForwardRequestId(&ctx);
  pb::ConsentRequestStatus resp;
  if (grpc::Status s = (*stub)->CreateRequest(&ctx, req, &resp); !s.ok()) return FromGrpcStatus(s);
  return FromProto(resp);
}

// One AwaitRequest call: what it sends and where the answer lands, alive until it is answered.
struct GrpcConsentClient::AwaitCall {
  grpc::ClientContext ctx;
  pb::AwaitRequestRequest req;
  pb::ConsentRequestStatus resp;
};

std::shared_ptr<GrpcConsentClient::AwaitCall> GrpcConsentClient::NewAwaitCall(
    std::string_view request_id, absl::Duration max_wait) const {
  auto call = std::make_shared<AwaitCall>();
  call->req.set_request_id(std::string(request_id));
  *call->req.mutable_max_wait() = ToProto(max_wait);
  call->ctx.AddMetadata("authorization", std::string(authorization_.value()));
  call->ctx.set_deadline(absl::ToChronoTime(absl::Now() + max_wait + kCallTimeout));
  request_id::ForwardRequestId(&call->ctx);
  return call;
}

absl::StatusOr<ConsentRequestStatus> GrpcConsentClient::AwaitRequest(std::string_view request_id,
                                                                     absl::Duration max_wait) {
  auto stub = stub_.get();
  if (!stub.ok()) return stub.status();
  auto call = NewAwaitCall(request_id, max_wait);
  if (grpc::Status s = (*stub)->AwaitRequest(&call->ctx, call->req, &call->resp); !s.ok()) {
    return FromGrpcStatus(s);
  }
  return FromProto(call->resp);
}

absl::AnyInvocable<void()> GrpcConsentClient::StartAwaitRequest(std::string_view request_id,
                                                                absl::Duration max_wait,
                                                                ConsentStatusDone done) {
  auto stub = stub_.get();
  if (!stub.ok()) {
    std::move(done)(stub.status());
    return [] {};
  }
  auto call = NewAwaitCall(request_id, max_wait);
  // std::function must be copyable; the answer is given once.
  (*stub)->async()->AwaitRequest(
      &call->ctx, &call->req, &call->resp,
      [call, done = std::make_shared<ConsentStatusDone>(std::move(done))](grpc::Status s) {
        if (!s.ok()) return std::move(*done)(FromGrpcStatus(s));
        std::move(*done)(FromProto(call->resp));
      });
  return [call] { call->ctx.TryCancel(); };
}

}  // namespace qsign::identity
