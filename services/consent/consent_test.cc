// The consent service over real gRPC on loopback, with a real SoftHSM2 token, a real PostgreSQL
// and the real signer, both built by their stacks as qsignd builds them (tests/testing/stacks.h);
// consent apps are consent/app_simulator (real gRPC clients with P-256 keys). Fake: identity
// (activation codes, proofing, session tokens: tests/testing/fake_identity_server.h), and
// nothing else.
#include "services/consent/consent.h"

#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <algorithm>
#include <atomic>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/auth/credential_table.h"
#include "common/clock.h"
#include "common/db/audit.h"
#include "common/db/pg.h"
#include "common/db/testing/pg_test.h"
#include "common/file.h"
#include "common/grpc_server.h"
#include "common/grpc_status.h"
#include "common/metrics.h"
#include "common/ossl.h"
#include "common/rate_limit.h"
#include "common/refusal.h"
#include "consent/app_simulator.h"
#include "consent/sad.h"
#include "consent/statement.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsm/hsm.h"
#include "qsign/config/v1/config.pb.h"
#include "qsign/v1/consent.grpc.pb.h"
#include "qsign/v1/lifecycle.grpc.pb.h"
#include "qsign/v1/signer.grpc.pb.h"
#include "services/consent/clients.h"
#include "services/consent/consent_grpc.h"
#include "services/consent/consent_internal.h"
#include "services/consent/consent_store.h"
#include "services/consent/device_certificate.h"
#include "services/consent/notifier.h"
#include "services/consent/pin.h"
#include "services/consent/push.h"
#include "tests/testing/audit_pages.h"
#include "tests/testing/fake_identity_server.h"
#include "tests/testing/metrics.h"
#include "tests/testing/service_test.h"
#include "tests/testing/stacks.h"
#include "tests/testing/test_data.h"
#include "tests/testing/test_pki.h"
#include "tests/testing/watch_streams.h"

namespace qsign::consent {
namespace {

// The push budget; sanitizer builds (scripts/test --sanitize=...) run several times slower.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr absl::Duration kPushLatencyBudget = absl::Milliseconds(500);
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr absl::Duration kPushLatencyBudget = absl::Milliseconds(500);
#else
constexpr absl::Duration kPushLatencyBudget = absl::Milliseconds(100);
#endif
#else
constexpr absl::Duration kPushLatencyBudget = absl::Milliseconds(100);
#endif

namespace pb = ::qsign::v1;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);
using ::qsign::testing::kPin;
using ::qsign::testing::MetricValue;
constexpr char kSha256Oid[] = "2.16.840.1.101.3.4.2.1";
constexpr char kEcdsaSha256[] = "1.2.840.10045.4.3.2";
const std::string kIdentityAuthText = qsign::testing::ServiceAuthorization("identity");
const std::string kGatewayAuthText = qsign::testing::ServiceAuthorization("gateway");
const std::string kOperatorAuthText = qsign::testing::OperatorAuthorization();
const char* const kIdentityAuth = kIdentityAuthText.c_str();
const char* const kGatewayAuth = kGatewayAuthText.c_str();
const char* const kOperatorAuth = kOperatorAuthText.c_str();
// The signer creates and certifies keys only for lifecycle.
const std::string kLifecycleAuthText = qsign::testing::ServiceAuthorization("lifecycle");
const char* const kLifecycleAuth = kLifecycleAuthText.c_str();
constexpr absl::Duration kArrival = absl::Seconds(5);

std::string Hash(char fill) { return std::string(32, fill); }

OsslPtr<X509> ParseCert(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  return OsslPtr<X509>(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
}

// Counts an AccountNotifier listener's wake-ups.
class WakeCounter {
 public:
  AccountNotifier::Wake Wake() {
    return [this](std::shared_ptr<const AccountEvent> event) {
      absl::MutexLock lock(&mu_);
      ++wakes_;
      if (event != nullptr) all_null_ = false;
    };
  }
  // True once `n` wake-ups came, false after `timeout` without.
  bool WaitFor(int n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto reached = [&] {
      mu_.AssertHeld();
      return wakes_ >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  }
  bool all_null() {
    absl::MutexLock lock(&mu_);
    return all_null_;
  }

 private:
  absl::Mutex mu_;
  int wakes_ ABSL_GUARDED_BY(mu_) = 0;
  bool all_null_ ABSL_GUARDED_BY(mu_) = true;
};

class ConsentTest : public qsign::testing::ServiceTest {
 protected:
  void SetUp() override {
    ServiceTest::SetUp();
    if (HasFatalFailure()) return;
    // Identity's side, faked: activation codes, proofing times and session tokens.
    auto identity = qsign::testing::FakeIdentityServer::Start();
    ASSERT_TRUE(identity.ok()) << identity.status();
    identity_ = *std::move(identity);
    alice_token_ = absl::StrCat("Bearer ", identity_->Session("alice"));

    // The signer and the consent service, built by their stacks as qsignd builds them.
    auto stacks = qsign::testing::Stacks::Start(
        env(), {.services = {"signer", "consent"},
                .clock = &clock_,
                .configure = [&](config::v1::ServerConfig& config) {
                  config.mutable_peers()->set_identity(identity_->target());
                  config.mutable_signer()->set_max_hashes_per_authorization(3);
                  config.mutable_consent()->set_approvals_per_device_per_minute(
                      approvals_per_device_per_minute_);
                  // The test's calls come from 127.0.0.1, as an ingress's would.
                  config.mutable_client_address()->set_header("x-forwarded-for");
                  config.mutable_client_address()->add_trusted_proxies("127.0.0.0/8");
                }});
    ASSERT_TRUE(stacks.ok()) << stacks.status();
    stacks_ = *std::move(stacks);
    auto ca_cert = ReadFileToString(stacks_->config().consent().device_ca_cert_file());
    ASSERT_TRUE(ca_cert.ok()) << ca_cert.status();
    ca_cert_ = *std::move(ca_cert);
    channel_ = stacks_->channel();
    stub_ = pb::Consent::NewStub(channel_);
    signer_stub_ = pb::Signer::NewStub(channel_);

    // The test's own view of consent's tables and of the database's notifications.
    store_ = NewPostgresConsentStore(&pool());
    auto listener = PgAccountListener::Start(conninfo(), std::string(kNotifyChannel), &notifier_);
    ASSERT_TRUE(listener.ok()) << listener.status();
    listener_ = *std::move(listener);
  }

  void TearDown() override {
    if (stacks_) stacks_->Shutdown(absl::Seconds(2));
  }

  // An app enrolled for `account` with `pin`, watching.
  std::unique_ptr<ConsentAppSimulator> EnrolledApp(const std::string& account,
                                                   const std::string& pin = kPin,
                                                   bool watch = true) {
    auto app = ConsentAppSimulator::New(channel_);
    EXPECT_TRUE(app.ok()) << app.status();
    if (!app.ok()) return nullptr;
    absl::Status s = (*app)->Enroll(identity_->NewCode(account), "Ana's Pixel 8", pin);
    EXPECT_TRUE(s.ok()) << s;
    if (watch) {
      s = (*app)->StartWatching();
      EXPECT_TRUE(s.ok()) << s;
    }
    return *std::move(app);
  }

  static void Auth(grpc::ClientContext* ctx, const char* authorization) {
    ctx->AddMetadata("authorization", authorization);
  }

  grpc::Status CreateLogin(const std::string& account, pb::ConsentRequestStatus* out,
                           const std::string& code = "4721", const std::string& language = "") {
    pb::CreateRequestRequest req;
    req.set_language(language);
    req.set_account_id(account);
    req.set_kind(pb::CONSENT_REQUEST_KIND_LOGIN);
    req.mutable_login()->set_verification_code(code);
    req.mutable_login()->set_client_description("Firefox on Linux, 192.0.2.10");
    grpc::ClientContext ctx;
    Auth(&ctx, kIdentityAuth);
    return stub_->CreateRequest(&ctx, req, out);
  }

  pb::ConsentRequestStatus Login(const std::string& account) {
    pb::ConsentRequestStatus status;
    grpc::Status s = CreateLogin(account, &status);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return status;
  }

  pb::ConsentRequestStatus GetRequest(const std::string& id) {
    pb::GetRequestRequest req;
    req.set_request_id(id);
    grpc::ClientContext ctx;
    Auth(&ctx, kIdentityAuth);
    pb::ConsentRequestStatus out;
    grpc::Status s = stub_->GetRequest(&ctx, req, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  }

  // Receives the next request on `app` and checks it is `request_id`.
  pb::ConsentRequest Receive(ConsentAppSimulator& app, const std::string& request_id) {
    auto r = app.NextRequest(kArrival);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return {};
    EXPECT_EQ(r->request_id(), request_id);
    return *r;
  }

  grpc::Status UnblockPin(const std::string& account, const char* authorization = kOperatorAuth) {
    pb::UnblockPinRequest req;
    req.set_account_id(account);
    req.set_note("blocked after 5 failures, re-proofed with ID card");
    grpc::ClientContext ctx;
    if (authorization) Auth(&ctx, authorization);
    pb::UnblockPinResponse resp;
    return stub_->UnblockPin(&ctx, req, &resp);
  }

  // An ACTIVE signer credential of `account`.
  pb::CredentialInfo Credential(const std::string& id, const std::string& account) {
    pb::CreateKeyRequest create;
    create.set_credential_id(id);
    create.set_account_id(account);
    create.set_key_algorithm(pb::KEY_ALGORITHM_EC_P256);
    pb::CredentialInfo created;
    grpc::ClientContext c1;
    Auth(&c1, kLifecycleAuth);
    EXPECT_TRUE(signer_stub_->CreateKey(&c1, create, &created).ok());
    pb::SetCertificateRequest set;
    set.set_credential_id(id);
    set.add_certificate_chain_der(testing::CertificateFor(created.public_key_spki()));
    pb::CredentialInfo active;
    grpc::ClientContext c2;
    Auth(&c2, kLifecycleAuth);
    EXPECT_TRUE(signer_stub_->SetCertificate(&c2, set, &active).ok());
    return active;
  }

  grpc::Status Authorize(const std::string& credential, std::vector<std::string> hashes,
                         pb::AuthorizeResponse* out, const char* authorization = kGatewayAuth,
                         const std::string& language = "") {
    pb::AuthorizeRequest req;
    req.set_language(language);
    req.set_credential_id(credential);
    req.set_hash_algorithm_oid(kSha256Oid);
    for (auto& h : hashes) {
      req.add_hashes(h);
      pb::DocumentInfo* d = req.add_documents();
      d->set_label(absl::StrCat("Contract ", h.substr(0, 1)));
      d->set_document_name("ugovor.pdf");
      d->set_page_count(2);
    }
    req.set_relying_party_name("e-Uprava");
    grpc::ClientContext ctx;
    if (authorization) Auth(&ctx, authorization);
    return stub_->Authorize(&ctx, req, out);
  }

  grpc::Status AwaitAuthorization(const std::string& id, pb::AwaitAuthorizationResponse* out,
                                  const char* authorization = kGatewayAuth,
                                  absl::Duration max_wait = absl::ZeroDuration()) {
    pb::AwaitAuthorizationRequest req;
    req.set_request_id(id);
    req.mutable_max_wait()->set_seconds(absl::ToInt64Seconds(max_wait));
    grpc::ClientContext ctx;
    if (authorization) Auth(&ctx, authorization);
    return stub_->AwaitAuthorization(&ctx, req, out);
  }

  grpc::Status SignHash(const std::string& credential, const std::string& hash,
                        const std::string& sad, pb::SignHashResponse* out) {
    pb::SignHashRequest req;
    req.set_credential_id(credential);
    req.set_hash_algorithm_oid(kSha256Oid);
    req.set_sign_algorithm_oid(kEcdsaSha256);
    req.add_hashes(hash);
    req.set_sad(sad);
    grpc::ClientContext ctx;
    return signer_stub_->SignHash(&ctx, req, out);
  }

  FakeClock clock_{kStart};
  // 0: the tests that fire many attempts are not limited; ConsentRateLimitTest sets one.
  int approvals_per_device_per_minute_ = 0;
  std::unique_ptr<qsign::testing::FakeIdentityServer> identity_;
  std::string alice_token_;  // "Bearer <alice's session token>".
  std::unique_ptr<qsign::testing::Stacks> stacks_;
  std::unique_ptr<pb::Signer::Stub> signer_stub_;
  std::string ca_cert_;
  std::unique_ptr<ConsentStore> store_;
  AccountNotifier notifier_;
  std::unique_ptr<PgAccountListener> listener_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::Consent::Stub> stub_;
};

// ---- Enrolment. ----

TEST_F(ConsentTest, EnrolmentIssuesADeviceCertificateFromTheDeviceCa) {
  auto app = EnrolledApp("alice", kPin, /*watch=*/false);
  ASSERT_TRUE(app);
  EXPECT_EQ(app->account_id(), "alice");
  EXPECT_THAT(app->device_id(), HasSubstr("dev-"));
  ASSERT_THAT(app->certificate_chain(), SizeIs(2));
  EXPECT_EQ(app->certificate_chain()[1], ca_cert_);
  auto cert = ParseCert(app->certificate_chain()[0]);
  auto ca = ParseCert(ca_cert_);
  ASSERT_TRUE(cert && ca);
  EXPECT_EQ(X509_verify(cert.get(), X509_get0_pubkey(ca.get())), 1);
  // The certificate is for the device's own key.
  EXPECT_EQ(ToDer(X509_get0_pubkey(cert.get()), i2d_PUBKEY), app->public_key_spki());
  char cn[128] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_commonName, cn, sizeof(cn));
  EXPECT_STREQ(cn, "Ana's Pixel 8");
}

TEST_F(ConsentTest, EnrolmentIsRateLimitedPerAddress) {
  auto app = ConsentAppSimulator::New(channel_);
  ASSERT_TRUE(app.ok());
  for (int i = 0; i < 30; ++i) {
    EXPECT_EQ((*app)->Enroll("NOT-A-CODE", "Phone", kPin).code(), absl::StatusCode::kNotFound);
  }
  const std::string code = identity_->NewCode("alice");
  EXPECT_EQ((*app)->Enroll(code, "Phone", kPin).code(), absl::StatusCode::kResourceExhausted);
  clock_.Advance(absl::Minutes(1));
  EXPECT_TRUE((*app)->Enroll(code, "Phone", kPin).ok());
}

// Behind an ingress every call has the ingress's address: the limit is per end user, as the
// trusted proxy's header names them, so junk from one address blocks nobody else.
TEST_F(ConsentTest, EnrolmentLimitIsPerAddressBehindATrustedProxy) {
  for (int i = 0; i < 31; ++i) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("x-forwarded-for", "198.51.100.66");
    pb::EnrollDeviceRequest req;
    req.set_activation_code("NOT-A-CODE");
    pb::EnrollDeviceResponse resp;
    grpc::Status s = stub_->EnrollDevice(&ctx, req, &resp);
    if (i < 30) {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << i << s.error_message();
      continue;
    }
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    absl::Status back = FromGrpcStatus(s);
    ASSERT_TRUE(RetryDelay(back).has_value());
    EXPECT_GT(*RetryDelay(back), absl::ZeroDuration());
    EXPECT_LE(*RetryDelay(back), absl::Minutes(1));
  }
  // Another citizen through the same ingress (the proxy's own address, no header) enrols.
  auto app = ConsentAppSimulator::New(channel_);
  ASSERT_TRUE(app.ok());
  EXPECT_TRUE((*app)->Enroll(identity_->NewCode("alice"), "Phone", kPin).ok());
}

TEST_F(ConsentTest, EnrolmentRefusesBadInputBeforeSpendingTheCode) {
  auto app = ConsentAppSimulator::New(channel_);
  ASSERT_TRUE(app.ok());
  const std::string code = identity_->NewCode("alice");
  for (const char* pin : {"111111", "123456", "98765432", "12345", "123456789", "12a456"}) {
    absl::Status s = (*app)->Enroll(code, "Phone", pin);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << pin;
    EXPECT_THAT(s.message(), HasSubstr("pin:"));
    EXPECT_THAT(std::string(s.message()), ::testing::Not(HasSubstr(pin)));
  }
  EXPECT_EQ((*app)->Enroll(code, "", kPin).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*app)->Enroll(code, std::string(65, 'x'), kPin).code(),
            absl::StatusCode::kInvalidArgument);
  // A P-384 key is not a device key.
  pb::EnrollDeviceRequest req;
  req.set_activation_code(code);
  req.set_device_name("Phone");
  req.set_pin(kPin);
  {
    OsslPtr<EVP_PKEY> p384(EVP_EC_gen("P-384"));
    req.set_device_public_key(ToDer(p384.get(), i2d_PUBKEY));
  }
  grpc::ClientContext ctx;
  pb::EnrollDeviceResponse resp;
  grpc::Status gs = stub_->EnrollDevice(&ctx, req, &resp);
  EXPECT_EQ(gs.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(gs.error_message(), HasSubstr("device_public_key"));
  EXPECT_EQ(identity_->redemptions(), 0);

  EXPECT_EQ((*app)->Enroll("NOT-A-CODE", "Phone", kPin).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE((*app)->Enroll(code, "Phone", "240913").ok());
  auto other = ConsentAppSimulator::New(channel_);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ((*other)->Enroll(code, "Phone", "240913").code(), absl::StatusCode::kNotFound)
      << "an activation code works once";
}

// ---- Enrolment codes are single use (issue 11). ----

TEST_F(ConsentTest, RetriedEnrolmentAnswersTheCommittedOneAndNeverTouchesThePin) {
  auto app = ConsentAppSimulator::New(channel_);
  ASSERT_TRUE(app.ok());
  const std::string code = identity_->NewCode("alice");
  ASSERT_TRUE((*app)->Enroll(code, "Phone", kPin).ok());
  const std::string device = (*app)->device_id();
  auto before = store_->GetPin("alice");
  ASSERT_TRUE(before.ok()) << before.status();
  // The reply got lost; the app sends the same enrolment again (even with another PIN typed).
  clock_.Advance(absl::Seconds(30));
  absl::Status again = (*app)->Enroll(code, "Phone", "802514");
  ASSERT_TRUE(again.ok()) << again;
  EXPECT_EQ((*app)->device_id(), device) << "the enrolment that committed, not a new one";
  auto after = store_->GetPin("alice");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->verifier, before->verifier) << "the PIN is never set again";
  EXPECT_EQ(after->updated_at, before->updated_at);
  // The device works with the first PIN.
  ASSERT_TRUE((*app)->StartWatching().ok());
  pb::ConsentRequest pushed = Receive(**app, Login("alice").request_id());
  EXPECT_EQ((*app)->Approve(pushed, kPin)->result(), pb::APPROVE_RESULT_APPROVED);
  // Once the PIN was used the code is spent for good.
  EXPECT_EQ((*app)->Enroll(code, "Phone", kPin).code(), absl::StatusCode::kNotFound);
}

TEST_F(ConsentTest, AUsedCodeNeverResetsABlockedPin) {
  auto app = ConsentAppSimulator::New(channel_);
  ASSERT_TRUE(app.ok());
  const std::string code = identity_->NewCode("alice");
  ASSERT_TRUE((*app)->Enroll(code, "Phone", kPin).ok());
  ASSERT_TRUE((*app)->StartWatching().ok());
  pb::ConsentRequest pushed = Receive(**app, Login("alice").request_id());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE((*app)->Approve(pushed, "999999").ok());
  ASSERT_TRUE(store_->GetPin("alice")->blocked);
  // The same code and the same key again, at once and later: refused, the PIN stays blocked.
  for (absl::Duration wait : {absl::Seconds(1), absl::Hours(2)}) {
    clock_.Advance(wait);
    absl::Status s = (*app)->Enroll(code, "Phone", "802514");
    EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
    auto pin = store_->GetPin("alice");
    ASSERT_TRUE(pin.ok());
    EXPECT_TRUE(pin->blocked);
    pb::ConsentRequest next = Receive(**app, Login("alice").request_id());
    EXPECT_EQ((*app)->Approve(next, "802514")->result(), pb::APPROVE_RESULT_PIN_BLOCKED);
  }
}

// ---- Login. ----

TEST_F(ConsentTest, LoginHappyPathPushedWithin100msApprovedWithPin) {
  auto app = EnrolledApp("alice");
  ASSERT_TRUE(app);
  // Someone waits for the outcome, as identity's AwaitLogin does.
  pb::ConsentRequestStatus created;
  const absl::Time t0 = absl::Now();
  ASSERT_TRUE(CreateLogin("alice", &created, "4721").ok());
  pb::ConsentRequest pushed = Receive(*app, created.request_id());
  const absl::Duration push_latency = absl::Now() - t0;
  std::cout << "CreateRequest -> request on the app's stream: " << push_latency << "\n";
  EXPECT_LT(push_latency, kPushLatencyBudget);
  EXPECT_EQ(pushed.kind(), pb::CONSENT_REQUEST_KIND_LOGIN);
  EXPECT_EQ(pushed.display_text(), "Пријава на еИД портал, код 4721");
  EXPECT_EQ(pushed.login().verification_code(), "4721");
  EXPECT_EQ(created.state(), pb::CONSENT_REQUEST_STATE_PENDING);
  EXPECT_EQ(created.expires_at().seconds() - created.created_at().seconds(), 120);

  pb::ConsentRequestStatus awaited;
  std::thread waiter([&] {
    pb::AwaitRequestRequest req;
    req.set_request_id(created.request_id());
    req.mutable_max_wait()->set_seconds(10);
    grpc::ClientContext ctx;
    Auth(&ctx, kIdentityAuth);
    EXPECT_TRUE(stub_->AwaitRequest(&ctx, req, &awaited).ok());
  });
  absl::SleepFor(absl::Milliseconds(50));
  const absl::Time approved_at = absl::Now();
  auto out = app->Approve(pushed, kPin);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->result(), pb::APPROVE_RESULT_APPROVED);
  EXPECT_EQ(out->state(), pb::CONSENT_REQUEST_STATE_APPROVED);
  waiter.join();
  EXPECT_LT(absl::Now() - approved_at, absl::Seconds(1)) << "AwaitRequest woke late";
  EXPECT_EQ(awaited.state(), pb::CONSENT_REQUEST_STATE_APPROVED);
  EXPECT_EQ(awaited.device_id(), app->device_id());
  EXPECT_EQ(awaited.account_id(), "alice");
  EXPECT_TRUE(awaited.has_decided_at());
  EXPECT_TRUE(db::VerifyAuditChain(pool(), "consent").ok());
  // The decision is in the decisions journal, for an auditor, and the journal refuses changes.
  auto journal =
      pool().Exec("SELECT actor, action, outcome FROM consent.decisions WHERE request_id = $1",
                  {db::Param::Text(pushed.request_id())});
  ASSERT_TRUE(journal.ok()) << journal.status();
  ASSERT_EQ(journal->rows(), 1);
  EXPECT_EQ(journal->Get(0, 0), absl::StrCat("device:", app->device_id()));
  EXPECT_EQ(journal->Get(0, 1), "login.approve");
  EXPECT_EQ(journal->Get(0, 2), "ok");
  EXPECT_FALSE(pool().Exec("UPDATE consent.decisions SET outcome = 'x'").ok());
  EXPECT_FALSE(pool().Exec("DELETE FROM consent.decisions").ok());
}

// A wait on a request this process just created starts from the record it stored: no read,
// unless something was notified on the account since (then it reads, as it does on a request
// created elsewhere, and as a second wait on the same request does).
TEST_F(ConsentTest, AwaitOnARequestCreatedHereReadsNothingUnlessTheAccountMovedSince) {
  auto app = EnrolledApp("alice", kPin, /*watch=*/false);
  ASSERT_TRUE(app);
  auto await_now = [&](const std::string& id) {
    pb::AwaitRequestRequest req;
    req.set_request_id(id);
    pb::ConsentRequestStatus out;
    grpc::ClientContext ctx;
    Auth(&ctx, kIdentityAuth);
    grpc::Status s = stub_->AwaitRequest(&ctx, req, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(out.state(), pb::CONSENT_REQUEST_STATE_PENDING);
    EXPECT_EQ(out.account_id(), "alice");
    return out;
  };
  auto round_trips = [&] { return pool().Stats().round_trips; };
  for (int i = 0; i < 2; ++i) {  // Every statement prepared on the connection.
    const std::string id = Login("alice").request_id();
    await_now(id);
    await_now(id);
  }

  pb::ConsentRequestStatus first = Login("alice");
  int64_t before = round_trips();
  pb::ConsentRequestStatus seen = await_now(first.request_id());
  EXPECT_EQ(round_trips() - before, 0) << "the record as created";
  EXPECT_EQ(seen.created_at().seconds(), first.created_at().seconds());
  EXPECT_EQ(seen.expires_at().seconds(), first.expires_at().seconds());
  before = round_trips();
  await_now(first.request_id());
  EXPECT_EQ(round_trips() - before, 1) << "a second wait on it reads";

  pb::ConsentRequestStatus second = Login("alice");
  Login("alice");  // Notifies alice's account after `second` was created.
  before = round_trips();
  await_now(second.request_id());
  EXPECT_EQ(round_trips() - before, 1) << "the account moved since: read";
}

// An approval with the right PIN costs two database round trips and no read before them (BEGIN
// with one statement that takes the challenge, counts the attempt on the PIN row, locks the
// request and reads it with the device's key; the approval with COMMIT), and checks the PIN
// once. It took eight, then four (a read first; COMMIT on its own). A refusal of what was read
// rolls back untouched: the same challenge then serves the attempt.
TEST_F(ConsentTest, ApprovalWithTheRightPinTakesTwoRoundTripsAndNoReadBefore) {
  auto app = EnrolledApp("alice", kPin, /*watch=*/false);
  ASSERT_TRUE(app);
  auto own = db::Pool::New({.conninfo = conninfo(), .size = 1});
  ASSERT_TRUE(own.ok()) << own.status();
  auto store = NewPostgresConsentStore(own->get());
  for (int i = 0; i < 2; ++i) {  // The first prepares the statements on the connection.
    pb::ConsentRequestStatus created = Login("alice");
    const std::string challenge(32, static_cast<char>('a' + i));
    const absl::Time now = clock_.Now();
    ASSERT_TRUE(store
                    ->AddChallenge(challenge, app->device_id(), ChallengePurpose::kApprove,
                                   created.request_id(), now + absl::Minutes(1), now)
                    .ok());
    const db::AuditEvent event{.actor = absl::StrCat("device:", app->device_id()),
                               .action = "login.approve",
                               .target = created.request_id(),
                               .outcome = "ok"};
    const PinAttempt attempt{.device_id = app->device_id(),
                             .challenge_sha256 = challenge,
                             .purpose = ChallengePurpose::kApprove,
                             .request_id = created.request_id(),
                             .now = now};
    const RequestDecision decision{
        .state = RequestState::kApproved, .device_id = app->device_id(), .decided_at = now};
    auto stored = store_->GetRequest(created.request_id());
    ASSERT_TRUE(stored.ok()) << stored.status();
    const std::string stored_statement = stored->statement;
    int checks = 0;
    std::vector<std::string> admitted;  // The requests admit saw, with their account.
    absl::Status admission = absl::PermissionDeniedError("device_signature: no");
    auto approve = [&] {
      return store->ApproveAsRead(
          attempt,
          [&](const ApprovalContext& context) {
            admitted.push_back(absl::StrCat(context.request.request_id, " ",
                                            context.request.account_id, " ", context.device_active,
                                            " ", context.request.statement == stored_statement));
            return admission;
          },
          [&](const std::string&) -> absl::StatusOr<bool> {
            ++checks;
            return true;
          },
          decision, event);
    };
    const std::string seen = absl::StrCat(created.request_id(), " alice 1 1");
    // Not admitted: rolled back, nothing counted, the PIN not checked, the challenge still there.
    auto out = approve();
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_FALSE(out->has_value());
    EXPECT_THAT(admitted, ElementsAre(seen));
    EXPECT_EQ(checks, 0);
    EXPECT_EQ(store_->GetPin("alice")->failures, 0);

    admission = absl::OkStatus();
    const int64_t before = (*own)->Stats().round_trips;
    out = approve();
    ASSERT_TRUE(out.ok()) << out.status();
    ASSERT_TRUE(out->has_value());
    EXPECT_EQ((**out).outcome, AttemptOutcome::kDone);
    EXPECT_EQ(checks, 1);
    if (i == 1) {
      EXPECT_EQ((*own)->Stats().round_trips - before, 2);
    }
    EXPECT_EQ(GetRequest(created.request_id()).state(), pb::CONSENT_REQUEST_STATE_APPROVED);
    EXPECT_EQ(store_->GetPin("alice")->failures, 0);
    // The same challenge again: refused (used), the PIN not checked; the full path says why.
    out = approve();
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_FALSE(out->has_value());
    auto full = store->ApproveWithPin(
        {.account_id = "alice",
         .device_id = app->device_id(),
         .challenge_sha256 = challenge,
         .purpose = ChallengePurpose::kApprove,
         .request_id = created.request_id(),
         .now = now},
        [&](const std::string&) -> absl::StatusOr<bool> {
          ++checks;
          return true;
        },
        decision, event, event);
    ASSERT_TRUE(full.ok()) << full.status();
    EXPECT_EQ(full->outcome, AttemptOutcome::kChallengeInvalid);
    EXPECT_EQ(checks, 1);
  }
  // What the approval statement relies on to fail by itself, before the COMMIT sent with it.
  auto moved = pool().Exec("SELECT consent.ensure($1, 'approval: the locked request moved')",
                           {db::Param::Bool(false)});
  EXPECT_EQ(moved.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(moved.status().message(), HasSubstr("approval: the locked request moved"));
  EXPECT_TRUE(pool().Exec("SELECT consent.ensure($1, 'x')", {db::Param::Bool(true)}).ok());
}

TEST_F(ConsentTest, ListenerWakesForOtherReplicasNotForItsOwnCommits) {
  auto notify = [&](const std::string& payload) {
    ASSERT_TRUE(pool()
                    .Exec("SELECT pg_notify($1, $2)",
                          {db::Param::Text(kNotifyChannel), db::Param::Text(payload)})
                    .ok());
  };
  WakeCounter bob;
  auto listening = notifier_.Listen("bob", bob.Wake());
  // Another replica (another origin tag, or none from an older one) wakes the account ...
  notify("bob\tffffffffffffffff");
  EXPECT_TRUE(bob.WaitFor(1, absl::Seconds(5)));
  notify("bob");
  EXPECT_TRUE(bob.WaitFor(2, absl::Seconds(5)));
  // ... this process's own payload does not: Consent notified in-process at that commit.
  notify(NotifyPayload("bob"));
  EXPECT_FALSE(bob.WaitFor(3, absl::Milliseconds(300)));
}

TEST_F(ConsentTest, ListenerWakesEveryWaiterAfterItReconnects) {
  // A NOTIFY sent while the listener's connection is down is lost: after reconnecting it wakes
  // every waiter (each reads again), on every account, whatever was or was not notified.
  WakeCounter bob, carol;
  auto b = notifier_.Listen("bob", bob.Wake());
  auto c = notifier_.Listen("carol", carol.Wake());
  auto ended = db::testing::EndListenerSessions(pool(), kNotifyChannel);
  ASSERT_TRUE(ended.ok()) << ended.status();
  ASSERT_GE(*ended, 1);  // The test's listener and the consent stack's.
  EXPECT_TRUE(bob.WaitFor(1, absl::Seconds(10)));
  EXPECT_TRUE(carol.WaitFor(1, absl::Seconds(10)));
  EXPECT_TRUE(bob.all_null());
}

// An open stream no longer re-reads every second (1,000 idle streams read 1,000 times a second):
// a request whose NOTIFY was lost stays unseen for a while, and arrives when the listener
// reconnects, which wakes every waiter. (The test's own store commits the request: its NOTIFY
// carries this process's origin, so the listener skips it, as if it had been lost.)
TEST_F(ConsentTest, ARequestWhoseNotifyWasLostArrivesWhenTheListenerReconnects) {
  auto app = EnrolledApp("alice");
  ASSERT_TRUE(app);
  Receive(*app, Login("alice").request_id());  // The stream is open and has read.
  const absl::Time now = clock_.Now();
  Statement st{.kind = RequestKind::kLogin,
               .request_id = "req-0123456789abcdef0123456789abcdef",
               .account_id = "alice",
               .created_at = now,
               .expires_at = now + absl::Minutes(2),
               .display_text = "Log in",
               .login = {.verification_code = "4721", .client_description = "Firefox"}};
  auto created = store_->CreateRequest({.request_id = st.request_id,
                                        .account_id = "alice",
                                        .kind = RequestKind::kLogin,
                                        .state = RequestState::kPending,
                                        .statement = EncodeStatement(st),
                                        .created_at = st.created_at,
                                        .expires_at = st.expires_at,
                                        .requester = "service:identity"});
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->device_id, app->device_id());
  auto early = app->NextRequest(absl::Milliseconds(2500));
  EXPECT_FALSE(early.ok()) << "read again without a notification: " << early->request_id();

  auto ended = db::testing::EndListenerSessions(pool(), kNotifyChannel);
  ASSERT_TRUE(ended.ok()) << ended.status();
  auto arrived = app->NextRequest(absl::Seconds(10));
  ASSERT_TRUE(arrived.ok()) << arrived.status();
  EXPECT_EQ(arrived->request_id(), st.request_id);
}

TEST_F(ConsentTest, PendingRequestsAreSentOnConnectAndAgainOnReconnect) {
  auto app = EnrolledApp("alice", kPin, /*watch=*/false);
  ASSERT_TRUE(app);
  pb::ConsentRequestStatus first = Login("alice");
  pb::ConsentRequestStatus second = Login("alice");
  ASSERT_TRUE(app->StartWatching().ok());
  Receive(*app, first.request_id());
  pb::ConsentRequest r2 = Receive(*app, second.request_id());
  ASSERT_TRUE(app->Deny(r2).ok());
  app->StopWatching();

  // The simulator deduplicates by request id, as the app must; a fresh app sees the resend.
  auto again = ConsentAppSimulator::New(channel_);
  ASSERT_TRUE(again.ok());
  pb::GetChallengeRequest creq;
  creq.set_device_id(app->device_id());
  pb::GetChallengeResponse challenge;
  grpc::ClientContext c1;
  ASSERT_TRUE(stub_->GetChallenge(&c1, creq, &challenge).ok());
  pb::WatchRequestsRequest wreq;
  wreq.set_device_id(app->device_id());
  wreq.set_challenge(challenge.challenge());
  wreq.set_signature(*app->Sign(challenge.challenge()));
  grpc::ClientContext c2;
  auto reader = stub_->WatchRequests(&c2, wreq);
  pb::ConsentRequest msg;
  ASSERT_TRUE(reader->Read(&msg));
  EXPECT_EQ(msg.request_id(), first.request_id()) << "only the still pending one is resent";
  c2.TryCancel();
  reader->Finish();
}

TEST_F(ConsentTest, DeniedLoginIsDeniedAndCannotBeApprovedAfter) {
  auto app = EnrolledApp("alice");
  ASSERT_TRUE(app);
  pb::ConsentRequestStatus created = Login("alice");
  pb::ConsentRequest pushed = Receive(*app, created.request_id());
  auto denied = app->Deny(pushed);
  ASSERT_TRUE(denied.ok()) << denied.status();
  EXPECT_EQ(denied->result(), pb::APPROVE_RESULT_DENIED);
  EXPECT_EQ(GetRequest(created.request_id()).state(), pb::CONSENT_REQUEST_STATE_DENIED);
  auto late = app->Approve(pushed, kPin);
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(late.status().message(), HasSubstr("already decided"));
}

TEST_F(ConsentTest, ExpiredLoginCannotBeApproved) {
  auto app = EnrolledApp("alice");
  ASSERT_TRUE(app);
  pb::ConsentRequestStatus created = Login("alice");
  pb::ConsentRequest pushed = Receive(*app, created.request_id());
  clock_.Advance(absl::Minutes(2) + absl::Seconds(1));
  EXPECT_EQ(GetRequest(created.request_id()).state(), pb::CONSENT_REQUEST_STATE_EXPIRED);
  auto late = app->Approve(pushed, kPin);
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(late.status().message(), HasSubstr("expired"));
  // A sign request lives 5 minutes by default.
  Credential("cred-1", "alice");
  pb::AuthorizeResponse auth;
  ASSERT_TRUE(Authorize("cred-1", {Hash('a')}, &auth).ok());
  EXPECT_EQ(auth.expires_at().seconds() - absl::ToUnixSeconds(clock_.Now()), 300);
}

// No push bombing: Authorize is limited per account (whoever asks for it), before the push.
TEST_F(ConsentTest, AuthorizeIsLimitedPerAccountBeforeThePush) {
  auto app = EnrolledApp("alice");
  ASSERT_TRUE(app);
  Credential("cred-1", "alice");
  const double pushed_before = MetricValue("qsign_consent_requests_created_total{kind=\"sign\"}");
  for (int i = 0; i < 10; ++i) {
    pb::AuthorizeResponse auth;
    grpc::Status s = Authorize("cred-1", {Hash(static_cast<char>('a' + i))}, &auth);
    ASSERT_TRUE(s.ok()) << i << " " << s.error_message();
  }
  pb::AuthorizeResponse refused;
  grpc::Status s = Authorize("cred-1", {Hash('z')}, &refused);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("too many signing requests for this account"));
  absl::Status back = FromGrpcStatus(s);
  ASSERT_TRUE(RetryDelay(back).has_value());
  EXPECT_EQ(*RetryDelay(back), absl::Minutes(1));
  // The user's own session is counted on the same account.
  s = Authorize("cred-1", {Hash('y')}, &refused, alice_token_.c_str());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Ten pushes, not twelve.
  EXPECT_EQ(MetricValue("qsign_consent_requests_created_total{kind=\"sign\"}") - pushed_before, 10);
  clock_.Advance(absl::Minutes(1));
  EXPECT_TRUE(Authorize("cred-1", {Hash('z')}, &refused).ok());
}

TEST_F(ConsentTest, FiveWrongPinsBlockUntilAnOperatorUnblocksAfterReproofing) {
  auto app = EnrolledApp("alice");
  ASSERT_TRUE(app);
  // A success resets the count.
  pb::ConsentRequest warmup = Receive(*app, Login("alice").request_id());
  ASSERT_EQ(app->Approve(warmup, "999999")->remaining_pin_attempts(), 4u);
  ASSERT_EQ(app->Approve(warmup, kPin)->result(), pb::APPROVE_RESULT_APPROVED);

  pb::ConsentRequest pushed = Receive(*app, Login("alice").request_id());
  for (uint32_t left = 4; left >= 1; --left) {
    auto out = app->Approve(pushed, "999999");
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->result(), pb::APPROVE_RESULT_PIN_WRONG);
    EXPECT_EQ(out->remaining_pin_attempts(), left);
    EXPECT_EQ(out->state(), pb::CONSENT_REQUEST_STATE_PENDING);
  }
  auto fifth = app->Approve(pushed, "999999");
  ASSERT_TRUE(fifth.ok());
  EXPECT_EQ(fifth->result(), pb::APPROVE_RESULT_PIN_BLOCKED);
  EXPECT_EQ(fifth->state(), pb::CONSENT_REQUEST_STATE_DENIED);

  // Blocked: even the right PIN approves nothing.
  pb::ConsentRequest next = Receive(*app, Login("alice").request_id());
  auto right = app->Approve(next, kPin);
  ASSERT_TRUE(right.ok());
  EXPECT_EQ(right->result(), pb::APPROVE_RESULT_PIN_BLOCKED);
  EXPECT_EQ(GetRequest(next.request_id()).state(), pb::CONSENT_REQUEST_STATE_DENIED);

  // The user cannot reset it alone.
  EXPECT_EQ(app->ResetPin("802514").code(), absl::StatusCode::kFailedPrecondition);
  // Only an operator, only after re-proofing; the operator never handles a PIN.
  EXPECT_EQ(UnblockPin("alice", nullptr).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(UnblockPin("alice", kIdentityAuth).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(UnblockPin("alice", "Operator ra-ana.wrong").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  grpc::Status s = UnblockPin("alice");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("re-proof first"));
  identity_->SetProofedAt("alice", clock_.Now() - absl::Hours(2));
  EXPECT_EQ(UnblockPin("alice").error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  identity_->SetProofedAt("alice", clock_.Now() - absl::Minutes(10));
  s = UnblockPin("alice");
  ASSERT_TRUE(s.ok()) << s.error_message();
  // Still blocked until the user sets a new PIN on the app, by the PIN rules.
  EXPECT_TRUE(store_->GetPin("alice")->blocked);
  EXPECT_EQ(app->ResetPin("654321").code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(app->ResetPin("802514").ok());
  EXPECT_EQ(app->ResetPin("802514").code(), absl::StatusCode::kFailedPrecondition)
      << "one reset per unblock";

  pb::ConsentRequest after = Receive(*app, Login("alice").request_id());
  EXPECT_EQ(app->Approve(after, kPin)->result(), pb::APPROVE_RESULT_PIN_WRONG)
      << "the old PIN is gone";
  EXPECT_EQ(app->Approve(after, "802514")->result(), pb::APPROVE_RESULT_APPROVED);
  EXPECT_TRUE(db::VerifyAuditChain(pool(), "consent").ok());
}

// ---- PIN attempts are counted before they are checked (issue 11). ----

// An Approve answer as the app sees it: status, result, state, attempts left, message.
struct Answer {
  absl::StatusCode code = absl::StatusCode::kOk;
  int result = 0;
  int state = 0;
  uint32_t remaining = 0;
  std::string message;
  bool operator==(const Answer&) const = default;
};

Answer AnswerOf(const absl::StatusOr<pb::ApproveResponse>& out) {
  if (!out.ok())
    return {.code = out.status().code(), .message = std::string(out.status().message())};
  return {
      .result = out->result(), .state = out->state(), .remaining = out->remaining_pin_attempts()};
}

TEST_F(ConsentTest, FiftyConcurrentGuessesCheckAtMostFivePinsAndNeverTellTheRightOne) {
  auto app = EnrolledApp("alice");
  ASSERT_TRUE(app);
  const std::string checks = "qsign_consent_pin_checks_total";
  constexpr int kAttempts = 50;
  int blocked_rounds = 0;
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    pb::ConsentRequest pushed = Receive(*app, Login("alice").request_id());
    // Somewhere in the middle and late: started after most wrong guesses.
    const int right_at = (25 + 23 * round) % kAttempts;
    std::vector<std::string> pins(kAttempts), challenges(kAttempts), signatures(kAttempts);
    for (int i = 0; i < kAttempts; ++i) {
      pins[i] = i == right_at ? std::string(kPin) : absl::StrCat(500000 + 7919 * i);
      auto challenge = app->GetApprovalChallenge(pushed.request_id());
      ASSERT_TRUE(challenge.ok()) << challenge.status();
      challenges[i] = *challenge;
      auto sig = app->Sign(ApprovalMessage(pushed.statement(), Decision::kApprove, *challenge));
      ASSERT_TRUE(sig.ok());
      signatures[i] = *sig;
    }
    const double checks_before = MetricValue(checks);
    std::vector<Answer> answers(kAttempts);
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int i = 0; i < kAttempts; ++i) {
      threads.emplace_back([&, i] {
        while (!go.load()) std::this_thread::yield();
        answers[i] =
            AnswerOf(app->SendApprove(pushed.request_id(), app->device_id(), Decision::kApprove,
                                      pins[i], challenges[i], signatures[i]));
      });
    }
    go = true;
    for (auto& t : threads) t.join();

    const double checked = MetricValue(checks) - checks_before;
    std::cout << "round " << round << ": PINs checked " << checked << ", right PIN answered "
              << answers[right_at].code << "/" << pb::ApproveResult_Name(answers[right_at].result)
              << "\n";
    EXPECT_GE(checked, 1);
    EXPECT_LE(checked, 5) << "at most five PINs are ever checked per block";
    for (int i = 0; i < kAttempts; ++i) {
      if (i != right_at) {
        EXPECT_NE(answers[i].result, pb::APPROVE_RESULT_APPROVED) << i;
      }
    }
    auto pin = store_->GetPin("alice");
    ASSERT_TRUE(pin.ok()) << pin.status();
    const Answer& right = answers[right_at];
    if (right.result == pb::APPROVE_RESULT_APPROVED) {
      // Checked among the first five: approved, and the guesses still racing counted nothing.
      EXPECT_EQ(GetRequest(pushed.request_id()).state(), pb::CONSENT_REQUEST_STATE_APPROVED);
      EXPECT_FALSE(pin->blocked);
      EXPECT_EQ(pin->failures, 0);
      continue;
    }
    // After the fifth wrong PIN the right one never succeeds, and its answer is one that wrong
    // PINs got too: nothing tells it apart.
    ++blocked_rounds;
    EXPECT_EQ(checked, 5);
    EXPECT_TRUE(pin->blocked);
    EXPECT_EQ(GetRequest(pushed.request_id()).state(), pb::CONSENT_REQUEST_STATE_DENIED);
    EXPECT_NE(right.result, pb::APPROVE_RESULT_APPROVED) << right.message;
    int same = 0;
    for (int i = 0; i < kAttempts; ++i) same += i != right_at && answers[i] == right;
    EXPECT_GE(same, kAttempts - 6) << "the right PIN's answer is the one most wrong PINs got";
    // The user gets the PIN back: re-proofing, an operator's unblock, a new PIN on the app.
    identity_->SetProofedAt("alice", clock_.Now());
    ASSERT_TRUE(UnblockPin("alice").ok());
    ASSERT_TRUE(app->ResetPin(kPin).ok());
  }
  std::cout << "rounds that ended blocked: " << blocked_rounds << " of 3\n";
  EXPECT_TRUE(db::VerifyAuditChain(pool(), "consent").ok());
}

// Approvals (right PIN) and denials of one request, racing on many connections: exactly one
// decides it; its decisions row is there, written with the decision (same time, same device, the
// matching action); every other caller is told it is decided; no attempt is left counted.
TEST_F(ConsentTest, RacingApprovalsAndDenialsDecideOnceWithTheirJournalRow) {
  auto app = EnrolledApp("alice");
  ASSERT_TRUE(app);
  constexpr int kRacers = 16;
  int approved_rounds = 0;
  for (int round = 0; round < 4; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    pb::ConsentRequest pushed = Receive(*app, Login("alice").request_id());
    std::vector<Decision> decisions(kRacers);
    std::vector<std::string> challenges(kRacers), signatures(kRacers);
    for (int i = 0; i < kRacers; ++i) {
      decisions[i] = (i + round) % 2 == 0 ? Decision::kApprove : Decision::kDeny;
      auto challenge = app->GetApprovalChallenge(pushed.request_id());
      ASSERT_TRUE(challenge.ok()) << challenge.status();
      challenges[i] = *challenge;
      auto sig = app->Sign(ApprovalMessage(pushed.statement(), decisions[i], *challenge));
      ASSERT_TRUE(sig.ok());
      signatures[i] = *sig;
    }
    std::vector<Answer> answers(kRacers);
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int i = 0; i < kRacers; ++i) {
      threads.emplace_back([&, i] {
        while (!go.load()) std::this_thread::yield();
        answers[i] = AnswerOf(app->SendApprove(pushed.request_id(), app->device_id(), decisions[i],
                                               decisions[i] == Decision::kApprove ? kPin : "",
                                               challenges[i], signatures[i]));
      });
    }
    go = true;
    for (auto& t : threads) t.join();

    int winner = -1;
    for (int i = 0; i < kRacers; ++i) {
      if (answers[i].code == absl::StatusCode::kOk) {
        EXPECT_EQ(winner, -1) << "a second decision: racer " << i;
        winner = i;
        continue;
      }
      EXPECT_EQ(answers[i].code, absl::StatusCode::kFailedPrecondition) << answers[i].message;
      EXPECT_THAT(answers[i].message, HasSubstr("already decided"));
    }
    ASSERT_NE(winner, -1);
    const bool approved = decisions[winner] == Decision::kApprove;
    approved_rounds += approved;
    EXPECT_EQ(answers[winner].result,
              approved ? pb::APPROVE_RESULT_APPROVED : pb::APPROVE_RESULT_DENIED);
    auto journal = pool().Exec(
        "SELECT r.state, count(d.request_id), bool_and(d.at = r.decided_at), "
        "bool_and(d.actor = 'device:' || r.decided_by_device), min(d.action), min(d.outcome) "
        "FROM consent.requests r LEFT JOIN consent.decisions d USING (request_id) "
        "WHERE r.request_id = $1 GROUP BY r.state",
        {db::Param::Text(pushed.request_id())});
    ASSERT_TRUE(journal.ok()) << journal.status();
    EXPECT_EQ(journal->Get(0, 0), approved ? "APPROVED" : "DENIED");
    EXPECT_EQ(journal->GetInt64(0, 1).value(), 1) << "one decision, one journal row";
    EXPECT_EQ(journal->Get(0, 2), "t");
    EXPECT_EQ(journal->Get(0, 3), "t");
    EXPECT_EQ(journal->Get(0, 4), approved ? "login.approve" : "login.deny");
    EXPECT_EQ(journal->Get(0, 5), "ok");
    auto pin = store_->GetPin("alice");
    ASSERT_TRUE(pin.ok()) << pin.status();
    EXPECT_EQ(pin->failures, 0);
    EXPECT_FALSE(pin->blocked);
  }
  std::cout << "rounds won by an approval: " << approved_rounds << " of 4\n";
}

TEST_F(ConsentTest, OneSignedChallengeServesOneAttempt) {
  auto app = EnrolledApp("alice");
  ASSERT_TRUE(app);
  pb::ConsentRequest pushed = Receive(*app, Login("alice").request_id());
  auto challenge = app->GetApprovalChallenge(pushed.request_id());
  ASSERT_TRUE(challenge.ok());
  auto sig = app->Sign(ApprovalMessage(pushed.statement(), Decision::kApprove, *challenge));
  ASSERT_TRUE(sig.ok());
  auto first = app->SendApprove(pushed.request_id(), app->device_id(), Decision::kApprove, "999999",
                                *challenge, *sig);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->result(), pb::APPROVE_RESULT_PIN_WRONG);
  // The same signature with another guess: refused before any PIN is looked at.
  const double checks = MetricValue("qsign_consent_pin_checks_total");
  for (const char* guess : {"999998", kPin}) {
    auto again = app->SendApprove(pushed.request_id(), app->device_id(), Decision::kApprove, guess,
                                  *challenge, *sig);
    EXPECT_EQ(again.status().code(), absl::StatusCode::kPermissionDenied);
    EXPECT_THAT(again.status().message(), HasSubstr("challenge"));
  }
  EXPECT_EQ(MetricValue("qsign_consent_pin_checks_total"), checks);
  EXPECT_EQ(store_->GetPin("alice")->failures, 1);
  // A challenge for another request, or none, does not fit either.
  pb::ConsentRequest other = Receive(*app, Login("alice").request_id());
  auto foreign = app->GetApprovalChallenge(other.request_id());
  ASSERT_TRUE(foreign.ok());
  auto foreign_sig = app->Sign(ApprovalMessage(pushed.statement(), Decision::kApprove, *foreign));
  EXPECT_EQ(app->SendApprove(pushed.request_id(), app->device_id(), Decision::kApprove, kPin,
                             *foreign, *foreign_sig)
                .status()
                .code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(
      app->SendApprove(pushed.request_id(), app->device_id(), Decision::kApprove, kPin, "", *sig)
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
  // Challenges expire.
  auto stale = app->GetApprovalChallenge(pushed.request_id());
  ASSERT_TRUE(stale.ok());
  clock_.Advance(absl::Seconds(61));
  auto stale_sig = app->Sign(ApprovalMessage(pushed.statement(), Decision::kApprove, *stale));
  EXPECT_EQ(app->SendApprove(pushed.request_id(), app->device_id(), Decision::kApprove, kPin,
                             *stale, *stale_sig)
                .status()
                .code(),
            absl::StatusCode::kPermissionDenied);
  // A fresh one, signed, approves.
  EXPECT_EQ(app->Approve(pushed, kPin)->result(), pb::APPROVE_RESULT_APPROVED);
}

TEST_F(ConsentTest, WebCryptoRawSignaturesAreAccepted) {
  auto app = EnrolledApp("alice");
  ASSERT_TRUE(app);
  pb::ConsentRequest pushed = Receive(*app, Login("alice").request_id());
  auto challenge = app->GetApprovalChallenge(pushed.request_id());
  ASSERT_TRUE(challenge.ok());
  auto der = app->Sign(ApprovalMessage(pushed.statement(), Decision::kApprove, *challenge));
  ASSERT_TRUE(der.ok());
  // DER -> r||s, as a browser's crypto.subtle.sign("ECDSA") answers.
  const auto* p = reinterpret_cast<const unsigned char*>(der->data());
  OsslPtr<ECDSA_SIG> sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der->size())));
  ASSERT_TRUE(sig);
  std::string raw(64, '\0');
  BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), reinterpret_cast<unsigned char*>(raw.data()), 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
  auto out = app->SendApprove(pushed.request_id(), app->device_id(), Decision::kApprove, kPin,
                              *challenge, raw);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->result(), pb::APPROVE_RESULT_APPROVED);
}

TEST_F(ConsentTest, ChangePinCountsTheOldPinAsAnAttempt) {
  auto app = EnrolledApp("alice");
  ASSERT_TRUE(app);
  auto wrong = app->ChangePin("999999", "802514");
  ASSERT_TRUE(wrong.ok()) << wrong.status();
  EXPECT_EQ(wrong->result(), pb::CHANGE_PIN_RESULT_PIN_WRONG);
  EXPECT_EQ(wrong->remaining_pin_attempts(), 4u);
  // Counted with the approvals' attempts.
  pb::ConsentRequest pushed = Receive(*app, Login("alice").request_id());
  EXPECT_EQ(app->Approve(pushed, "999999")->remaining_pin_attempts(), 3u);
  // The new PIN follows the rules; a bad one costs no attempt.
  EXPECT_EQ(app->ChangePin(kPin, "123456").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->GetPin("alice")->failures, 2);
  auto changed = app->ChangePin(kPin, "802514");
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_EQ(changed->result(), pb::CHANGE_PIN_RESULT_CHANGED);
  EXPECT_EQ(store_->GetPin("alice")->failures, 0);
  EXPECT_EQ(app->Approve(pushed, kPin)->result(), pb::APPROVE_RESULT_PIN_WRONG);
  EXPECT_EQ(app->Approve(pushed, "802514")->result(), pb::APPROVE_RESULT_APPROVED);
  // Five wrong old PINs block it; then even the right one changes nothing.
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(app->ChangePin("999999", "580317")->result(), pb::CHANGE_PIN_RESULT_PIN_WRONG);
  }
  EXPECT_EQ(app->ChangePin("999999", "580317")->result(), pb::CHANGE_PIN_RESULT_PIN_BLOCKED);
  EXPECT_EQ(app->ChangePin("802514", "580317")->result(), pb::CHANGE_PIN_RESULT_PIN_BLOCKED);
  EXPECT_TRUE(store_->GetPin("alice")->blocked);
  // Another device's key cannot change Alice's PIN.
  auto mallory = EnrolledApp("mallory", "580317", /*watch=*/false);
  ASSERT_TRUE(mallory);
  auto challenge = mallory->GetApprovalChallenge("");
  ASSERT_TRUE(challenge.ok());
  pb::ChangePinRequest req;
  req.set_device_id(app->device_id());
  req.set_challenge(*challenge);
  req.set_device_signature(
      *mallory->Sign(PinOperationMessage(PinOperation::kChange, app->device_id(), *challenge)));
  req.set_old_pin("802514");
  req.set_new_pin("580317");
  grpc::ClientContext ctx;
  pb::ChangePinResponse resp;
  EXPECT_EQ(stub_->ChangePin(&ctx, req, &resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(db::VerifyAuditChain(pool(), "consent").ok());
}

class ConsentRateLimitTest : public ConsentTest {
 protected:
  ConsentRateLimitTest() { approvals_per_device_per_minute_ = 3; }
};

TEST_F(ConsentRateLimitTest, ApproveIsRateLimitedPerDevice) {
  auto app = EnrolledApp("alice");
  auto bob = EnrolledApp("bob", "580317");
  ASSERT_TRUE(app && bob);
  pb::ConsentRequest pushed = Receive(*app, Login("alice").request_id());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(app->Approve(pushed, "999999")->result(), pb::APPROVE_RESULT_PIN_WRONG);
  }
  auto limited = app->Approve(pushed, kPin);
  EXPECT_EQ(limited.status().code(), absl::StatusCode::kResourceExhausted);
  // The answer says when to come back (google.rpc.RetryInfo), as every limit's does.
  ASSERT_TRUE(RetryDelay(limited.status()).has_value()) << limited.status();
  EXPECT_GT(*RetryDelay(limited.status()), absl::ZeroDuration());
  EXPECT_LE(*RetryDelay(limited.status()), absl::Minutes(1));
  EXPECT_EQ(store_->GetPin("alice")->failures, 3) << "a limited attempt is never counted";
  // Per device: Bob's app is not affected.
  pb::ConsentRequest bobs = Receive(*bob, Login("bob").request_id());
  EXPECT_EQ(bob->Approve(bobs, "580317")->result(), pb::APPROVE_RESULT_APPROVED);
  clock_.Advance(absl::Minutes(1));
  EXPECT_EQ(app->Approve(pushed, kPin)->result(), pb::APPROVE_RESULT_APPROVED);
}

TEST_F(ConsentTest, MetricsCountRequestsAndEveryOutcome) {
  auto app = EnrolledApp("alice");
  ASSERT_TRUE(app);
  const std::string created = "qsign_consent_requests_created_total{kind=\"login\"}";
  const auto outcome = [](const char* o) {
    return absl::StrCat("qsign_consent_request_outcomes_total{kind=\"login\",outcome=\"", o, "\"}");
  };
  const char* const kOutcomes[] = {"approved", "denied", "pin_failed", "blocked", "expired"};
  std::map<std::string, double> before;
  before[created] = MetricValue(created);
  for (const char* o : kOutcomes) before[outcome(o)] = MetricValue(outcome(o));

  ASSERT_TRUE(app->Deny(Receive(*app, Login("alice").request_id())).ok());
  pb::ConsentRequest approved = Receive(*app, Login("alice").request_id());
  ASSERT_EQ(app->Approve(approved, "999999")->result(), pb::APPROVE_RESULT_PIN_WRONG);
  ASSERT_EQ(app->Approve(approved, kPin)->result(), pb::APPROVE_RESULT_APPROVED);
  pb::ConsentRequest late = Receive(*app, Login("alice").request_id());
  clock_.Advance(absl::Minutes(2) + absl::Seconds(1));
  EXPECT_EQ(app->Approve(late, kPin).status().code(), absl::StatusCode::kFailedPrecondition);
  pb::ConsentRequest blocked = Receive(*app, Login("alice").request_id());
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(app->Approve(blocked, "999999")->result(), pb::APPROVE_RESULT_PIN_WRONG);
  }
  ASSERT_EQ(app->Approve(blocked, "999999")->result(), pb::APPROVE_RESULT_PIN_BLOCKED);

  EXPECT_EQ(MetricValue(created) - before[created], 4);
  EXPECT_EQ(MetricValue(outcome("denied")) - before[outcome("denied")], 1);
  EXPECT_EQ(MetricValue(outcome("approved")) - before[outcome("approved")], 1);
  EXPECT_EQ(MetricValue(outcome("pin_failed")) - before[outcome("pin_failed")], 5);
  EXPECT_EQ(MetricValue(outcome("blocked")) - before[outcome("blocked")], 1);
  EXPECT_EQ(MetricValue(outcome("expired")) - before[outcome("expired")], 1);
  EXPECT_NE(
      metrics::Registry::Global().Render().find("# HELP qsign_consent_request_outcomes_total "),
      std::string::npos);
}

// The RA console's view of consent's records about one account: enrolments, the decisions its
// apps sent (also from a device replaced since), wrong PINs; newest first; nothing of another.
TEST_F(ConsentTest, AnOperatorReadsOneAccountsAuditTrailNewestFirst) {
  auto first = EnrolledApp("alice");
  ASSERT_TRUE(first);
  clock_.Advance(absl::Seconds(1));
  pb::ConsentRequest approved = Receive(*first, Login("alice").request_id());
  ASSERT_EQ(first->Approve(approved, "999999")->result(), pb::APPROVE_RESULT_PIN_WRONG);
  clock_.Advance(absl::Seconds(1));
  ASSERT_EQ(first->Approve(approved, kPin)->result(), pb::APPROVE_RESULT_APPROVED);
  clock_.Advance(absl::Seconds(1));
  auto bobs = EnrolledApp("bob");
  ASSERT_TRUE(bobs);
  ASSERT_EQ(bobs->Approve(Receive(*bobs, Login("bob").request_id()), kPin)->result(),
            pb::APPROVE_RESULT_APPROVED);
  clock_.Advance(absl::Seconds(1));
  auto second = EnrolledApp("alice");  // A new phone: the first is deactivated.
  ASSERT_TRUE(second);
  clock_.Advance(absl::Seconds(1));
  pb::ConsentRequest denied = Receive(*second, Login("alice").request_id());
  ASSERT_EQ(second->Deny(denied)->result(), pb::APPROVE_RESULT_DENIED);

  std::vector<std::string> seen;
  std::vector<int64_t> times;
  auto list = [&](const pb::ListAccountAuditRequest& req, pb::ListAccountAuditResponse* resp) {
    grpc::ClientContext ctx;
    Auth(&ctx, kOperatorAuth);
    return stub_->ListAccountAudit(&ctx, req, resp);
  };
  for (const pb::AuditRecord& r : qsign::testing::AllAuditPages(list, "alice", 2)) {
    seen.push_back(absl::StrCat(r.source(), " ", r.action(), " ", r.outcome()));
    times.push_back(r.at().seconds());
    EXPECT_TRUE(r.target() == "alice" || r.actor() == "device:" + first->device_id() ||
                r.actor() == "device:" + second->device_id())
        << r.action() << " " << r.actor() << " " << r.target();
  }
  EXPECT_TRUE(std::is_sorted(times.rbegin(), times.rend()));
  EXPECT_THAT(
      seen,
      ElementsAre("consent.decisions login.deny ok", "consent.audit_log device.enroll ok",
                  "consent.decisions login.approve ok", "consent.audit_log login.approve pin_wrong",
                  "consent.audit_log device.enroll ok"));

  // Operators only; each bad field named.
  auto call = [&](const char* authorization, const std::string& account, int page_size,
                  const std::string& token) {
    pb::ListAccountAuditRequest req;
    req.set_account_id(account);
    req.set_page_size(page_size);
    req.set_page_token(token);
    pb::ListAccountAuditResponse resp;
    grpc::ClientContext ctx;
    if (authorization) Auth(&ctx, authorization);
    return stub_->ListAccountAudit(&ctx, req, &resp);
  };
  EXPECT_EQ(call(nullptr, "alice", 0, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(call(alice_token_.c_str(), "alice", 0, "").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(call(kIdentityAuth, "alice", 0, "").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  grpc::Status s = call(kOperatorAuth, "alice", 0, "1.9.1");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("page_token"));
  s = call(kOperatorAuth, "alice", 201, "");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("page_size"));
  s = call(kOperatorAuth, "", 0, "");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("account_id"));
}

TEST_F(ConsentTest, ApprovalSignedByAnotherDevicesKeyIsRefused) {
  auto alice = EnrolledApp("alice");
  auto mallory = EnrolledApp("mallory", "580317");
  ASSERT_TRUE(alice && mallory);
  pb::ConsentRequest pushed = Receive(*alice, Login("alice").request_id());
  // Mallory signs Alice's statement with her own key and claims to be Alice's device.
  auto challenge = alice->GetApprovalChallenge(pushed.request_id());
  ASSERT_TRUE(challenge.ok());
  auto sig = mallory->Sign(ApprovalMessage(pushed.statement(), Decision::kApprove, *challenge));
  ASSERT_TRUE(sig.ok());
  auto out = mallory->SendApprove(pushed.request_id(), alice->device_id(), Decision::kApprove, kPin,
                                  *challenge, *sig);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(out.status().message(), HasSubstr("device_signature"));
  EXPECT_EQ(GetRequest(pushed.request_id()).state(), pb::CONSENT_REQUEST_STATE_PENDING);
}

TEST_F(ConsentTest, RequestOfAnotherAccountIsNotFound) {
  auto alice = EnrolledApp("alice");
  auto mallory = EnrolledApp("mallory", "580317");
  ASSERT_TRUE(alice && mallory);
  pb::ConsentRequest pushed = Receive(*alice, Login("alice").request_id());
  // Mallory's own device, her own valid signature, Alice's request.
  auto out = mallory->Decide(pushed.request_id(), pushed.statement(), Decision::kApprove, "580317");
  EXPECT_EQ(out.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(GetRequest(pushed.request_id()).state(), pb::CONSENT_REQUEST_STATE_PENDING);
  // And she never saw it.
  EXPECT_EQ(mallory->NextRequest(absl::Milliseconds(200)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST_F(ConsentTest, ReplayedApprovalIsRefusedAndADenyIsNotAnApproval) {
  auto app = EnrolledApp("alice");
  ASSERT_TRUE(app);
  pb::ConsentRequest pushed = Receive(*app, Login("alice").request_id());
  auto challenge = app->GetApprovalChallenge(pushed.request_id());
  ASSERT_TRUE(challenge.ok()) << challenge.status();
  auto deny_sig = app->Sign(ApprovalMessage(pushed.statement(), Decision::kDeny, *challenge));
  auto approve_sig = app->Sign(ApprovalMessage(pushed.statement(), Decision::kApprove, *challenge));
  ASSERT_TRUE(deny_sig.ok() && approve_sig.ok());
  // A captured DENY signature does not approve.
  auto swapped = app->SendApprove(pushed.request_id(), app->device_id(), Decision::kApprove, kPin,
                                  *challenge, *deny_sig);
  EXPECT_EQ(swapped.status().code(), absl::StatusCode::kPermissionDenied);

  auto first = app->SendApprove(pushed.request_id(), app->device_id(), Decision::kApprove, kPin,
                                *challenge, *approve_sig);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->result(), pb::APPROVE_RESULT_APPROVED);
  auto replay = app->SendApprove(pushed.request_id(), app->device_id(), Decision::kApprove, kPin,
                                 *challenge, *approve_sig);
  EXPECT_EQ(replay.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(replay.status().message(), HasSubstr("already decided"));
  // Nor does it approve a later request: the statement names the request.
  pb::ConsentRequest later = Receive(*app, Login("alice").request_id());
  auto later_challenge = app->GetApprovalChallenge(later.request_id());
  ASSERT_TRUE(later_challenge.ok());
  auto moved = app->SendApprove(later.request_id(), app->device_id(), Decision::kApprove, kPin,
                                *challenge, *approve_sig);
  EXPECT_EQ(moved.status().code(), absl::StatusCode::kPermissionDenied);
  moved = app->SendApprove(later.request_id(), app->device_id(), Decision::kApprove, kPin,
                           *later_challenge, *approve_sig);
  EXPECT_EQ(moved.status().code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(ConsentTest, AStatementAlteredByTheClientDoesNotHelp) {
  auto app = EnrolledApp("alice");
  ASSERT_TRUE(app);
  pb::ConsentRequest pushed = Receive(*app, Login("alice").request_id());
  auto statement = DecodeStatement(pushed.statement());
  ASSERT_TRUE(statement.ok()) << statement.status();
  statement->login.verification_code = "0000";
  statement->expires_at += absl::Hours(1);
  const std::string altered = EncodeStatement(*statement);
  auto out = app->Decide(pushed.request_id(), altered, Decision::kApprove, kPin);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kPermissionDenied);
  // The app itself refuses a statement that says something else than the request it shows.
  pb::ConsentRequest shown = pushed;
  shown.set_statement(altered);
  EXPECT_EQ(app->Approve(shown, kPin).status().code(), absl::StatusCode::kFailedPrecondition);
  // A challenge signature is no approval either.
  EXPECT_EQ(
      app->Decide(pushed.request_id(), kChallengeLabel, Decision::kApprove, kPin).status().code(),
      absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(GetRequest(pushed.request_id()).state(), pb::CONSENT_REQUEST_STATE_PENDING);
}

TEST_F(ConsentTest, ReEnrolmentDeactivatesTheOldDeviceAndCancelsItsRequests) {
  auto old_app = EnrolledApp("alice");
  ASSERT_TRUE(old_app);
  pb::ConsentRequest pending = Receive(*old_app, Login("alice").request_id());
  auto new_app = EnrolledApp("alice", "731904");
  ASSERT_TRUE(new_app);
  // The old stream ends, refused.
  auto ended = old_app->NextRequest(kArrival);
  EXPECT_EQ(ended.status().code(), absl::StatusCode::kPermissionDenied) << ended.status();
  EXPECT_EQ(GetRequest(pending.request_id()).state(), pb::CONSENT_REQUEST_STATE_CANCELLED);
  auto late = old_app->Approve(pending, kPin);
  EXPECT_EQ(late.status().code(), absl::StatusCode::kPermissionDenied);
  // New requests go to the new device, with the new PIN.
  pb::ConsentRequest fresh = Receive(*new_app, Login("alice").request_id());
  EXPECT_EQ(new_app->Approve(fresh, "731904")->result(), pb::APPROVE_RESULT_APPROVED);
  // The old device cannot open a stream any more.
  EXPECT_EQ(old_app->StartWatching().code(), absl::StatusCode::kUnauthenticated);
}

TEST_F(ConsentTest, DeactivateDevicesEndsStreamsAndCancelsRequests) {
  auto app = EnrolledApp("alice");
  ASSERT_TRUE(app);
  pb::ConsentRequestStatus pending = Login("alice");
  Receive(*app, pending.request_id());
  pb::DeactivateDevicesRequest req;
  req.set_account_id("alice");
  req.set_reason("revoke-all");
  pb::DeactivateDevicesResponse resp;
  {
    grpc::ClientContext ctx;
    EXPECT_EQ(stub_->DeactivateDevices(&ctx, req, &resp).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  grpc::ClientContext ctx;
  Auth(&ctx, kIdentityAuth);
  ASSERT_TRUE(stub_->DeactivateDevices(&ctx, req, &resp).ok());
  EXPECT_THAT(resp.device_ids(), ::testing::ElementsAre(app->device_id()));
  EXPECT_EQ(resp.requests_cancelled(), 1u);
  EXPECT_EQ(app->NextRequest(kArrival).status().code(), absl::StatusCode::kPermissionDenied);
  pb::ConsentRequestStatus none;
  EXPECT_EQ(CreateLogin("alice", &none).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  grpc::ClientContext again;
  Auth(&again, kIdentityAuth);
  pb::DeactivateDevicesResponse resp2;
  ASSERT_TRUE(stub_->DeactivateDevices(&again, req, &resp2).ok());
  EXPECT_EQ(resp2.device_ids_size(), 0);
}

TEST_F(ConsentTest, WatchRequestsNeedsAFreshSingleUseChallengeSignedByTheDevice) {
  auto app = EnrolledApp("alice", kPin, /*watch=*/false);
  auto other = EnrolledApp("bob", "580317", /*watch=*/false);
  ASSERT_TRUE(app && other);
  auto open = [&](const std::string& challenge, const std::string& sig) {
    pb::WatchRequestsRequest wreq;
    wreq.set_device_id(app->device_id());
    wreq.set_challenge(challenge);
    wreq.set_signature(sig);
    grpc::ClientContext ctx;
    auto reader = stub_->WatchRequests(&ctx, wreq);
    pb::ConsentRequest msg;
    reader->WaitForInitialMetadata();
    if (ctx.GetServerInitialMetadata().count("qsign-watch")) {
      ctx.TryCancel();
      reader->Finish();
      return grpc::StatusCode::OK;
    }
    return reader->Finish().error_code();
  };
  auto challenge = [&] {
    pb::GetChallengeRequest req;
    req.set_device_id(app->device_id());
    pb::GetChallengeResponse resp;
    grpc::ClientContext ctx;
    EXPECT_TRUE(stub_->GetChallenge(&ctx, req, &resp).ok());
    EXPECT_TRUE(resp.challenge().starts_with(kChallengeLabel));
    return resp.challenge();
  };
  const std::string c1 = challenge();
  EXPECT_EQ(open(c1, *other->Sign(c1)), grpc::StatusCode::UNAUTHENTICATED) << "another key";
  EXPECT_EQ(open(c1, *app->Sign(c1)), grpc::StatusCode::UNAUTHENTICATED) << "used up";
  const std::string c2 = challenge();
  EXPECT_EQ(open(c2, *app->Sign(c2)), grpc::StatusCode::OK);
  EXPECT_EQ(open(c2, *app->Sign(c2)), grpc::StatusCode::UNAUTHENTICATED) << "single use";
  const std::string c3 = challenge();
  clock_.Advance(absl::Seconds(61));
  EXPECT_EQ(open(c3, *app->Sign(c3)), grpc::StatusCode::UNAUTHENTICATED) << "expired";
}

// ---- Signing. ----

TEST_F(ConsentTest, SadFromAnApprovedAuthorizationSignsHashAAndIsRefusedForHashB) {
  pb::CredentialInfo cred = Credential("cred-1", "alice");
  auto app = EnrolledApp("alice");
  ASSERT_TRUE(app);
  const std::string hash_a = Hash('a'), hash_b = Hash('b');
  pb::AuthorizeResponse auth;
  grpc::Status s = Authorize("cred-1", {hash_a}, &auth);
  ASSERT_TRUE(s.ok()) << s.error_message();
  pb::AwaitAuthorizationResponse waiting;
  ASSERT_TRUE(AwaitAuthorization(auth.request_id(), &waiting).ok());
  EXPECT_EQ(waiting.state(), pb::CONSENT_REQUEST_STATE_PENDING);
  EXPECT_TRUE(waiting.sad().empty());

  pb::ConsentRequest pushed = Receive(*app, auth.request_id());
  EXPECT_EQ(pushed.kind(), pb::CONSENT_REQUEST_KIND_SIGN);
  EXPECT_EQ(pushed.display_text(), "Потпиши „Contract a“ за e-Uprava");
  ASSERT_EQ(pushed.sign().hashes_size(), 1);
  EXPECT_EQ(pushed.sign().hashes(0), hash_a);
  EXPECT_EQ(pushed.sign().documents(0).document_name(), "ugovor.pdf");
  EXPECT_EQ(pushed.sign().documents(0).page_count(), 2u);  // The app shows the pages.
  ASSERT_EQ(app->Approve(pushed, kPin)->result(), pb::APPROVE_RESULT_APPROVED);
  // The decisions journal says what was authorized (docs/consent.md): credential and hashes.
  auto journal =
      pool().Exec("SELECT action, outcome, details FROM consent.decisions WHERE request_id = $1",
                  {db::Param::Text(auth.request_id())});
  ASSERT_TRUE(journal.ok()) << journal.status();
  ASSERT_EQ(journal->rows(), 1);
  EXPECT_EQ(journal->Get(0, 0), "sign.approve");
  EXPECT_EQ(journal->Get(0, 1), "ok");
  EXPECT_EQ(journal->Get(0, 2), "credential cred-1, 1 hashes");

  pb::AwaitAuthorizationResponse approved;
  ASSERT_TRUE(
      AwaitAuthorization(auth.request_id(), &approved, kGatewayAuth, absl::Seconds(5)).ok());
  EXPECT_EQ(approved.state(), pb::CONSENT_REQUEST_STATE_APPROVED);
  ASSERT_FALSE(approved.sad().empty());
  EXPECT_EQ(approved.sad_expires_at().seconds(), absl::ToUnixSeconds(clock_.Now()) + 300);
  // Only the caller that asked gets it.
  pb::AwaitAuthorizationResponse stranger;
  EXPECT_EQ(AwaitAuthorization(auth.request_id(), &stranger, kIdentityAuth).error_code(),
            grpc::StatusCode::NOT_FOUND);

  pb::SignHashResponse refused;
  grpc::Status b = SignHash("cred-1", hash_b, approved.sad(), &refused);
  EXPECT_EQ(b.error_code(), grpc::StatusCode::PERMISSION_DENIED) << b.error_message();
  pb::SignHashResponse signed_a;
  grpc::Status a = SignHash("cred-1", hash_a, approved.sad(), &signed_a);
  ASSERT_TRUE(a.ok()) << a.error_message();
  ASSERT_EQ(signed_a.signatures_size(), 1);
  EXPECT_TRUE(testing::VerifyDigestSignature(cred.public_key_spki(), hash_a, signed_a.signatures(0),
                                             EVP_sha256()));
  pb::SignHashResponse again;
  EXPECT_EQ(SignHash("cred-1", hash_a, approved.sad(), &again).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION)
      << "a SAD is used once";
}

// AwaitAuthorization on gRPC's callback API (issue 15): a thousand e-services (or retries)
// waiting on one SIGN request hold no thread each; the approval answers every one of them, each
// with the SAD, at once. The synchronous handler held one thread per waiting call.
TEST_F(ConsentTest, AThousandWaitingAwaitAuthorizationsHoldNoThreadsAndAllGetTheSad) {
  constexpr int kCalls = 1000;
  constexpr int kMaxThreads = 100;  // The whole test process.
  Credential("cred-1", "alice");
  auto app = EnrolledApp("alice");
  ASSERT_TRUE(app);
  pb::AuthorizeResponse auth;
  ASSERT_TRUE(Authorize("cred-1", {Hash('a')}, &auth).ok());
  pb::ConsentRequest pushed = Receive(*app, auth.request_id());

  struct Call {
    grpc::ClientContext ctx;
    pb::AwaitAuthorizationResponse resp;
  };
  absl::Mutex mu;
  std::map<grpc::StatusCode, int> codes;
  std::map<std::string, int> sads;
  int answered = 0;
  pb::AwaitAuthorizationRequest req;
  req.set_request_id(auth.request_id());
  req.mutable_max_wait()->set_seconds(30);
  std::vector<std::unique_ptr<Call>> calls;
  auto stub = pb::Consent::NewStub(stacks_->NewChannel());
  const int threads_before = testing::ThreadCount();
  for (int i = 0; i < kCalls; ++i) {
    calls.push_back(std::make_unique<Call>());
    Call* call = calls.back().get();
    Auth(&call->ctx, kGatewayAuth);
    call->ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    stub->async()->AwaitAuthorization(&call->ctx, &req, &call->resp, [&, call](grpc::Status st) {
      absl::MutexLock lock(&mu);
      ++codes[st.error_code()];
      if (st.ok() && call->resp.state() == pb::CONSENT_REQUEST_STATE_APPROVED) {
        ++sads[call->resp.sad()];
      }
      ++answered;
    });
  }
  absl::SleepFor(absl::Seconds(2));  // Every call reached the server and waits.
  const int threads_waiting = testing::ThreadCount();
  std::cout << "threads: " << threads_before << " before, " << threads_waiting << " with " << kCalls
            << " waiting AwaitAuthorization calls\n";
  EXPECT_LT(threads_waiting, kMaxThreads);
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(answered, 0) << "answered before the decision";
  }

  const absl::Time approved_at = absl::Now();
  ASSERT_EQ(app->Approve(pushed, kPin)->result(), pb::APPROVE_RESULT_APPROVED);
  absl::MutexLock lock(&mu);
  mu.AwaitWithTimeout(absl::Condition(
                          +[](int* n) { return *n == kCalls; }, &answered),
                      absl::Seconds(20));
  std::cout << "all answered " << absl::FormatDuration(absl::Now() - approved_at)
            << " after the approval\n";
  EXPECT_EQ(answered, kCalls);
  EXPECT_EQ(codes[grpc::StatusCode::OK], kCalls);
  ASSERT_EQ(sads.size(), 1u) << "one SAD, the same for every caller";
  EXPECT_FALSE(sads.begin()->first.empty());
  EXPECT_EQ(sads.begin()->second, kCalls);
}

TEST_F(ConsentTest, DeniedAndExpiredAuthorizationsYieldNoSad) {
  Credential("cred-1", "alice");
  auto app = EnrolledApp("alice");
  ASSERT_TRUE(app);
  pb::AuthorizeResponse denied, expired;
  ASSERT_TRUE(Authorize("cred-1", {Hash('a')}, &denied).ok());
  ASSERT_TRUE(app->Deny(Receive(*app, denied.request_id())).ok());
  ASSERT_TRUE(Authorize("cred-1", {Hash('b')}, &expired).ok());
  Receive(*app, expired.request_id());
  clock_.Advance(absl::Minutes(5));
  pb::AwaitAuthorizationResponse out;
  ASSERT_TRUE(AwaitAuthorization(denied.request_id(), &out).ok());
  EXPECT_EQ(out.state(), pb::CONSENT_REQUEST_STATE_DENIED);
  EXPECT_TRUE(out.sad().empty());
  ASSERT_TRUE(AwaitAuthorization(expired.request_id(), &out).ok());
  EXPECT_EQ(out.state(), pb::CONSENT_REQUEST_STATE_EXPIRED);
  EXPECT_TRUE(out.sad().empty());
}

TEST_F(ConsentTest, AuthorizeChecksTheCredentialAndTheHashes) {
  Credential("cred-1", "alice");
  Credential("cred-bob", "bob");
  auto app = EnrolledApp("alice", kPin, /*watch=*/false);
  ASSERT_TRUE(app);
  pb::AuthorizeResponse out;
  EXPECT_EQ(Authorize("cred-1", {Hash('a')}, &out, nullptr).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Authorize("cred-1", {Hash('a')}, &out, kOperatorAuth).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Authorize("no-such", {Hash('a')}, &out).error_code(), grpc::StatusCode::NOT_FOUND);
  // A user may use only their own credential; another's does not exist for them.
  EXPECT_TRUE(Authorize("cred-1", {Hash('a')}, &out, alice_token_.c_str()).ok());
  EXPECT_EQ(Authorize("cred-bob", {Hash('a')}, &out, alice_token_.c_str()).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Authorize("cred-bob", {Hash('a')}, &out).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION)
      << "bob has no consent app";
  EXPECT_EQ(Authorize("cred-1", {}, &out).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Authorize("cred-1", {Hash('a'), Hash('a')}, &out).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Authorize("cred-1", {std::string(31, 'a')}, &out).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  grpc::Status many = Authorize("cred-1", {Hash('a'), Hash('b'), Hash('c'), Hash('d')}, &out);
  EXPECT_EQ(many.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(many.error_message(), HasSubstr("at most 3"));
}

TEST_F(ConsentTest, AuthorizeRefusesACredentialOutsideItsCertificatesValidity) {
  pb::CredentialInfo info = Credential("cred-1", "alice");
  auto app = EnrolledApp("alice", kPin, /*watch=*/false);
  ASSERT_TRUE(app);
  pb::AuthorizeResponse out;
  clock_.Set(absl::FromUnixSeconds(info.valid_to().seconds()) + absl::Seconds(1));
  grpc::Status s = Authorize("cred-1", {Hash('a')}, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("credential_id: credential cred-1 expired at "));
  EXPECT_EQ(RefusalReason(FromGrpcStatus(s)), pb::Refusal::CREDENTIAL_EXPIRED);
  clock_.Set(absl::FromUnixSeconds(info.valid_from().seconds()) - absl::Seconds(1));
  s = Authorize("cred-1", {Hash('a')}, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(RefusalReason(FromGrpcStatus(s)), pb::Refusal::CREDENTIAL_NOT_YET_VALID);
  clock_.Set(absl::FromUnixSeconds(info.valid_to().seconds()));  // notAfter itself: valid.
  EXPECT_TRUE(Authorize("cred-1", {Hash('a')}, &out).ok());
}

// ---- Push wake-ups. ----

TEST_F(ConsentTest, PushWakeUpReachesTheWebhook) {
  httplib::Server hook;
  absl::Mutex mu;
  std::vector<std::pair<std::string, std::string>> received;  // (authorization, body)
  hook.Post("/push", [&](const httplib::Request& req, httplib::Response& res) {
    absl::MutexLock lock(&mu);
    received.emplace_back(req.get_header_value("Authorization"), req.body);
    res.status = 204;
  });
  const int port = hook.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::thread hook_thread([&] { hook.listen_after_bind(); });

  auto gateway = HttpWebhookPushGateway::New(absl::StrCat("http://127.0.0.1:", port, "/push"),
                                             SecretString("hook-secret"), absl::Seconds(2));
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  PushDispatcher dispatcher(store_.get(), gateway->get(), &clock_,
                            {.poll_interval = absl::Milliseconds(50)});

  auto app = ConsentAppSimulator::New(channel_);
  ASSERT_TRUE(app.ok());
  ASSERT_TRUE((*app)->Enroll(identity_->NewCode("alice"), "Phone", kPin, "fcm-token-1").ok());
  pb::ConsentRequestStatus created = Login("alice");
  const absl::Time until = absl::Now() + absl::Seconds(5);
  bool arrived = false;
  while (!arrived && absl::Now() < until) {
    {
      absl::MutexLock lock(&mu);
      arrived = !received.empty();
    }
    if (!arrived) absl::SleepFor(absl::Milliseconds(10));
  }
  hook.stop();
  hook_thread.join();
  ASSERT_TRUE(arrived);
  absl::MutexLock lock(&mu);
  ASSERT_THAT(received, SizeIs(1));
  EXPECT_EQ(received[0].first, "Bearer hook-secret");
  EXPECT_THAT(received[0].second, HasSubstr("\"push_token\":\"fcm-token-1\""));
  EXPECT_THAT(received[0].second, HasSubstr(created.request_id()));
  EXPECT_THAT(received[0].second, ::testing::Not(HasSubstr("4721"))) << "no content in a push";
}

TEST_F(ConsentTest, FailedPushIsRetriedLater) {
  // Nothing listens on this port: the job stays and is retried after retry_after.
  httplib::Server probe;
  const int port = probe.bind_to_any_port("127.0.0.1");
  probe.stop();
  auto gateway = HttpWebhookPushGateway::New(absl::StrCat("http://127.0.0.1:", port, "/push"),
                                             SecretString(), absl::Milliseconds(500));
  ASSERT_TRUE(gateway.ok());
  PushDispatcher dispatcher(store_.get(), gateway->get(), &clock_,
                            {.poll_interval = absl::Hours(1)});
  auto app = ConsentAppSimulator::New(channel_);
  ASSERT_TRUE((*app)->Enroll(identity_->NewCode("alice"), "Phone", kPin, "fcm-token-1").ok());
  Login("alice");
  EXPECT_EQ(*dispatcher.RunOnce(), 0);
  auto due = store_->ClaimPushJobs(clock_.Now(), clock_.Now(), 10);
  ASSERT_TRUE(due.ok());
  EXPECT_THAT(*due, SizeIs(0)) << "not due again before retry_after";
  clock_.Advance(absl::Seconds(11));
  auto later = store_->ClaimPushJobs(clock_.Now(), clock_.Now() + absl::Seconds(10), 10);
  ASSERT_TRUE(later.ok());
  ASSERT_THAT(*later, SizeIs(1));
  EXPECT_EQ((*later)[0].attempts, 2);
}

// Lifecycle's side of IssueDeviceCertificate, standing in for the real service.
class StandInLifecycle final : public pb::Lifecycle::Service {
 public:
  grpc::Status IssueDeviceCertificate(grpc::ServerContext* ctx,
                                      const pb::IssueDeviceCertificateRequest* req,
                                      pb::Certificate* resp) override {
    auto it = ctx->client_metadata().find("authorization");
    if (it == ctx->client_metadata().end() ||
        std::string_view(it->second.data(), it->second.size()) != "Service consent.s3cret") {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "who are you");
    }
    last = *req;
    resp->set_certificate_der("device-cert");
    resp->add_issuer_chain_der("device-ca");
    resp->add_issuer_chain_der("root-ca");
    resp->set_device_id(req->device_id());
    return grpc::Status::OK;
  }
  pb::IssueDeviceCertificateRequest last;
};

TEST(GrpcClientsTest, DeviceCertificatesFromLifecycle) {
  StandInLifecycle lifecycle;
  auto server = GrpcServer::Start({}, {&lifecycle});
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = grpc::CreateChannel((*server)->local_target(), grpc::InsecureChannelCredentials());
  GrpcLifecycleDeviceCertificateIssuer issuer(
      qsign::daemon::DeferredChannel::Connected("lifecycle", channel), "consent",
      SecretString("s3cret"));
  auto chain = issuer.Issue({.device_id = "dev-1",
                             .account_id = "alice",
                             .device_name = "Phone",
                             .public_key_spki = "spki"});
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_THAT(*chain, ::testing::ElementsAre("device-cert", "device-ca", "root-ca"));
  EXPECT_EQ(lifecycle.last.account_id(), "alice");
  EXPECT_EQ(lifecycle.last.device_public_key(), "spki");
  GrpcLifecycleDeviceCertificateIssuer stranger(
      qsign::daemon::DeferredChannel::Connected("lifecycle", channel), "consent",
      SecretString("wrong"));
  EXPECT_EQ(stranger.Issue({.device_id = "dev-1"}).status().code(),
            absl::StatusCode::kUnauthenticated);
  (*server)->Shutdown(absl::ZeroDuration());
}

// ---- Pieces. ----

TEST(StatementTest, RoundTripsAndRefusesAnythingNonCanonical) {
  Statement s{
      .kind = RequestKind::kSign,
      .request_id = "req-1",
      .account_id = "alice",
      .created_at = kStart,
      .expires_at = kStart + absl::Minutes(5),
      .display_text = "Sign 2 documents",
      .sign = {.credential_id = "cred-1",
               .hash_algorithm_oid = kSha256Oid,
               .hashes = {Hash('a'), Hash('b')},
               .documents = {{.label = "A"}, {.label = "B", .document_digest = Hash('c')}}}};
  const std::string bytes = EncodeStatement(s);
  ASSERT_TRUE(bytes.starts_with(kStatementLabel));
  auto back = DecodeStatement(bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, s);
  EXPECT_FALSE(DecodeStatement(bytes + "x").ok());
  EXPECT_FALSE(DecodeStatement(bytes.substr(0, bytes.size() - 1)).ok());
  std::string relabelled = bytes;
  relabelled[0] = 'X';
  EXPECT_FALSE(DecodeStatement(relabelled).ok());
  // One document for two hashes is not a statement.
  s.sign.documents.pop_back();
  EXPECT_FALSE(DecodeStatement(EncodeStatement(s)).ok());
  const std::string c(32, 'c');
  EXPECT_NE(ApprovalMessage(bytes, Decision::kApprove, c),
            ApprovalMessage(bytes, Decision::kDeny, c));
  EXPECT_NE(ApprovalMessage(bytes, Decision::kApprove, c),
            ApprovalMessage(bytes, Decision::kApprove, std::string(32, 'd')));
  EXPECT_TRUE(ApprovalMessage(bytes, Decision::kApprove, c).starts_with(kApprovalLabel));
  // The exact bytes (docs/consent.md; the browser app builds the same).
  const auto tl = [](char tag, char len) { return std::string({tag, 0, 0, 0, len}); };
  EXPECT_EQ(ApprovalMessage("S", Decision::kApprove, "C"),
            "QSIGN-CONSENT-APPROVAL-V2\n" + tl(1, 1) + "S" + tl(2, 1) + "\x01" + tl(3, 1) + "C");
  EXPECT_EQ(PinOperationMessage(PinOperation::kReset, "dev-1", "C"),
            "QSIGN-CONSENT-PIN-V1\n" + tl(1, 1) + "\x02" + tl(2, 5) + "dev-1" + tl(3, 1) + "C");
}

// The requester's language goes into the statement the app shows and signs; the approval's
// signature over that statement verifies (the server rebuilds it from its own record).
TEST_F(ConsentTest, DisplayTextInTheRequestersLanguageIsSignedWithTheStatement) {
  Credential("cred-1", "alice");
  auto app = EnrolledApp("alice");
  ASSERT_TRUE(app);
  const std::pair<std::string, std::string> logins[] = {
      {"", "Пријава на еИД портал, код 4721"},
      {"sr-Cyrl", "Пријава на еИД портал, код 4721"},
      {"sr-Latn", "Prijava na eID portal, kod 4721"},
      {"en", "Log in to eID portal, code 4721"}};
  for (const auto& [language, text] : logins) {
    pb::ConsentRequestStatus created;
    ASSERT_TRUE(CreateLogin("alice", &created, "4721", language).ok()) << language;
    pb::ConsentRequest pushed = Receive(*app, created.request_id());
    EXPECT_EQ(pushed.display_text(), text);
    auto statement = DecodeStatement(pushed.statement());
    ASSERT_TRUE(statement.ok());
    EXPECT_EQ(statement->display_text, text);
    auto approved = app->Approve(pushed, kPin);
    ASSERT_TRUE(approved.ok()) << approved.status();
    EXPECT_EQ(approved->result(), pb::APPROVE_RESULT_APPROVED) << language;
  }
  const std::pair<std::string, std::string> signs[] = {
      {"sr-Cyrl", "Потпиши „Contract a“ за e-Uprava"},
      {"sr-Latn", "Potpiši „Contract b“ za e-Uprava"},
      {"en", "Sign \"Contract c\" for e-Uprava"}};
  char h = 'a';
  for (const auto& [language, text] : signs) {
    pb::AuthorizeResponse auth;
    ASSERT_TRUE(Authorize("cred-1", {Hash(h++)}, &auth, kGatewayAuth, language).ok());
    pb::ConsentRequest pushed = Receive(*app, auth.request_id());
    EXPECT_EQ(pushed.display_text(), text);
    EXPECT_EQ(DecodeStatement(pushed.statement())->display_text, text);
    auto approved = app->Approve(pushed, kPin);
    ASSERT_TRUE(approved.ok()) << approved.status();
    EXPECT_EQ(approved->result(), pb::APPROVE_RESULT_APPROVED) << language;
  }
  pb::ConsentRequestStatus created;
  grpc::Status s = CreateLogin("alice", &created, "4721", "de");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("language"));
  pb::AuthorizeResponse auth;
  s = Authorize("cred-1", {Hash('z')}, &auth, kGatewayAuth, "sr");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("language"));
}

TEST(StatementTest, DisplayTextsCountDocumentsInSerbian) {
  SignDetails sign{.relying_party_name = "е-Управа"};
  auto text = [&](size_t n, DisplayLanguage lang) {
    sign.hashes.assign(n, "h");
    return SignDisplayText(sign, lang);
  };
  EXPECT_EQ(text(1, DisplayLanguage::kSrCyrl), "Потпиши 1 документ за е-Управа");
  EXPECT_EQ(text(3, DisplayLanguage::kSrCyrl), "Потпиши 3 документа за е-Управа");
  EXPECT_EQ(text(5, DisplayLanguage::kSrLatn), "Potpiši 5 dokumenata za е-Управа");
  EXPECT_EQ(text(12, DisplayLanguage::kSrLatn), "Potpiši 12 dokumenata za е-Управа");
  EXPECT_EQ(text(21, DisplayLanguage::kSrCyrl), "Потпиши 21 документ за е-Управа");
  EXPECT_EQ(text(2, DisplayLanguage::kEn), "Sign 2 documents for е-Управа");
  EXPECT_EQ(text(1, DisplayLanguage::kEn), "Sign 1 document for е-Управа");
  EXPECT_FALSE(ParseDisplayLanguage("sr-Cyrl-RS").ok());
}

TEST(StatementTest, PageCountIsSignedOnlyWhenGiven) {
  Statement s{.kind = RequestKind::kSign,
              .request_id = "req-1",
              .account_id = "alice",
              .created_at = kStart,
              .expires_at = kStart + absl::Minutes(5),
              .display_text = "Sign \"ugovor.pdf\"",
              .sign = {.credential_id = "cred-1",
                       .hash_algorithm_oid = kSha256Oid,
                       .hashes = {Hash('a')},
                       .documents = {{.label = "ugovor.pdf", .document_digest = Hash('c')}}}};
  const std::string without = EncodeStatement(s);
  s.sign.documents[0].page_count = 3;
  const std::string with = EncodeStatement(s);
  // The page count is part of what the device signs; a statement without one is as before.
  EXPECT_EQ(with.size(), without.size() + 9);
  auto back = DecodeStatement(with);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->sign.documents[0].page_count, 3u);
  EXPECT_EQ(DecodeStatement(without)->sign.documents[0].page_count, 0u);
  // A zero page count written out is not canonical.
  std::string zero = with;
  zero[zero.size() - 1] = 0;
  EXPECT_FALSE(DecodeStatement(zero).ok());
}

// A device signature verifies against its own key only, however often that key was used before
// and from however many threads (parsed keys are kept by their exact SPKI bytes).
TEST(DeviceSignatureTest, VerifiesAgainstItsOwnKeyOnlyAcrossRepeatedUse) {
  OsslPtr<EVP_PKEY> a(EVP_EC_gen("P-256"));
  OsslPtr<EVP_PKEY> b(EVP_EC_gen("P-256"));
  ASSERT_TRUE(a && b);
  auto spki_of = [](EVP_PKEY* key) {
    unsigned char* der = nullptr;
    const int n = i2d_PUBKEY(key, &der);
    std::string out(reinterpret_cast<char*>(der), n > 0 ? n : 0);
    OPENSSL_free(der);
    return out;
  };
  const std::string spki_a = spki_of(a.get());
  const std::string spki_b = spki_of(b.get());
  const std::string message = "approve req-1 with challenge c";
  OsslPtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  ASSERT_EQ(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, a.get()), 1);
  size_t len = 80;
  std::string sig(len, '\0');
  ASSERT_EQ(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                           reinterpret_cast<const unsigned char*>(message.data()), message.size()),
            1);
  sig.resize(len);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        if (!VerifyDeviceSignature(spki_a, message, sig)) ++wrong;
        if (VerifyDeviceSignature(spki_b, message, sig)) ++wrong;
        if (VerifyDeviceSignature(spki_a, message + "!", sig)) ++wrong;
        // Trailing bytes after a known key: not that key.
        if (VerifyDeviceSignature(spki_a + std::string(1, '\0'), message, sig)) ++wrong;
        if (VerifyDeviceSignature(spki_a.substr(0, spki_a.size() - 1), message, sig)) ++wrong;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(PinTest, RulesAndVerifier) {
  for (const char* ok : {"240913", "1357924", "13572468", "112233"}) {
    EXPECT_TRUE(ValidateNewPin(ok, "pin").ok()) << ok;
  }
  for (const char* bad : {"", "12345", "123456789", "000000", "99999999", "012345", "876543",
                          "45678901", "210987", "12 456"}) {
    EXPECT_FALSE(ValidateNewPin(bad, "pin").ok()) << bad;
  }
  auto hasher = PinHasher::New("k1", SecretString(std::string(32, 'x')),
                               {.time_cost = 1, .memory_kib = 64}, 2);
  ASSERT_TRUE(hasher.ok());
  auto v = (*hasher)->Hash("240913");
  ASSERT_TRUE(v.ok());
  EXPECT_THAT(*v, HasSubstr("argon2id$t=1$m=64$p=1$k1$"));
  EXPECT_THAT(*v, ::testing::Not(HasSubstr("240913")));
  EXPECT_TRUE(*(*hasher)->Verify("240913", *v));
  EXPECT_FALSE(*(*hasher)->Verify("240914", *v));
  EXPECT_NE(*(*hasher)->Hash("240913"), *v) << "salted";
  // The same verifier under another pepper is worthless.
  auto other = PinHasher::New("k1", SecretString(std::string(32, 'y')),
                              {.time_cost = 1, .memory_kib = 64}, 2);
  EXPECT_FALSE(*(*other)->Verify("240913", *v));
  EXPECT_FALSE(PinHasher::New("k1", SecretString("short"), {}, 1).ok());
}

// The production parameters' cost per PIN check (docs/consent.md quotes it).
TEST(PinTest, PinHasherCost) {
  auto hasher = PinHasher::New("k1", SecretString(std::string(32, 'x')), PinHashParams{}, 2);
  ASSERT_TRUE(hasher.ok());
  auto v = (*hasher)->Hash("240913");
  ASSERT_TRUE(v.ok());
  constexpr int kRounds = 10;
  const absl::Time t0 = absl::Now();
  for (int i = 0; i < kRounds; ++i) ASSERT_TRUE(*(*hasher)->Verify("240913", *v));
  const absl::Duration per = (absl::Now() - t0) / kRounds;
  const PinHashParams p;
  std::cout << "PIN check (HMAC pepper + argon2id t=" << p.time_cost << " m=" << p.memory_kib
            << "KiB p=" << p.parallelism << "): " << per << " per check\n";
}

TEST(CredentialTableTest, ParsesHashesAndChecksSecrets) {
  const std::string hex = absl::BytesToHexString(Sha256("s3cret"));
  auto t = CredentialTable::Parse(absl::StrCat("# operators\n\nop-1 ", hex, "\n"));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(t->Check("op-1", "s3cret"));
  EXPECT_FALSE(t->Check("op-1", "s3cret "));
  EXPECT_FALSE(t->Check("op-2", "s3cret"));
  EXPECT_FALSE(CredentialTable::Parse("op-1 abc\n").ok());
  EXPECT_EQ(ParseAuthorization("Operator op-1.s3cret")->id, "op-1");
  EXPECT_FALSE(ParseAuthorization("Basic xyz").ok());
  EXPECT_FALSE(ParseAuthorization("Service .secret").ok());
}

}  // namespace
}  // namespace qsign::consent
