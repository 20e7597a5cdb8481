// The long waits hold no thread each (issue 15): 1,000 open Consent.WatchRequests streams in
// identity + consent as qsignd runs them, and 1,000 AwaitLogin calls waiting on one login,
// (tests/testing/stacks.h, real gRPC, PostgreSQL, SoftHSM2) leave the process's thread count
// bounded, each stream still receives its requests, a normal push login still completes in time,
// and shutdown ends every stream at once with UNAVAILABLE. gRPC's synchronous server held one
// thread per open stream.
#include <grpcpp/grpcpp.h>
#include <sys/wait.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "consent/app_simulator.h"
#include "gtest/gtest.h"
#include "qsign/v1/identity.grpc.pb.h"
#include "tests/faults/fault_stack.h"
#include "tests/testing/people.h"
#include "tests/testing/qsignd_process.h"
#include "tests/testing/service_test.h"
#include "tests/testing/stacks.h"
#include "tests/testing/test_data.h"
#include "tests/testing/watch_streams.h"

namespace qsign {
namespace {

namespace pb = ::qsign::v1;
using ::qsign::testing::kPin;

constexpr int kStreams = 1000;
// The whole test process: gRPC's, PostgreSQL pool's, HSM's and the services' own threads.
constexpr int kMaxThreads = 100;

class LongWaitsTest : public testing::ServiceTest {
 protected:
  LongWaitsTest() : ServiceTest({.pool_size = 8, .hsm_sessions = 4}) {}

  void SetUp() override {
    ServiceTest::SetUp();
    if (HasFatalFailure()) return;
    auto stacks = testing::Stacks::Start(
        env(), {.services = {"identity", "consent"}, .configure = [](auto& config) {
                  config.mutable_consent()->set_enrollments_per_address_per_minute(0);
                  config.mutable_identity()->set_logins_per_address_per_minute(0);
                }});
    ASSERT_TRUE(stacks.ok()) << stacks.status();
    stacks_ = *std::move(stacks);
    identity_ = pb::Identity::NewStub(stacks_->channel());
  }

  void TearDown() override {
    streams_.reset();
    if (stacks_) stacks_->Shutdown(absl::Seconds(2));
  }

  testing::Person Enrol(int n) {
    auto person = testing::EnrolPerson(*identity_, conninfo(), stacks_->channel(), n);
    EXPECT_TRUE(person.ok()) << person.status();
    return person.ok() ? *std::move(person) : testing::Person{};
  }

  pb::StartLoginResponse StartLogin(const std::string& username) {
    pb::StartLoginRequest req;
    req.set_username(username);
    pb::StartLoginResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    grpc::Status s = identity_->StartLogin(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }

  // Opens kStreams streams of `app` on a channel of their own.
  void OpenStreams(const testing::Person& person) {
    auto streams = testing::WatchStreams::Open(stacks_->NewChannel(), {person.app.get()}, kStreams,
                                               absl::Seconds(120));
    ASSERT_TRUE(streams.ok()) << streams.status();
    streams_ = *std::move(streams);
  }

  std::unique_ptr<testing::Stacks> stacks_;
  std::unique_ptr<pb::Identity::Stub> identity_;
  std::unique_ptr<testing::WatchStreams> streams_;
};

TEST_F(LongWaitsTest, AThousandOpenStreamsHoldNoThreadsAndALoginStillCompletesInTime) {
  testing::Person watcher = Enrol(1);
  testing::Person citizen = Enrol(2);
  ASSERT_TRUE(watcher.app && citizen.app);
  ASSERT_TRUE(citizen.app->StartWatching().ok());
  const int threads_before = testing::ThreadCount();

  OpenStreams(watcher);
  ASSERT_TRUE(streams_);
  const int threads_open = testing::ThreadCount();
  std::cout << "threads: " << threads_before << " before, " << threads_open << " with " << kStreams
            << " open WatchRequests streams\n";
  EXPECT_LT(threads_open, kMaxThreads);

  // A normal login of someone else completes in time beside them.
  const absl::Time started = absl::Now();
  pb::StartLoginResponse start = StartLogin(citizen.username);
  auto pushed = citizen.app->NextRequest(absl::Seconds(5));
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  auto approved = citizen.app->Approve(*pushed, kPin);
  ASSERT_TRUE(approved.ok()) << approved.status();
  pb::AwaitLoginRequest await;
  await.set_login_id(start.login_id());
  await.mutable_max_wait()->set_seconds(10);
  pb::AwaitLoginResponse done;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(15)));
  ASSERT_TRUE(identity_->AwaitLogin(&ctx, await, &done).ok());
  EXPECT_EQ(done.state(), pb::LOGIN_STATE_APPROVED);
  const absl::Duration login_took = absl::Now() - started;
  std::cout << "login beside them: " << absl::FormatDuration(login_took) << "\n";
  EXPECT_LT(login_took, absl::Seconds(3));

  // And every one of the thousand streams is live: the watcher's login request reaches each.
  StartLogin(watcher.username);
  EXPECT_EQ(streams_->AwaitReceived(1, absl::Seconds(20)), kStreams);
  EXPECT_LT(testing::ThreadCount(), kMaxThreads);
}

TEST_F(LongWaitsTest, ShutdownEndsEveryOpenStreamAtOnceWithUnavailable) {
  testing::Person watcher = Enrol(1);
  ASSERT_TRUE(watcher.app);
  OpenStreams(watcher);
  ASSERT_TRUE(streams_);

  const absl::Time started = absl::Now();
  stacks_->Shutdown(absl::Seconds(5));
  const absl::Duration shutdown_took = absl::Now() - started;
  auto codes = streams_->AwaitEnded(absl::Seconds(1));
  std::cout << "shutdown with " << kStreams
            << " open streams: " << absl::FormatDuration(shutdown_took) << "\n";
  EXPECT_EQ(codes[grpc::StatusCode::UNAVAILABLE], kStreams);
  // Well within the grace period: nothing had to be cancelled by gRPC.
  EXPECT_LT(shutdown_took, absl::Seconds(3));
}

TEST_F(LongWaitsTest, AThousandWaitingAwaitLoginsHoldNoThreadsAndExactlyOneGetsTheToken) {
  testing::Person citizen = Enrol(1);
  ASSERT_TRUE(citizen.app);
  ASSERT_TRUE(citizen.app->StartWatching().ok());
  pb::StartLoginResponse start = StartLogin(citizen.username);
  auto pushed = citizen.app->NextRequest(absl::Seconds(5));
  ASSERT_TRUE(pushed.ok()) << pushed.status();

  // A thousand portals (or retries) wait on the same login, on gRPC's callback client API.
  struct Call {
    grpc::ClientContext ctx;
    pb::AwaitLoginResponse resp;
  };
  absl::Mutex mu;
  std::map<grpc::StatusCode, int> codes;
  int tokens = 0;
  int answered = 0;
  pb::AwaitLoginRequest await;
  await.set_login_id(start.login_id());
  await.mutable_max_wait()->set_seconds(30);
  std::vector<std::unique_ptr<Call>> calls;
  auto channel = stacks_->NewChannel();
  auto stub = pb::Identity::NewStub(channel);
  for (int i = 0; i < kStreams; ++i) {
    calls.push_back(std::make_unique<Call>());
    Call* call = calls.back().get();
    call->ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    stub->async()->AwaitLogin(&call->ctx, &await, &call->resp, [&, call](grpc::Status st) {
      absl::MutexLock lock(&mu);
      ++codes[st.error_code()];
      if (st.ok() && !call->resp.session_token().empty()) ++tokens;
      ++answered;
    });
  }
  absl::SleepFor(absl::Seconds(2));  // Every call reached the server and waits.
  const int threads_waiting = testing::ThreadCount();
  std::cout << "threads with " << kStreams << " waiting AwaitLogin calls: " << threads_waiting
            << "\n";
  EXPECT_LT(threads_waiting, kMaxThreads);
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(answered, 0) << "answered before the decision";
  }

  const absl::Time approved_at = absl::Now();
  auto approved = citizen.app->Approve(*pushed, kPin);
  ASSERT_TRUE(approved.ok()) << approved.status();
  absl::MutexLock lock(&mu);
  mu.AwaitWithTimeout(absl::Condition(
                          +[](int* n) { return *n == kStreams; }, &answered),
                      absl::Seconds(20));
  std::cout << "all answered " << absl::FormatDuration(absl::Now() - approved_at)
            << " after the approval\n";
  EXPECT_EQ(answered, kStreams);
  EXPECT_EQ(tokens, 1);
  EXPECT_EQ(codes[grpc::StatusCode::OK], 1);
  EXPECT_EQ(codes[grpc::StatusCode::FAILED_PRECONDITION], kStreams - 1);
}

// The real binary: SIGTERM with 1,000 open streams ends each with UNAVAILABLE and qsignd exits
// cleanly well within its grace period.
class QsigndLongWaitsTest : public testing::ServiceTest {
 protected:
  QsigndLongWaitsTest() : ServiceTest({.pool_size = 0, .hsm_sessions = 0}) {}
};

TEST_F(QsigndLongWaitsTest, SigtermEndsEveryOpenStreamWithUnavailableAndExitsWithinItsGrace) {
  config::v1::ServerConfig config =
      testing::FaultStackConfig(env(), {"identity", "consent", "signer"});
  auto qsignd = testing::QsigndProcess::Start(QSIGND_PATH, config, token().dir());
  ASSERT_TRUE(qsignd.ok()) << qsignd.status();
  auto channel = grpc::CreateChannel((*qsignd)->target(), grpc::InsecureChannelCredentials());
  auto identity = pb::Identity::NewStub(channel);
  auto person = testing::EnrolPerson(*identity, conninfo(), channel, 1);
  ASSERT_TRUE(person.ok()) << person.status();
  auto streams = testing::WatchStreams::Open(
      grpc::CreateChannel((*qsignd)->target(), grpc::InsecureChannelCredentials()),
      {person->app.get()}, kStreams, absl::Seconds(120));
  ASSERT_TRUE(streams.ok()) << streams.status();
  const int threads = testing::ThreadCount((*qsignd)->pid());
  std::cout << "qsignd threads with " << kStreams << " open streams: " << threads << "\n";
  EXPECT_LT(threads, kMaxThreads);

  const absl::Time started = absl::Now();
  const int status = (*qsignd)->Stop();
  const absl::Duration took = absl::Now() - started;
  std::cout << "SIGTERM to exit with " << kStreams
            << " open streams: " << absl::FormatDuration(took) << "\n";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  // The grace period (observability.grace_seconds, 10 s in this config) is not needed.
  EXPECT_LT(took, absl::Seconds(3));
  auto codes = (*streams)->AwaitEnded(absl::Seconds(2));
  EXPECT_EQ(codes[grpc::StatusCode::UNAVAILABLE], kStreams);
}

}  // namespace
}  // namespace qsign
