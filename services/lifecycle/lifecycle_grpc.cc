#include "services/lifecycle/lifecycle_grpc.h"

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/audit_proto.h"
#include "common/grpc_status.h"
#include "common/proto_key.h"
#include "common/proto_time.h"
#include "common/secret.h"
#include "common/strings.h"
#include "services/lifecycle/contracts.h"

namespace qsign::lifecycle {
namespace {

using ::qsign::ToProto;

namespace pb = ::qsign::v1;

absl::Status CheckKeyAlgorithm(pb::KeyAlgorithm a) {
  if (a != pb::KEY_ALGORITHM_UNSPECIFIED && !KeyTypeFromProto(a).has_value()) {
    return absl::InvalidArgumentError("key_algorithm: unknown value");
  }
  return absl::OkStatus();
}

grpc::Status Reply(std::string_view rpc, const absl::Status& status) {
  return LoggedReply("lifecycle", rpc, status);
}

std::string ClientAddress(const pb::ClientContext& client) { return client.client_address(); }

}  // namespace

void ToProto(const CertView& v, pb::Certificate* out) {
  const CertRecord& r = v.record;
  out->set_certificate_id(r.certificate_id);
  out->set_account_id(r.account_id);
  out->set_kind(r.kind == CertKind::kQualified ? pb::CERTIFICATE_KIND_QUALIFIED
                : r.kind == CertKind::kDevice  ? pb::CERTIFICATE_KIND_DEVICE
                                               : pb::CERTIFICATE_KIND_TSA);
  out->set_serial_hex(r.serial_hex);
  out->set_certificate_der(r.certificate_der);
  for (const std::string& der : v.issuer_chain_der) out->add_issuer_chain_der(der);
  switch (v.status) {
    case CertStatusView::kActive:
      out->set_status(pb::CERTIFICATE_STATUS_ACTIVE);
      break;
    case CertStatusView::kRevoked:
      out->set_status(pb::CERTIFICATE_STATUS_REVOKED);
      break;
    case CertStatusView::kExpired:
      out->set_status(pb::CERTIFICATE_STATUS_EXPIRED);
      break;
    case CertStatusView::kPending:
      out->set_status(pb::CERTIFICATE_STATUS_UNSPECIFIED);
      break;
  }
  out->set_subject_dn(r.subject_dn);
  out->set_key_algorithm(ToProto(r.key_type));
  *out->mutable_not_before() = ToProto(r.not_before);
  *out->mutable_not_after() = ToProto(r.not_after);
  if (v.renew_opens_at.has_value()) *out->mutable_renew_opens_at() = ToProto(*v.renew_opens_at);
  if (r.state == CertState::kRevoked && r.revoked_at.has_value()) {
    *out->mutable_revoked_at() = ToProto(*r.revoked_at);
    out->set_revocation_reason(static_cast<pb::RevocationReason>(r.revocation_reason));
  }
  if (r.subject.legal_person.has_value()) {
    out->mutable_legal_person()->set_organization_name(r.subject.legal_person->organization_name);
    out->mutable_legal_person()->set_pib(r.subject.legal_person->pib);
  }
  out->set_device_id(r.device_id);
}

absl::StatusOr<Caller> LifecycleGrpc::CallerOf(const grpc::ServerContext* ctx) {
  auto it = ctx->client_metadata().find("authorization");
  auto caller = authenticator_->Authenticate(
      it == ctx->client_metadata().end() ? std::string_view()
                                         : std::string_view(it->second.data(), it->second.size()));
  if (!caller.ok()) return caller.status();
  if (caller->kind == CallerKind::kAnonymous) {
    return absl::UnauthenticatedError("authorization: metadata required");
  }
  caller->peer = ctx->peer();
  return caller;
}

grpc::Status LifecycleGrpc::GetContract(grpc::ServerContext*, const pb::GetContractRequest* req,
                                        pb::Contract* resp) {
  auto c = lifecycle_->GetContract(req->version());
  if (!c.ok()) return Reply("GetContract", c.status());
  resp->set_version(c->version);
  resp->set_text(c->text);
  resp->set_text_sha256(c->sha256);
  resp->set_current(c->version == lifecycle_->current_contract().version);
  return grpc::Status::OK;
}

grpc::Status LifecycleGrpc::AcceptContract(grpc::ServerContext* ctx,
                                           const pb::AcceptContractRequest* req,
                                           pb::ContractAcceptance* resp) {
  auto caller = CallerOf(ctx);
  if (!caller.ok()) return Reply("AcceptContract", caller.status());
  auto a = lifecycle_->AcceptContract(*caller, req->version(), req->text_sha256(),
                                      ClientAddress(req->client()));
  if (!a.ok()) return Reply("AcceptContract", a.status());
  resp->set_account_id(a->account_id);
  resp->set_version(a->version);
  resp->set_text_sha256(a->text_sha256);
  *resp->mutable_accepted_at() = ToProto(a->accepted_at);
  return grpc::Status::OK;
}

grpc::Status LifecycleGrpc::Issue(grpc::ServerContext* ctx, const pb::IssueRequest* req,
                                  pb::Certificate* resp) {
  auto caller = CallerOf(ctx);
  if (!caller.ok()) return Reply("Issue", caller.status());
  if (auto s = CheckKeyAlgorithm(req->key_algorithm()); !s.ok()) return Reply("Issue", s);
  IssueInput in{.client_request_id = req->client_request_id(),
                .key_type = KeyTypeFromProto(req->key_algorithm()),
                .client_address = ClientAddress(req->client())};
  if (req->has_legal_person()) {
    in.legal_person =
        LegalPersonSubject{.organization_name = req->legal_person().organization_name(),
                           .pib = req->legal_person().pib()};
  }
  auto cert = lifecycle_->Issue(*caller, in);
  if (!cert.ok()) return Reply("Issue", cert.status());
  ToProto(*cert, resp);
  return grpc::Status::OK;
}

grpc::Status LifecycleGrpc::Renew(grpc::ServerContext* ctx, const pb::RenewRequest* req,
                                  pb::Certificate* resp) {
  auto caller = CallerOf(ctx);
  if (!caller.ok()) return Reply("Renew", caller.status());
  if (auto s = CheckKeyAlgorithm(req->key_algorithm()); !s.ok()) return Reply("Renew", s);
  auto cert = lifecycle_->Renew(*caller, {.client_request_id = req->client_request_id(),
                                          .certificate_id = req->certificate_id(),
                                          .key_type = KeyTypeFromProto(req->key_algorithm()),
                                          .client_address = ClientAddress(req->client())});
  if (!cert.ok()) return Reply("Renew", cert.status());
  ToProto(*cert, resp);
  return grpc::Status::OK;
}

grpc::Status LifecycleGrpc::Revoke(grpc::ServerContext* ctx, const pb::RevokeRequest* req,
                                   pb::Certificate* resp) {
  auto caller = CallerOf(ctx);
  if (!caller.ok()) return Reply("Revoke", caller.status());
  auto cert = lifecycle_->Revoke(*caller, {.certificate_id = req->certificate_id(),
                                           .serial_hex = req->serial_hex(),
                                           .reason = static_cast<int>(req->reason()),
                                           .client_address = ClientAddress(req->client())});
  if (!cert.ok()) return Reply("Revoke", cert.status());
  ToProto(*cert, resp);
  return grpc::Status::OK;
}

grpc::Status LifecycleGrpc::RevokeAll(grpc::ServerContext* ctx, const pb::RevokeAllRequest* req,
                                      pb::RevokeAllResponse* resp) {
  auto caller = CallerOf(ctx);
  if (!caller.ok()) return Reply("RevokeAll", caller.status());
  auto result = lifecycle_->RevokeAll(*caller, req->account_id(), static_cast<int>(req->reason()),
                                      ClientAddress(req->client()));
  if (!result.ok()) return Reply("RevokeAll", result.status());
  for (const CertView& v : result->revoked) ToProto(v, resp->add_revoked_certificates());
  resp->set_devices_deactivated(static_cast<uint32_t>(result->devices_deactivated));
  resp->set_sessions_ended(static_cast<uint32_t>(result->sessions_ended));
  resp->set_job_id(static_cast<uint64_t>(result->job_id));
  resp->set_complete(result->complete);
  return grpc::Status::OK;
}

grpc::Status LifecycleGrpc::GetStatus(grpc::ServerContext* ctx, const pb::GetStatusRequest* req,
                                      pb::GetStatusResponse* resp) {
  auto caller = CallerOf(ctx);
  if (!caller.ok()) return Reply("GetStatus", caller.status());
  auto st = lifecycle_->GetStatus(*caller, req->account_id());
  if (!st.ok()) return Reply("GetStatus", st.status());
  switch (st->state) {
    case AccountCertState::kNone:
      resp->set_state(pb::ACCOUNT_CERTIFICATE_STATE_NONE);
      break;
    case AccountCertState::kActive:
      resp->set_state(pb::ACCOUNT_CERTIFICATE_STATE_ACTIVE);
      break;
    case AccountCertState::kRevoked:
      resp->set_state(pb::ACCOUNT_CERTIFICATE_STATE_REVOKED);
      break;
    case AccountCertState::kExpired:
      resp->set_state(pb::ACCOUNT_CERTIFICATE_STATE_EXPIRED);
      break;
  }
  if (st->certificate.has_value()) ToProto(*st->certificate, resp->mutable_certificate());
  if (st->valid_until.has_value()) *resp->mutable_valid_until() = ToProto(*st->valid_until);
  if (st->renew_opens_at.has_value()) {
    *resp->mutable_renew_opens_at() = ToProto(*st->renew_opens_at);
  }
  resp->set_renewal_open(st->renewal_open);
  resp->set_current_contract_version(st->current_contract_version);
  resp->set_accepted_contract_version(st->accepted_contract_version);
  return grpc::Status::OK;
}

grpc::Status LifecycleGrpc::ListCertificates(grpc::ServerContext* ctx,
                                             const pb::ListCertificatesRequest* req,
                                             pb::ListCertificatesResponse* resp) {
  auto caller = CallerOf(ctx);
  if (!caller.ok()) return Reply("ListCertificates", caller.status());
  auto certs = lifecycle_->ListCertificates(*caller, req->account_id(), req->include_device());
  if (!certs.ok()) return Reply("ListCertificates", certs.status());
  for (const CertView& v : *certs) ToProto(v, resp->add_certificates());
  return grpc::Status::OK;
}

grpc::Status LifecycleGrpc::ApproveLegalPerson(grpc::ServerContext* ctx,
                                               const pb::ApproveLegalPersonRequest* req,
                                               pb::LegalPersonApproval* resp) {
  auto caller = CallerOf(ctx);
  if (!caller.ok()) return Reply("ApproveLegalPerson", caller.status());
  auto a =
      lifecycle_->ApproveLegalPerson(*caller, req->account_id(),
                                     {.organization_name = req->legal_person().organization_name(),
                                      .pib = req->legal_person().pib()},
                                     req->note(), ClientAddress(req->client()));
  if (!a.ok()) return Reply("ApproveLegalPerson", a.status());
  resp->set_approval_id(a->approval_id);
  resp->set_account_id(a->account_id);
  resp->mutable_legal_person()->set_organization_name(a->legal_person.organization_name);
  resp->mutable_legal_person()->set_pib(a->legal_person.pib);
  resp->set_approved_by(a->approved_by);
  *resp->mutable_approved_at() = ToProto(a->approved_at);
  return grpc::Status::OK;
}

grpc::Status LifecycleGrpc::ListAccountAudit(grpc::ServerContext* ctx,
                                             const pb::ListAccountAuditRequest* req,
                                             pb::ListAccountAuditResponse* resp) {
  auto caller = CallerOf(ctx);
  if (!caller.ok()) return Reply("ListAccountAudit", caller.status());
  auto page =
      lifecycle_->ListAccountAudit(*caller, req->account_id(), req->page_size(), req->page_token());
  if (!page.ok()) return Reply("ListAccountAudit", page.status());
  ToProto(*page, resp);
  return grpc::Status::OK;
}

grpc::Status LifecycleGrpc::IssueDeviceCertificate(grpc::ServerContext* ctx,
                                                   const pb::IssueDeviceCertificateRequest* req,
                                                   pb::Certificate* resp) {
  auto caller = CallerOf(ctx);
  if (!caller.ok()) return Reply("IssueDeviceCertificate", caller.status());
  auto cert = lifecycle_->IssueDeviceCertificate(*caller, req->account_id(), req->device_id(),
                                                 req->device_public_key(), req->device_name());
  if (!cert.ok()) return Reply("IssueDeviceCertificate", cert.status());
  ToProto(*cert, resp);
  return grpc::Status::OK;
}

grpc::Status LifecycleGrpc::IssueTsaCertificate(grpc::ServerContext* ctx,
                                                const pb::IssueTsaCertificateRequest* req,
                                                pb::Certificate* resp) {
  auto caller = CallerOf(ctx);
  if (!caller.ok()) return Reply("IssueTsaCertificate", caller.status());
  auto cert = lifecycle_->IssueTsaCertificate(*caller, req->public_key(), req->name());
  if (!cert.ok()) return Reply("IssueTsaCertificate", cert.status());
  ToProto(*cert, resp);
  return grpc::Status::OK;
}

}  // namespace qsign::lifecycle
