// kill -9 of PostgreSQL under login and signing load, then a restart (issue 13): qsignd (identity,
// consent, signer) is not restarted; its health goes NOT_SERVING and back to SERVING, logins and
// signatures succeed again, and every write a client saw acknowledged is in the database
// (synchronous_commit on for this database, as in production: a crash of the server process
// keeps every committed transaction).
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <deque>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/db/pg.h"
#include "consent/app_simulator.h"
#include "gtest/gtest.h"
#include "qsign/config/v1/config.pb.h"
#include "qsign/v1/identity.grpc.pb.h"
#include "tests/faults/fault_stack.h"
#include "tests/testing/people.h"
#include "tests/testing/qsignd_process.h"
#include "tests/testing/service_test.h"
#include "tests/testing/signing_load.h"
#include "tests/testing/test_data.h"

namespace qsign {
namespace {

namespace pb = ::qsign::v1;
using HealthStatus = ::grpc::health::v1::HealthCheckResponse;

constexpr int kPeople = 4;          // One portal thread each, logging in again and again.
constexpr int kSigningThreads = 3;  // Relying parties, each signing again and again.
constexpr char kCredential[] = "cred-pg-crash";

// What the clients were told, phase by phase.
struct Tally {
  std::atomic<int> logins{0};
  std::atomic<int> signatures{0};
  std::atomic<int> failed_calls{0};
};

class PostgresCrashTest : public testing::ServiceTest {
 protected:
  PostgresCrashTest() : ServiceTest({.pool_size = 0, .hsm_sessions = 0, .own_server = true}) {}

  void SetUp() override {
    ServiceTest::SetUp();
    if (HasFatalFailure()) return;
    // Every commit acknowledged to qsignd is in the WAL before the answer (the test server's
    // default is off, for speed).
    {
      auto conn = db::Connection::Open(conninfo());
      ASSERT_TRUE(conn.ok()) << conn.status();
      auto name = (*conn)->Exec("SELECT current_database()");
      ASSERT_TRUE(name.ok()) << name.status();
      ASSERT_TRUE((*conn)
                      ->ExecScript(absl::StrCat("ALTER DATABASE \"", std::string(name->Get(0, 0)),
                                                "\" SET synchronous_commit = on"))
                      .ok());
    }
    const std::string dir = token().dir();
    config::v1::ServerConfig config =
        testing::FaultStackConfig(env(), {"signer", "consent", "identity"});
    auto q = testing::QsigndProcess::Start(QSIGND_PATH, config, dir);
    ASSERT_TRUE(q.ok()) << q.status();
    qsignd_ = *std::move(q);
    channel_ = grpc::CreateChannel(qsignd_->target(), grpc::InsecureChannelCredentials());
    identity_ = pb::Identity::NewStub(channel_);
    ASSERT_TRUE(OpenHsm(4).ok());  // consent's token, to mint SADs (the test plays consent).
  }

  std::string Login(const testing::Person& person) {
    return testing::Login(*identity_, person.username);
  }

  std::unique_ptr<testing::QsigndProcess> qsignd_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::Identity::Stub> identity_;
};

TEST_F(PostgresCrashTest, KillNineUnderLoginAndSigningLoadRecoversWithoutLosingWrites) {
  std::vector<testing::Person> people;
  for (int i = 0; i < kPeople; ++i) {
    auto p = testing::EnrolPerson(*identity_, conninfo(), channel_, 500 + i);
    ASSERT_TRUE(p.ok()) << p.status();
    p->app->SetAutoDecision(consent::Decision::kApprove, testing::kPin);
    ASSERT_TRUE(p->app->StartWatching().ok());
    people.push_back(*std::move(p));
  }
  auto signing = testing::SigningClient::New(channel_, &hsm("consent"), kCredential);
  ASSERT_TRUE(signing.ok()) << signing.status();

  // Acknowledged writes, for the check after the crash.
  absl::Mutex mu;
  std::map<std::string, int> sessions_of;  // account_id -> logins acknowledged
  std::deque<std::pair<testing::Signing, pb::SignHashResponse>> signed_ok;
  Tally before, during, after;
  std::atomic<Tally*> phase{&before};
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int i = 0; i < kPeople; ++i) {
    clients.emplace_back([&, i] {
      while (!stop.load()) {
        const std::string token = Login(people[i]);
        Tally* t = phase.load();
        if (token.empty()) {
          ++t->failed_calls;
          absl::SleepFor(absl::Milliseconds(100));
          continue;
        }
        ++t->logins;
        absl::MutexLock lock(&mu);
        ++sessions_of[people[i].account_id];
      }
    });
  }
  for (int i = 0; i < kSigningThreads; ++i) {
    clients.emplace_back([&] {
      while (!stop.load()) {
        auto s = (*signing)->NewSigning();
        if (!s.ok()) continue;
        pb::SignHashResponse resp;
        grpc::Status status = (*signing)->SignHash(*s, &resp, absl::Seconds(5));
        Tally* t = phase.load();
        if (!status.ok()) {
          ++t->failed_calls;
          absl::SleepFor(absl::Milliseconds(100));
          continue;
        }
        ++t->signatures;
        absl::MutexLock lock(&mu);
        signed_ok.emplace_back(*std::move(s), std::move(resp));
      }
    });
  }
  const auto stop_clients = [&] {
    stop.store(true);
    for (std::thread& c : clients) c.join();
  };

  EXPECT_TRUE(testing::AwaitAtLeast(before.logins, 5, absl::Seconds(30)) &&
              testing::AwaitAtLeast(before.signatures, 20, absl::Seconds(30)))
      << qsignd_->log();
  EXPECT_EQ(testing::Health(qsignd_->target()), HealthStatus::SERVING);

  phase.store(&during);
  const absl::Time killed_at = absl::Now();
  ASSERT_TRUE(env().pg_server().Kill().ok());
  const bool saw_not_serving =
      testing::AwaitHealth(qsignd_->target(), HealthStatus::NOT_SERVING, absl::Seconds(15));
  EXPECT_TRUE(saw_not_serving) << qsignd_->log();
  absl::SleepFor(absl::Milliseconds(500));
  const absl::Status restarted = env().pg_server().Restart();
  phase.store(&after);
  if (!restarted.ok()) stop_clients();
  ASSERT_TRUE(restarted.ok()) << restarted;
  const bool serving_again =
      testing::AwaitHealth(qsignd_->target(), HealthStatus::SERVING, absl::Seconds(20));
  const absl::Duration outage = absl::Now() - killed_at;
  // The same process, with no restart, logs people in and signs again.
  const bool recovered = testing::AwaitAtLeast(after.logins, 5, absl::Seconds(30)) &&
                         testing::AwaitAtLeast(after.signatures, 20, absl::Seconds(30));
  stop_clients();
  EXPECT_TRUE(serving_again) << qsignd_->log();
  EXPECT_TRUE(recovered) << qsignd_->log();

  // Every acknowledged write is there: each session issued, each SAD use recorded.
  auto conn = db::Connection::Open(conninfo());
  ASSERT_TRUE(conn.ok()) << conn.status();
  int logins_acknowledged = 0;
  for (const auto& [account, acknowledged] : sessions_of) logins_acknowledged += acknowledged;
  auto missing = testing::SessionsMissing(conninfo(), sessions_of);
  ASSERT_TRUE(missing.ok()) << missing.status();
  const int sessions_missing = *missing;
  auto journal = testing::SadJournal(conninfo(), kCredential);
  ASSERT_TRUE(journal.ok()) << journal.status();
  int sad_uses_missing = 0, verified = 0;
  for (const auto& [s, resp] : signed_ok) {
    if (!journal->contains(s.sad_id)) ++sad_uses_missing;
    if ((*signing)->Verifies(s, resp)) ++verified;
  }
  EXPECT_EQ(sessions_missing, 0);
  EXPECT_EQ(sad_uses_missing, 0);
  EXPECT_EQ(verified, static_cast<int>(signed_ok.size()));
  const std::string log = qsignd_->log();
  EXPECT_NE(log.find("dependency failing"), std::string::npos);
  EXPECT_NE(log.find("dependency recovered"), std::string::npos);
  std::cout << "[ counts   ] postgres kill -9: acknowledged logins=" << logins_acknowledged
            << " (before the kill " << before.logins << ", while down " << during.logins
            << ", after the restart " << after.logins << "), signatures=" << signed_ok.size()
            << " (" << before.signatures << ", " << during.signatures << ", " << after.signatures
            << "), verified=" << verified << ", refused or failed calls="
            << before.failed_calls + during.failed_calls + after.failed_calls
            << ", health NOT_SERVING seen=" << saw_not_serving << ", SERVING again after "
            << absl::FormatDuration(outage) << ", lost=" << sessions_missing + sad_uses_missing
            << "\n";
}

}  // namespace
}  // namespace qsign
