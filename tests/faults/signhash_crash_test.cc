// kill -9 of qsignd while client threads sign (issue 13, crash tests): a signature a relying
// party received is real and its SAD is recorded used; a SAD is never used twice; after the
// restart every used SAD is refused, and a call that was in flight at the crash either used its
// SAD (refused now) or did not (signed now): never both, never neither.
#include <grpcpp/grpcpp.h>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/time/time.h"
#include "common/grpc_status.h"
#include "common/refusal.h"
#include "gtest/gtest.h"
#include "qsign/config/v1/config.pb.h"
#include "qsign/v1/refusal.pb.h"
#include "tests/testing/qsignd_process.h"
#include "tests/testing/service_test.h"
#include "tests/testing/signing_load.h"

namespace qsign {
namespace {

namespace pb = ::qsign::v1;
using testing::Signing;
using testing::SigningLoad;

constexpr char kCredential[] = "cred-crash";

class SignHashCrashTest : public testing::ServiceTest {
 protected:
  SignHashCrashTest() : ServiceTest({.pool_size = 0, .hsm_sessions = 0}) {}

  void SetUp() override {
    ServiceTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(env().SadPublicKeyFile().ok());
    config_ = testing::LaptopConfig(conninfo(), env().TokensConfig(4), {"signer"}, token().dir());
    config_.set_services_file(testing::WriteLifecycleServicesFile(token().dir()));
  }

  std::unique_ptr<testing::QsigndProcess> StartQsignd(const std::string& name) {
    auto q = testing::QsigndProcess::Start(QSIGND_PATH, config_, token().dir(), name);
    EXPECT_TRUE(q.ok()) << q.status();
    return q.ok() ? *std::move(q) : nullptr;
  }

  static std::shared_ptr<grpc::Channel> ChannelTo(const testing::QsigndProcess& q) {
    return grpc::CreateChannel(q.target(), grpc::InsecureChannelCredentials());
  }

  config::v1::ServerConfig config_;
};

bool RefusedAsUsed(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::FAILED_PRECONDITION &&
         RefusalReason(FromGrpcStatus(s)) == pb::Refusal::SAD_USED;
}

TEST_F(SignHashCrashTest, KillNineUnderLoadLosesNoSignatureAndSpendsNoSadTwice) {
  constexpr int kThreads = 6;
  constexpr int kPerThread = 120;  // More than get through before the kill.
  constexpr int kOkBeforeKill = 60;
  auto first = StartQsignd("qsignd-1");
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(OpenHsm(2).ok());
  auto client = testing::SigningClient::New(ChannelTo(*first), &hsm("consent"), kCredential);
  ASSERT_TRUE(client.ok()) << client.status();
  std::vector<std::vector<Signing>> work;
  for (int t = 0; t < kThreads; ++t) {
    auto mine = (*client)->NewSignings(kPerThread);
    ASSERT_TRUE(mine.ok()) << mine.status();
    work.push_back(*std::move(mine));
  }

  // Each client stops at its second failure: the first may have been in flight at the kill.
  SigningLoad load(client->get(), work, /*stop_after_failures=*/2);
  ASSERT_TRUE(load.AwaitAcknowledged(kOkBeforeKill, absl::Seconds(60))) << first->log();
  const int ok_at_kill = load.acknowledged();
  first->Kill();
  load.Join();

  auto second = StartQsignd("qsignd-2");
  ASSERT_NE(second, nullptr);
  (*client)->SetChannel(ChannelTo(*second));

  auto journal = testing::SadJournal(conninfo(), kCredential);  // INTERNAL on a SAD twice.
  ASSERT_TRUE(journal.ok()) << journal.status();
  int acknowledged = 0, verified = 0, refused_on_replay = 0, lost = 0;
  int failed = 0, in_flight_used = 0, in_flight_signed_now = 0, in_flight_neither = 0;
  for (int t = 0; t < kThreads; ++t) {
    const SigningLoad::Outcome& out = load.outcomes()[t];
    EXPECT_FALSE(out.ran_out) << "client " << t << " never saw the crash";
    for (const auto& [signing, resp] : out.acknowledged) {
      ++acknowledged;
      const bool ok = (*client)->Verifies(*signing, resp);
      if (ok) ++verified;
      if (!ok || !journal->contains(signing->sad_id)) ++lost;
      // The same SAD again, on the restarted process: refused as used.
      pb::SignHashResponse again;
      grpc::Status s = (*client)->SignHash(*signing, &again);
      if (RefusedAsUsed(s)) {
        ++refused_on_replay;
      } else {
        ADD_FAILURE() << "a used SAD was not refused: " << s.error_code() << " "
                      << s.error_message();
      }
    }
    for (const auto& [signing, status] : out.failed) {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
      ++failed;
      const bool used = journal->contains(signing->sad_id);
      pb::SignHashResponse resp;
      grpc::Status s = (*client)->SignHash(*signing, &resp);
      if (used && RefusedAsUsed(s)) {
        ++in_flight_used;  // Used just before the kill; its signature never reached the client.
      } else if (!used && s.ok() && (*client)->Verifies(*signing, resp)) {
        ++in_flight_signed_now;
      } else {
        ++in_flight_neither;
        ADD_FAILURE() << "in-flight SAD (used: " << used << ") now answered " << s.error_code()
                      << " " << s.error_message();
      }
    }
  }
  // Nothing the journal holds went unaccounted for: acknowledged or in flight at the kill.
  EXPECT_EQ(static_cast<int>(journal->size()), acknowledged + in_flight_used);
  EXPECT_GE(acknowledged, ok_at_kill);
  EXPECT_EQ(verified, acknowledged);
  EXPECT_EQ(refused_on_replay, acknowledged);
  EXPECT_EQ(lost, 0);
  EXPECT_EQ(in_flight_neither, 0);
  std::cout << "[ counts   ] signhash kill -9: acknowledged=" << acknowledged
            << " verified=" << verified << " refused_on_replay=" << refused_on_replay
            << " failed=" << failed
            << " (in flight at the kill or sent after it; used before the kill, refused now: "
            << in_flight_used << "; signed on retry: " << in_flight_signed_now
            << ") journal=" << journal->size() << " lost=" << lost << "\n";
}

}  // namespace
}  // namespace qsign
