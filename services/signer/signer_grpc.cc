#include "services/signer/signer_grpc.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/proto_key.h"
#include "common/proto_time.h"
#include "common/strings.h"
#include "services/signer/algorithms.h"

namespace qsign::signer {
namespace {

using ::qsign::ToProto;

namespace pb = ::qsign::v1;

absl::StatusOr<hsm::KeyType> FromProto(pb::KeyAlgorithm algorithm) {
  std::optional<hsm::KeyType> type = KeyTypeFromProto(algorithm);
  if (!type.has_value()) {
    return absl::InvalidArgumentError("key_algorithm: required (EC_P256, EC_P384, RSA_*)");
  }
  return *type;
}

pb::CredentialStatus ToProto(CredentialStatus status) {
  switch (status) {
    case CredentialStatus::kPending:
      return pb::CREDENTIAL_STATUS_PENDING;
    case CredentialStatus::kActive:
      return pb::CREDENTIAL_STATUS_ACTIVE;
    case CredentialStatus::kDisabled:
      return pb::CREDENTIAL_STATUS_DISABLED;
    case CredentialStatus::kExpired:
      return pb::CREDENTIAL_STATUS_EXPIRED;
  }
  return pb::CREDENTIAL_STATUS_UNSPECIFIED;
}

void ToProto(const Credential& c, int max_hashes, pb::CredentialInfo* out) {
  out->set_credential_id(c.credential_id);
  out->set_account_id(c.account_id);
  out->set_status(ToProto(c.status));
  out->set_key_algorithm(ToProto(c.key_type));
  out->set_key_bits(hsm::KeyBits(c.key_type));
  for (auto& oid : SignOidsFor(c.key_type)) out->add_sign_algorithm_oids(std::move(oid));
  out->set_public_key_spki(c.public_key_spki);
  for (const auto& der : c.chain_der) out->add_certificate_chain_der(der);
  out->set_scal("2");
  out->set_max_hashes_per_authorization(max_hashes);
  *out->mutable_created_at() = ToProto(c.created_at);
  if (c.valid_from) *out->mutable_valid_from() = ToProto(*c.valid_from);
  if (c.valid_to) *out->mutable_valid_to() = ToProto(*c.valid_to);
}

// Logs what the client does not get to see, then converts.
grpc::Status Reply(std::string_view rpc, const absl::Status& status) {
  return LoggedReply("signer", rpc, status);
}

}  // namespace

absl::StatusOr<Actor> SignerGrpc::Admin(const grpc::ServerContext* ctx,
                                        std::string_view rpc) const {
  if (access_.services == nullptr || access_.services->empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(Av(rpc),
                     ": refused: this signer has no service credentials (services_file missing or "
                     "empty), so no caller can be the ",
                     access_.admin_client_id, " service"));
  }
  std::string header;
  auto it = ctx->client_metadata().find("authorization");
  if (it != ctx->client_metadata().end()) header.assign(it->second.data(), it->second.size());
  auto presented = auth::ParseAuthorization(header);
  if (!presented.ok()) return presented.status();
  if (presented->scheme != auth::PresentedCredential::Scheme::kService ||
      !access_.services->Check(presented->id, presented->secret.value())) {
    return absl::UnauthenticatedError(absl::StrCat("authorization: ", Av(rpc),
                                                   " needs the credentials of the ",
                                                   access_.admin_client_id, " service"));
  }
  if (presented->id != access_.admin_client_id) {
    return absl::PermissionDeniedError(
        absl::StrCat(Av(rpc), ": only the ", access_.admin_client_id, " service may call it"));
  }
  return Actor{.name = presented->id, .address = ctx->peer()};
}

grpc::Status SignerGrpc::ListCredentials(grpc::ServerContext*,
                                         const pb::ListCredentialsRequest* req,
                                         pb::ListCredentialsResponse* resp) {
  auto creds = signer_->ListCredentials(req->account_id(), req->only_active());
  if (!creds.ok()) return Reply("ListCredentials", creds.status());
  for (const auto& c : *creds) {
    ToProto(c, signer_->config().max_hashes_per_authorization, resp->add_credentials());
  }
  return grpc::Status::OK;
}

grpc::Status SignerGrpc::GetCredentialInfo(grpc::ServerContext*,
                                           const pb::GetCredentialInfoRequest* req,
                                           pb::CredentialInfo* resp) {
  auto cred = signer_->GetCredentialInfo(req->credential_id());
  if (!cred.ok()) return Reply("GetCredentialInfo", cred.status());
  ToProto(*cred, signer_->config().max_hashes_per_authorization, resp);
  return grpc::Status::OK;
}

grpc::Status SignerGrpc::SignHash(grpc::ServerContext* ctx, const pb::SignHashRequest* req,
                                  pb::SignHashResponse* resp) {
  SignHashInput in{.credential_id = req->credential_id(),
                   .hash_algorithm_oid = req->hash_algorithm_oid(),
                   .sign_algorithm_oid = req->sign_algorithm_oid(),
                   .hashes = {req->hashes().begin(), req->hashes().end()},
                   .sad = req->sad(),
                   .ecdsa_raw_signature = req->ecdsa_raw_signature(),
                   .caller = ctx->peer()};
  auto sigs = signer_->SignHash(in);
  if (!sigs.ok()) return Reply("SignHash", sigs.status());
  resp->mutable_signatures()->Reserve(static_cast<int>(sigs->size()));
  for (auto& s : *sigs) resp->add_signatures(std::move(s));
  return grpc::Status::OK;
}

grpc::Status SignerGrpc::CreateKey(grpc::ServerContext* ctx, const pb::CreateKeyRequest* req,
                                   pb::CredentialInfo* resp) {
  auto type = FromProto(req->key_algorithm());
  if (!type.ok()) return Reply("CreateKey", type.status());
  auto actor = Admin(ctx, "CreateKey");
  if (!actor.ok()) return Reply("CreateKey", actor.status());
  auto cred = signer_->CreateKey(req->credential_id(), req->account_id(), *type, *actor);
  if (!cred.ok()) return Reply("CreateKey", cred.status());
  ToProto(*cred, signer_->config().max_hashes_per_authorization, resp);
  return grpc::Status::OK;
}

grpc::Status SignerGrpc::SetCertificate(grpc::ServerContext* ctx,
                                        const pb::SetCertificateRequest* req,
                                        pb::CredentialInfo* resp) {
  auto actor = Admin(ctx, "SetCertificate");
  if (!actor.ok()) return Reply("SetCertificate", actor.status());
  auto cred = signer_->SetCertificate(
      req->credential_id(),
      {req->certificate_chain_der().begin(), req->certificate_chain_der().end()}, *actor);
  if (!cred.ok()) return Reply("SetCertificate", cred.status());
  ToProto(*cred, signer_->config().max_hashes_per_authorization, resp);
  return grpc::Status::OK;
}

grpc::Status SignerGrpc::DisableCredential(grpc::ServerContext* ctx,
                                           const pb::DisableCredentialRequest* req,
                                           pb::CredentialInfo* resp) {
  auto actor = Admin(ctx, "DisableCredential");
  if (!actor.ok()) return Reply("DisableCredential", actor.status());
  auto cred = signer_->DisableCredential(req->credential_id(), *actor);
  if (!cred.ok()) return Reply("DisableCredential", cred.status());
  ToProto(*cred, signer_->config().max_hashes_per_authorization, resp);
  return grpc::Status::OK;
}

grpc::Status SignerGrpc::DestroyKey(grpc::ServerContext* ctx, const pb::DestroyKeyRequest* req,
                                    pb::CredentialInfo* resp) {
  Signer::DestroyReason reason;
  switch (req->reason()) {
    case pb::DestroyKeyRequest::REASON_UNSPECIFIED:
      reason = Signer::DestroyReason::kRevoked;
      break;
    case pb::DestroyKeyRequest::REASON_EXPIRED:
      reason = Signer::DestroyReason::kExpired;
      break;
    default:
      return Reply("DestroyKey", absl::InvalidArgumentError("reason: unknown value"));
  }
  auto actor = Admin(ctx, "DestroyKey");
  if (!actor.ok()) return Reply("DestroyKey", actor.status());
  auto cred = signer_->DestroyKey(req->credential_id(), *actor, reason);
  if (!cred.ok()) return Reply("DestroyKey", cred.status());
  ToProto(*cred, signer_->config().max_hashes_per_authorization, resp);
  return grpc::Status::OK;
}

}  // namespace qsign::signer
