#include "tests/testing/fake_identity_server.h"

#include <map>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
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
    resp->set_account_id(it->second);
    codes_.erase(it);
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

  grpc::Status ValidateSession(grpc::ServerContext*, const pb::ValidateSessionRequest* req,
                               pb::SessionInfo* resp) override {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(req->session_token());
    if (it == sessions_.end()) return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "bad token");
    resp->set_account_id(it->second);
    return grpc::Status::OK;
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
  void AddSession(const std::string& token, const std::string& account_id) {
    absl::MutexLock lock(&mu_);
    sessions_[token] = account_id;
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
  std::map<std::string, absl::Time> proofed_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> sessions_ ABSL_GUARDED_BY(mu_);
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

void FakeIdentityServer::AddSession(const std::string& session_token,
                                    const std::string& account_id) {
  service_->AddSession(session_token, account_id);
}

int FakeIdentityServer::redemptions() const { return service_->redemptions(); }

}  // namespace qsign::testing
