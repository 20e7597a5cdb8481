// Push-approved login end to end, in one process over real gRPC: the identity service (real),
// the consent service (real) and consent-app simulators, talking to each other through their
// gRPC clients (GrpcConsentClient, GrpcIdentityDirectory), with a real PostgreSQL and SoftHSM2.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/db/pg.h"
#include "common/grpc_server.h"
#include "consent/app_simulator.h"
#include "consent/sad.h"
#include "gtest/gtest.h"
#include "hsm/hsm.h"
#include "qsign/v1/consent.grpc.pb.h"
#include "qsign/v1/identity.grpc.pb.h"
#include "services/consent/clients.h"
#include "services/consent/consent.h"
#include "services/consent/consent_grpc.h"
#include "services/consent/consent_store.h"
#include "services/identity/consent_client_grpc.h"
#include "services/identity/identity.h"
#include "services/identity/identity_grpc.h"
#include "tests/testing/service_test.h"
#include "tests/testing/test_data.h"

namespace qsign {
namespace {

namespace pb = ::qsign::v1;

constexpr char kOperator[] = "Operator ra-ana.operator-secret";
using ::qsign::testing::kPin;
using ::qsign::testing::NationalId;
constexpr char kConsentOperator[] = "Operator ra-ana.consent-operator-secret";

// Each service calls the other; the targets are known only once both servers listen.
class DeferredIdentityDirectory final : public consent::IdentityDirectory {
 public:
  consent::IdentityDirectory* target = nullptr;
  absl::StatusOr<std::string> RedeemActivationCode(std::string_view code,
                                                   std::string_view key) override {
    return target->RedeemActivationCode(code, key);
  }
  absl::StatusOr<std::optional<absl::Time>> LastProofedAt(std::string_view account) override {
    return target->LastProofedAt(account);
  }
};

class DeferredConsentClient final : public identity::ConsentClient {
 public:
  identity::ConsentClient* target = nullptr;
  absl::StatusOr<identity::ConsentRequestStatus> CreateLoginRequest(
      const identity::LoginRequestParams& params) override {
    return target->CreateLoginRequest(params);
  }
  absl::StatusOr<identity::ConsentRequestStatus> AwaitRequest(std::string_view id,
                                                              absl::Duration max_wait) override {
    return target->AwaitRequest(id, max_wait);
  }
};

class NoCredentials final : public consent::CredentialDirectory {
 public:
  absl::StatusOr<consent::CredentialSummary> Lookup(std::string_view) override {
    return absl::NotFoundError("no signer in this test");
  }
};

class LoginTest : public testing::ServiceTest {
 protected:
  LoginTest() : ServiceTest({.pool_size = 16, .hsm_sessions = 8}) {}

  void SetUp() override {
    ServiceTest::SetUp();
    if (HasFatalFailure()) return;
    for (const char* key : {"session-key", "sad-key", "device-ca"}) {
      ASSERT_TRUE(hsm().GenerateKeyPair(key, hsm::KeyType::kEcP256).ok());
    }
    ASSERT_TRUE(identity::MigrateIdentitySchema(pool()).ok());
    ASSERT_TRUE(consent::MigrateConsentSchema(pool()).ok());

    // Identity.
    identity_store_ = identity::NewPostgresIdentityStore(&pool());
    identity::CredentialTable operators, services;
    ASSERT_TRUE(operators.AddSecret("ra-ana", "operator-secret").ok());
    ASSERT_TRUE(services.AddSecret("consent", "consent-secret").ok());
    auto identity = identity::Identity::New(
        &hsm(), identity_store_.get(), &consent_client_, &RealClock::Get(), std::move(operators),
        std::move(services), identity::IdentityConfig{.session_key_ids = {"session-key"}});
    ASSERT_TRUE(identity.ok()) << identity.status();
    identity_ = *std::move(identity);
    identity_grpc_ = std::make_unique<identity::IdentityGrpc>(identity_.get());

    // Consent.
    auto minter = consent::SadMinter::New(&hsm(), "sad-key");
    ASSERT_TRUE(minter.ok());
    minter_ = *std::move(minter);
    auto ca =
        consent::SelfSignedDeviceCaCertificate(&hsm(), "device-ca", "test device CA", absl::Now());
    ASSERT_TRUE(ca.ok()) << ca.status();
    auto issuer = consent::HsmDeviceCertificateIssuer::New(&hsm(), "device-ca", *ca);
    ASSERT_TRUE(issuer.ok());
    issuer_ = *std::move(issuer);
    auto pins = consent::PinHasher::New("k1", SecretString(testing::PinHashKey()),
                                        {.time_cost = 1, .memory_kib = 256}, 4);
    ASSERT_TRUE(pins.ok());
    pins_ = *std::move(pins);
    consent_store_ = consent::NewPostgresConsentStore(&pool());
    auto listener = consent::PgAccountListener::Start(
        conninfo(), std::string(consent::kNotifyChannel), &notifier_);
    ASSERT_TRUE(listener.ok()) << listener.status();
    listener_ = *std::move(listener);
    consent::CredentialTable consent_operators, consent_services;
    ASSERT_TRUE(consent_operators.AddSecret("ra-ana", "consent-operator-secret").ok());
    ASSERT_TRUE(consent_services.AddSecret("identity", "identity-secret").ok());
    auto consent =
        consent::Consent::New({.store = consent_store_.get(),
                               .notifier = &notifier_,
                               .pins = pins_.get(),
                               .sad_minter = minter_.get(),
                               .certificates = issuer_.get(),
                               .identity = &identity_directory_,
                               .credentials = &no_credentials_,
                               .clock = &RealClock::Get()},
                              std::move(consent_operators), std::move(consent_services),
                              // 127.0.0.1 enrols everyone here.
                              consent::ConsentConfig{.enrollments_per_address_per_minute = 0});
    ASSERT_TRUE(consent.ok()) << consent.status();
    consent_ = *std::move(consent);
    consent_grpc_ = std::make_unique<consent::ConsentGrpc>(consent_.get());

    auto identity_server = GrpcServer::Start({}, {identity_grpc_.get()});
    ASSERT_TRUE(identity_server.ok()) << identity_server.status();
    identity_server_ = *std::move(identity_server);
    auto consent_server = GrpcServer::Start({}, {consent_grpc_.get()});
    ASSERT_TRUE(consent_server.ok()) << consent_server.status();
    consent_server_ = *std::move(consent_server);

    identity_channel_ =
        grpc::CreateChannel(identity_server_->local_target(), grpc::InsecureChannelCredentials());
    consent_channel_ =
        grpc::CreateChannel(consent_server_->local_target(), grpc::InsecureChannelCredentials());
    grpc_identity_directory_ = std::make_unique<consent::GrpcIdentityDirectory>(
        qsign::daemon::DeferredChannel::Connected("identity", identity_channel_), "consent",
        SecretString("consent-secret"));
    identity_directory_.target = grpc_identity_directory_.get();
    grpc_consent_client_ = std::make_unique<identity::GrpcConsentClient>(
        qsign::daemon::DeferredChannel::Connected("consent", consent_channel_), "identity",
        SecretString("identity-secret"));
    consent_client_.target = grpc_consent_client_.get();
    identity_stub_ = pb::Identity::NewStub(identity_channel_);
  }

  void TearDown() override {
    if (consent_) consent_->Shutdown();
    if (consent_server_) consent_server_->Shutdown(absl::Seconds(2));
    if (identity_server_) identity_server_->Shutdown(absl::Seconds(2));
  }

  grpc::ClientContext* Ctx(grpc::ClientContext* ctx, const char* authorization = nullptr) {
    if (authorization) ctx->AddMetadata("authorization", authorization);
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    return ctx;
  }

  // A registered, proofed account with an enrolled consent app (not yet watching).
  std::unique_ptr<consent::ConsentAppSimulator> Person(int n, std::string* username) {
    *username = absl::StrCat("person", n, "@example.rs");
    pb::RegisterAccountRequest reg;
    reg.set_username(*username);
    reg.set_given_name("Ana");
    reg.set_surname("Petrović");
    reg.set_national_id(NationalId(n));
    pb::Account account;
    grpc::ClientContext c1;
    grpc::Status s = identity_stub_->RegisterAccount(Ctx(&c1), reg, &account);
    EXPECT_TRUE(s.ok()) << s.error_message();
    pb::ProofIdentityRequest proof;
    proof.set_account_id(account.account_id());
    proof.set_assurance_level(pb::ASSURANCE_LEVEL_HIGH);
    proof.mutable_evidence()->set_document_type(pb::IDENTITY_DOCUMENT_TYPE_NATIONAL_ID_CARD);
    proof.mutable_evidence()->set_document_number("012345678");
    pb::ProofIdentityResponse proofed;
    grpc::ClientContext c2;
    s = identity_stub_->ProofIdentity(Ctx(&c2, kOperator), proof, &proofed);
    EXPECT_TRUE(s.ok()) << s.error_message();
    auto app = consent::ConsentAppSimulator::New(consent_channel_);
    EXPECT_TRUE(app.ok());
    if (!app.ok()) return nullptr;
    absl::Status enrolled = (*app)->Enroll(proofed.activation_code(), "Phone", kPin);
    EXPECT_TRUE(enrolled.ok()) << enrolled;
    EXPECT_EQ((*app)->account_id(), account.account_id());
    return *std::move(app);
  }

  pb::StartLoginResponse StartLogin(const std::string& username) {
    pb::StartLoginRequest req;
    req.set_username(username);
    req.mutable_client()->set_client_address("198.51.100.23");
    pb::StartLoginResponse resp;
    grpc::ClientContext ctx;
    grpc::Status s = identity_stub_->StartLogin(Ctx(&ctx), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }

  pb::AwaitLoginResponse AwaitLogin(const std::string& login_id, int max_wait_seconds) {
    pb::AwaitLoginRequest req;
    req.set_login_id(login_id);
    req.mutable_max_wait()->set_seconds(max_wait_seconds);
    pb::AwaitLoginResponse resp;
    grpc::ClientContext ctx;
    grpc::Status s = identity_stub_->AwaitLogin(Ctx(&ctx), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }

  int64_t PendingRequests() {
    auto res = pool().Exec("SELECT count(*) FROM consent.requests WHERE state = 'PENDING'");
    EXPECT_TRUE(res.ok()) << res.status();
    return res.ok() ? res->GetInt64(0, 0).value_or(-1) : -1;
  }

  DeferredConsentClient consent_client_;
  DeferredIdentityDirectory identity_directory_;
  NoCredentials no_credentials_;
  std::unique_ptr<identity::IdentityStore> identity_store_;
  std::unique_ptr<identity::Identity> identity_;
  std::unique_ptr<identity::IdentityGrpc> identity_grpc_;
  std::unique_ptr<consent::SadMinter> minter_;
  std::unique_ptr<consent::HsmDeviceCertificateIssuer> issuer_;
  std::unique_ptr<consent::PinHasher> pins_;
  std::unique_ptr<consent::ConsentStore> consent_store_;
  consent::AccountNotifier notifier_;
  std::unique_ptr<consent::PgAccountListener> listener_;
  std::unique_ptr<consent::Consent> consent_;
  std::unique_ptr<consent::ConsentGrpc> consent_grpc_;
  std::unique_ptr<GrpcServer> identity_server_;
  std::unique_ptr<GrpcServer> consent_server_;
  std::shared_ptr<grpc::Channel> identity_channel_;
  std::shared_ptr<grpc::Channel> consent_channel_;
  std::unique_ptr<consent::GrpcIdentityDirectory> grpc_identity_directory_;
  std::unique_ptr<identity::GrpcConsentClient> grpc_consent_client_;
  std::unique_ptr<pb::Identity::Stub> identity_stub_;
};

TEST_F(LoginTest, UsernamePushPinToken) {
  std::string username;
  auto app = Person(1, &username);
  ASSERT_TRUE(app);
  ASSERT_TRUE(app->StartWatching().ok());
  pb::StartLoginResponse start = StartLogin(username);
  auto pushed = app->NextRequest(absl::Seconds(5));
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  // The phone shows the code the portal shows.
  EXPECT_EQ(pushed->login().verification_code(), start.verification_code());
  EXPECT_EQ(AwaitLogin(start.login_id(), 0).state(), pb::LOGIN_STATE_PENDING);
  auto approved = app->Approve(*pushed, kPin);
  ASSERT_TRUE(approved.ok()) << approved.status();
  EXPECT_EQ(approved->result(), pb::APPROVE_RESULT_APPROVED);
  pb::AwaitLoginResponse done = AwaitLogin(start.login_id(), 10);
  EXPECT_EQ(done.state(), pb::LOGIN_STATE_APPROVED);
  EXPECT_FALSE(done.session_token().empty());
  EXPECT_EQ(done.account_id(), app->account_id());
}

TEST_F(LoginTest, DeniedOnThePhoneIsADeniedLogin) {
  std::string username;
  auto app = Person(2, &username);
  ASSERT_TRUE(app);
  ASSERT_TRUE(app->StartWatching().ok());
  pb::StartLoginResponse start = StartLogin(username);
  auto pushed = app->NextRequest(absl::Seconds(5));
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  ASSERT_TRUE(app->Deny(*pushed).ok());
  pb::AwaitLoginResponse done = AwaitLogin(start.login_id(), 10);
  EXPECT_EQ(done.state(), pb::LOGIN_STATE_DENIED);
  EXPECT_TRUE(done.session_token().empty());
}

TEST_F(LoginTest, BlockedPinIsUnblockedByAnOperatorOnIdentitysRecentProofing) {
  std::string username;
  auto app = Person(3, &username);
  ASSERT_TRUE(app);
  ASSERT_TRUE(app->StartWatching().ok());
  pb::StartLoginResponse start = StartLogin(username);
  auto pushed = app->NextRequest(absl::Seconds(5));
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(app->Approve(*pushed, "999999").ok());
  EXPECT_EQ(AwaitLogin(start.login_id(), 5).state(), pb::LOGIN_STATE_DENIED);

  auto consent_stub = pb::Consent::NewStub(consent_channel_);
  auto unblock = [&] {
    pb::UnblockPinRequest req;
    req.set_account_id(app->account_id());
    req.set_new_pin("802514");
    grpc::ClientContext ctx;
    pb::UnblockPinResponse resp;
    return consent_stub->UnblockPin(Ctx(&ctx, kConsentOperator), req, &resp);
  };
  // Person() proofed the account at identity moments ago; consent reads that proofing time
  // through Identity.GetAccount (GrpcIdentityDirectory) before it lets the operator unblock.
  grpc::Status s = unblock();
  ASSERT_TRUE(s.ok()) << s.error_message();
  pb::StartLoginResponse again = StartLogin(username);
  auto next = app->NextRequest(absl::Seconds(5));
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(app->Approve(*next, "802514")->result(), pb::APPROVE_RESULT_APPROVED);
  EXPECT_EQ(AwaitLogin(again.login_id(), 10).state(), pb::LOGIN_STATE_APPROVED);
}

TEST_F(LoginTest, TwoHundredConcurrentLoginsAllSucceedWithNothingLeftPending) {
  constexpr int kPeople = 200;
  std::vector<std::unique_ptr<consent::ConsentAppSimulator>> apps;
  std::vector<std::string> usernames(kPeople);
  for (int i = 0; i < kPeople; ++i) {
    apps.push_back(Person(100 + i, &usernames[i]));
    ASSERT_TRUE(apps.back());
    apps.back()->SetAutoDecision(consent::Decision::kApprove, kPin);
    ASSERT_TRUE(apps.back()->StartWatching().ok());
  }
  std::atomic<int> approved{0};
  std::vector<absl::Duration> took(kPeople);
  const absl::Time t0 = absl::Now();
  std::vector<std::thread> portals;
  for (int i = 0; i < kPeople; ++i) {
    portals.emplace_back([&, i] {
      const absl::Time start_at = absl::Now();
      pb::StartLoginResponse start = StartLogin(usernames[i]);
      pb::AwaitLoginResponse done = AwaitLogin(start.login_id(), 30);
      took[i] = absl::Now() - start_at;
      if (done.state() == pb::LOGIN_STATE_APPROVED && !done.session_token().empty()) ++approved;
    });
  }
  for (auto& t : portals) t.join();
  const absl::Duration all = absl::Now() - t0;
  std::sort(took.begin(), took.end());
  std::cout << kPeople << " concurrent logins in " << all << "; per login p50 " << took[kPeople / 2]
            << ", p99 " << took[kPeople * 99 / 100] << "\n";
  EXPECT_EQ(approved.load(), kPeople);
  int decided = 0;
  for (auto& app : apps) decided += app->auto_decisions();
  EXPECT_EQ(decided, kPeople);
  EXPECT_EQ(PendingRequests(), 0);
}

}  // namespace
}  // namespace qsign
