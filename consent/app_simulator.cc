#include "consent/app_simulator.h"

#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/ossl.h"

namespace qsign::consent {

namespace pb = ::qsign::v1;

struct ConsentAppSimulator::Key {
  OsslPtr<EVP_PKEY> pkey;
};

namespace {

constexpr absl::Duration kCallTimeout = absl::Seconds(10);
constexpr absl::Duration kReconnectDelay = absl::Milliseconds(200);

void SetDeadline(grpc::ClientContext* ctx) {
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
}

}  // namespace

// The app shows what it signs: the statement must say what the request message says.
absl::Status ConsentAppSimulator::CheckStatement(const pb::ConsentRequest& r) {
  auto s = DecodeStatement(r.statement());
  if (!s.ok()) return absl::FailedPreconditionError("app: the statement does not decode");
  const bool same_header = s->request_id == r.request_id() &&
                           static_cast<int>(s->kind) == static_cast<int>(r.kind()) &&
                           s->display_text == r.display_text();
  bool same_details = true;
  if (s->kind == RequestKind::kLogin) {
    same_details = r.has_login() && s->login.verification_code == r.login().verification_code();
  } else {
    same_details = r.has_sign() && s->sign.credential_id == r.sign().credential_id() &&
                   std::equal(s->sign.hashes.begin(), s->sign.hashes.end(),
                              r.sign().hashes().begin(), r.sign().hashes().end());
  }
  if (!same_header || !same_details) {
    return absl::FailedPreconditionError("app: the statement does not match the request shown");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ConsentAppSimulator>> ConsentAppSimulator::New(
    std::shared_ptr<grpc::ChannelInterface> channel) {
  auto key = std::make_unique<Key>();
  key->pkey.reset(EVP_EC_gen("P-256"));
  if (!key->pkey) return absl::InternalError("app: P-256 key generation failed");
  std::string spki = ToDer(key->pkey.get(), i2d_PUBKEY);
  if (spki.empty()) return absl::InternalError("app: SPKI encoding failed");
  return std::unique_ptr<ConsentAppSimulator>(
      new ConsentAppSimulator(channel, std::move(key), std::move(spki)));
}

absl::StatusOr<std::unique_ptr<ConsentAppSimulator>> ConsentAppSimulator::FromPrivateKeyPem(
    std::shared_ptr<grpc::ChannelInterface> channel, std::string_view private_key_pem,
    std::string device_id, std::string account_id) {
  OsslPtr<BIO> bio(
      BIO_new_mem_buf(private_key_pem.data(), static_cast<int>(private_key_pem.size())));
  if (!bio) return absl::InternalError("app: out of memory");
  auto key = std::make_unique<Key>();
  key->pkey.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key->pkey || !EVP_PKEY_is_a(key->pkey.get(), "EC")) {
    return absl::InvalidArgumentError("app: the stored device key is not an EC private key PEM");
  }
  std::string spki = ToDer(key->pkey.get(), i2d_PUBKEY);
  if (spki.empty()) return absl::InternalError("app: SPKI encoding failed");
  auto app = std::unique_ptr<ConsentAppSimulator>(
      new ConsentAppSimulator(channel, std::move(key), std::move(spki)));
  app->device_id_ = std::move(device_id);
  app->account_id_ = std::move(account_id);
  return app;
}

absl::StatusOr<std::string> ConsentAppSimulator::PrivateKeyPem() const {
  OsslPtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key_->pkey.get(), nullptr, nullptr, 0, nullptr,
                                       nullptr) != 1) {
    return absl::InternalError("app: PEM encoding failed");
  }
  char* data = nullptr;  // Owned by bio.
  const long len = BIO_get_mem_data(bio.get(), &data);
  std::string pem(data, static_cast<size_t>(len));
  OPENSSL_cleanse(data, static_cast<size_t>(len));
  return pem;
}

ConsentAppSimulator::ConsentAppSimulator(const std::shared_ptr<grpc::ChannelInterface>& channel,
                                         std::unique_ptr<Key> key, std::string spki_der)
    : stub_(pb::Consent::NewStub(channel)), key_(std::move(key)), spki_der_(std::move(spki_der)) {}

ConsentAppSimulator::~ConsentAppSimulator() { StopWatching(); }

absl::StatusOr<std::string> ConsentAppSimulator::Sign(std::string_view data) const {
  OsslPtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  size_t len = 0;
  if (!ctx ||
      EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key_->pkey.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()),
                     data.size()) != 1) {
    return absl::InternalError("app: signing failed");
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1) {
    return absl::InternalError("app: signing failed");
  }
  sig.resize(len);
  return sig;
}

absl::Status ConsentAppSimulator::Enroll(std::string_view activation_code,
                                         std::string_view device_name, std::string_view pin,
                                         std::string_view push_token) {
  pb::EnrollDeviceRequest req;
  req.set_activation_code(std::string(activation_code));
  req.set_device_public_key(spki_der_);
  req.set_device_name(std::string(device_name));
  req.set_pin(std::string(pin));
  req.set_push_token(std::string(push_token));
  req.mutable_client()->set_user_agent("qsign-consent-app-simulator");
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  pb::EnrollDeviceResponse resp;
  if (grpc::Status s = stub_->EnrollDevice(&ctx, req, &resp); !s.ok()) return FromGrpcStatus(s);
  device_id_ = resp.device_id();
  account_id_ = resp.account_id();
  certificate_chain_.assign(resp.device_certificate_chain_der().begin(),
                            resp.device_certificate_chain_der().end());
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<grpc::ClientReader<pb::ConsentRequest>>>
ConsentAppSimulator::OpenStream(grpc::ClientContext* ctx) {
  absl::StatusOr<pb::WatchRequestsRequest> wreq = SignedWatchRequest();
  if (!wreq.ok()) return wreq.status();
  auto reader = stub_->WatchRequests(ctx, *wreq);
  // Wait until the server has accepted (or refused) the stream.
  reader->WaitForInitialMetadata();
  const auto& md = ctx->GetServerInitialMetadata();
  if (md.find(std::string(kWatchOpenMetadata)) == md.end()) {
    absl::Status st = FromGrpcStatus(reader->Finish());
    return st.ok() ? absl::UnknownError("app: the stream closed before opening") : st;
  }
  return reader;
}

absl::StatusOr<pb::WatchRequestsRequest> ConsentAppSimulator::SignedWatchRequest() {
  pb::GetChallengeRequest creq;
  creq.set_device_id(device_id_);
  grpc::ClientContext cctx;
  SetDeadline(&cctx);
  pb::GetChallengeResponse challenge;
  if (grpc::Status s = stub_->GetChallenge(&cctx, creq, &challenge); !s.ok()) {
    return FromGrpcStatus(s);
  }
  auto sig = Sign(challenge.challenge());
  if (!sig.ok()) return sig.status();
  pb::WatchRequestsRequest wreq;
  wreq.set_device_id(device_id_);
  wreq.set_challenge(challenge.challenge());
  wreq.set_signature(*sig);
  return wreq;
}

absl::Status ConsentAppSimulator::StartWatching() {
  {
    absl::MutexLock lock(&mu_);
    if (watching_) return absl::FailedPreconditionError("app: already watching");
  }
  if (device_id_.empty()) return absl::FailedPreconditionError("app: not enrolled");
  if (thread_.joinable()) thread_.join();  // A stream that ended on its own.
  auto ctx = std::make_unique<grpc::ClientContext>();
  auto reader = OpenStream(ctx.get());
  if (!reader.ok()) return reader.status();
  {
    absl::MutexLock lock(&mu_);
    watching_ = true;
    stopping_ = false;
    watch_status_ = absl::OkStatus();
    stream_ctx_ = ctx.get();
  }
  thread_ = std::thread([this, c = std::move(ctx), r = *std::move(reader)]() mutable {
    pthread_setname_np(pthread_self(), "consent-app");
    ReadLoop(std::move(c), std::move(r));
  });
  return absl::OkStatus();
}

void ConsentAppSimulator::ReadLoop(std::unique_ptr<grpc::ClientContext> ctx,
                                   std::unique_ptr<grpc::ClientReader<pb::ConsentRequest>> reader) {
  while (true) {
    pb::ConsentRequest msg;
    while (reader->Read(&msg)) {
      std::optional<Decision> decision;
      std::string pin;
      {
        absl::MutexLock lock(&mu_);
        if (!seen_.insert(msg.request_id()).second) continue;
        decision = auto_decision_;
        pin = auto_pin_;
        if (!decision) queue_.push_back(msg);
      }
      if (decision) {
        auto out = *decision == Decision::kApprove ? Approve(msg, pin) : Deny(msg);
        absl::MutexLock lock(&mu_);
        if (out.ok()) ++auto_decisions_;
      }
    }
    absl::Status st = FromGrpcStatus(reader->Finish());
    reader.reset();  // Before its context.
    // A dropped connection is reopened with a fresh challenge; a refusal (deactivated,
    // unauthenticated) or StopWatching is final.
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        stream_ctx_ = nullptr;
        if (stopping_ || st.code() != absl::StatusCode::kUnavailable) {
          watch_status_ = stopping_ ? absl::CancelledError("app: stopped")
                          : st.ok() ? absl::CancelledError("app: stream ended")
                                    : st;
          watching_ = false;
          return;
        }
      }
      absl::SleepFor(kReconnectDelay);
      ctx = std::make_unique<grpc::ClientContext>();
      {
        absl::MutexLock lock(&mu_);
        // StopWatching during the delay found no stream to cancel: stop here, or the reopened
        // stream would be read forever.
        if (stopping_) {
          watch_status_ = absl::CancelledError("app: stopped");
          watching_ = false;
          return;
        }
        stream_ctx_ = ctx.get();  // From here StopWatching cancels the reopening stream.
      }
      auto reopened = OpenStream(ctx.get());
      if (reopened.ok()) {
        reader = *std::move(reopened);
        break;
      }
      st = reopened.status();
    }
  }
}

void ConsentAppSimulator::StopWatching() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (stream_ctx_ != nullptr) stream_ctx_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
  absl::MutexLock lock(&mu_);
  watching_ = false;
}

absl::StatusOr<pb::ConsentRequest> ConsentAppSimulator::NextRequest(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]()
                   ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty() || !watching_; };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  if (!queue_.empty()) {
    pb::ConsentRequest r = std::move(queue_.front());
    queue_.pop_front();
    return r;
  }
  if (!watching_)
    return watch_status_.ok() ? absl::FailedPreconditionError("app: not watching") : watch_status_;
  return absl::DeadlineExceededError("app: no request arrived in time");
}

absl::Status ConsentAppSimulator::watch_status() const {
  absl::MutexLock lock(&mu_);
  return watch_status_;
}

void ConsentAppSimulator::SetAutoDecision(std::optional<Decision> decision, std::string pin) {
  absl::MutexLock lock(&mu_);
  auto_decision_ = decision;
  auto_pin_ = std::move(pin);
}

int ConsentAppSimulator::auto_decisions() const {
  absl::MutexLock lock(&mu_);
  return auto_decisions_;
}

absl::StatusOr<pb::ApproveResponse> ConsentAppSimulator::Approve(const pb::ConsentRequest& request,
                                                                 std::string_view pin) {
  if (auto s = CheckStatement(request); !s.ok()) return s;
  return Decide(request.request_id(), request.statement(), Decision::kApprove, pin);
}

absl::StatusOr<pb::ApproveResponse> ConsentAppSimulator::Deny(const pb::ConsentRequest& request) {
  if (auto s = CheckStatement(request); !s.ok()) return s;
  return Decide(request.request_id(), request.statement(), Decision::kDeny, "");
}

absl::StatusOr<pb::ApproveResponse> ConsentAppSimulator::Decide(std::string_view request_id,
                                                                std::string_view statement,
                                                                Decision decision,
                                                                std::string_view pin) {
  auto challenge = GetApprovalChallenge(request_id);
  if (!challenge.ok()) return challenge.status();
  auto sig = Sign(ApprovalMessage(statement, decision, *challenge));
  if (!sig.ok()) return sig.status();
  return SendApprove(request_id, device_id_, decision, pin, *challenge, *sig);
}

absl::StatusOr<std::string> ConsentAppSimulator::GetApprovalChallenge(std::string_view request_id) {
  pb::GetApprovalChallengeRequest req;
  req.set_request_id(std::string(request_id));
  req.set_device_id(device_id_);
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  pb::GetApprovalChallengeResponse resp;
  if (grpc::Status s = stub_->GetApprovalChallenge(&ctx, req, &resp); !s.ok()) {
    return FromGrpcStatus(s);
  }
  return resp.challenge();
}

absl::StatusOr<pb::ChangePinResponse> ConsentAppSimulator::ChangePin(std::string_view old_pin,
                                                                     std::string_view new_pin) {
  auto challenge = GetApprovalChallenge("");
  if (!challenge.ok()) return challenge.status();
  auto sig = Sign(PinOperationMessage(PinOperation::kChange, device_id_, *challenge));
  if (!sig.ok()) return sig.status();
  pb::ChangePinRequest req;
  req.set_device_id(device_id_);
  req.set_challenge(*challenge);
  req.set_device_signature(*sig);
  req.set_old_pin(std::string(old_pin));
  req.set_new_pin(std::string(new_pin));
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  pb::ChangePinResponse resp;
  if (grpc::Status s = stub_->ChangePin(&ctx, req, &resp); !s.ok()) return FromGrpcStatus(s);
  return resp;
}

absl::Status ConsentAppSimulator::ResetPin(std::string_view new_pin) {
  auto challenge = GetApprovalChallenge("");
  if (!challenge.ok()) return challenge.status();
  auto sig = Sign(PinOperationMessage(PinOperation::kReset, device_id_, *challenge));
  if (!sig.ok()) return sig.status();
  pb::ResetPinRequest req;
  req.set_device_id(device_id_);
  req.set_challenge(*challenge);
  req.set_device_signature(*sig);
  req.set_new_pin(std::string(new_pin));
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  pb::ResetPinResponse resp;
  return FromGrpcStatus(stub_->ResetPin(&ctx, req, &resp));
}

pb::ApproveRequest ConsentAppSimulator::ApproveRequestFor(std::string_view request_id,
                                                          std::string_view device_id,
                                                          Decision decision, std::string_view pin,
                                                          std::string_view challenge,
                                                          std::string_view signature) {
  pb::ApproveRequest req;
  req.set_request_id(std::string(request_id));
  req.set_device_id(std::string(device_id));
  req.set_decision(decision == Decision::kApprove ? pb::CONSENT_DECISION_APPROVE
                                                  : pb::CONSENT_DECISION_DENY);
  req.set_pin(std::string(pin));
  req.set_device_signature(std::string(signature));
  req.set_challenge(std::string(challenge));
  return req;
}

absl::StatusOr<pb::ApproveResponse> ConsentAppSimulator::SendApprove(
    std::string_view request_id, std::string_view device_id, Decision decision,
    std::string_view pin, std::string_view challenge, std::string_view signature) {
  const pb::ApproveRequest req =
      ApproveRequestFor(request_id, device_id, decision, pin, challenge, signature);
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  pb::ApproveResponse resp;
  if (grpc::Status s = stub_->Approve(&ctx, req, &resp); !s.ok()) return FromGrpcStatus(s);
  return resp;
}

}  // namespace qsign::consent
