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

template <typename Response, typename Call>
absl::StatusOr<Response> Invoke(Call call) {
  Response response;
  grpc::Status s = call(&response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

}  // namespace

GrpcBackend::GrpcBackend(const std::shared_ptr<grpc::ChannelInterface>& signer,
                         const std::shared_ptr<grpc::ChannelInterface>& consent,
                         std::string_view client_id, const SecretString& client_secret,
                         absl::Duration call_timeout)
    : signer_(pb::Signer::NewStub(signer)),
      consent_(pb::Consent::NewStub(consent)),
      authorization_(absl::StrCat("Service ", Av(client_id), ".", Av(client_secret.value()))),
      call_timeout_(call_timeout) {}

void GrpcBackend::Prepare(grpc::ClientContext* ctx, absl::Duration extra) const {
  ctx->AddMetadata("authorization", std::string(authorization_.value()));
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + call_timeout_ + extra));
  request_id::ForwardRequestId(ctx);
}

absl::StatusOr<pb::ListCredentialsResponse> GrpcBackend::ListCredentials(
    const pb::ListCredentialsRequest& request) {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  return Invoke<pb::ListCredentialsResponse>(
      [&](pb::ListCredentialsResponse* r) { return signer_->ListCredentials(&ctx, request, r); });
}

absl::StatusOr<pb::CredentialInfo> GrpcBackend::GetCredentialInfo(
    const pb::GetCredentialInfoRequest& request) {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  return Invoke<pb::CredentialInfo>(
      [&](pb::CredentialInfo* r) { return signer_->GetCredentialInfo(&ctx, request, r); });
}

absl::StatusOr<pb::SignHashResponse> GrpcBackend::SignHash(const pb::SignHashRequest& request) {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  return Invoke<pb::SignHashResponse>(
      [&](pb::SignHashResponse* r) { return signer_->SignHash(&ctx, request, r); });
}

absl::StatusOr<pb::AuthorizeResponse> GrpcBackend::Authorize(const pb::AuthorizeRequest& request) {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  return Invoke<pb::AuthorizeResponse>(
      [&](pb::AuthorizeResponse* r) { return consent_->Authorize(&ctx, request, r); });
}

absl::StatusOr<pb::AwaitAuthorizationResponse> GrpcBackend::AwaitAuthorization(
    const pb::AwaitAuthorizationRequest& request) {
  grpc::ClientContext ctx;
  Prepare(&ctx, FromProto(request.max_wait()));
  return Invoke<pb::AwaitAuthorizationResponse>([&](pb::AwaitAuthorizationResponse* r) {
    return consent_->AwaitAuthorization(&ctx, request, r);
  });
}

}  // namespace qsign::gateway
