#include "services/lifecycle/clients_grpc.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_request_id.h"
#include "common/grpc_status.h"
#include "common/proto_key.h"
#include "common/proto_time.h"

namespace qsign::lifecycle {
namespace {

using ::qsign::ToProto;

using ::qsign::FromProto;

namespace pb = ::qsign::v1;

SecretString Authorization(const ServiceCredential& c) {
  if (c.client_id.empty()) return SecretString();
  return SecretString(absl::StrCat("Service ", c.client_id, ".", c.secret));
}

void PrepareContext(grpc::ClientContext* ctx, const SecretString& authorization,
                    absl::Duration timeout) {
  ctx->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
  if (!authorization.empty()) {
    ctx->AddMetadata("authorization", std::string(authorization.value()));
  }
  request_id::ForwardRequestId(ctx);
}

}  // namespace

GrpcSignerClient::GrpcSignerClient(std::shared_ptr<const daemon::DeferredChannel> channel,
                                   const ServiceCredential& credential, absl::Duration timeout)
    : stub_(std::move(channel)), authorization_(Authorization(credential)), timeout_(timeout) {}

void GrpcSignerClient::Prepare(grpc::ClientContext* ctx) const {
  PrepareContext(ctx, authorization_, timeout_);
}

absl::StatusOr<std::string> GrpcSignerClient::CreateKey(std::string_view credential_id,
                                                        std::string_view account_id,
                                                        hsm::KeyType key_type) {
  pb::CreateKeyRequest req;
  req.set_credential_id(std::string(credential_id));
  req.set_account_id(std::string(account_id));
  req.set_key_algorithm(ToProto(key_type));
  pb::CredentialInfo resp;
  auto stub = stub_.get();
  if (!stub.ok()) return stub.status();
  grpc::ClientContext ctx;
  Prepare(&ctx);
  grpc::Status s = (*stub)->CreateKey(&ctx, req, &resp);
  if (!s.ok()) return FromGrpcStatus(s);
  return resp.public_key_spki();
}

absl::Status GrpcSignerClient::SetCertificate(std::string_view credential_id,
                                              const std::vector<std::string>& chain_der) {
  pb::SetCertificateRequest req;
  req.set_credential_id(std::string(credential_id));
  for (const std::string& der : chain_der) req.add_certificate_chain_der(der);
  pb::CredentialInfo resp;
  auto stub = stub_.get();
  if (!stub.ok()) return stub.status();
  grpc::ClientContext ctx;
  Prepare(&ctx);
  return FromGrpcStatus((*stub)->SetCertificate(&ctx, req, &resp));
}

absl::Status GrpcSignerClient::DisableCredential(std::string_view credential_id) {
  pb::DisableCredentialRequest req;
  req.set_credential_id(std::string(credential_id));
  pb::CredentialInfo resp;
  auto stub = stub_.get();
  if (!stub.ok()) return stub.status();
  grpc::ClientContext ctx;
  Prepare(&ctx);
  return FromGrpcStatus((*stub)->DisableCredential(&ctx, req, &resp));
}

absl::Status GrpcSignerClient::DestroyKey(std::string_view credential_id, KeyEnd why) {
  pb::DestroyKeyRequest req;
  req.set_credential_id(std::string(credential_id));
  req.set_reason(why == KeyEnd::kExpired ? pb::DestroyKeyRequest::REASON_EXPIRED
                                         : pb::DestroyKeyRequest::REASON_UNSPECIFIED);
  pb::CredentialInfo resp;
  auto stub = stub_.get();
  if (!stub.ok()) return stub.status();
  grpc::ClientContext ctx;
  Prepare(&ctx);
  return FromGrpcStatus((*stub)->DestroyKey(&ctx, req, &resp));
}

GrpcIdentityClient::GrpcIdentityClient(std::shared_ptr<const daemon::DeferredChannel> channel,
                                       const ServiceCredential& credential, absl::Duration timeout)
    : stub_(std::move(channel)), authorization_(Authorization(credential)), timeout_(timeout) {}

void GrpcIdentityClient::Prepare(grpc::ClientContext* ctx) const {
  PrepareContext(ctx, authorization_, timeout_);
}

absl::StatusOr<Account> GrpcIdentityClient::GetAccount(std::string_view account_id) {
  pb::GetAccountRequest req;
  req.set_account_id(std::string(account_id));
  pb::Account resp;
  auto stub = stub_.get();
  if (!stub.ok()) return stub.status();
  grpc::ClientContext ctx;
  Prepare(&ctx);
  grpc::Status s = (*stub)->GetAccount(&ctx, req, &resp);
  if (!s.ok()) return FromGrpcStatus(s);
  Account a{.account_id = resp.account_id(),
            .username = resp.username(),
            .given_name = resp.given_name(),
            .surname = resp.surname(),
            .national_id = resp.national_id(),
            .certificate_email = resp.certificate_email()};
  switch (resp.assurance_level()) {
    case pb::ASSURANCE_LEVEL_LOW:
      a.assurance_level = AssuranceLevel::kLow;
      break;
    case pb::ASSURANCE_LEVEL_SUBSTANTIAL:
      a.assurance_level = AssuranceLevel::kSubstantial;
      break;
    case pb::ASSURANCE_LEVEL_HIGH:
      a.assurance_level = AssuranceLevel::kHigh;
      break;
    default:
      a.assurance_level = AssuranceLevel::kUnspecified;
  }
  return a;
}

absl::StatusOr<int> GrpcIdentityClient::RevokeSessions(std::string_view account_id,
                                                       std::string_view client_address) {
  pb::RevokeSessionsRequest req;
  req.set_account_id(std::string(account_id));
  req.mutable_client()->set_client_address(std::string(client_address));
  pb::RevokeSessionsResponse resp;
  auto stub = stub_.get();
  if (!stub.ok()) return stub.status();
  grpc::ClientContext ctx;
  Prepare(&ctx);
  grpc::Status s = (*stub)->RevokeSessions(&ctx, req, &resp);
  if (!s.ok()) return FromGrpcStatus(s);
  return static_cast<int>(resp.sessions_ended());
}

GrpcConsentClient::GrpcConsentClient(std::shared_ptr<const daemon::DeferredChannel> channel,
                                     const ServiceCredential& credential, absl::Duration timeout)
    : stub_(std::move(channel)), authorization_(Authorization(credential)), timeout_(timeout) {}

void GrpcConsentClient::Prepare(grpc::ClientContext* ctx) const {
  PrepareContext(ctx, authorization_, timeout_);
}

absl::StatusOr<int> GrpcConsentClient::DeactivateDevices(std::string_view account_id,
                                                         std::string_view reason) {
  pb::DeactivateDevicesRequest req;
  req.set_account_id(std::string(account_id));
  req.set_reason(std::string(reason));
  pb::DeactivateDevicesResponse resp;
  auto stub = stub_.get();
  if (!stub.ok()) return stub.status();
  grpc::ClientContext ctx;
  Prepare(&ctx);
  grpc::Status s = (*stub)->DeactivateDevices(&ctx, req, &resp);
  if (!s.ok()) return FromGrpcStatus(s);
  return resp.device_ids_size();
}

}  // namespace qsign::lifecycle
