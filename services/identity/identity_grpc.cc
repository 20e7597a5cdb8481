#include "services/identity/identity_grpc.h"

#include <chrono>
#include <string>
#include <utility>

#include "absl/time/clock.h"
#include "common/audit_proto.h"
#include "common/grpc_request_id.h"
#include "common/grpc_status.h"
#include "common/proto_time.h"
#include "common/request_id.h"

namespace qsign::identity {
namespace {

using ::qsign::ToProto;

namespace pb = ::qsign::v1;

// Left for the reply to travel back before the caller's deadline.
constexpr absl::Duration kDeadlineMargin = absl::Milliseconds(200);

pb::AssuranceLevel ToProto(AssuranceLevel level) {
  return static_cast<pb::AssuranceLevel>(static_cast<int>(level));
}

AssuranceLevel FromProto(pb::AssuranceLevel level) {
  switch (level) {
    case pb::ASSURANCE_LEVEL_LOW:
      return AssuranceLevel::kLow;
    case pb::ASSURANCE_LEVEL_SUBSTANTIAL:
      return AssuranceLevel::kSubstantial;
    case pb::ASSURANCE_LEVEL_HIGH:
      return AssuranceLevel::kHigh;
    default:
      return AssuranceLevel::kUnspecified;
  }
}

DocumentType FromProto(pb::IdentityDocumentType type) {
  switch (type) {
    case pb::IDENTITY_DOCUMENT_TYPE_NATIONAL_ID_CARD:
      return DocumentType::kNationalIdCard;
    case pb::IDENTITY_DOCUMENT_TYPE_PASSPORT:
      return DocumentType::kPassport;
    default:
      return DocumentType::kUnspecified;
  }
}

void ToProto(const Account& a, pb::Account* out) {
  out->set_account_id(a.account_id);
  out->set_username(a.username);
  out->set_given_name(a.given_name);
  out->set_surname(a.surname);
  out->set_national_id(a.national_id);
  out->set_certificate_email(a.certificate_email);
  out->set_assurance_level(ToProto(a.assurance_level));
  if (a.proofed_at) *out->mutable_proofed_at() = ToProto(*a.proofed_at);
  *out->mutable_created_at() = ToProto(a.created_at);
}

std::string_view Authorization(const grpc::ServerContext* ctx) {
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return {};
  return std::string_view(it->second.data(), it->second.size());
}

ClientInfo ClientOf(const ClientAddressResolver& resolver, const grpc::ServerContext* ctx,
                    const pb::ClientContext& client) {
  return ClientInfo{.client_address = client.client_address().substr(0, 128),
                    .user_agent = client.user_agent().substr(0, 256),
                    .peer = ctx->peer(),
                    .network_address = resolver.Resolve(*ctx)};
}

// Logs what the client does not get to see, then converts.
grpc::Status Reply(std::string_view rpc, const absl::Status& status) {
  return LoggedReply("identity", rpc, status);
}

}  // namespace

grpc::Status IdentityGrpc::RegisterAccount(grpc::ServerContext* ctx,
                                           const pb::RegisterAccountRequest* req,
                                           pb::RegisterAccountResponse* resp) {
  auto answer = identity_->RegisterAccount({.username = req->username(),
                                            .given_name = req->given_name(),
                                            .surname = req->surname(),
                                            .national_id = req->national_id(),
                                            .certificate_email = req->certificate_email()},
                                           ClientOf(client_address_, ctx, req->client()));
  if (!answer.ok()) return Reply("RegisterAccount", answer.status());
  resp->set_next_step(
      "check your e-mail: open the link in it to finish the registration, then a registration "
      "officer verifies your identity document");
  *resp->mutable_link_expires_at() = ToProto(answer->link_expires_at);
  return grpc::Status::OK;
}

grpc::Status IdentityGrpc::ConfirmRegistration(grpc::ServerContext* ctx,
                                               const pb::ConfirmRegistrationRequest* req,
                                               pb::Account* resp) {
  auto account =
      identity_->ConfirmRegistration(req->token(), ClientOf(client_address_, ctx, req->client()));
  if (!account.ok()) return Reply("ConfirmRegistration", account.status());
  ToProto(*account, resp);
  return grpc::Status::OK;
}

grpc::Status IdentityGrpc::ProofIdentity(grpc::ServerContext* ctx,
                                         const pb::ProofIdentityRequest* req,
                                         pb::ProofIdentityResponse* resp) {
  auto caller = identity_->Authenticate(Authorization(ctx));
  if (!caller.ok()) return Reply("ProofIdentity", caller.status());
  auto result =
      identity_->ProofIdentity(*caller,
                               {.account_id = req->account_id(),
                                .assurance_level = FromProto(req->assurance_level()),
                                .document_type = FromProto(req->evidence().document_type()),
                                .document_number = req->evidence().document_number(),
                                .note = req->evidence().note()},
                               ClientOf(client_address_, ctx, req->client()));
  if (!result.ok()) return Reply("ProofIdentity", result.status());
  ToProto(result->account, resp->mutable_account());
  resp->set_activation_code(std::string(result->activation_code.value()));
  *resp->mutable_activation_code_expires_at() = ToProto(result->activation_code_expires_at);
  return grpc::Status::OK;
}

grpc::Status IdentityGrpc::CorrectIdentity(grpc::ServerContext* ctx,
                                           const pb::CorrectIdentityRequest* req,
                                           pb::Account* resp) {
  auto caller = identity_->Authenticate(Authorization(ctx));
  if (!caller.ok()) return Reply("CorrectIdentity", caller.status());
  auto account = identity_->CorrectIdentity(*caller,
                                            {.account_id = req->account_id(),
                                             .given_name = req->given_name(),
                                             .surname = req->surname(),
                                             .national_id = req->national_id(),
                                             .note = req->note()},
                                            ClientOf(client_address_, ctx, req->client()));
  if (!account.ok()) return Reply("CorrectIdentity", account.status());
  ToProto(*account, resp);
  return grpc::Status::OK;
}

grpc::Status IdentityGrpc::ListAccountAudit(grpc::ServerContext* ctx,
                                            const pb::ListAccountAuditRequest* req,
                                            pb::ListAccountAuditResponse* resp) {
  auto caller = identity_->Authenticate(Authorization(ctx));
  if (!caller.ok()) return Reply("ListAccountAudit", caller.status());
  auto page =
      identity_->ListAccountAudit(*caller, req->account_id(), req->page_size(), req->page_token());
  if (!page.ok()) return Reply("ListAccountAudit", page.status());
  ToProto(*page, resp);
  return grpc::Status::OK;
}

grpc::Status IdentityGrpc::GetAccount(grpc::ServerContext* ctx, const pb::GetAccountRequest* req,
                                      pb::Account* resp) {
  auto caller = identity_->Authenticate(Authorization(ctx));
  if (!caller.ok()) return Reply("GetAccount", caller.status());
  auto account = identity_->GetAccount(*caller, req->account_id(), req->username());
  if (!account.ok()) return Reply("GetAccount", account.status());
  ToProto(*account, resp);
  return grpc::Status::OK;
}

grpc::Status IdentityGrpc::StartLogin(grpc::ServerContext* ctx, const pb::StartLoginRequest* req,
                                      pb::StartLoginResponse* resp) {
  auto start = identity_->StartLogin(req->username(), ClientOf(client_address_, ctx, req->client()),
                                     req->language());
  if (!start.ok()) return Reply("StartLogin", start.status());
  resp->set_login_id(std::move(start->login_id));
  resp->set_verification_code(std::move(start->verification_code));
  *resp->mutable_expires_at() = ToProto(start->expires_at);
  return grpc::Status::OK;
}

namespace {

// One AwaitLogin: answered from the runner once the login is decided, max_wait has passed
// (shortened to the caller's deadline) or the caller went away.
class AwaitLoginReactor final : public grpc::ServerUnaryReactor {
 public:
  AwaitLoginReactor(Identity* identity, TaskRunner* runner, grpc::CallbackServerContext* ctx,
                    const pb::AwaitLoginRequest& req, pb::AwaitLoginResponse* resp) {
    // Current while the first step is posted, so that every step carries it.
    request_id::ScopedRequestId scope(request_id::AcceptCallbackRequestId(ctx));
    absl::Duration max_wait =
        absl::Seconds(req.max_wait().seconds()) + absl::Nanoseconds(req.max_wait().nanos());
    if (ctx->deadline() != std::chrono::system_clock::time_point::max()) {
      max_wait =
          std::min(max_wait, absl::FromChrono(ctx->deadline()) - absl::Now() - kDeadlineMargin);
    }
    wait_ = identity->AwaitLogin(
        req.login_id(), max_wait, runner, [this, resp](absl::StatusOr<LoginOutcome> outcome) {
          if (!outcome.ok()) return Finish(Reply("AwaitLogin", outcome.status()));
          resp->set_state(static_cast<pb::LoginState>(static_cast<int>(outcome->state)));
          if (outcome->state == LoginState::kApproved) {
            resp->set_session_token(std::string(outcome->session_token.value()));
            *resp->mutable_session_expires_at() = ToProto(outcome->session_expires_at);
            resp->set_account_id(outcome->account_id);
          }
          Finish(grpc::Status::OK);
        });
  }

  void OnCancel() override { wait_->Cancel(); }
  void OnDone() override { delete this; }

 private:
  std::shared_ptr<LoginWait> wait_;  // Set in the constructor, before any reaction.
};

}  // namespace

grpc::ServerUnaryReactor* IdentityGrpc::AwaitLogin(grpc::CallbackServerContext* ctx,
                                                   const pb::AwaitLoginRequest* req,
                                                   pb::AwaitLoginResponse* resp) {
  return new AwaitLoginReactor(identity_, &runner_, ctx, *req, resp);
}

grpc::Status IdentityGrpc::Logout(grpc::ServerContext* ctx, const pb::LogoutRequest*,
                                  pb::LogoutResponse*) {
  // A revoked token still logs out (idempotent); an expired or forged one does not.
  auto caller = identity_->Authenticate(Authorization(ctx), /*allow_revoked=*/true);
  if (!caller.ok()) return Reply("Logout", caller.status());
  return Reply("Logout",
               identity_->Logout(*caller, ClientOf(client_address_, ctx, pb::ClientContext())));
}

grpc::Status IdentityGrpc::ValidateSession(grpc::ServerContext* ctx,
                                           const pb::ValidateSessionRequest* req,
                                           pb::SessionInfo* resp) {
  auto caller = identity_->Authenticate(Authorization(ctx));
  if (!caller.ok()) return Reply("ValidateSession", caller.status());
  auto info = identity_->ValidateSession(*caller, req->session_token());
  if (!info.ok()) return Reply("ValidateSession", info.status());
  resp->set_session_id(info->claims.session_id);
  resp->set_account_id(info->claims.account_id);
  *resp->mutable_auth_time() = ToProto(info->claims.auth_time);
  *resp->mutable_expires_at() = ToProto(info->claims.expires_at);
  resp->set_fresh(info->fresh);
  resp->set_assurance_level(static_cast<pb::AssuranceLevel>(info->claims.assurance_level));
  return grpc::Status::OK;
}

grpc::Status IdentityGrpc::RevokeSessions(grpc::ServerContext* ctx,
                                          const pb::RevokeSessionsRequest* req,
                                          pb::RevokeSessionsResponse* resp) {
  auto caller = identity_->Authenticate(Authorization(ctx));
  if (!caller.ok()) return Reply("RevokeSessions", caller.status());
  auto ended = identity_->RevokeSessions(*caller, req->account_id(),
                                         ClientOf(client_address_, ctx, req->client()));
  if (!ended.ok()) return Reply("RevokeSessions", ended.status());
  resp->set_sessions_ended(static_cast<uint32_t>(*ended));
  return grpc::Status::OK;
}

grpc::Status IdentityGrpc::GetSessionKeys(grpc::ServerContext* ctx,
                                          const pb::GetSessionKeysRequest*,
                                          pb::GetSessionKeysResponse* resp) {
  auto caller = identity_->Authenticate(Authorization(ctx));
  if (!caller.ok()) return Reply("GetSessionKeys", caller.status());
  auto keys = identity_->GetSessionKeys(*caller);
  if (!keys.ok()) return Reply("GetSessionKeys", keys.status());
  for (const auto& k : *keys) {
    pb::SessionKey* key = resp->add_keys();
    key->set_key_id(k.key_id);
    key->set_public_key_spki(k.public_key_spki);
    *key->mutable_not_after() = ToProto(k.not_after);
  }
  return grpc::Status::OK;
}

grpc::Status IdentityGrpc::ListSessionRevocations(grpc::ServerContext* ctx,
                                                  const pb::ListSessionRevocationsRequest* req,
                                                  pb::ListSessionRevocationsResponse* resp) {
  auto caller = identity_->Authenticate(Authorization(ctx));
  if (!caller.ok()) return Reply("ListSessionRevocations", caller.status());
  auto page = identity_->ListSessionRevocations(*caller, req->after_sequence());
  if (!page.ok()) return Reply("ListSessionRevocations", page.status());
  for (const auto& e : page->revocations) {
    pb::SessionRevocation* r = resp->add_revocations();
    r->set_sequence(e.sequence);
    r->set_session_id(e.session_id);
    r->set_account_id(e.account_id);
    *r->mutable_revoked_at() = ToProto(e.revoked_at);
    *r->mutable_keep_until() = ToProto(e.keep_until);
  }
  resp->set_last_sequence(page->last_sequence);
  return grpc::Status::OK;
}

grpc::Status IdentityGrpc::RedeemActivationCode(grpc::ServerContext* ctx,
                                                const pb::RedeemActivationCodeRequest* req,
                                                pb::RedeemActivationCodeResponse* resp) {
  auto caller = identity_->Authenticate(Authorization(ctx));
  if (!caller.ok()) return Reply("RedeemActivationCode", caller.status());
  auto redeemed =
      identity_->RedeemActivationCode(*caller, req->activation_code(), req->device_key_sha256(),
                                      ClientOf(client_address_, ctx, pb::ClientContext()));
  if (!redeemed.ok()) return Reply("RedeemActivationCode", redeemed.status());
  resp->set_account_id(redeemed->account_id);
  resp->set_assurance_level(ToProto(redeemed->assurance_level));
  resp->set_repeated(redeemed->repeated);
  return grpc::Status::OK;
}

}  // namespace qsign::identity
