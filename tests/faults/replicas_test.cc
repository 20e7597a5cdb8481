// Two replicas of identity, consent and the signer, each its own process (issue 13), as a
// Kubernetes deployment runs them: one PostgreSQL, the HSM tokens shared as a network HSM shares
// them (one SoftHSM2 directory for every process), every caller (the services' peers.* and the
// test's clients) balancing over both replicas with gRPC round_robin over a static list
// ("ipv4:127.0.0.1:p1,127.0.0.1:p2"). Under login and signing load, one replica of each service
// in turn is killed with SIGKILL and restarted: the callers carry on through the other replica,
// every signature and login a client was told about is recorded once, and nothing is done twice
// (no SAD used twice, no login's session token issued twice). Also: a user key made by one
// signer replica signs on the other (SoftHSM2 re-reads its token directory when another process
// changed it), and a login pushed to an app watching one consent replica is approved through
// the other (consent's wake-ups travel through PostgreSQL LISTEN/NOTIFY).
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <deque>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/db/pg.h"
#include "common/grpc_status.h"
#include "common/http/client.h"
#include "common/refusal.h"
#include "consent/app_simulator.h"
#include "gtest/gtest.h"
#include "qsign/config/v1/config.pb.h"
#include "qsign/v1/identity.grpc.pb.h"
#include "qsign/v1/refusal.pb.h"
#include "tests/faults/fault_stack.h"
#include "tests/faults/issuance_load.h"
#include "tests/testing/people.h"
#include "tests/testing/qsignd_process.h"
#include "tests/testing/service_test.h"
#include "tests/testing/signing_load.h"
#include "tests/testing/test_data.h"

namespace qsign {
namespace {

namespace pb = ::qsign::v1;

constexpr int kPeople = 3;          // One portal thread each, logging in again and again.
constexpr int kSigningThreads = 3;  // Relying parties, each signing again and again.
constexpr char kCredential[] = "cred-replicas";
// Each service's calls that show a replica served the load.
std::string LoadMethod(std::string_view service) {
  if (service == "signer") return "/qsign.v1.Signer/SignHash";
  if (service == "identity") return "/qsign.v1.Identity/";
  if (service == "consent") return "/qsign.v1.Consent/";
  return "/qsign.v1.Lifecycle/Issue";
}

// One replica: its own config (fixed port), process and name.
struct Replica {
  std::string service;
  int index = 0;  // 1 or 2.
  int port = 0;
  config::v1::ServerConfig config;
  std::unique_ptr<testing::QsigndProcess> process;
  int starts = 0;
  std::string name() const { return absl::StrCat(service, "-", index); }
};

// What the clients were told.
struct Tally {
  std::atomic<int> logins{0};
  std::atomic<int> signatures{0};
  std::atomic<int> failed_calls{0};  // UNAVAILABLE and the like, at a kill: retried.
};

bool RefusedAsUsed(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::FAILED_PRECONDITION &&
         RefusalReason(FromGrpcStatus(s)) == pb::Refusal::SAD_USED;
}

// A channel that spreads its calls over every address of `target` (round_robin).
std::shared_ptr<grpc::Channel> Balanced(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetLoadBalancingPolicyName("round_robin");
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

class ReplicasTest : public testing::ServiceTest {
 protected:
  // The services with two replicas, in start order: consent reads identity's session keys as it
  // starts; identity calls consent only for a login; lifecycle calls all three.
  explicit ReplicasTest(std::vector<std::string> services = {"signer", "identity", "consent"})
      : ServiceTest({.pool_size = 0, .hsm_sessions = 0}), services_(std::move(services)) {}

  void SetUp() override {
    ServiceTest::SetUp();
    if (HasFatalFailure()) return;
    // Consent makes and pins the SAD key only when the signer runs in its process.
    ASSERT_TRUE(env().SadPublicKeyFile().ok());
    for (const std::string& service : services_) {
      for (int i = 1; i <= 2; ++i) {
        auto r = std::make_unique<Replica>();
        r->service = service;
        r->index = i;
        r->port = testing::FreeLoopbackPort();
        replicas_.push_back(std::move(r));
      }
    }
    for (auto& r : replicas_) {
      r->config = testing::FaultStackConfig(env(), {r->service});
      r->config.set_listen(absl::StrCat("127.0.0.1:", r->port));
      r->config.mutable_observability()->set_metrics_listen("127.0.0.1:0");
      config::v1::Peers& peers = *r->config.mutable_peers();
      if (r->service == "identity") peers.set_consent(Target("consent"));
      if (r->service == "consent") {
        peers.set_identity(Target("identity"));
        peers.set_signer(Target("signer"));
      }
      if (r->service == "lifecycle") {
        peers.set_signer(Target("signer"));
        peers.set_identity(Target("identity"));
        peers.set_consent(Target("consent"));
        r->config.mutable_lifecycle()->set_http_listen("127.0.0.1:0");
      }
      // peers.load_balancing: the default, round_robin.
    }
    // One after the other: the first replica of a service makes its keys, the second finds them.
    for (auto& r : replicas_) ASSERT_NO_FATAL_FAILURE(Start(*r));
    // Should consent have tried identity before it listened: its channel connects after gRPC's
    // reconnect backoff.
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    for (int i = 1; i <= 2; ++i) {
      const testing::QsigndProcess& consent = *Get("consent", i).process;
      while (consent.log().find("cannot read identity's session keys") != std::string::npos &&
             consent.log().find("identity's revocation feed is read again") == std::string::npos &&
             absl::Now() < deadline) {
        absl::SleepFor(absl::Milliseconds(50));
      }
    }
    ASSERT_TRUE(OpenHsm(4).ok());  // consent's token, to mint SADs (the test plays consent).
  }

  // "ipv4:127.0.0.1:<replica 1>,127.0.0.1:<replica 2>": what peers.<service> says.
  std::string Target(std::string_view service) const {
    std::vector<std::string> addresses;
    for (const auto& r : replicas_) {
      if (r->service == service) addresses.push_back(absl::StrCat("127.0.0.1:", r->port));
    }
    return absl::StrCat("ipv4:", absl::StrJoin(addresses, ","));
  }
  Replica& Get(std::string_view service, int index) {
    for (auto& r : replicas_) {
      if (r->service == service && r->index == index) return *r;
    }
    ADD_FAILURE() << "no replica " << service << "-" << index;
    return *replicas_.front();
  }

  void Start(Replica& r) {
    const std::string name = absl::StrCat(r.name(), r.starts++ == 0 ? "" : "-restarted");
    auto q = testing::QsigndProcess::Start(QSIGND_PATH, r.config, token().dir(), name);
    ASSERT_TRUE(q.ok()) << q.status();
    r.process = *std::move(q);
  }

  // gRPC calls `r` answered OK whose method starts with `method`, from its /metrics.
  static double ServedOk(const Replica& r, const std::string& method) {
    const int port = r.process->LoggedPort("serving /metrics");
    auto text = http::Get(absl::StrCat("http://127.0.0.1:", port, "/metrics"), absl::Seconds(5));
    if (!text.ok()) return -1;
    double total = 0;
    for (absl::string_view line : absl::StrSplit(*text, '\n')) {
      if (!absl::StartsWith(line, "qsign_grpc_requests_total{")) continue;
      if (!absl::StrContains(line, absl::StrCat("method=\"", method)) ||
          !absl::StrContains(line, "code=\"OK\"")) {
        continue;
      }
      double v = 0;
      if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) total += v;
    }
    return total;
  }

  std::string Logs() {
    std::string all;
    for (const auto& r : replicas_) {
      if (r->process != nullptr) absl::StrAppend(&all, "--- ", r->name(), "\n", r->process->log());
    }
    return all;
  }

  const std::vector<std::string> services_;
  std::vector<std::unique_ptr<Replica>> replicas_;
};

// The same with two lifecycle replicas too.
class LifecycleReplicasTest : public ReplicasTest {
 protected:
  LifecycleReplicasTest() : ReplicasTest({"signer", "identity", "consent", "lifecycle"}) {}
};

// A portal's login that survives a replica's death: StartLogin again while no identity answers,
// AwaitLogin again with the same login id (the other replica goes on waiting for the same
// approval), for at most ~8 s. The session token, or "" (and why in `lost_answer`: the token
// was issued but its answer died with the replica, so the login id is spent).
std::string ResilientLogin(pb::Identity::Stub& identity, const std::string& username,
                           const std::atomic<bool>& stop, Tally& tally, bool* lost_answer) {
  *lost_answer = false;
  const absl::Time give_up = absl::Now() + absl::Seconds(8);
  pb::StartLoginResponse started;
  while (true) {
    pb::StartLoginRequest start;
    start.set_username(username);
    start.mutable_client()->set_client_address("198.51.100.23");
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    grpc::Status s = identity.StartLogin(&ctx, start, &started);
    if (s.ok()) break;
    ++tally.failed_calls;
    if (absl::Now() > give_up || stop.load()) return "";
    absl::SleepFor(absl::Milliseconds(50));
  }
  bool retried = false;
  while (absl::Now() < give_up && !stop.load()) {
    pb::AwaitLoginRequest await;
    await.set_login_id(started.login_id());
    await.mutable_max_wait()->set_seconds(1);
    pb::AwaitLoginResponse done;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(6)));
    grpc::Status s = identity.AwaitLogin(&ctx, await, &done);
    if (s.ok()) {
      if (done.state() == pb::LOGIN_STATE_APPROVED) return done.session_token();
      if (done.state() != pb::LOGIN_STATE_PENDING) return "";
      continue;
    }
    if (retried && s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
      *lost_answer = true;  // Handed out once, to the call that died.
      return "";
    }
    ++tally.failed_calls;
    retried = true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return "";
}

TEST_F(ReplicasTest, KillNineOfOneReplicaOfEachServiceInTurnLosesNothingAndDoesNothingTwice) {
  // A key made by one signer replica signs on the other, which had its token open before.
  auto signing = testing::SigningClient::New(
      grpc::CreateChannel(Get("signer", 1).process->target(), grpc::InsecureChannelCredentials()),
      &hsm("consent"), kCredential);
  ASSERT_TRUE(signing.ok()) << signing.status() << Logs();
  (*signing)->SetChannel(
      grpc::CreateChannel(Get("signer", 2).process->target(), grpc::InsecureChannelCredentials()));
  {
    auto s = (*signing)->NewSigning();
    ASSERT_TRUE(s.ok()) << s.status();
    pb::SignHashResponse resp;
    grpc::Status status = (*signing)->SignHash(*s, &resp);
    ASSERT_TRUE(status.ok()) << "signer-2 with signer-1's new key: " << status.error_message()
                             << "\n"
                             << Get("signer", 2).process->log();
    EXPECT_TRUE((*signing)->Verifies(*s, resp));
  }
  (*signing)->SetChannel(Balanced(Target("signer")));

  auto identity_channel = Balanced(Target("identity"));
  auto identity = pb::Identity::NewStub(identity_channel);
  auto consent_channel = Balanced(Target("consent"));
  std::vector<testing::Person> people;
  for (int i = 0; i < kPeople; ++i) {
    // The first app watches on consent-1 only (consent-1 is never killed); the others balance.
    auto p = testing::EnrolPerson(*identity, conninfo(),
                                  i == 0 ? grpc::CreateChannel(Get("consent", 1).process->target(),
                                                               grpc::InsecureChannelCredentials())
                                         : consent_channel,
                                  900 + i);
    ASSERT_TRUE(p.ok()) << p.status() << Logs();
    p->app->SetAutoDecision(consent::Decision::kApprove, testing::kPin);
    ASSERT_TRUE(p->app->StartWatching().ok());
    people.push_back(*std::move(p));
  }

  // A login whose consent request consent-2 created, pushed to the app watching on consent-1 and
  // approved there, and awaited on either: consent's wake-ups cross replicas (NOTIFY).
  const std::string create_request = "/qsign.v1.Consent/CreateRequest";
  const double created_on_2 = ServedOk(Get("consent", 2), create_request);
  int cross_replica_logins = 0;
  for (int attempt = 0; attempt < 10; ++attempt) {
    ASSERT_FALSE(testing::Login(*identity, people[0].username).empty()) << Logs();
    ++cross_replica_logins;
    if (ServedOk(Get("consent", 2), create_request) > created_on_2) break;
  }
  EXPECT_GT(ServedOk(Get("consent", 2), create_request), created_on_2)
      << "10 logins, no consent request created on consent-2";

  absl::Mutex mu;
  std::map<std::string, int> logins_of;  // account_id -> logins acknowledged
  std::set<std::string> tokens;          // Every session token a portal received.
  int duplicate_tokens = 0;
  std::deque<std::pair<testing::Signing, pb::SignHashResponse>> signed_ok;
  std::deque<std::string> attempts_of;  // Per signed_ok entry: the earlier attempts' answers.
  std::atomic<int> lost_login_answers{0}, sad_refused_as_used{0};
  Tally before, during, after;
  std::atomic<Tally*> phase{&before};
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int i = 0; i < kPeople; ++i) {
    clients.emplace_back([&, i] {
      while (!stop.load()) {
        Tally* t = phase.load();
        bool lost_answer = false;
        const std::string token =
            ResilientLogin(*identity, people[i].username, stop, *t, &lost_answer);
        if (lost_answer) ++lost_login_answers;
        if (token.empty()) continue;
        ++phase.load()->logins;
        absl::MutexLock lock(&mu);
        ++logins_of[people[i].account_id];
        if (!tokens.insert(token).second) ++duplicate_tokens;
      }
    });
  }
  for (int i = 0; i < kSigningThreads; ++i) {
    clients.emplace_back([&] {
      while (!stop.load()) {
        auto s = (*signing)->NewSigning();
        if (!s.ok()) continue;
        // The same request again while no signer answers: the other replica signs it, or
        // refuses it as used when the one that died had spent the SAD (its answer lost).
        pb::SignHashResponse resp;
        grpc::Status status(grpc::StatusCode::CANCELLED, "not sent: the load stopped");
        std::string attempts;
        for (int attempt = 0; attempt < 100 && !stop.load(); ++attempt) {
          resp.Clear();
          status = (*signing)->SignHash(*s, &resp, absl::Seconds(5));
          if (status.ok() || RefusedAsUsed(status)) break;
          absl::StrAppend(&attempts, status.error_code(), " ", status.error_message(), "; ");
          ++phase.load()->failed_calls;
          absl::SleepFor(absl::Milliseconds(50));
        }
        if (RefusedAsUsed(status)) ++sad_refused_as_used;
        if (!status.ok()) continue;
        ++phase.load()->signatures;
        absl::MutexLock lock(&mu);
        signed_ok.emplace_back(*std::move(s), std::move(resp));
        attempts_of.push_back(absl::StrCat(attempts, " at ", absl::FormatTime(absl::Now())));
      }
    });
  }
  const auto stop_clients = [&] {
    if (stop.exchange(true)) return;
    for (std::thread& c : clients) c.join();
  };

  const bool loaded = testing::AwaitAtLeast(before.logins, 4, absl::Seconds(30)) &&
                      testing::AwaitAtLeast(before.signatures, 20, absl::Seconds(30));
  // round_robin: every replica has had its share of the load.
  std::map<std::string, double> served_before_kills;
  for (const auto& r : replicas_)
    served_before_kills[r->name()] = ServedOk(*r, LoadMethod(r->service));

  // kill -9 of one replica of each service in turn; the load goes on through the other, then
  // the killed one comes back.
  phase.store(&during);
  std::map<std::string, std::pair<int, int>> through_the_other;  // logins, signatures
  bool carried_on = true;
  std::vector<std::string> timings;
  for (const auto& [service, index] :
       std::vector<std::pair<std::string, int>>{{"signer", 1}, {"consent", 2}, {"identity", 1}}) {
    Replica& victim = Get(service, index);
    const int logins0 = during.logins.load(), signatures0 = during.signatures.load();
    const absl::Time killed_at = absl::Now();
    victim.process->Kill();
    const bool ok = testing::AwaitAtLeast(during.logins, logins0 + 2, absl::Seconds(20)) &&
                    testing::AwaitAtLeast(during.signatures, signatures0 + 5, absl::Seconds(20));
    carried_on = carried_on && ok;
    through_the_other[victim.name()] = {during.logins.load() - logins0,
                                        during.signatures.load() - signatures0};
    timings.push_back(absl::StrCat(victim.name(), " carried on in ",
                                   absl::FormatDuration(absl::Now() - killed_at)));
    Start(victim);
    if (HasFatalFailure()) {
      stop_clients();
      return;
    }
  }
  phase.store(&after);
  const absl::Time restarted_at = absl::Now();
  bool recovered = testing::AwaitAtLeast(after.logins, 2, absl::Seconds(20)) &&
                   testing::AwaitAtLeast(after.signatures, 10, absl::Seconds(20));
  // The restarted replicas are back in every caller's rotation (gRPC reconnects with backoff).
  std::map<std::string, double> served_after_restart;
  const absl::Time rejoin_deadline = absl::Now() + absl::Seconds(15);
  for (const auto& [service, index, method] :
       std::vector<std::tuple<std::string, int, std::string>>{
           {"signer", 1, LoadMethod("signer")},
           {"consent", 2, LoadMethod("consent")},
           {"identity", 1, LoadMethod("identity")}}) {
    const Replica& r = Get(service, index);
    double served = ServedOk(r, method);
    while (served <= 0 && absl::Now() < rejoin_deadline) {
      absl::SleepFor(absl::Milliseconds(100));
      served = ServedOk(r, method);
    }
    served_after_restart[r.name()] = served;
    timings.push_back(absl::StrCat(r.name(), " rejoined after ",
                                   absl::FormatDuration(absl::Now() - restarted_at)));
    if (served <= 0) recovered = false;
  }
  stop_clients();
  EXPECT_TRUE(loaded) << Logs();
  EXPECT_TRUE(carried_on) << Logs();
  EXPECT_TRUE(recovered) << Logs();
  for (const auto& [name, served] : served_before_kills) {
    EXPECT_GT(served, 0) << name << " served none of the load before the kills";
  }

  // Every acknowledged signature verifies and its SAD is in the journal, once.
  auto journal = testing::SadJournal(conninfo(), kCredential);
  ASSERT_TRUE(journal.ok()) << journal.status();  // INTERNAL if a SAD was used twice.
  int verified = 0, sad_uses_missing = 0;
  std::set<std::string> sads_acknowledged;
  for (size_t i = 0; i < signed_ok.size(); ++i) {
    const auto& [s, resp] = signed_ok[i];
    const bool verifies = (*signing)->Verifies(s, resp);
    const bool journaled = journal->contains(s.sad_id);
    if (verifies) ++verified;
    if (!journaled) ++sad_uses_missing;
    if (!verifies || !journaled) {
      ADD_FAILURE() << "acknowledged signature " << i << " (SAD "
                    << absl::BytesToHexString(s.sad_id) << "): verifies=" << verifies
                    << " journaled=" << journaled << " signatures=" << resp.signatures_size()
                    << " earlier attempts: " << attempts_of[i];
    }
    sads_acknowledged.insert(s.sad_id);
  }
  EXPECT_EQ(verified, static_cast<int>(signed_ok.size())) << Logs();
  EXPECT_EQ(sad_uses_missing, 0);
  EXPECT_EQ(sads_acknowledged.size(), signed_ok.size()) << "a SAD acknowledged twice";

  // Every acknowledged login has its session; no login issued two; no approval made two logins.
  auto conn = db::Connection::Open(conninfo());
  ASSERT_TRUE(conn.ok()) << conn.status();
  int logins_acknowledged = 0;
  for (const auto& [account, acknowledged] : logins_of) logins_acknowledged += acknowledged;
  auto missing = testing::SessionsMissing(conninfo(), logins_of);
  ASSERT_TRUE(missing.ok()) << missing.status();
  const int sessions_missing = *missing;
  const auto count = [&](const char* sql) {
    auto rows = (*conn)->Exec(sql);
    EXPECT_TRUE(rows.ok()) << rows.status() << " " << sql;
    return rows.ok() ? rows->GetInt64(0, 0).value_or(-1) : -1;
  };
  const int64_t sessions_without_login = count(
      "SELECT count(*) FROM identity.sessions s WHERE NOT EXISTS "
      "(SELECT 1 FROM identity.logins l WHERE l.session_id = s.session_id)");
  const int64_t sessions_of_two_logins = count(
      "SELECT count(*) FROM (SELECT session_id FROM identity.logins WHERE session_id IS NOT NULL "
      "GROUP BY session_id HAVING count(*) > 1) d");
  const int64_t requests_of_two_logins = count(
      "SELECT count(*) FROM (SELECT consent_request_id FROM identity.logins WHERE "
      "consent_request_id IS NOT NULL GROUP BY consent_request_id HAVING count(*) > 1) d");
  EXPECT_EQ(sessions_missing, 0);
  EXPECT_EQ(duplicate_tokens, 0);
  EXPECT_EQ(sessions_without_login, 0) << "a session token issued twice for one approval";
  EXPECT_EQ(sessions_of_two_logins, 0);
  EXPECT_EQ(requests_of_two_logins, 0);

  std::vector<std::string> per_kill;
  for (const auto& [name, n] : through_the_other) {
    per_kill.push_back(absl::StrCat(name, " killed: ", n.first, " logins + ", n.second,
                                    " signatures through the other"));
  }
  std::vector<std::string> rejoined;
  for (const auto& [name, served] : served_after_restart) {
    rejoined.push_back(absl::StrCat(name, "=", served));
  }
  std::vector<std::string> shares;
  for (const auto& [name, served] : served_before_kills) {
    shares.push_back(absl::StrCat(name, "=", served));
  }
  std::cout << "[ counts   ] replicas (2 x identity, consent, signer; round_robin): acknowledged "
               "logins="
            << logins_acknowledged << ", signatures=" << signed_ok.size()
            << ", verified=" << verified << "; " << absl::StrJoin(per_kill, "; ")
            << "; failed calls retried="
            << before.failed_calls + during.failed_calls + after.failed_calls
            << ", refused: SAD already used (answer lost at a kill)=" << sad_refused_as_used
            << ", login answer lost at a kill=" << lost_login_answers
            << "; OK calls per replica before the kills: " << absl::StrJoin(shares, " ")
            << ", by the restarted ones after: " << absl::StrJoin(rejoined, " ")
            << "; logins until one crossed consent replicas=" << cross_replica_logins << "; "
            << absl::StrJoin(timings, ", ")
            << "; SAD used twice=0 (journal), session twice=" << sessions_without_login
            << ", lost=" << sessions_missing + sad_uses_missing << "\n";
}

// Two lifecycle replicas (and two of each service it calls): kill -9 of one under Issue and
// Revoke load. The citizens' retries with the same client_request_id go to the other replica,
// which finishes or repeats the same issuance: every acknowledged Issue is ISSUED with an ACTIVE
// credential (or revoked, when its Revoke was acknowledged), the same request id returns the same
// certificate, and nothing is half done once lifecycle's sweeper has run (every 10 s).
TEST_F(LifecycleReplicasTest, KillNineOfOneLifecycleReplicaUnderIssueAndRevokeLosesNothing) {
  auto identity = pb::Identity::NewStub(Balanced(Target("identity")));
  auto consent_channel = Balanced(Target("consent"));
  auto lifecycle_channel = Balanced(Target("lifecycle"));
  testing::IssuanceLoad load([&] { return lifecycle_channel; });
  std::vector<testing::Person> people;
  std::vector<std::string> tokens;
  for (int i = 0; i < kPeople; ++i) {
    auto p = testing::EnrolPerson(*identity, conninfo(), consent_channel, 950 + i);
    ASSERT_TRUE(p.ok()) << p.status() << Logs();
    p->app->SetAutoDecision(consent::Decision::kApprove, testing::kPin);
    ASSERT_TRUE(p->app->StartWatching().ok());
    tokens.push_back(testing::Login(*identity, p->username));
    ASSERT_FALSE(tokens.back().empty()) << Logs();
    grpc::Status accepted = load.AcceptContract(tokens.back());
    ASSERT_TRUE(accepted.ok()) << accepted.error_message();
    people.push_back(*std::move(p));
  }

  load.Start(tokens);
  const bool loaded = load.AwaitIssues(4, absl::Seconds(30));
  std::map<std::string, double> served;
  for (int i = 1; i <= 2; ++i) {
    served[Get("lifecycle", i).name()] = ServedOk(Get("lifecycle", i), LoadMethod("lifecycle"));
  }
  const int before_kill = load.IssuesAcknowledged();
  const absl::Time killed_at = absl::Now();
  Get("lifecycle", 1).process->Kill();
  const bool carried_on = load.AwaitIssues(before_kill + 4, absl::Seconds(30));
  const absl::Duration carried_on_in = absl::Now() - killed_at;
  Start(Get("lifecycle", 1));
  const bool recovered =
      !HasFatalFailure() && load.AwaitIssues(load.IssuesAcknowledged() + 2, absl::Seconds(30));
  load.Stop();
  EXPECT_TRUE(loaded) << Logs();
  EXPECT_TRUE(carried_on) << Logs();
  EXPECT_TRUE(recovered) << Logs();
  for (const auto& [name, n] : served) {
    EXPECT_GT(n, 0) << name << " issued nothing before the kill";
  }

  // No certificate ISSUED without an ACTIVE credential, none ACTIVE for one not ISSUED, within
  // one sweep of lifecycle's (what the kill left half done is finished there).
  auto conn = db::Connection::Open(conninfo());
  ASSERT_TRUE(conn.ok()) << conn.status();
  std::set<std::string> issued, active;
  std::vector<std::string> violations;
  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  do {
    if (!violations.empty()) absl::SleepFor(absl::Milliseconds(500));
    issued = testing::Column(**conn,
                             "SELECT certificate_id FROM lifecycle.certificates WHERE kind = "
                             "'QUALIFIED' AND state = 'ISSUED'");
    active = testing::Column(
        **conn, "SELECT credential_id FROM signer.credentials WHERE status = 'ACTIVE'");
    violations.clear();
    for (const std::string& id : issued) {
      if (!active.contains(id)) violations.push_back("ISSUED without an active credential: " + id);
    }
    for (const std::string& id : active) {
      if (!issued.contains(id)) violations.push_back("ACTIVE credential not ISSUED: " + id);
    }
  } while (!violations.empty() && absl::Now() < deadline);
  for (const std::string& v : violations) ADD_FAILURE() << v;
  const testing::IssuanceLoad::Checked c = load.Check(issued, active);
  std::cout << "[ counts   ] lifecycle replicas: lifecycle-1 kill -9: issues acknowledged="
            << c.acknowledged << " (" << before_kill << " before the kill; the other replica "
            << "carried on in " << absl::FormatDuration(carried_on_in)
            << "), revocations acknowledged=" << c.revokes_acknowledged
            << ", same certificate for the same request id=" << c.same_on_retry
            << ", failed calls (retried)=" << load.failed_calls()
            << ", ISSUED without credential or ACTIVE not ISSUED=" << violations.size()
            << ", lost=" << c.lost << "\n";
}

}  // namespace
}  // namespace qsign
