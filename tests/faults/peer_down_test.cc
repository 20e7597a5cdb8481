// A peer service down (issue 13), the services as separate processes: consent unreachable
// from identity, the signer unreachable from lifecycle. Callers get a clear UNAVAILABLE at once
// (no hang, no INTERNAL), nothing is left half done, and everything works again once the peer is
// back, without restarting the caller.
#include <grpcpp/grpcpp.h>

#include <iostream>
#include <memory>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/db/pg.h"
#include "consent/app_simulator.h"
#include "gtest/gtest.h"
#include "qsign/config/v1/config.pb.h"
#include "qsign/v1/identity.grpc.pb.h"
#include "qsign/v1/lifecycle.grpc.pb.h"
#include "tests/faults/fault_stack.h"
#include "tests/testing/people.h"
#include "tests/testing/qsignd_process.h"
#include "tests/testing/service_test.h"
#include "tests/testing/test_data.h"

namespace qsign {
namespace {

namespace pb = ::qsign::v1;

std::string Loopback(int port) { return absl::StrCat("127.0.0.1:", port); }

// Two processes: `front` runs the services that call the peer, `back` runs the peer (and
// whatever else), each at a fixed loopback port the other's peers.* names.
class PeerDownTest : public testing::ServiceTest {
 protected:
  PeerDownTest() : ServiceTest({.pool_size = 0, .hsm_sessions = 0}) {}

  void Configure(const std::vector<std::string>& front_services,
                 const std::vector<std::string>& back_services) {
    // Consent makes the SAD key and pins it; with the signer elsewhere the test pins it first.
    ASSERT_TRUE(env().SadPublicKeyFile().ok());
    front_port_ = testing::FreeLoopbackPort();
    back_port_ = testing::FreeLoopbackPort();
    front_ = testing::FaultStackConfig(env(), front_services);
    back_ = testing::FaultStackConfig(env(), back_services);
    front_.set_listen(Loopback(front_port_));
    back_.set_listen(Loopback(back_port_));
    for (config::v1::ServerConfig* c : {&front_, &back_}) {
      const std::string other = Loopback(c == &front_ ? back_port_ : front_port_);
      const auto& services = c == &front_ ? back_services : front_services;
      for (const std::string& s : services) {
        if (s == "identity") c->mutable_peers()->set_identity(other);
        if (s == "consent") c->mutable_peers()->set_consent(other);
        if (s == "signer") c->mutable_peers()->set_signer(other);
        if (s == "lifecycle") c->mutable_peers()->set_lifecycle(other);
      }
    }
  }

  void StartBack() {
    auto q = testing::QsigndProcess::Start(QSIGND_PATH, back_, token().dir(), "back");
    ASSERT_TRUE(q.ok()) << q.status();
    back_process_ = *std::move(q);
  }
  void StartFront() {
    auto q = testing::QsigndProcess::Start(QSIGND_PATH, front_, token().dir(), "front");
    ASSERT_TRUE(q.ok()) << q.status();
    front_process_ = *std::move(q);
  }
  std::shared_ptr<grpc::Channel> Front() {
    return grpc::CreateChannel(Loopback(front_port_), grpc::InsecureChannelCredentials());
  }
  std::shared_ptr<grpc::Channel> Back() {
    return grpc::CreateChannel(Loopback(back_port_), grpc::InsecureChannelCredentials());
  }

  int front_port_ = 0;
  int back_port_ = 0;
  config::v1::ServerConfig front_;
  config::v1::ServerConfig back_;
  std::unique_ptr<testing::QsigndProcess> front_process_;
  std::unique_ptr<testing::QsigndProcess> back_process_;
};

pb::AwaitLoginResponse AwaitLogin(pb::Identity::Stub& identity, const std::string& login_id,
                                  int max_wait_seconds, grpc::Status* status) {
  pb::AwaitLoginRequest req;
  req.set_login_id(login_id);
  req.mutable_max_wait()->set_seconds(max_wait_seconds);
  pb::AwaitLoginResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(max_wait_seconds + 10)));
  *status = identity.AwaitLogin(&ctx, req, &resp);
  return resp;
}

std::string StartLogin(pb::Identity::Stub& identity, const std::string& username) {
  pb::StartLoginRequest req;
  req.set_username(username);
  req.mutable_client()->set_client_address("198.51.100.23");
  pb::StartLoginResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  grpc::Status s = identity.StartLogin(&ctx, req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return resp.login_id();
}

TEST_F(PeerDownTest, ConsentDownIdentityAnswersUnavailableAndRecovers) {
  ASSERT_NO_FATAL_FAILURE(Configure({"identity"}, {"consent", "signer"}));
  ASSERT_NO_FATAL_FAILURE(StartFront());
  ASSERT_NO_FATAL_FAILURE(StartBack());
  auto identity = pb::Identity::NewStub(Front());
  auto person = testing::EnrolPerson(*identity, conninfo(), Back(), 800);
  ASSERT_TRUE(person.ok()) << person.status();
  ASSERT_TRUE(person->app->StartWatching().ok());

  // A login waiting on the phone when consent goes.
  const std::string waiting = StartLogin(*identity, person->username);
  auto pushed = person->app->NextRequest(absl::Seconds(10));
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  back_process_->Kill();

  int unavailable = 0;
  grpc::Status s;
  const absl::Time start = absl::Now();
  AwaitLogin(*identity, waiting, 2, &s);
  const absl::Duration answered_in = absl::Now() - start;
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_LT(answered_in, absl::Seconds(5));
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) ++unavailable;
  // A login started while consent is down cannot reach the phone; the portal is answered as for
  // any login (no account enumeration) and the login ends EXPIRED, with no consent request.
  const std::string during = StartLogin(*identity, person->username);

  ASSERT_NO_FATAL_FAILURE(StartBack());
  // The phone approves the login that was waiting (its channel reconnects by itself).
  absl::StatusOr<pb::ApproveResponse> approved;
  for (int attempt = 0; attempt < 300; ++attempt) {  // gRPC's reconnect backoff, on a busy box.
    approved = person->app->Approve(*pushed, testing::kPin);
    if (approved.ok() || approved.status().code() != absl::StatusCode::kUnavailable) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_TRUE(approved.ok()) << approved.status();
  EXPECT_EQ(approved->result(), pb::APPROVE_RESULT_APPROVED);
  // The portal retries while identity's channel to consent reconnects (gRPC's backoff).
  pb::AwaitLoginResponse done;
  const absl::Time back_at = absl::Now();
  do {
    done = AwaitLogin(*identity, waiting, 10, &s);
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE) absl::SleepFor(absl::Milliseconds(200));
  } while (s.error_code() == grpc::StatusCode::UNAVAILABLE &&
           absl::Now() - back_at < absl::Seconds(30));
  const absl::Duration recovered_in = absl::Now() - back_at;
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(done.state(), pb::LOGIN_STATE_APPROVED);
  EXPECT_FALSE(done.session_token().empty());
  // And a new login goes through end to end.
  person->app->SetAutoDecision(consent::Decision::kApprove, testing::kPin);
  EXPECT_FALSE(testing::Login(*identity, person->username).empty()) << front_process_->log();

  auto conn = db::Connection::Open(conninfo());
  ASSERT_TRUE(conn.ok());
  auto orphaned = (*conn)->Exec(
      "SELECT count(*) FROM identity.logins WHERE consent_request_id IS NULL AND "
      "state = 'APPROVED'");
  ASSERT_TRUE(orphaned.ok()) << orphaned.status();
  EXPECT_EQ(orphaned->GetInt64(0, 0).value_or(-1), 0) << "approved without a consent request";
  std::cout << "[ counts   ] consent down: AwaitLogin UNAVAILABLE=" << unavailable << " in "
            << absl::FormatDuration(answered_in)
            << ", login started while down answered as any login (id " << !during.empty()
            << "), waiting login approved after recovery="
            << (done.state() == pb::LOGIN_STATE_APPROVED) << " (identity reached consent again in "
            << absl::FormatDuration(recovered_in) << ")"
            << ", lost=0\n";
}

TEST_F(PeerDownTest, SignerDownLifecycleAnswersUnavailableAndIssueCompletesOnRetry) {
  ASSERT_NO_FATAL_FAILURE(Configure({"identity", "consent", "lifecycle"}, {"signer"}));
  front_.mutable_lifecycle()->set_http_listen("127.0.0.1:0");
  ASSERT_NO_FATAL_FAILURE(StartBack());
  ASSERT_NO_FATAL_FAILURE(StartFront());
  auto identity = pb::Identity::NewStub(Front());
  auto lifecycle = pb::Lifecycle::NewStub(Front());
  auto person = testing::EnrolPerson(*identity, conninfo(), Front(), 801);
  ASSERT_TRUE(person.ok()) << person.status();
  person->app->SetAutoDecision(consent::Decision::kApprove, testing::kPin);
  ASSERT_TRUE(person->app->StartWatching().ok());
  const std::string token = testing::Login(*identity, person->username);
  ASSERT_FALSE(token.empty()) << front_process_->log();
  const auto bearer = [&](grpc::ClientContext& ctx) {
    ctx.AddMetadata("authorization", "Bearer " + token);
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  };
  {
    pb::Contract contract;
    grpc::ClientContext c1;
    ASSERT_TRUE(lifecycle->GetContract(&c1, pb::GetContractRequest(), &contract).ok());
    pb::AcceptContractRequest accept;
    accept.set_version(contract.version());
    accept.set_text_sha256(contract.text_sha256());
    pb::ContractAcceptance accepted;
    grpc::ClientContext c2;
    bearer(c2);
    ASSERT_TRUE(lifecycle->AcceptContract(&c2, accept, &accepted).ok());
  }

  back_process_->Kill();
  pb::IssueRequest issue;
  issue.set_client_request_id("issue-while-signer-down");
  pb::Certificate cert;
  grpc::Status s;
  const absl::Time start = absl::Now();
  {
    grpc::ClientContext ctx;
    bearer(ctx);
    s = lifecycle->Issue(&ctx, issue, &cert);
  }
  const absl::Duration answered_in = absl::Now() - start;
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_LT(answered_in, absl::Seconds(5));
  // Nothing half done: no certificate issued, no credential at the signer.
  auto conn = db::Connection::Open(conninfo());
  ASSERT_TRUE(conn.ok());
  auto issued = (*conn)->Exec(
      "SELECT count(*) FROM lifecycle.certificates WHERE kind = 'QUALIFIED' AND state = 'ISSUED'");
  ASSERT_TRUE(issued.ok()) << issued.status();
  EXPECT_EQ(issued->GetInt64(0, 0).value_or(-1), 0);
  auto credentials = (*conn)->Exec("SELECT count(*) FROM signer.credentials");
  ASSERT_TRUE(credentials.ok()) << credentials.status();
  EXPECT_EQ(credentials->GetInt64(0, 0).value_or(-1), 0);

  ASSERT_NO_FATAL_FAILURE(StartBack());
  // The same request again, once the signer is back: issued, ACTIVE at the signer.
  grpc::Status retried;
  for (int attempt = 0; attempt < 300; ++attempt) {
    grpc::ClientContext ctx;
    bearer(ctx);
    retried = lifecycle->Issue(&ctx, issue, &cert);
    if (retried.error_code() != grpc::StatusCode::UNAVAILABLE) break;
    absl::SleepFor(absl::Milliseconds(100));  // The channel reconnects.
  }
  ASSERT_TRUE(retried.ok()) << retried.error_message() << "\n" << front_process_->log();
  EXPECT_EQ(cert.status(), pb::CERTIFICATE_STATUS_ACTIVE);
  auto active = (*conn)->Exec(
      "SELECT count(*) FROM signer.credentials WHERE credential_id = $1 AND status = 'ACTIVE'",
      {db::Param::Text(cert.certificate_id())});
  ASSERT_TRUE(active.ok()) << active.status();
  EXPECT_EQ(active->GetInt64(0, 0).value_or(-1), 1);
  std::cout << "[ counts   ] signer down: Issue UNAVAILABLE in "
            << absl::FormatDuration(answered_in)
            << ", certificates issued while down=0, credentials created while down=0, the same "
               "request issued after recovery=1, lost=0\n";
}

}  // namespace
}  // namespace qsign
