#include "services/gateway/backend_grpc.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_request_id.h"
#include "common/grpc_status.h"
#include "common/strings.h"

namespace qsign::gateway {
namespace {

namespace pb = ::qsign::v1;

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

// call(stub, &response) once the stub's channel is connected.
template <typename Response, typename Stub, typename Call>
absl::StatusOr<Response> Invoke(absl::StatusOr<Stub*> stub, Call call) {
  if (!stub.ok()) return stub.status();
  Response response;
  grpc::Status s = call(*stub, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

}  // namespace

GrpcBackend::GrpcBackend(std::shared_ptr<const daemon::DeferredChannel> signer,
                         std::shared_ptr<const daemon::DeferredChannel> consent,
                         std::string_view client_id, const SecretString& client_secret,
                         absl::Duration call_timeout,
                         std::shared_ptr<const daemon::DeferredChannel> tsa,
                         std::shared_ptr<const daemon::DeferredChannel> identity)
    : signer_(std::move(signer)),
      consent_(std::move(consent)),
      tsa_(tsa == nullptr ? nullptr
                          : std::make_unique<daemon::DeferredStub<qsign::v1::Tsa>>(std::move(tsa))),
      identity_(identity == nullptr
                    ? nullptr
                    : std::make_unique<daemon::DeferredStub<pb::Identity>>(std::move(identity))),
      authorization_(absl::StrCat("Service ", Av(client_id), ".", Av(client_secret.value()))),
      call_timeout_(call_timeout) {}

absl::StatusOr<pb::TimestampResponse> GrpcBackend::Timestamp(const pb::TimestampRequest& request) {
  if (tsa_ == nullptr) return Backend::Timestamp(request);
  grpc::ClientContext ctx;
  Prepare(&ctx);
  return Invoke<pb::TimestampResponse>(tsa_->get(), [&](auto* stub, pb::TimestampResponse* r) {
    return stub->Timestamp(&ctx, request, r);
  });
}

void GrpcBackend::Prepare(grpc::ClientContext* ctx, absl::Duration extra) const {
  ctx->AddMetadata("authorization", std::string(authorization_.value()));
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + call_timeout_ + extra));
  request_id::ForwardRequestId(ctx);
}

absl::StatusOr<pb::ListCredentialsResponse> GrpcBackend::ListCredentials(
    const pb::ListCredentialsRequest& request) {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  return Invoke<pb::ListCredentialsResponse>(signer_.get(),
                                             [&](auto* stub, pb::ListCredentialsResponse* r) {
                                               return stub->ListCredentials(&ctx, request, r);
                                             });
}

absl::StatusOr<pb::CredentialInfo> GrpcBackend::GetCredentialInfo(
    const pb::GetCredentialInfoRequest& request) {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  return Invoke<pb::CredentialInfo>(signer_.get(), [&](auto* stub, pb::CredentialInfo* r) {
    return stub->GetCredentialInfo(&ctx, request, r);
  });
}

absl::StatusOr<pb::SignHashResponse> GrpcBackend::SignHash(const pb::SignHashRequest& request) {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  return Invoke<pb::SignHashResponse>(signer_.get(), [&](auto* stub, pb::SignHashResponse* r) {
    return stub->SignHash(&ctx, request, r);
  });
}

absl::StatusOr<pb::AuthorizeResponse> GrpcBackend::Authorize(const pb::AuthorizeRequest& request) {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  return Invoke<pb::AuthorizeResponse>(consent_.get(), [&](auto* stub, pb::AuthorizeResponse* r) {
    return stub->Authorize(&ctx, request, r);
  });
}

absl::StatusOr<pb::AwaitAuthorizationResponse> GrpcBackend::AwaitAuthorization(
    const pb::AwaitAuthorizationRequest& request) {
  grpc::ClientContext ctx;
  Prepare(&ctx, FromProto(request.max_wait()));
  return Invoke<pb::AwaitAuthorizationResponse>(consent_.get(),
                                                [&](auto* stub, pb::AwaitAuthorizationResponse* r) {
                                                  return stub->AwaitAuthorization(&ctx, request, r);
                                                });
}

absl::StatusOr<pb::StartLoginResponse> GrpcBackend::StartLogin(
    const pb::StartLoginRequest& request) {
  if (identity_ == nullptr) return absl::UnavailableError("identity: not configured");
  grpc::ClientContext ctx;
  Prepare(&ctx);
  return Invoke<pb::StartLoginResponse>(
      identity_->get(),
      [&](auto* stub, pb::StartLoginResponse* r) { return stub->StartLogin(&ctx, request, r); });
}

absl::StatusOr<pb::AwaitLoginResponse> GrpcBackend::AwaitLogin(
    const pb::AwaitLoginRequest& request) {
  if (identity_ == nullptr) return absl::UnavailableError("identity: not configured");
  grpc::ClientContext ctx;
  Prepare(&ctx, FromProto(request.max_wait()));
  return Invoke<pb::AwaitLoginResponse>(
      identity_->get(),
      [&](auto* stub, pb::AwaitLoginResponse* r) { return stub->AwaitLogin(&ctx, request, r); });
}

absl::Status GrpcBackend::Logout(std::string_view session_token) {
  if (identity_ == nullptr) return absl::UnavailableError("identity: not configured");
  // With the user's own session token, not the gateway's credential.
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", absl::StrCat("Bearer ", Av(session_token)));
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + call_timeout_));
  request_id::ForwardRequestId(&ctx);
  return Invoke<pb::LogoutResponse>(identity_->get(),
                                    [&](auto* stub, pb::LogoutResponse* r) {
                                      return stub->Logout(&ctx, pb::LogoutRequest(), r);
                                    })
      .status();
}

}  // namespace qsign::gateway
