// Users' session tokens verified locally by consent and lifecycle (common/auth SessionKeyCache),
// against the real identity service over gRPC, with a real PostgreSQL and SoftHSM2 token: a
// token is accepted without a call to Identity.ValidateSession; a token of another key is refused;
// a logout or revoke-all at identity is refused everywhere within the staleness bound; identity
// unreachable beyond the bound makes Bearer calls UNAVAILABLE; the feed's age is on /metrics.
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/auth/authenticator.h"
#include "common/auth/credential_table.h"
#include "common/auth/session_feed_grpc.h"
#include "common/auth/session_key_cache.h"
#include "common/clock.h"
#include "common/daemon/deferred_channel.h"
#include "common/grpc_server.h"
#include "common/metrics.h"
#include "consent/sad.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsm/hsm.h"
#include "qsign/v1/consent.grpc.pb.h"
#include "qsign/v1/identity.grpc.pb.h"
#include "qsign/v1/lifecycle.grpc.pb.h"
#include "services/consent/consent.h"
#include "services/consent/consent_grpc.h"
#include "services/consent/consent_store.h"
#include "services/consent/device_certificate.h"
#include "services/consent/pin.h"
#include "services/identity/identity.h"
#include "services/identity/identity_grpc.h"
#include "services/identity/identity_store.h"
#include "services/identity/session_token.h"
#include "services/identity/testing/fake_consent_client.h"
#include "services/lifecycle/ca/ca_setup.h"
#include "services/lifecycle/ca/ca_store.h"
#include "services/lifecycle/contracts.h"
#include "services/lifecycle/lifecycle.h"
#include "services/lifecycle/lifecycle_grpc.h"
#include "services/lifecycle/lifecycle_store.h"
#include "services/lifecycle/schema.h"
#include "tests/testing/registration.h"
#include "tests/testing/service_test.h"
#include "tests/testing/test_data.h"

namespace qsign {
namespace {

namespace pb = ::qsign::v1;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::Duration kRefresh = absl::Milliseconds(100);
constexpr absl::Duration kBound = absl::Seconds(1);

// What lifecycle and consent call besides identity: never reached on the paths tested here.
class Unreachable final : public lifecycle::SignerClient,
                          public lifecycle::IdentityClient,
                          public lifecycle::ConsentClient,
                          public consent::IdentityDirectory,
                          public consent::CredentialDirectory {
 public:
  absl::StatusOr<std::string> CreateKey(std::string_view, std::string_view, hsm::KeyType) override {
    return Down();
  }
  absl::Status SetCertificate(std::string_view, const std::vector<std::string>&) override {
    return Down();
  }
  absl::Status DisableCredential(std::string_view) override { return Down(); }
  absl::Status DestroyKey(std::string_view, lifecycle::KeyEnd) override { return Down(); }
  absl::StatusOr<lifecycle::Account> GetAccount(std::string_view) override { return Down(); }
  absl::StatusOr<int> RevokeSessions(std::string_view, std::string_view) override { return Down(); }
  absl::StatusOr<int> DeactivateDevices(std::string_view, std::string_view) override {
    return Down();
  }
  absl::StatusOr<consent::RedeemedCode> RedeemActivationCode(std::string_view,
                                                             std::string_view) override {
    return Down();
  }
  absl::StatusOr<std::optional<absl::Time>> LastProofedAt(std::string_view) override {
    return Down();
  }
  // Consent.Authorize of an authenticated user ends here: NOT_FOUND.
  absl::StatusOr<consent::CredentialSummary> Lookup(std::string_view) override {
    return absl::NotFoundError("credential_id: no such credential");
  }

 private:
  static absl::Status Down() { return absl::UnavailableError("not in this test"); }
};

class SessionAuthTest : public testing::ServiceTest {
 protected:
  void SetUp() override {
    ServiceTest::SetUp();
    if (HasFatalFailure()) return;
    for (const char* key : {"session-key", "rogue-key"}) {
      ASSERT_TRUE(hsm("identity").GenerateKeyPair(key, hsm::KeyType::kEcP256).ok());
    }
    for (const char* key : {"sad-key", "device-ca"}) {
      ASSERT_TRUE(hsm("consent").GenerateKeyPair(key, hsm::KeyType::kEcP256).ok());
    }
    ASSERT_TRUE(identity::MigrateIdentitySchema(pool()).ok());
    ASSERT_TRUE(consent::MigrateConsentSchema(pool()).ok());
    ASSERT_TRUE(lifecycle::MigrateLifecycleSchema(pool()).ok());

    // Identity, serving on its own listener; its RPCs counted in a registry of its own.
    identity_store_ = identity::NewPostgresIdentityStore(&pool());
    auth::CredentialTable services;
    ASSERT_TRUE(services.AddSecret("consent", "consent-secret").ok());
    ASSERT_TRUE(services.AddSecret("lifecycle", "lifecycle-secret").ok());
    auto identity =
        identity::Identity::New(&hsm("identity"), identity_store_.get(), &phone_, &RealClock::Get(),
                                auth::CredentialTable(), std::move(services),
                                identity::IdentityConfig{.session_key_ids = {"session-key"}});
    ASSERT_TRUE(identity.ok()) << identity.status();
    identity_ = *std::move(identity);
    identity_grpc_ = std::make_unique<identity::IdentityGrpc>(identity_.get());
    auto identity_server = GrpcServer::Start({.metrics = &identity_rpcs_}, {identity_grpc_.get()});
    ASSERT_TRUE(identity_server.ok()) << identity_server.status();
    identity_server_ = *std::move(identity_server);
    identity_channel_ =
        grpc::CreateChannel(identity_server_->local_target(), grpc::InsecureChannelCredentials());
    identity_stub_ = pb::Identity::NewStub(identity_channel_);

    // The caches consent and lifecycle verify with, each as its own service client.
    auto to_identity = daemon::DeferredChannel::Connected("identity", identity_channel_);
    consent_feed_ = std::make_unique<auth::GrpcSessionFeed>(to_identity, "consent",
                                                            SecretString("consent-secret"));
    lifecycle_feed_ = std::make_unique<auth::GrpcSessionFeed>(to_identity, "lifecycle",
                                                              SecretString("lifecycle-secret"));
    consent_sessions_ = NewCache(consent_feed_.get(), "consent");
    lifecycle_sessions_ = NewCache(lifecycle_feed_.get(), "lifecycle");
    ASSERT_TRUE(consent_sessions_ && lifecycle_sessions_);

    // Consent.
    auto minter = consent::SadMinter::New(&hsm("consent"), "sad-key");
    ASSERT_TRUE(minter.ok());
    sad_minter_ = *std::move(minter);
    auto ca = consent::SelfSignedDeviceCaCertificate(&hsm("consent"), "device-ca", "test device CA",
                                                     absl::Now());
    ASSERT_TRUE(ca.ok()) << ca.status();
    auto issuer = consent::HsmDeviceCertificateIssuer::New(&hsm("consent"), "device-ca", *ca);
    ASSERT_TRUE(issuer.ok());
    device_issuer_ = *std::move(issuer);
    auto pins = consent::PinHasher::New("k1", SecretString(std::string(32, 'p')),
                                        {.time_cost = 1, .memory_kib = 256}, 1);
    ASSERT_TRUE(pins.ok());
    pins_ = *std::move(pins);
    consent_store_ = consent::NewPostgresConsentStore(&pool());
    auto consent = consent::Consent::New({.store = consent_store_.get(),
                                          .notifier = &notifier_,
                                          .pins = pins_.get(),
                                          .sad_minter = sad_minter_.get(),
                                          .certificates = device_issuer_.get(),
                                          .identity = &unreachable_,
                                          .credentials = &unreachable_,
                                          .sessions = consent_sessions_.get(),
                                          .clock = &RealClock::Get()},
                                         {}, {}, consent::ConsentConfig{});
    ASSERT_TRUE(consent.ok()) << consent.status();
    consent_ = *std::move(consent);
    consent_grpc_ = std::make_unique<consent::ConsentGrpc>(consent_.get());

    // Lifecycle.
    ca_store_ = lifecycle::NewPostgresCaStore(&pool());
    auto cas = lifecycle::CaSet::Init(&hsm("lifecycle"), ca_store_.get(), RealClock::Get(),
                                      lifecycle::CaConfig{});
    ASSERT_TRUE(cas.ok()) << cas.status();
    cas_ = *std::move(cas);
    lifecycle_store_ = lifecycle::NewPostgresLifecycleStore(&pool());
    lifecycle_ = std::make_unique<lifecycle::Lifecycle>(
        cas_.get(), lifecycle_store_.get(), &unreachable_, &unreachable_, &unreachable_,
        &lifecycle::ContractRegistry::BuiltIn(), &RealClock::Get(), lifecycle::LifecycleConfig{});
    lifecycle_auth_ = std::make_unique<auth::Authenticator>(
        auth::CredentialTable(), auth::CredentialTable(), lifecycle_sessions_.get(), "lifecycle");
    lifecycle_grpc_ =
        std::make_unique<lifecycle::LifecycleGrpc>(lifecycle_.get(), lifecycle_auth_.get());

    auto server = GrpcServer::Start({}, {consent_grpc_.get(), lifecycle_grpc_.get()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    auto channel = grpc::CreateChannel(server_->local_target(), grpc::InsecureChannelCredentials());
    consent_stub_ = pb::Consent::NewStub(channel);
    lifecycle_stub_ = pb::Lifecycle::NewStub(channel);

    consent_sessions_->Start();
    lifecycle_sessions_->Start();
    ASSERT_TRUE(WaitFor([&] { return consent_sessions_->FeedAge() < kBound; }));
    ASSERT_TRUE(WaitFor([&] { return lifecycle_sessions_->FeedAge() < kBound; }));
  }

  void TearDown() override {
    if (consent_sessions_) consent_sessions_->Stop();
    if (lifecycle_sessions_) lifecycle_sessions_->Stop();
    if (consent_) consent_->Shutdown();
    if (server_) server_->Shutdown(absl::ZeroDuration());
    if (identity_server_) identity_server_->Shutdown(absl::ZeroDuration());
  }

  static std::unique_ptr<auth::SessionKeyCache> NewCache(auth::SessionFeed* feed,
                                                         std::string component) {
    auto cache = auth::SessionKeyCache::New(
        feed, &RealClock::Get(),
        {.refresh_interval = kRefresh, .max_staleness = kBound, .component = component});
    EXPECT_TRUE(cache.ok()) << cache.status();
    return cache.ok() ? *std::move(cache) : nullptr;
  }

  template <typename Pred>
  static bool WaitFor(Pred done, absl::Duration within = absl::Seconds(10)) {
    const absl::Time deadline = absl::Now() + within;
    while (!done()) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return true;
  }

  static std::unique_ptr<grpc::ClientContext> As(const std::string& authorization) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!authorization.empty()) ctx->AddMetadata("authorization", authorization);
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    return ctx;
  }

  // A registered account with a phone that approves its logins: its id.
  std::string Register(int n) {
    pb::RegisterAccountRequest req;
    req.set_username(absl::StrCat("person", n, "@example.rs"));
    req.set_given_name("Ana");
    req.set_surname("Petrović");
    req.set_national_id(testing::NationalId(n));
    auto account = testing::RegisterAndConfirm(*identity_stub_, pool(), req);
    EXPECT_TRUE(account.ok()) << account.status();
    if (!account.ok()) return "";
    phone_.AddDevice(account->account_id());
    return account->account_id();
  }

  // A login approved on the phone: the session token identity issues.
  std::string Login(int n) {
    pb::StartLoginRequest start;
    start.set_username(absl::StrCat("person", n, "@example.rs"));
    pb::StartLoginResponse started;
    grpc::Status s = identity_stub_->StartLogin(As("").get(), start, &started);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_TRUE(phone_.Approve(phone_.created().back().status.request_id).ok());
    pb::AwaitLoginRequest await;
    await.set_login_id(started.login_id());
    await.mutable_max_wait()->set_seconds(5);
    pb::AwaitLoginResponse done;
    s = identity_stub_->AwaitLogin(As("").get(), await, &done);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(done.state(), pb::LOGIN_STATE_APPROVED);
    return done.session_token();
  }

  // Consent.Authorize with the token: NOT_FOUND (no such credential) once authenticated.
  grpc::Status AtConsent(const std::string& token) {
    pb::AuthorizeRequest req;
    req.set_credential_id("cred-1");
    req.set_hash_algorithm_oid("2.16.840.1.101.3.4.2.1");
    req.add_hashes(std::string(32, 'h'));
    pb::AuthorizeResponse resp;
    return consent_stub_->Authorize(As(absl::StrCat("Bearer ", token)).get(), req, &resp);
  }

  // Lifecycle.GetStatus with the token: OK once authenticated.
  grpc::Status AtLifecycle(const std::string& token) {
    pb::GetStatusResponse resp;
    return lifecycle_stub_->GetStatus(As(absl::StrCat("Bearer ", token)).get(),
                                      pb::GetStatusRequest(), &resp);
  }

  metrics::Registry identity_rpcs_;
  identity::FakeConsentClient phone_{&RealClock::Get()};
  std::unique_ptr<identity::IdentityStore> identity_store_;
  std::unique_ptr<identity::Identity> identity_;
  std::unique_ptr<identity::IdentityGrpc> identity_grpc_;
  std::unique_ptr<GrpcServer> identity_server_;
  std::shared_ptr<grpc::Channel> identity_channel_;
  std::unique_ptr<pb::Identity::Stub> identity_stub_;
  std::unique_ptr<auth::GrpcSessionFeed> consent_feed_;
  std::unique_ptr<auth::GrpcSessionFeed> lifecycle_feed_;
  std::unique_ptr<auth::SessionKeyCache> consent_sessions_;
  std::unique_ptr<auth::SessionKeyCache> lifecycle_sessions_;
  Unreachable unreachable_;
  std::unique_ptr<consent::SadMinter> sad_minter_;
  std::unique_ptr<consent::HsmDeviceCertificateIssuer> device_issuer_;
  std::unique_ptr<consent::PinHasher> pins_;
  std::unique_ptr<consent::ConsentStore> consent_store_;
  consent::AccountNotifier notifier_;
  std::unique_ptr<consent::Consent> consent_;
  std::unique_ptr<consent::ConsentGrpc> consent_grpc_;
  std::unique_ptr<lifecycle::CaStore> ca_store_;
  std::unique_ptr<lifecycle::CaSet> cas_;
  std::unique_ptr<lifecycle::LifecycleStore> lifecycle_store_;
  std::unique_ptr<lifecycle::Lifecycle> lifecycle_;
  std::unique_ptr<auth::Authenticator> lifecycle_auth_;
  std::unique_ptr<lifecycle::LifecycleGrpc> lifecycle_grpc_;
  std::unique_ptr<GrpcServer> server_;
  std::unique_ptr<pb::Consent::Stub> consent_stub_;
  std::unique_ptr<pb::Lifecycle::Stub> lifecycle_stub_;
};

TEST_F(SessionAuthTest, ValidTokenIsAcceptedWithoutAskingIdentity) {
  Register(1);
  const std::string token = Login(1);
  for (int i = 0; i < 10; ++i) {
    grpc::Status c = AtConsent(token);
    EXPECT_EQ(c.error_code(), grpc::StatusCode::NOT_FOUND) << c.error_message();
    grpc::Status l = AtLifecycle(token);
    EXPECT_TRUE(l.ok()) << l.error_message();
  }
  // Identity served the keys and the feed, and not one ValidateSession.
  const std::string rpcs = identity_rpcs_.Render();
  EXPECT_THAT(rpcs, HasSubstr("GetSessionKeys"));
  EXPECT_THAT(rpcs, HasSubstr("ListSessionRevocations"));
  EXPECT_THAT(rpcs, Not(HasSubstr("ValidateSession")));
}

TEST_F(SessionAuthTest, TokenSignedByAnotherKeyIsRefused) {
  const std::string account = Register(1);
  auto rogue = identity::SessionTokenMinter::New(&hsm("identity"), "rogue-key");
  ASSERT_TRUE(rogue.ok()) << rogue.status();
  const absl::Time now = absl::Now();
  auto forged = (*rogue)->Mint({.session_id = "0123456789abcdef0123456789abcdef",
                                .account_id = account,
                                .issued_at = now,
                                .auth_time = now,
                                .expires_at = now + absl::Minutes(15),
                                .assurance_level = 3});
  ASSERT_TRUE(forged.ok()) << forged.status();
  for (const grpc::Status& s : {AtConsent(*forged), AtLifecycle(*forged)}) {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("session token: signed by an unknown key"));
  }
}

TEST_F(SessionAuthTest, LogoutAndRevokeAllAreRefusedEverywhereWithinTheBound) {
  const std::string account = Register(1);
  const std::string first = Login(1);
  const std::string second = Login(1);
  ASSERT_TRUE(AtLifecycle(first).ok());

  // Logout of the first session at identity.
  pb::LogoutResponse out;
  grpc::Status s =
      identity_stub_->Logout(As(absl::StrCat("Bearer ", first)).get(), pb::LogoutRequest(), &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const absl::Time logged_out = absl::Now();
  EXPECT_TRUE(WaitFor(
      [&] {
        return AtConsent(first).error_code() == grpc::StatusCode::UNAUTHENTICATED &&
               AtLifecycle(first).error_code() == grpc::StatusCode::UNAUTHENTICATED;
      },
      kBound));
  EXPECT_LE(absl::Now() - logged_out, kBound);
  EXPECT_THAT(AtLifecycle(first).error_message(), HasSubstr("session token: revoked"));
  EXPECT_TRUE(AtLifecycle(second).ok()) << "the other session stays";

  // Revoke-all (lifecycle's RevokeAll asks identity to end every session).
  pb::RevokeSessionsRequest revoke;
  revoke.set_account_id(account);
  pb::RevokeSessionsResponse revoked;
  s = identity_stub_->RevokeSessions(As("Service lifecycle.lifecycle-secret").get(), revoke,
                                     &revoked);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const absl::Time revoked_at = absl::Now();
  EXPECT_TRUE(WaitFor(
      [&] {
        return AtConsent(second).error_code() == grpc::StatusCode::UNAUTHENTICATED &&
               AtLifecycle(second).error_code() == grpc::StatusCode::UNAUTHENTICATED;
      },
      kBound));
  EXPECT_LE(absl::Now() - revoked_at, kBound);
  // A new login after the revoke-all is valid again.
  absl::SleepFor(absl::Milliseconds(2));
  EXPECT_TRUE(AtLifecycle(Login(1)).ok());
}

TEST_F(SessionAuthTest, IdentityUnreachableBeyondTheBoundFailsClosed) {
  Register(1);
  const std::string token = Login(1);
  ASSERT_TRUE(AtLifecycle(token).ok());
  identity_server_->Shutdown(absl::ZeroDuration());
  // Within the bound the local copy still answers; beyond it, every Bearer call is UNAVAILABLE.
  EXPECT_TRUE(WaitFor(
      [&] {
        return AtConsent(token).error_code() == grpc::StatusCode::UNAVAILABLE &&
               AtLifecycle(token).error_code() == grpc::StatusCode::UNAVAILABLE;
      },
      kBound + absl::Seconds(5)));
  EXPECT_GT(lifecycle_sessions_->FeedAge(), kBound);
  EXPECT_THAT(AtLifecycle(token).error_message(),
              HasSubstr("identity's revocation feed was last read"));
}

TEST_F(SessionAuthTest, FeedAgeIsExported) {
  const std::string text = metrics::Registry::Global().Render();
  EXPECT_THAT(text, HasSubstr("# TYPE qsign_session_feed_age_seconds gauge"));
  EXPECT_THAT(text, HasSubstr("qsign_session_feed_age_seconds{component=\"consent\"}"));
  EXPECT_THAT(text, HasSubstr("qsign_session_feed_age_seconds{component=\"lifecycle\"}"));
}

}  // namespace
}  // namespace qsign
