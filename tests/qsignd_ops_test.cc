// Operations of the real qsignd binary, with a real PostgreSQL and a real SoftHSM2 token:
//  - grpc.health.v1 follows a PostgreSQL outage (NOT_SERVING while it is down, SERVING when it
//    is back) and the service signs again afterwards;
//  - SIGTERM under load: every SignHash that returned OK is in the signer's SAD journal and its
//    signature verifies; later calls fail with UNAVAILABLE; qsignd exits 0 within its grace.
#include <grpcpp/grpcpp.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/auth/credential_table.h"
#include "common/db/pg.h"
#include "consent/sad.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "hsm/hsm.h"
#include "qsign/config/v1/config.pb.h"
#include "qsign/v1/signer.grpc.pb.h"
#include "tests/testing/qsignd_process.h"
#include "tests/testing/service_test.h"
#include "tests/testing/test_pki.h"

namespace qsign {
namespace {

namespace pb = ::qsign::v1;
using HealthStatus = ::grpc::health::v1::HealthCheckResponse::ServingStatus;

// ---- The test's side: PostgreSQL, token, qsignd, an active credential, SADs. ----

constexpr char kSha256Oid[] = "2.16.840.1.101.3.4.2.1";
constexpr char kEcdsaSha256Oid[] = "1.2.840.10045.4.3.2";
constexpr char kCredential[] = "cred-ops";
constexpr char kAccount[] = "alice";
constexpr char kLifecycleSecret[] = "lifecycle-secret";

std::string RandomHash() {
  std::string h(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(h.data()), static_cast<int>(h.size())) != 1) {
    std::abort();
  }
  return h;
}

// One SignHash request with its own SAD, and what the test expects to find afterwards.
struct Signing {
  pb::SignHashRequest request;
  std::string sad_id;
  std::string hash;
};

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
    const std::string services = token().dir() + "/services";
    std::ofstream(services) << "lifecycle "
                            << absl::BytesToHexString(auth::Sha256(kLifecycleSecret)) << "\n";
    config.set_services_file(services);
    config.mutable_observability()->set_grace_seconds(grace_seconds);
    auto q = testing::QsigndProcess::Start(QSIGND_PATH, config, token().dir());
    ASSERT_TRUE(q.ok()) << q.status();
    qsignd_ = *std::move(q);
    channel_ = grpc::CreateChannel(qsignd_->target(), grpc::InsecureChannelCredentials());
    signer_ = pb::Signer::NewStub(channel_);
  }

  // Creates and certifies the credential, and opens consent's token to mint SADs with the SAD
  // key pinned in qsignd's config (the consent service's part, played by the test).
  void PrepareCredential() {
    pb::CreateKeyRequest create;
    create.set_credential_id(kCredential);
    create.set_account_id(kAccount);
    create.set_key_algorithm(pb::KEY_ALGORITHM_EC_P256);
    pb::CredentialInfo cred;
    {
      grpc::ClientContext ctx;
      ctx.AddMetadata("authorization", absl::StrCat("Service lifecycle.", kLifecycleSecret));
      grpc::Status s = signer_->CreateKey(&ctx, create, &cred);
      ASSERT_TRUE(s.ok()) << s.error_message();
    }
    spki_ = cred.public_key_spki();
    pb::SetCertificateRequest set;
    set.set_credential_id(kCredential);
    set.add_certificate_chain_der(testing::CertificateFor(spki_));
    {
      grpc::ClientContext ctx;
      pb::CredentialInfo active;
      ctx.AddMetadata("authorization", absl::StrCat("Service lifecycle.", kLifecycleSecret));
      grpc::Status s = signer_->SetCertificate(&ctx, set, &active);
      ASSERT_TRUE(s.ok()) << s.error_message();
      ASSERT_EQ(active.status(), pb::CREDENTIAL_STATUS_ACTIVE);
    }
    ASSERT_TRUE(OpenHsm(2).ok());
    auto minter = consent::SadMinter::New(&hsm("consent"), "qsign-sad-1");
    ASSERT_TRUE(minter.ok()) << minter.status();
    minter_ = *std::move(minter);
    auto verifier = consent::SadVerifier::New({{"qsign-sad-1", minter_->public_key_spki()}});
    ASSERT_TRUE(verifier.ok()) << verifier.status();
    verifier_ = *std::move(verifier);
  }

  // A SignHash request for a fresh hash with a fresh SAD.
  absl::StatusOr<Signing> NewSigning() {
    Signing s;
    s.hash = RandomHash();
    consent::SadGrant grant{.account_id = kAccount,
                            .credential_id = kCredential,
                            .hash_algorithm_oid = kSha256Oid,
                            .hashes = {s.hash}};
    auto sad = minter_->Mint(grant, absl::Now(), absl::Minutes(10));
    if (!sad.ok()) return sad.status();
    auto decoded = verifier_->Verify(*sad, absl::Now());
    if (!decoded.ok()) return decoded.status();
    s.sad_id = decoded->sad_id;
    s.request.set_credential_id(kCredential);
    s.request.set_hash_algorithm_oid(kSha256Oid);
    s.request.set_sign_algorithm_oid(kEcdsaSha256Oid);
    s.request.add_hashes(s.hash);
    s.request.set_sad(*sad);
    return s;
  }

  grpc::Status SignHash(const Signing& s, pb::SignHashResponse* resp) {
    grpc::ClientContext ctx;
    // A hang shows up as DEADLINE_EXCEEDED rather than as a stuck test.
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(15)));
    return signer_->SignHash(&ctx, s.request, resp);
  }

  // Check("") on a fresh channel each time, as a load balancer's probe would; UNKNOWN when the
  // call itself fails.
  HealthStatus Health() {
    auto stub = grpc::health::v1::Health::NewStub(
        grpc::CreateChannel(qsignd_->target(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    if (!stub->Check(&ctx, req, &resp).ok()) return grpc::health::v1::HealthCheckResponse::UNKNOWN;
    return resp.status();
  }

  // Polls until Health() == want; false after `timeout`.
  bool AwaitHealth(HealthStatus want, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (Health() != want) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return true;
  }

  std::unique_ptr<testing::QsigndProcess> qsignd_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::Signer::Stub> signer_;
  std::string spki_;
  std::unique_ptr<consent::SadMinter> minter_;
  std::unique_ptr<consent::SadVerifier> verifier_;
};

bool Verifies(const std::string& spki, const std::string& hash, const pb::SignHashResponse& r) {
  return r.signatures_size() == 1 &&
         testing::VerifyDigestSignature(spki, hash, r.signatures(0), EVP_sha256());
}

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
    EXPECT_TRUE(Verifies(spki_, fresh->hash, resp));
  }
  {
    pb::SignHashResponse resp;
    grpc::Status s = SignHash(*during, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_TRUE(Verifies(spki_, during->hash, resp));
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

  std::vector<std::vector<Signing>> work(kThreads);
  for (auto& mine : work) {
    for (int i = 0; i < kPerThread; ++i) {
      auto s = NewSigning();
      ASSERT_TRUE(s.ok()) << s.status();
      mine.push_back(*std::move(s));
    }
  }

  struct Outcome {
    std::vector<std::pair<const Signing*, pb::SignHashResponse>> acknowledged;
    // The first failure (a call that may have been in flight at the SIGTERM), then a call made
    // after it (qsignd no longer accepting).
    std::vector<std::pair<const Signing*, grpc::Status>> refused;
    bool ran_out = false;
  };
  std::vector<Outcome> outcomes(kThreads);
  std::atomic<int> ok_calls{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < kThreads; ++t) {
    clients.emplace_back([&, t] {
      Outcome& out = outcomes[t];
      for (const Signing& s : work[t]) {
        pb::SignHashResponse resp;
        grpc::Status status = SignHash(s, &resp);
        if (status.ok()) {
          out.acknowledged.emplace_back(&s, std::move(resp));
          ++ok_calls;
          continue;
        }
        out.refused.emplace_back(&s, status);
        if (out.refused.size() == 2) return;
      }
      out.ran_out = out.refused.size() < 2;
    });
  }
  // Mid-load: once the clients have had some calls answered.
  const absl::Time load_deadline = absl::Now() + absl::Seconds(30);
  while (ok_calls.load() < kOkBeforeSigterm && absl::Now() < load_deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  const int ok_at_sigterm = ok_calls.load();
  const absl::Time sigterm_at = absl::Now();
  qsignd_->Terminate();
  std::optional<int> status = qsignd_->WaitExit(absl::Seconds(kGraceSeconds));
  const absl::Duration stop_time = absl::Now() - sigterm_at;
  for (std::thread& c : clients) c.join();

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
    const Outcome& out = outcomes[t];
    EXPECT_FALSE(out.ran_out) << "client " << t << " never saw the shutdown";
    for (size_t i = 0; i < out.refused.size(); ++i) {
      const grpc::Status& s = out.refused[i].second;
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
  auto conn = db::Connection::Open(conninfo());
  ASSERT_TRUE(conn.ok()) << conn.status();
  auto rows = (*conn)->Exec("SELECT sad_id FROM signer.sad_uses WHERE credential_id = $1",
                            {db::Param::Text(kCredential)});
  ASSERT_TRUE(rows.ok()) << rows.status();
  absl::flat_hash_set<std::string> journal;
  for (int r = 0; r < rows->rows(); ++r) journal.insert(rows->GetBytes(r, 0).value());
  int missing = 0, bad_signatures = 0;
  for (const Outcome& out : outcomes) {
    for (const auto& [signing, resp] : out.acknowledged) {
      if (!journal.contains(signing->sad_id)) ++missing;
      if (!Verifies(spki_, signing->hash, resp)) ++bad_signatures;
    }
  }
  EXPECT_EQ(missing, 0) << "acknowledged signatures whose SAD use is not in the journal";
  EXPECT_EQ(bad_signatures, 0);
  // A refused call did not use its SAD up: the relying party may send it again elsewhere.
  int spent_without_answer = 0;
  for (const Outcome& out : outcomes) {
    for (const auto& [signing, status] : out.refused) {
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
