// Push-approved login end to end, in one process over real gRPC: the identity and consent
// services (built by their stacks, as qsignd builds them, tests/testing/stacks.h) and consent-app
// simulators, the services calling each other through their gRPC clients, with a real PostgreSQL
// and SoftHSM2.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/db/pg.h"
#include "consent/app_simulator.h"
#include "gtest/gtest.h"
#include "qsign/v1/consent.grpc.pb.h"
#include "qsign/v1/identity.grpc.pb.h"
#include "tests/testing/people.h"
#include "tests/testing/service_test.h"
#include "tests/testing/stacks.h"
#include "tests/testing/test_data.h"

namespace qsign {
namespace {

namespace pb = ::qsign::v1;

constexpr char kOperator[] = "Operator ra-ana.operator-secret";
using ::qsign::testing::kPin;

class LoginTest : public testing::ServiceTest {
 protected:
  LoginTest() : ServiceTest({.pool_size = 16, .hsm_sessions = 8}) {}

  void SetUp() override {
    ServiceTest::SetUp();
    if (HasFatalFailure()) return;
    // Identity and consent as qsignd runs them, calling each other on its listener.
    auto stacks = testing::Stacks::Start(
        env(), {.services = {"identity", "consent"}, .configure = [](auto& config) {
                  // 127.0.0.1 enrols everyone here.
                  config.mutable_consent()->set_enrollments_per_address_per_minute(0);
                  config.mutable_identity()->set_logins_per_address_per_minute(0);
                  // And registers 200 people from it.
                  config.mutable_identity()->set_registrations_per_address_per_hour(0);
                }});
    ASSERT_TRUE(stacks.ok()) << stacks.status();
    stacks_ = *std::move(stacks);
    identity_channel_ = stacks_->channel();
    consent_channel_ = stacks_->channel();
    identity_stub_ = pb::Identity::NewStub(identity_channel_);
  }

  void TearDown() override {
    if (stacks_) stacks_->Shutdown(absl::Seconds(2));
  }

  grpc::ClientContext* Ctx(grpc::ClientContext* ctx, const char* authorization = nullptr) {
    if (authorization) ctx->AddMetadata("authorization", authorization);
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    return ctx;
  }

  // A registered, proofed account with an enrolled consent app (not yet watching).
  std::unique_ptr<consent::ConsentAppSimulator> Person(int n, std::string* username) {
    auto person = testing::EnrolPerson(*identity_stub_, conninfo(), consent_channel_, n);
    EXPECT_TRUE(person.ok()) << person.status();
    if (!person.ok()) return nullptr;
    *username = person->username;
    EXPECT_EQ(person->app->account_id(), person->account_id);
    return std::move(person->app);
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

  std::unique_ptr<testing::Stacks> stacks_;
  std::shared_ptr<grpc::Channel> identity_channel_;
  std::shared_ptr<grpc::Channel> consent_channel_;
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
    grpc::ClientContext ctx;
    pb::UnblockPinResponse resp;
    return consent_stub->UnblockPin(Ctx(&ctx, kOperator), req, &resp);
  };
  // Person() proofed the account at identity moments ago; consent reads that proofing time
  // through Identity.GetAccount (GrpcIdentityDirectory) before it lets the operator unblock.
  grpc::Status s = unblock();
  ASSERT_TRUE(s.ok()) << s.error_message();
  // The user, not the officer, sets the new PIN on the app.
  ASSERT_TRUE(app->ResetPin("802514").ok());
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
