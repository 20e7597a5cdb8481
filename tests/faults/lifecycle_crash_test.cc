// kill -9 of qsignd (identity, consent, signer, lifecycle in one process) while citizens issue
// and revoke qualified certificates (issue 13). After the restart, lifecycle's scheduler pass at
// start-up and two of the signer's orphan-key sweeps: no certificate is ISSUED without an ACTIVE
// credential and its key in the HSM; no credential is ACTIVE for a certificate that is not
// ISSUED; no user key is in the HSM without a credential record (one planted as a crash between
// key generation and its record would leave it: destroyed, audited); every Issue a client saw
// succeed is ISSUED (or REVOKED if the client then revoked it), and the same client_request_id
// returns the same certificate.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <iostream>
#include <map>
#include <memory>
#include <set>
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
#include "qsign/v1/lifecycle.grpc.pb.h"
#include "tests/faults/fault_stack.h"
#include "tests/testing/people.h"
#include "tests/testing/qsignd_process.h"
#include "tests/testing/service_test.h"
#include "tests/testing/test_data.h"

namespace qsign {
namespace {

namespace pb = ::qsign::v1;

constexpr int kPeople = 4;
constexpr int kOrphanSweepSeconds = 2;
constexpr char kPlantedOrphan[] = "cred-left-by-a-crash";

// One citizen's Issue (then Revoke) as the client saw it.
struct Issuance {
  int person = 0;
  std::string client_request_id;
  std::string certificate_id;  // Set once Issue was acknowledged.
  bool revoke_sent = false;
  bool revoke_acknowledged = false;
};

class LifecycleCrashTest : public testing::ServiceTest {
 protected:
  LifecycleCrashTest() : ServiceTest({.pool_size = 0, .hsm_sessions = 0}) {}

  void SetUp() override {
    ServiceTest::SetUp();
    if (HasFatalFailure()) return;
    config_ = testing::FaultStackConfig(env(), {"identity", "consent", "signer", "lifecycle"});
    config_.mutable_lifecycle()->set_http_listen("127.0.0.1:0");
    config_.mutable_signer()->set_orphan_key_sweep_seconds(kOrphanSweepSeconds);
    ASSERT_NO_FATAL_FAILURE(Start("qsignd-1"));
  }

  void Start(const std::string& name) {
    auto q = testing::QsigndProcess::Start(QSIGND_PATH, config_, token().dir(), name);
    ASSERT_TRUE(q.ok()) << q.status();
    qsignd_ = *std::move(q);
    absl::MutexLock lock(&mu_);
    channel_ = grpc::CreateChannel(qsignd_->target(), grpc::InsecureChannelCredentials());
  }

  std::shared_ptr<grpc::Channel> channel() {
    absl::MutexLock lock(&mu_);
    return channel_;
  }

  static void Bearer(grpc::ClientContext& ctx, const std::string& token) {
    ctx.AddMetadata("authorization", "Bearer " + token);
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  }

  grpc::Status Issue(const std::string& token, const std::string& request_id,
                     pb::Certificate* out) {
    pb::IssueRequest req;
    req.set_client_request_id(request_id);
    grpc::ClientContext ctx;
    Bearer(ctx, token);
    return pb::Lifecycle::NewStub(channel())->Issue(&ctx, req, out);
  }

  grpc::Status Revoke(const std::string& token, const std::string& certificate_id) {
    pb::RevokeRequest req;
    req.set_certificate_id(certificate_id);
    grpc::ClientContext ctx;
    Bearer(ctx, token);
    pb::Certificate out;
    return pb::Lifecycle::NewStub(channel())->Revoke(&ctx, req, &out);
  }

  grpc::Status AcceptContract(const std::string& token) {
    pb::Contract contract;
    {
      grpc::ClientContext ctx;
      grpc::Status s =
          pb::Lifecycle::NewStub(channel())->GetContract(&ctx, pb::GetContractRequest(), &contract);
      if (!s.ok()) return s;
    }
    pb::AcceptContractRequest req;
    req.set_version(contract.version());
    req.set_text_sha256(contract.text_sha256());
    grpc::ClientContext ctx;
    Bearer(ctx, token);
    pb::ContractAcceptance out;
    return pb::Lifecycle::NewStub(channel())->AcceptContract(&ctx, req, &out);
  }

  // A citizen's loop: Issue, retried with the same client_request_id until acknowledged, then
  // Revoke, retried until acknowledged (or answered "already revoked": an earlier try got
  // through); again with the next request id, until `stop`.
  void Citizen(int person, const std::string& token, const std::atomic<bool>& stop) {
    for (int k = 0; !stop.load(); ++k) {
      Issuance* mine;
      {
        absl::MutexLock lock(&mu_);
        issuances_.push_back(std::make_unique<Issuance>(
            Issuance{.person = person, .client_request_id = absl::StrCat("p", person, "-", k)}));
        mine = issuances_.back().get();
      }
      while (!stop.load()) {
        pb::Certificate cert;
        grpc::Status s = Issue(token, mine->client_request_id, &cert);
        if (s.ok()) {
          absl::MutexLock lock(&mu_);
          mine->certificate_id = cert.certificate_id();
          ++issues_acknowledged_;
          break;
        }
        ++failed_calls_;
        absl::SleepFor(absl::Milliseconds(50));
      }
      if (mine->certificate_id.empty()) return;
      while (!stop.load()) {
        {
          absl::MutexLock lock(&mu_);
          mine->revoke_sent = true;
        }
        grpc::Status s = Revoke(token, mine->certificate_id);
        if (s.ok() || s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
          absl::MutexLock lock(&mu_);
          mine->revoke_acknowledged = true;
          break;
        }
        ++failed_calls_;
        absl::SleepFor(absl::Milliseconds(50));
      }
    }
  }

  int IssuesAcknowledged() {
    absl::MutexLock lock(&mu_);
    return issues_acknowledged_;
  }

  bool AwaitIssues(int n, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (IssuesAcknowledged() < n) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return true;
  }

  // One column of a query's rows.
  std::set<std::string> Column(db::Connection& conn, const std::string& sql) {
    std::set<std::string> out;
    auto rows = conn.Exec(sql);
    EXPECT_TRUE(rows.ok()) << rows.status() << " " << sql;
    if (!rows.ok()) return out;
    for (int r = 0; r < rows->rows(); ++r) out.insert(std::string(rows->Get(r, 0)));
    return out;
  }

  config::v1::ServerConfig config_;
  std::unique_ptr<testing::QsigndProcess> qsignd_;
  absl::Mutex mu_;
  std::shared_ptr<grpc::Channel> channel_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Issuance>> issuances_ ABSL_GUARDED_BY(mu_);
  int issues_acknowledged_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<int> failed_calls_{0};
};

TEST_F(LifecycleCrashTest, KillNineDuringIssueAndRevokeLeavesNoHalfDoneCertificate) {
  auto identity = pb::Identity::NewStub(channel());
  std::vector<testing::Person> people;
  std::vector<std::string> tokens;
  for (int i = 0; i < kPeople; ++i) {
    auto p = testing::EnrolPerson(*identity, conninfo(), channel(), 700 + i);
    ASSERT_TRUE(p.ok()) << p.status();
    p->app->SetAutoDecision(consent::Decision::kApprove, testing::kPin);
    ASSERT_TRUE(p->app->StartWatching().ok());
    const std::string token = testing::Login(*identity, p->username);
    ASSERT_FALSE(token.empty()) << qsignd_->log();
    grpc::Status accepted = AcceptContract(token);
    ASSERT_TRUE(accepted.ok()) << accepted.error_message();
    tokens.push_back(token);
    people.push_back(*std::move(p));
  }

  std::atomic<bool> stop{false};
  std::vector<std::thread> citizens;
  for (int i = 0; i < kPeople; ++i) {
    citizens.emplace_back([&, i] { Citizen(i, tokens[i], stop); });
  }
  const auto stop_citizens = [&] {
    stop.store(true);
    for (std::thread& t : citizens) t.join();
  };
  const bool loaded = AwaitIssues(6, absl::Seconds(60));
  const int issued_before_kill = IssuesAcknowledged();
  qsignd_->Kill();
  // A CreateKey that died between the key generation and its record, planted while qsignd is
  // down (kill -9 hits that window only by luck).
  absl::Status planted = OpenHsm(1);
  if (planted.ok()) {
    planted = hsm("signer")
                  .GenerateKeyPair(absl::StrCat("user/", kPlantedOrphan), hsm::KeyType::kEcP256)
                  .status();
  }
  env().CloseHsm();
  Start("qsignd-2");
  if (HasFatalFailure()) {
    stop_citizens();
    return;
  }
  const bool recovered = AwaitIssues(issued_before_kill + 6, absl::Seconds(60));
  stop_citizens();
  ASSERT_TRUE(loaded) << qsignd_->log();
  ASSERT_TRUE(planted.ok()) << planted;
  ASSERT_TRUE(recovered) << qsignd_->log();

  // Two orphan sweeps: the planted key is suspected at the first, destroyed at the second.
  const absl::Time deadline = absl::Now() + absl::Seconds(4 * kOrphanSweepSeconds + 10);
  while (qsignd_->log().find("orphan key destroyed") == std::string::npos &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  qsignd_->Stop();  // The HSM and the database as it left them.

  auto conn = db::Connection::Open(conninfo());
  ASSERT_TRUE(conn.ok()) << conn.status();
  ASSERT_TRUE(OpenHsm(1).ok());
  auto listed = hsm("signer").ListKeyIds("user/");
  ASSERT_TRUE(listed.ok()) << listed.status();
  std::set<std::string> hsm_keys;
  for (const std::string& id : *listed) hsm_keys.insert(id.substr(5));
  const std::set<std::string> issued =
      Column(**conn,
             "SELECT certificate_id FROM lifecycle.certificates WHERE kind = 'QUALIFIED' AND "
             "state = 'ISSUED'");
  const std::set<std::string> not_issued =
      Column(**conn,
             "SELECT certificate_id FROM lifecycle.certificates WHERE kind = 'QUALIFIED' AND "
             "state <> 'ISSUED'");
  const std::set<std::string> active =
      Column(**conn, "SELECT credential_id FROM signer.credentials WHERE status = 'ACTIVE'");
  const std::set<std::string> credentials =
      Column(**conn, "SELECT credential_id FROM signer.credentials");
  int issued_without_key = 0, active_not_issued = 0, key_without_record = 0;
  for (const std::string& id : issued) {
    if (!active.contains(id) || !hsm_keys.contains(id)) {
      ++issued_without_key;
      ADD_FAILURE() << "ISSUED without an active credential and its key: " << id;
    }
  }
  for (const std::string& id : active) {
    if (!issued.contains(id)) {
      ++active_not_issued;
      ADD_FAILURE() << "credential ACTIVE for a certificate not ISSUED: " << id
                    << (not_issued.contains(id) ? "" : " (unknown to lifecycle)");
    }
  }
  for (const std::string& id : hsm_keys) {
    if (!credentials.contains(id)) {
      ++key_without_record;
      ADD_FAILURE() << "a key without a credential record: user/" << id;
    }
  }
  const std::set<std::string> orphan_audit = Column(
      **conn, "SELECT target FROM signer.audit_log WHERE action = 'signer.destroy_orphan_key'");
  EXPECT_TRUE(orphan_audit.contains(kPlantedOrphan));

  // What the clients were told against what is recorded; the same request id, the same
  // certificate (on a qsignd started once more).
  ASSERT_NO_FATAL_FAILURE(Start("qsignd-3"));
  std::vector<Issuance> seen;  // The citizens' threads have ended.
  {
    absl::MutexLock lock(&mu_);
    for (const auto& i : issuances_) seen.push_back(*i);
  }
  int acknowledged = 0, revokes_acknowledged = 0, same_on_retry = 0, lost = 0;
  for (const Issuance& issuance : seen) {
    const Issuance* i = &issuance;
    if (i->certificate_id.empty()) continue;
    ++acknowledged;
    const bool is_issued = issued.contains(i->certificate_id);
    if (i->revoke_acknowledged) {
      ++revokes_acknowledged;
      if (is_issued || active.contains(i->certificate_id)) {
        ++lost;
        ADD_FAILURE() << "acknowledged revocation not recorded: " << i->certificate_id;
      }
    } else if (!i->revoke_sent && !is_issued) {
      ++lost;
      ADD_FAILURE() << "acknowledged issuance not ISSUED: " << i->certificate_id;
    }
    pb::Certificate again;
    grpc::Status s;
    // UNAVAILABLE while the new process has not yet read identity's session keys: retried.
    for (int attempt = 0; attempt < 300; ++attempt) {
      s = Issue(tokens[i->person], i->client_request_id, &again);
      if (s.error_code() != grpc::StatusCode::UNAVAILABLE) break;
      absl::SleepFor(absl::Milliseconds(100));
    }
    if (s.ok() && again.certificate_id() == i->certificate_id) {
      ++same_on_retry;
    } else {
      ADD_FAILURE() << i->client_request_id << " again: " << s.error_code() << " "
                    << s.error_message() << " " << again.certificate_id() << " vs "
                    << i->certificate_id;
    }
  }
  EXPECT_EQ(same_on_retry, acknowledged);
  std::cout << "[ counts   ] lifecycle kill -9: issues acknowledged=" << acknowledged << " ("
            << issued_before_kill
            << " before the kill), revocations acknowledged=" << revokes_acknowledged
            << ", same certificate for the same request id=" << same_on_retry
            << ", failed calls (retried)=" << failed_calls_.load()
            << ", certificates ISSUED=" << issued.size() << " other=" << not_issued.size()
            << ", orphan keys destroyed=" << orphan_audit.size()
            << ", ISSUED without key=" << issued_without_key
            << ", ACTIVE credential not ISSUED=" << active_not_issued
            << ", key without record=" << key_without_record << ", lost=" << lost << "\n";
}

}  // namespace
}  // namespace qsign
