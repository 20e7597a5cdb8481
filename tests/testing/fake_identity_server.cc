#include "tests/testing/fake_identity_server.h"

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <map>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/civil_time.h"
#include "common/auth/session_token.h"
#include "common/grpc_server.h"
#include "qsign/v1/identity.grpc.pb.h"

namespace qsign::testing {

namespace pb = ::qsign::v1;

class FakeIdentityServer::Service final : public pb::Identity::Service {
 public:
  grpc::Status RedeemActivationCode(grpc::ServerContext*,
                                    const pb::RedeemActivationCodeRequest* req,
                                    pb::RedeemActivationCodeResponse* resp) override {
    if (req->device_key_sha256().size() != 32) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "device_key_sha256: 32 bytes");
    }
    absl::MutexLock lock(&mu_);
    auto it = codes_.find(req->activation_code());
    if (it == codes_.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "activation_code: not valid");
    }
    // As identity does: a code binds to the first device key; that key may retry.
    auto key = keys_.find(req->activation_code());
    if (key != keys_.end() && key->second != req->device_key_sha256()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "activation_code: not valid");
    }
    resp->set_account_id(it->second);
    resp->set_repeated(key != keys_.end());
    keys_[req->activation_code()] = req->device_key_sha256();
    ++redemptions_;
    return grpc::Status::OK;
  }

  grpc::Status GetAccount(grpc::ServerContext*, const pb::GetAccountRequest* req,
                          pb::Account* resp) override {
    absl::MutexLock lock(&mu_);
    resp->set_account_id(req->account_id());
    auto it = proofed_.find(req->account_id());
    if (it != proofed_.end()) {
      const absl::Duration since_epoch = it->second - absl::UnixEpoch();
      const int64_t seconds = absl::ToInt64Seconds(since_epoch);
      resp->mutable_proofed_at()->set_seconds(seconds);
      resp->mutable_proofed_at()->set_nanos(
          static_cast<int32_t>(absl::ToInt64Nanoseconds(since_epoch - absl::Seconds(seconds))));
    }
    return grpc::Status::OK;
  }

  Service() {
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nullptr);
    EVP_PKEY_keygen_init(ctx);
    EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx, NID_X9_62_prime256v1);
    EVP_PKEY_keygen(ctx, &key_);
    EVP_PKEY_CTX_free(ctx);
  }
  ~Service() override { EVP_PKEY_free(key_); }

  grpc::Status GetSessionKeys(grpc::ServerContext*, const pb::GetSessionKeysRequest*,
                              pb::GetSessionKeysResponse* resp) override {
    unsigned char* der = nullptr;
    const int len = i2d_PUBKEY(key_, &der);
    pb::SessionKey* k = resp->add_keys();
    k->set_key_id(kKeyId);
    k->set_public_key_spki(std::string(reinterpret_cast<char*>(der), len));
    OPENSSL_free(der);
    return grpc::Status::OK;
  }

  grpc::Status ListSessionRevocations(grpc::ServerContext*,
                                      const pb::ListSessionRevocationsRequest* req,
                                      pb::ListSessionRevocationsResponse* resp) override {
    resp->set_last_sequence(req->after_sequence());
    return grpc::Status::OK;
  }

  std::string Session(const std::string& account_id) {
    absl::MutexLock lock(&mu_);
    auto payload = auth::SessionTokenPayload(
        {.session_id = absl::StrFormat("%032x", ++next_session_),
         .account_id = account_id,
         .issued_at = absl::UnixEpoch(),
         .auth_time = absl::UnixEpoch(),
         .expires_at = absl::FromCivil(absl::CivilSecond(2200, 1, 1), absl::UTCTimeZone()),
         .key_id = kKeyId});
    if (!payload.ok()) return "";
    EVP_MD_CTX* md = EVP_MD_CTX_new();
    size_t len = 0;
    const auto* data = reinterpret_cast<const unsigned char*>(payload->data());
    EVP_DigestSignInit(md, nullptr, EVP_sha256(), nullptr, key_);
    EVP_DigestSign(md, nullptr, &len, data, payload->size());
    std::string sig(len, '\0');
    EVP_DigestSign(md, reinterpret_cast<unsigned char*>(sig.data()), &len, data, payload->size());
    sig.resize(len);
    EVP_MD_CTX_free(md);
    return auth::JoinSessionToken(*payload, sig);
  }

  std::string NewCode(const std::string& account_id) {
    absl::MutexLock lock(&mu_);
    std::string code = absl::StrCat("CODE-", ++next_);
    codes_[code] = account_id;
    return code;
  }
  void SetProofedAt(const std::string& account_id, absl::Time at) {
    absl::MutexLock lock(&mu_);
    proofed_[account_id] = at;
  }
  int redemptions() const {
    absl::MutexLock lock(&mu_);
    return redemptions_;
  }

  std::unique_ptr<GrpcServer> server;

 private:
  mutable absl::Mutex mu_;
  int next_ ABSL_GUARDED_BY(mu_) = 0;
  int redemptions_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, std::string> codes_ ABSL_GUARDED_BY(mu_);
  // Code -> SHA-256 of the device key that redeemed it.
  std::map<std::string, std::string> keys_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, absl::Time> proofed_ ABSL_GUARDED_BY(mu_);
  static constexpr char kKeyId[] = "fake-session-key";
  EVP_PKEY* key_ = nullptr;  // Owned; the session-token key.
  int next_session_ ABSL_GUARDED_BY(mu_) = 0;
};

absl::StatusOr<std::unique_ptr<FakeIdentityServer>> FakeIdentityServer::Start() {
  auto service = std::make_unique<Service>();
  auto server = GrpcServer::Start({}, {service.get()});
  if (!server.ok()) return server.status();
  service->server = *std::move(server);
  return std::unique_ptr<FakeIdentityServer>(new FakeIdentityServer(std::move(service)));
}

FakeIdentityServer::FakeIdentityServer(std::unique_ptr<Service> service)
    : service_(std::move(service)) {}

FakeIdentityServer::~FakeIdentityServer() { service_->server->Shutdown(absl::ZeroDuration()); }

std::string FakeIdentityServer::target() const { return service_->server->local_target(); }

std::string FakeIdentityServer::NewCode(const std::string& account_id) {
  return service_->NewCode(account_id);
}

void FakeIdentityServer::SetProofedAt(const std::string& account_id, absl::Time at) {
  service_->SetProofedAt(account_id, at);
}

std::string FakeIdentityServer::Session(const std::string& account_id) {
  return service_->Session(account_id);
}

int FakeIdentityServer::redemptions() const { return service_->redemptions(); }

}  // namespace qsign::testing
