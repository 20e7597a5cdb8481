#include "services/consent/clients.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_request_id.h"
#include "common/grpc_status.h"
#include "common/proto_time.h"
#include "common/strings.h"

namespace qsign::consent {
namespace {

namespace pb = ::qsign::v1;

constexpr absl::Duration kCallTimeout = absl::Seconds(10);

void Prepare(grpc::ClientContext* ctx, const SecretString& authorization) {
  ctx->AddMetadata("authorization", std::string(authorization.value()));
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
  request_id::ForwardRequestId(ctx);
}

}  // namespace

GrpcIdentityDirectory::GrpcIdentityDirectory(std::shared_ptr<const daemon::DeferredChannel> channel,
                                             std::string_view client_id, const SecretString& secret)
    : stub_(std::move(channel)),
      authorization_(absl::StrCat("Service ", Av(client_id), ".", Av(secret.value()))) {}

absl::StatusOr<RedeemedCode> GrpcIdentityDirectory::RedeemActivationCode(
    std::string_view activation_code, std::string_view device_key_sha256) {
  pb::RedeemActivationCodeRequest req;
  req.set_activation_code(std::string(activation_code));
  req.set_device_key_sha256(std::string(device_key_sha256));
  auto stub = stub_.get();
  if (!stub.ok()) return stub.status();
  grpc::ClientContext ctx;
  Prepare(&ctx, authorization_);
  pb::RedeemActivationCodeResponse resp;
  if (grpc::Status s = (*stub)->RedeemActivationCode(&ctx, req, &resp); !s.ok()) {
    return FromGrpcStatus(s);
  }
  if (resp.account_id().empty()) {
    return absl::InternalError("identity: RedeemActivationCode answered no account");
  }
  return RedeemedCode{.account_id = resp.account_id(), .repeated = resp.repeated()};
}

absl::StatusOr<std::optional<absl::Time>> GrpcIdentityDirectory::LastProofedAt(
    std::string_view account_id) {
  pb::GetAccountRequest req;
  req.set_account_id(std::string(account_id));
  auto stub = stub_.get();
  if (!stub.ok()) return stub.status();
  grpc::ClientContext ctx;
  Prepare(&ctx, authorization_);
  pb::Account resp;
  if (grpc::Status s = (*stub)->GetAccount(&ctx, req, &resp); !s.ok()) return FromGrpcStatus(s);
  if (!resp.has_proofed_at()) return std::optional<absl::Time>();
  return std::optional<absl::Time>(absl::FromUnixSeconds(resp.proofed_at().seconds()) +
                                   absl::Nanoseconds(resp.proofed_at().nanos()));
}

GrpcCredentialDirectory::GrpcCredentialDirectory(
    std::shared_ptr<const daemon::DeferredChannel> channel, std::string_view client_id,
    const SecretString& secret)
    : stub_(std::move(channel)),
      authorization_(absl::StrCat("Service ", Av(client_id), ".", Av(secret.value()))) {}

absl::StatusOr<CredentialSummary> GrpcCredentialDirectory::Lookup(std::string_view credential_id) {
  pb::GetCredentialInfoRequest req;
  req.set_credential_id(std::string(credential_id));
  auto stub = stub_.get();
  if (!stub.ok()) return stub.status();
  grpc::ClientContext ctx;
  Prepare(&ctx, authorization_);
  pb::CredentialInfo resp;
  if (grpc::Status s = (*stub)->GetCredentialInfo(&ctx, req, &resp); !s.ok()) {
    return FromGrpcStatus(s);
  }
  CredentialSummary out{
      .account_id = resp.account_id(),
      .active = resp.status() == pb::CREDENTIAL_STATUS_ACTIVE,
      .max_hashes_per_authorization = static_cast<int>(resp.max_hashes_per_authorization())};
  if (resp.has_valid_from()) out.valid_from = FromProto(resp.valid_from());
  if (resp.has_valid_to()) out.valid_to = FromProto(resp.valid_to());
  return out;
}

GrpcLifecycleDeviceCertificateIssuer::GrpcLifecycleDeviceCertificateIssuer(
    std::shared_ptr<const daemon::DeferredChannel> channel, std::string_view client_id,
    const SecretString& secret)
    : stub_(std::move(channel)),
      authorization_(absl::StrCat("Service ", Av(client_id), ".", Av(secret.value()))) {}

absl::StatusOr<std::vector<std::string>> GrpcLifecycleDeviceCertificateIssuer::Issue(
    const DeviceCertificateRequest& r) {
  pb::IssueDeviceCertificateRequest req;
  req.set_account_id(r.account_id);
  req.set_device_id(r.device_id);
  req.set_device_public_key(r.public_key_spki);
  req.set_device_name(r.device_name);
  auto stub = stub_.get();
  if (!stub.ok()) return stub.status();
  grpc::ClientContext ctx;
  Prepare(&ctx, authorization_);
  pb::Certificate resp;
  if (grpc::Status s = (*stub)->IssueDeviceCertificate(&ctx, req, &resp); !s.ok()) {
    return FromGrpcStatus(s);
  }
  if (resp.certificate_der().empty()) {
    return absl::InternalError("lifecycle: IssueDeviceCertificate answered no certificate");
  }
  std::vector<std::string> chain = {resp.certificate_der()};
  chain.insert(chain.end(), resp.issuer_chain_der().begin(), resp.issuer_chain_der().end());
  return chain;
}

}  // namespace qsign::consent
