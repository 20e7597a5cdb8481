// Operations of the real qsignd binary, with a real PostgreSQL and a real SoftHSM2 token:
//  - grpc.health.v1 follows a PostgreSQL outage (NOT_SERVING while it is down, SERVING when it
//    is back) and the service signs again afterwards;
//  - SIGTERM under load: every SignHash that returned OK is in the signer's SAD journal and its
//    signature verifies; later calls fail with UNAVAILABLE; qsignd exits 0 within its grace.
#include <grpcpp/grpcpp.h>
#include <sys/wait.h>

#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "qsign/config/v1/config.pb.h"
#include "qsign/v1/signer.grpc.pb.h"
#include "tests/testing/qsignd_process.h"
#include "tests/testing/service_test.h"
#include "tests/testing/signing_load.h"

namespace qsign {
namespace {

namespace pb = ::qsign::v1;
using testing::HealthStatus;
using testing::Signing;

constexpr char kCredential[] = "cred-ops";

// Its own PostgreSQL server, which the tests stop and restart; the token is qsignd's.
class QsigndOpsTest : public testing::ServiceTest {
 protected:
  QsigndOpsTest() : ServiceTest({.pool_size = 0, .hsm_sessions = 0, .own_server = true}) {}

  // qsignd serving the signer; `grace_seconds` for in-flight calls on SIGTERM.
  void StartQsignd(int grace_seconds = 10) {
    // The SAD key in consent's token (the test plays consent), pinned for qsignd's signer.
    ASSERT_TRUE(env().SadPublicKeyFile().ok());
    config::v1::ServerConfig config =
        testing::LaptopConfig(conninfo(), env().TokensConfig(4), {"signer"}, token().dir());
    // The test plays lifecycle too: the signer's administrative RPCs need its credential.
    config.set_services_file(testing::WriteLifecycleServicesFile(token().dir()));
    config.mutable_observability()->set_grace_seconds(grace_seconds);
    auto q = testing::QsigndProcess::Start(QSIGND_PATH, config, token().dir());
    ASSERT_TRUE(q.ok()) << q.status();
    qsignd_ = *std::move(q);
  }

  // Creates and certifies the credential and opens consent's token to mint SADs.
  void PrepareCredential() {
    ASSERT_TRUE(OpenHsm(2).ok());
    auto client = testing::SigningClient::New(
        grpc::CreateChannel(qsignd_->target(), grpc::InsecureChannelCredentials()), &hsm("consent"),
        kCredential);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  absl::StatusOr<Signing> NewSigning() { return client_->NewSigning(); }
  grpc::Status SignHash(const Signing& s, pb::SignHashResponse* resp) {
    return client_->SignHash(s, resp);
  }
  HealthStatus Health() { return testing::Health(qsignd_->target()); }
  bool AwaitHealth(HealthStatus want, absl::Duration timeout) {
    return testing::AwaitHealth(qsignd_->target(), want, timeout);
  }
  bool Verifies(const Signing& s, const pb::SignHashResponse& r) { return client_->Verifies(s, r); }

  std::unique_ptr<testing::QsigndProcess> qsignd_;
  std::unique_ptr<testing::SigningClient> client_;
};

TEST_F(QsigndOpsTest, HealthFollowsPostgresOutageAndSigningResumes) {
  ASSERT_NO_FATAL_FAILURE(StartQsignd());
  ASSERT_NO_FATAL_FAILURE(PrepareCredential());
  EXPECT_EQ(Health(), grpc::health::v1::HealthCheckResponse::SERVING);

  ASSERT_TRUE(env().pg_server().Stop().ok());
  // The prober runs every 2 s.
  ASSERT_TRUE(AwaitHealth(grpc::health::v1::HealthCheckResponse::NOT_SERVING, absl::Seconds(15)))
      << qsignd_->log();
  // A relying party calling now is told to come back, and its SAD is not used up.
  auto during = NewSigning();
  ASSERT_TRUE(during.ok()) << during.status();
  {
    pb::SignHashResponse resp;
    grpc::Status s = SignHash(*during, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  }

  ASSERT_TRUE(env().pg_server().Restart().ok());
  ASSERT_TRUE(AwaitHealth(grpc::health::v1::HealthCheckResponse::SERVING, absl::Seconds(15)))
      << qsignd_->log();
  // The pool's connections died with the server; the next calls get fresh ones.
  for (int i = 0; i < 3; ++i) {
    auto fresh = NewSigning();
    ASSERT_TRUE(fresh.ok()) << fresh.status();
    pb::SignHashResponse resp;
    grpc::Status s = SignHash(*fresh, &resp);
    ASSERT_TRUE(s.ok()) << s.error_code() << " " << s.error_message() << "\n" << qsignd_->log();
    EXPECT_TRUE(Verifies(*fresh, resp));
  }
  {
    pb::SignHashResponse resp;
    grpc::Status s = SignHash(*during, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_TRUE(Verifies(*during, resp));
  }

  const std::string log = qsignd_->log();
  EXPECT_NE(log.find("dependency failing"), std::string::npos) << log;
  EXPECT_NE(log.find("dependency recovered"), std::string::npos) << log;
  qsignd_->Terminate();
  std::optional<int> status = qsignd_->WaitExit(absl::Seconds(10));
  ASSERT_TRUE(status.has_value()) << "qsignd did not stop:\n" << qsignd_->log();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status << "\n" << log;
}

TEST_F(QsigndOpsTest, SigtermUnderLoadLosesNoAcknowledgedSignature) {
  constexpr int kGraceSeconds = 10;
  constexpr int kThreads = 8;
  constexpr int kPerThread = 150;  // Far more than get through before the SIGTERM takes hold.
  constexpr int kOkBeforeSigterm = 80;
  ASSERT_NO_FATAL_FAILURE(StartQsignd(kGraceSeconds));
  ASSERT_NO_FATAL_FAILURE(PrepareCredential());

  std::vector<std::vector<Signing>> work;
  for (int t = 0; t < kThreads; ++t) {
    auto mine = client_->NewSignings(kPerThread);
    ASSERT_TRUE(mine.ok()) << mine.status();
    work.push_back(*std::move(mine));
  }
  // Each client stops after its second failure: the first may have been in flight at the
  // SIGTERM, the second was made after it (qsignd no longer accepting).
  testing::SigningLoad load(client_.get(), work, /*stop_after_failures=*/2);
  // Mid-load: once the clients have had some calls answered.
  load.AwaitAcknowledged(kOkBeforeSigterm, absl::Seconds(30));
  const int ok_at_sigterm = load.acknowledged();
  const absl::Time sigterm_at = absl::Now();
  qsignd_->Terminate();
  std::optional<int> status = qsignd_->WaitExit(absl::Seconds(kGraceSeconds));
  const absl::Duration stop_time = absl::Now() - sigterm_at;
  load.Join();

  ASSERT_GE(ok_at_sigterm, kOkBeforeSigterm) << "load never got going:\n" << qsignd_->log();
  const std::string log = qsignd_->log();
  ASSERT_TRUE(status.has_value()) << "qsignd still running " << kGraceSeconds
                                  << " s after SIGTERM:\n"
                                  << log;
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "wait status " << *status << "\n"
                                                               << log;
  EXPECT_NE(log.find("\"msg\":\"stopping: finishing in-flight calls\""), std::string::npos) << log;
  EXPECT_NE(log.find("\"msg\":\"stopped\""), std::string::npos) << log;

  // While qsignd shuts down, relying parties are told to go elsewhere: UNAVAILABLE, no hang.
  // Except that gRPC itself CANCELs a call that reached the server during its shutdown but no
  // handler yet (grpc/grpc#41785, in gRPC 1.51's sync server); such a call never ran, so its SAD
  // is still unused (checked below).
  int acknowledged = 0, cancelled_by_grpc = 0;
  for (int t = 0; t < kThreads; ++t) {
    const testing::SigningLoad::Outcome& out = load.outcomes()[t];
    EXPECT_FALSE(out.ran_out) << "client " << t << " never saw the shutdown";
    for (size_t i = 0; i < out.failed.size(); ++i) {
      const grpc::Status& s = out.failed[i].second;
      if (s.error_code() == grpc::StatusCode::CANCELLED) {
        ++cancelled_by_grpc;
        continue;
      }
      EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE)
          << "client " << t << " call " << i << ": " << s.error_code() << " " << s.error_message();
    }
    acknowledged += static_cast<int>(out.acknowledged.size());
  }
  {
    // Once it has stopped: UNAVAILABLE, at once.
    auto extra = NewSigning();
    ASSERT_TRUE(extra.ok());
    pb::SignHashResponse resp;
    const absl::Time start = absl::Now();
    EXPECT_EQ(SignHash(*extra, &resp).error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  }

  // Every acknowledged signature is real and its SAD use is in the journal, also after a
  // database restart.
  ASSERT_TRUE(env().pg_server().Stop().ok());
  ASSERT_TRUE(env().pg_server().Restart().ok());
  auto journal_or = testing::SadJournal(conninfo(), kCredential);
  ASSERT_TRUE(journal_or.ok()) << journal_or.status();
  const absl::flat_hash_set<std::string>& journal = *journal_or;
  int missing = 0, bad_signatures = 0;
  for (const testing::SigningLoad::Outcome& out : load.outcomes()) {
    for (const auto& [signing, resp] : out.acknowledged) {
      if (!journal.contains(signing->sad_id)) ++missing;
      if (!Verifies(*signing, resp)) ++bad_signatures;
    }
  }
  EXPECT_EQ(missing, 0) << "acknowledged signatures whose SAD use is not in the journal";
  EXPECT_EQ(bad_signatures, 0);
  // A refused call did not use its SAD up: the relying party may send it again elsewhere.
  int spent_without_answer = 0;
  for (const testing::SigningLoad::Outcome& out : load.outcomes()) {
    for (const auto& [signing, status] : out.failed) {
      if (journal.contains(signing->sad_id)) ++spent_without_answer;
    }
  }
  EXPECT_EQ(spent_without_answer, 0);
  EXPECT_EQ(static_cast<int>(journal.size()), acknowledged);
  std::cout << "[ stats    ] " << acknowledged << " acknowledged (" << ok_at_sigterm
            << " before SIGTERM), " << journal.size() << " in the journal, " << cancelled_by_grpc
            << " calls CANCELLED by gRPC's shutdown, qsignd stopped in "
            << absl::FormatDuration(stop_time) << "\n";
}

}  // namespace
}  // namespace qsign
