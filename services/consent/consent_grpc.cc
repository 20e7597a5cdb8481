#include "services/consent/consent_grpc.h"

#include <deque>
#include <optional>
#include <string>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/audit_proto.h"
#include "common/grpc_request_id.h"
#include "common/grpc_status.h"
#include "common/proto_time.h"
#include "common/request_id.h"

namespace qsign::consent {
namespace {

using ::qsign::ToProto;

namespace pb = ::qsign::v1;

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

pb::ConsentRequestKind ToProto(RequestKind kind) {
  return kind == RequestKind::kSign ? pb::CONSENT_REQUEST_KIND_SIGN
                                    : pb::CONSENT_REQUEST_KIND_LOGIN;
}

pb::ConsentRequestState ToProto(RequestState state) {
  switch (state) {
    case RequestState::kPending:
      return pb::CONSENT_REQUEST_STATE_PENDING;
    case RequestState::kApproved:
      return pb::CONSENT_REQUEST_STATE_APPROVED;
    case RequestState::kDenied:
      return pb::CONSENT_REQUEST_STATE_DENIED;
    case RequestState::kExpired:
      return pb::CONSENT_REQUEST_STATE_EXPIRED;
    case RequestState::kCancelled:
      return pb::CONSENT_REQUEST_STATE_CANCELLED;
  }
  return pb::CONSENT_REQUEST_STATE_UNSPECIFIED;
}

void ToProto(const RequestStatus& s, pb::ConsentRequestStatus* out) {
  out->set_request_id(s.request_id);
  out->set_account_id(s.account_id);
  out->set_kind(ToProto(s.kind));
  out->set_state(ToProto(s.state));
  *out->mutable_created_at() = ToProto(s.created_at);
  *out->mutable_expires_at() = ToProto(s.expires_at);
  if (s.decided_at) *out->mutable_decided_at() = ToProto(*s.decided_at);
  out->set_device_id(s.device_id);
}

void ToProto(const PendingRequest& p, pb::ConsentRequest* out) {
  const Statement& s = p.statement;
  out->set_request_id(s.request_id);
  out->set_kind(ToProto(s.kind));
  out->set_statement(p.statement_bytes);
  out->set_display_text(s.display_text);
  *out->mutable_created_at() = ToProto(s.created_at);
  *out->mutable_expires_at() = ToProto(s.expires_at);
  if (s.kind == RequestKind::kLogin) {
    out->mutable_login()->set_verification_code(s.login.verification_code);
    out->mutable_login()->set_client_description(s.login.client_description);
  } else {
    pb::SignDetails* sign = out->mutable_sign();
    sign->set_credential_id(s.sign.credential_id);
    sign->set_relying_party_name(s.sign.relying_party_name);
    sign->set_hash_algorithm_oid(s.sign.hash_algorithm_oid);
    for (const auto& h : s.sign.hashes) sign->add_hashes(h);
    for (const auto& d : s.sign.documents) {
      pb::DocumentInfo* doc = sign->add_documents();
      doc->set_label(d.label);
      doc->set_document_name(d.document_name);
      doc->set_document_digest(d.document_digest);
      doc->set_page_count(d.page_count);
    }
  }
}

ClientInfo ClientOf(const ClientAddressResolver& resolver, const grpc::ServerContext* ctx,
                    const pb::ClientContext& client) {
  return ClientInfo{.client_address = client.client_address(),
                    .user_agent = client.user_agent(),
                    .peer = ctx->peer(),
                    .network_address = resolver.Resolve(*ctx)};
}

// Logs what the client does not get to see, then converts.
grpc::Status Reply(std::string_view rpc, const absl::Status& status) {
  return LoggedReply("consent", rpc, status);
}

absl::StatusOr<Caller> CallerOf(Consent* consent, const grpc::ServerContext* ctx) {
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return Caller{};
  return consent->Authenticate(std::string_view(it->second.data(), it->second.size()));
}

// max_wait, shortened so that the answer still reaches the caller before its deadline.
absl::Duration WaitWithin(const grpc::ServerContextBase* ctx, absl::Duration max_wait) {
  if (ctx->deadline() == std::chrono::system_clock::time_point::max()) return max_wait;
  const absl::Time deadline = absl::FromChrono(ctx->deadline());
  const absl::Duration left = deadline - absl::Now() - absl::Milliseconds(50);
  return std::max(absl::ZeroDuration(), std::min(max_wait, left));
}

std::string AuthorizationOf(const grpc::ServerContextBase* ctx) {
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  return it == md.end() ? std::string() : std::string(it->second.data(), it->second.size());
}

// One open WatchRequests stream. Consent calls Opened/Send/Done on its runner; gRPC calls the
// On* reactions on its own threads. Writes go out one at a time, in order; the status follows
// the last of them. Deletes itself when gRPC is done with the call.
class WatchReactor final : public grpc::ServerWriteReactor<pb::ConsentRequest>,
                           public RequestStream {
 public:
  WatchReactor(Consent* consent, grpc::CallbackServerContext* ctx,
               const pb::WatchRequestsRequest& req)
      : consent_(consent), ctx_(ctx), request_id_(request_id::AcceptCallbackRequestId(ctx)) {
    handle_ = consent->WatchRequests(req.device_id(), req.challenge(), req.signature(), this);
  }

  void Opened() override {
    // Tells the app at once that the stream is open (consent/app_simulator.h relies on it).
    ctx_->AddInitialMetadata(std::string(kWatchOpenMetadata), "open");
    StartSendInitialMetadata();
  }

  void Send(PendingRequest request) override {
    const pb::ConsentRequest* next = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (failed_) return;
      ToProto(request, &queue_.emplace_back());
      if (writing_) return;
      writing_ = true;
      next = &queue_.front();
    }
    StartWrite(next);
  }

  void Done(absl::Status status) override {
    {
      absl::MutexLock lock(&mu_);
      if (writing_) {
        finish_after_writes_ = std::move(status);
        return;
      }
    }
    End(status);
  }

  void OnWriteDone(bool ok) override {
    const pb::ConsentRequest* next = nullptr;
    std::optional<absl::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      queue_.pop_front();
      if (!ok) {
        failed_ = true;  // The app went away; what is queued stays pending for its next stream.
        queue_.clear();
      }
      if (!queue_.empty()) {
        next = &queue_.front();
      } else {
        writing_ = false;
        finish = std::move(finish_after_writes_);
        finish_after_writes_.reset();
      }
    }
    if (!ok) handle_->Cancel();
    if (next != nullptr) StartWrite(next);
    if (finish) End(*finish);
  }

  void OnCancel() override { handle_->Cancel(); }
  void OnDone() override { delete this; }

 private:
  void End(const absl::Status& status) {
    request_id::ScopedRequestId scope(request_id_);
    // Streams ending because the server stops are expected: the app reconnects elsewhere.
    if (status.code() == absl::StatusCode::kUnavailable && consent_->shutting_down()) {
      return Finish(ToGrpcStatus(status));
    }
    Finish(Reply("WatchRequests", status));
  }

  Consent* const consent_;                  // Not owned.
  grpc::CallbackServerContext* const ctx_;  // Owned by gRPC; alive until OnDone.
  const std::string request_id_;
  std::shared_ptr<WaitHandle> handle_;  // Set in the constructor, before any reaction.
  absl::Mutex mu_;
  std::deque<pb::ConsentRequest> queue_ ABSL_GUARDED_BY(mu_);  // Front: being written.
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> finish_after_writes_ ABSL_GUARDED_BY(mu_);
};

void ToProto(const AuthorizationOutcome& out, pb::AwaitAuthorizationResponse* resp) {
  resp->set_state(ToProto(out.state));
  resp->set_sad(out.sad);
  if (out.sad_expires_at) *resp->mutable_sad_expires_at() = ToProto(*out.sad_expires_at);
}

// One AwaitRequest or AwaitAuthorization: answered from Consent's runner once the request is
// decided, max_wait has passed (shortened to the caller's deadline), the caller went away or
// the server stops.
template <typename Outcome, typename Response>
class AwaitReactor final : public grpc::ServerUnaryReactor {
 public:
  using Done = absl::AnyInvocable<void(absl::StatusOr<Outcome>) &&>;
  // `start(authorization, max_wait, done)` is Consent's AwaitRequest or AwaitAuthorization.
  template <typename Request, typename StartFn>
  AwaitReactor(std::string_view rpc, grpc::CallbackServerContext* ctx, const Request& req,
               Response* resp, StartFn start)
      : request_id_(request_id::AcceptCallbackRequestId(ctx)) {
    const absl::Duration max_wait = FromProto(req.max_wait());
    handle_ = start(AuthorizationOf(ctx), req.request_id(),
                    max_wait < absl::ZeroDuration() ? max_wait : WaitWithin(ctx, max_wait),
                    Done([this, rpc, resp](absl::StatusOr<Outcome> out) {
                      request_id::ScopedRequestId scope(request_id_);
                      if (!out.ok()) return Finish(Reply(rpc, out.status()));
                      ToProto(*out, resp);
                      Finish(grpc::Status::OK);
                    }));
  }

  void OnCancel() override { handle_->Cancel(); }
  void OnDone() override { delete this; }

 private:
  const std::string request_id_;
  std::shared_ptr<WaitHandle> handle_;  // Set in the constructor, before any reaction.
};

}  // namespace

grpc::Status ConsentGrpc::EnrollDevice(grpc::ServerContext* ctx, const pb::EnrollDeviceRequest* req,
                                       pb::EnrollDeviceResponse* resp) {
  EnrollInput in{.activation_code = SecretString(req->activation_code()),
                 .device_public_key = req->device_public_key(),
                 .device_name = req->device_name(),
                 .pin = SecretString(req->pin()),
                 .push_token = req->push_token()};
  auto out = consent_->EnrollDevice(in, ClientOf(client_address_, ctx, req->client()));
  if (!out.ok()) return Reply("EnrollDevice", out.status());
  resp->set_device_id(out->device_id);
  resp->set_account_id(out->account_id);
  for (auto& der : out->certificate_chain_der) resp->add_device_certificate_chain_der(der);
  return grpc::Status::OK;
}

grpc::Status ConsentGrpc::GetChallenge(grpc::ServerContext*, const pb::GetChallengeRequest* req,
                                       pb::GetChallengeResponse* resp) {
  auto out = consent_->GetChallenge(req->device_id());
  if (!out.ok()) return Reply("GetChallenge", out.status());
  resp->set_challenge(out->challenge);
  *resp->mutable_expires_at() = ToProto(out->expires_at);
  return grpc::Status::OK;
}

grpc::ServerWriteReactor<pb::ConsentRequest>* ConsentGrpc::WatchRequests(
    grpc::CallbackServerContext* ctx, const pb::WatchRequestsRequest* req) {
  return new WatchReactor(consent_, ctx, *req);
}

grpc::Status ConsentGrpc::GetApprovalChallenge(grpc::ServerContext*,
                                               const pb::GetApprovalChallengeRequest* req,
                                               pb::GetApprovalChallengeResponse* resp) {
  auto out = consent_->GetApprovalChallenge(req->request_id(), req->device_id());
  if (!out.ok()) return Reply("GetApprovalChallenge", out.status());
  resp->set_challenge(out->challenge);
  *resp->mutable_expires_at() = ToProto(out->expires_at);
  return grpc::Status::OK;
}

grpc::Status ConsentGrpc::ChangePin(grpc::ServerContext* ctx, const pb::ChangePinRequest* req,
                                    pb::ChangePinResponse* resp) {
  PinOperationInput in{.device_id = req->device_id(),
                       .challenge = req->challenge(),
                       .device_signature = req->device_signature(),
                       .old_pin = SecretString(req->old_pin()),
                       .new_pin = SecretString(req->new_pin())};
  auto out = consent_->ChangePin(in, ClientOf(client_address_, ctx, req->client()));
  if (!out.ok()) return Reply("ChangePin", out.status());
  switch (out->result) {
    case ChangePinResult::kChanged:
      resp->set_result(pb::CHANGE_PIN_RESULT_CHANGED);
      break;
    case ChangePinResult::kPinWrong:
      resp->set_result(pb::CHANGE_PIN_RESULT_PIN_WRONG);
      resp->set_remaining_pin_attempts(static_cast<uint32_t>(out->remaining_pin_attempts));
      break;
    case ChangePinResult::kPinBlocked:
      resp->set_result(pb::CHANGE_PIN_RESULT_PIN_BLOCKED);
      break;
  }
  return grpc::Status::OK;
}

grpc::Status ConsentGrpc::ResetPin(grpc::ServerContext* ctx, const pb::ResetPinRequest* req,
                                   pb::ResetPinResponse*) {
  PinOperationInput in{.device_id = req->device_id(),
                       .challenge = req->challenge(),
                       .device_signature = req->device_signature(),
                       .new_pin = SecretString(req->new_pin())};
  return Reply("ResetPin", consent_->ResetPin(in, ClientOf(client_address_, ctx, req->client())));
}

grpc::Status ConsentGrpc::Approve(grpc::ServerContext* ctx, const pb::ApproveRequest* req,
                                  pb::ApproveResponse* resp) {
  ApproveInput in{.request_id = req->request_id(),
                  .device_id = req->device_id(),
                  .pin = SecretString(req->pin()),
                  .device_signature = req->device_signature(),
                  .challenge = req->challenge()};
  if (req->decision() == pb::CONSENT_DECISION_APPROVE) in.decision = Decision::kApprove;
  if (req->decision() == pb::CONSENT_DECISION_DENY) in.decision = Decision::kDeny;
  auto out = consent_->Approve(in, ClientOf(client_address_, ctx, req->client()));
  if (!out.ok()) return Reply("Approve", out.status());
  switch (out->result) {
    case ApproveResult::kApproved:
      resp->set_result(pb::APPROVE_RESULT_APPROVED);
      break;
    case ApproveResult::kDenied:
      resp->set_result(pb::APPROVE_RESULT_DENIED);
      break;
    case ApproveResult::kPinWrong:
      resp->set_result(pb::APPROVE_RESULT_PIN_WRONG);
      resp->set_remaining_pin_attempts(static_cast<uint32_t>(out->remaining_pin_attempts));
      break;
    case ApproveResult::kPinBlocked:
      resp->set_result(pb::APPROVE_RESULT_PIN_BLOCKED);
      break;
  }
  resp->set_state(ToProto(out->state));
  return grpc::Status::OK;
}

grpc::Status ConsentGrpc::CreateRequest(grpc::ServerContext* ctx,
                                        const pb::CreateRequestRequest* req,
                                        pb::ConsentRequestStatus* resp) {
  auto caller = CallerOf(consent_, ctx);
  if (!caller.ok()) return Reply("CreateRequest", caller.status());
  if (req->kind() != pb::CONSENT_REQUEST_KIND_LOGIN) {
    return Reply("CreateRequest", absl::InvalidArgumentError(
                                      "kind: LOGIN only (SIGN requests come from Authorize)"));
  }
  if (!req->has_login()) {
    return Reply("CreateRequest", absl::InvalidArgumentError("login: required"));
  }
  LoginRequestInput in{.account_id = req->account_id(),
                       .login = {.verification_code = req->login().verification_code(),
                                 .client_description = req->login().client_description()},
                       .language = req->language()};
  if (req->has_lifetime()) in.lifetime = FromProto(req->lifetime());
  auto out = consent_->CreateLoginRequest(*caller, in,
                                          ClientOf(client_address_, ctx, pb::ClientContext()));
  if (!out.ok()) return Reply("CreateRequest", out.status());
  ToProto(*out, resp);
  return grpc::Status::OK;
}

grpc::Status ConsentGrpc::GetRequest(grpc::ServerContext* ctx, const pb::GetRequestRequest* req,
                                     pb::ConsentRequestStatus* resp) {
  auto caller = CallerOf(consent_, ctx);
  if (!caller.ok()) return Reply("GetRequest", caller.status());
  auto out = consent_->GetRequest(*caller, req->request_id());
  if (!out.ok()) return Reply("GetRequest", out.status());
  ToProto(*out, resp);
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* ConsentGrpc::AwaitRequest(grpc::CallbackServerContext* ctx,
                                                    const pb::AwaitRequestRequest* req,
                                                    pb::ConsentRequestStatus* resp) {
  return new AwaitReactor<RequestStatus, pb::ConsentRequestStatus>(
      "AwaitRequest", ctx, *req, resp, [this](auto&&... args) {
        return consent_->AwaitRequest(std::forward<decltype(args)>(args)...);
      });
}

grpc::Status ConsentGrpc::Authorize(grpc::ServerContext* ctx, const pb::AuthorizeRequest* req,
                                    pb::AuthorizeResponse* resp) {
  auto caller = CallerOf(consent_, ctx);
  if (!caller.ok()) return Reply("Authorize", caller.status());
  AuthorizeInput in{.credential_id = req->credential_id(),
                    .hash_algorithm_oid = req->hash_algorithm_oid(),
                    .hashes = {req->hashes().begin(), req->hashes().end()},
                    .num_signatures = req->num_signatures(),
                    .relying_party_name = req->relying_party_name(),
                    .language = req->language()};
  for (const auto& d : req->documents()) {
    in.documents.push_back({.label = d.label(),
                            .document_name = d.document_name(),
                            .document_digest = d.document_digest(),
                            .page_count = d.page_count()});
  }
  auto out = consent_->Authorize(*caller, in, ClientOf(client_address_, ctx, req->client()));
  if (!out.ok()) return Reply("Authorize", out.status());
  resp->set_request_id(out->request_id);
  *resp->mutable_expires_at() = ToProto(out->expires_at);
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* ConsentGrpc::AwaitAuthorization(grpc::CallbackServerContext* ctx,
                                                          const pb::AwaitAuthorizationRequest* req,
                                                          pb::AwaitAuthorizationResponse* resp) {
  return new AwaitReactor<AuthorizationOutcome, pb::AwaitAuthorizationResponse>(
      "AwaitAuthorization", ctx, *req, resp, [this](auto&&... args) {
        return consent_->AwaitAuthorization(std::forward<decltype(args)>(args)...);
      });
}

grpc::Status ConsentGrpc::UnblockPin(grpc::ServerContext* ctx, const pb::UnblockPinRequest* req,
                                     pb::UnblockPinResponse* resp) {
  auto caller = CallerOf(consent_, ctx);
  if (!caller.ok()) return Reply("UnblockPin", caller.status());
  auto until = consent_->UnblockPin(*caller, req->account_id(), req->note(),
                                    ClientOf(client_address_, ctx, req->client()));
  if (!until.ok()) return Reply("UnblockPin", until.status());
  *resp->mutable_reset_expires_at() = ToProto(*until);
  return grpc::Status::OK;
}

grpc::Status ConsentGrpc::DeactivateDevices(grpc::ServerContext* ctx,
                                            const pb::DeactivateDevicesRequest* req,
                                            pb::DeactivateDevicesResponse* resp) {
  auto caller = CallerOf(consent_, ctx);
  if (!caller.ok()) return Reply("DeactivateDevices", caller.status());
  auto out = consent_->DeactivateDevices(*caller, req->account_id(), req->reason(),
                                         ClientOf(client_address_, ctx, pb::ClientContext()));
  if (!out.ok()) return Reply("DeactivateDevices", out.status());
  for (auto& id : out->device_ids) resp->add_device_ids(id);
  resp->set_requests_cancelled(static_cast<uint32_t>(out->requests_cancelled));
  return grpc::Status::OK;
}

grpc::Status ConsentGrpc::ListAccountAudit(grpc::ServerContext* ctx,
                                           const pb::ListAccountAuditRequest* req,
                                           pb::ListAccountAuditResponse* resp) {
  auto caller = CallerOf(consent_, ctx);
  if (!caller.ok()) return Reply("ListAccountAudit", caller.status());
  auto page =
      consent_->ListAccountAudit(*caller, req->account_id(), req->page_size(), req->page_token());
  if (!page.ok()) return Reply("ListAccountAudit", page.status());
  ToProto(*page, resp);
  return grpc::Status::OK;
}

}  // namespace qsign::consent
