// The whole journey for N simulated citizens for M minutes against a real qsignd (identity,
// consent, signer, lifecycle in one process, on its own PostgreSQL and SoftHSM2 tokens), as
// issue 13's soak: each citizen registers, is proofed, enrols its app, logs in, accepts the
// contract and is issued a certificate, then until the time is up logs in again and signs a
// batch of hashes under one approval (Authorize, the app approves, AwaitAuthorization, SignHash),
// and at the end revokes. Reports every operation's count, errors (must be 0), p50 and p99, and
// qsignd's RSS and open file descriptors sampled over time (they must not grow without bound).
//   build/bench/soak [--citizens=8] [--minutes=1] [--batch=4] [--sample_seconds=10]
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "consent/app_simulator.h"
#include "qsign/v1/consent.grpc.pb.h"
#include "qsign/v1/identity.grpc.pb.h"
#include "qsign/v1/lifecycle.grpc.pb.h"
#include "qsign/v1/signer.grpc.pb.h"
#include "tests/faults/fault_stack.h"
#include "tests/testing/people.h"
#include "tests/testing/qsignd_process.h"
#include "tests/testing/service_env.h"
#include "tests/testing/test_data.h"

ABSL_FLAG(int, citizens, 8, "simulated citizens, one thread each");
ABSL_FLAG(double, minutes, 1.0, "how long the signing loop runs");
ABSL_FLAG(int, batch, 4, "hashes signed under one approval");
ABSL_FLAG(int, sample_seconds, 10, "how often qsignd's RSS and open fds are sampled");

namespace qsign::bench {
namespace {

namespace pb = ::qsign::v1;

// Durations of each operation's successful calls, and its errors.
class Stats {
 public:
  void Record(const std::string& op, absl::Duration took, bool ok) {
    absl::MutexLock lock(&mu_);
    Op& o = ops_[op];
    if (ok) {
      o.took.push_back(took);
    } else {
      ++o.errors;
    }
  }
  int64_t Errors() {
    absl::MutexLock lock(&mu_);
    int64_t n = 0;
    for (const auto& [name, o] : ops_) n += o.errors;
    return n;
  }
  void Print() {
    absl::MutexLock lock(&mu_);
    std::printf("%-18s %8s %7s %10s %10s\n", "operation", "ok", "errors", "p50 ms", "p99 ms");
    for (auto& [name, o] : ops_) {
      std::sort(o.took.begin(), o.took.end());
      // A named reference: clang 14 cannot capture a structured binding in a lambda.
      const std::vector<absl::Duration>& took = o.took;
      const auto at = [&took](double q) {
        return took.empty()
                   ? 0.0
                   : absl::ToDoubleMilliseconds(
                         took[std::min(took.size() - 1, static_cast<size_t>(q * took.size()))]);
      };
      std::printf("%-18s %8zu %7lld %10.1f %10.1f\n", name.c_str(), o.took.size(),
                  static_cast<long long>(o.errors), at(0.5), at(0.99));
    }
  }

 private:
  struct Op {
    std::vector<absl::Duration> took;
    int64_t errors = 0;
  };
  absl::Mutex mu_;
  std::map<std::string, Op> ops_ ABSL_GUARDED_BY(mu_);
};

// Times `call` (true on success) as `op`.
template <typename F>
bool Timed(Stats& stats, const std::string& op, F call) {
  const absl::Time start = absl::Now();
  const bool ok = call();
  stats.Record(op, absl::Now() - start, ok);
  return ok;
}

void Bearer(grpc::ClientContext& ctx, const std::string& token) {
  ctx.AddMetadata("authorization", "Bearer " + token);
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
}

std::string RandomishHash(int citizen, int64_t n, int i) {
  std::string h(32, '\0');
  const std::string tag =
      absl::StrCat(citizen, "/", n, "/", i, "/", absl::ToUnixNanos(absl::Now()));
  for (size_t k = 0; k < tag.size() && k < h.size(); ++k) h[k] = tag[k];
  return h;
}

// RSS (kB) and open fds of `pid`.
std::pair<int64_t, int64_t> Sample(pid_t pid) {
  int64_t rss = -1, fds = 0;
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) rss = std::stoll(line.substr(6));
  }
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/fd"), ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++fds;
  }
  return {rss, fds};
}

int Main() {
  const int citizens = absl::GetFlag(FLAGS_citizens);
  const int batch = absl::GetFlag(FLAGS_batch);
  auto env = testing::ServiceEnv::Start({.pool_size = 0, .hsm_sessions = 0});
  if (!env.ok()) {
    std::fprintf(stderr, "soak: %s\n", env.status().ToString().c_str());
    return 1;
  }
  config::v1::ServerConfig config =
      testing::FaultStackConfig(**env, {"identity", "consent", "signer", "lifecycle"});
  config.mutable_lifecycle()->set_http_listen("127.0.0.1:0");
  auto qsignd = testing::QsigndProcess::Start(QSIGND_PATH, config, (*env)->token().dir());
  if (!qsignd.ok()) {
    std::fprintf(stderr, "soak: qsignd: %s\n", qsignd.status().ToString().c_str());
    return 1;
  }
  auto channel = grpc::CreateChannel((*qsignd)->target(), grpc::InsecureChannelCredentials());
  auto identity = pb::Identity::NewStub(channel);
  auto lifecycle = pb::Lifecycle::NewStub(channel);
  auto consent = pb::Consent::NewStub(channel);
  auto signer = pb::Signer::NewStub(channel);
  Stats stats;

  // qsignd's footprint over time.
  std::vector<std::tuple<double, int64_t, int64_t>> samples;
  std::atomic<bool> done{false};
  const absl::Time t0 = absl::Now();
  std::thread sampler([&] {
    while (!done.load()) {
      auto [rss, fds] = Sample((*qsignd)->pid());
      samples.emplace_back(absl::ToDoubleSeconds(absl::Now() - t0), rss, fds);
      for (int i = 0; i < absl::GetFlag(FLAGS_sample_seconds) * 10 && !done.load(); ++i) {
        absl::SleepFor(absl::Milliseconds(100));
      }
    }
  });

  const absl::Time end = absl::Now() + absl::Seconds(60 * absl::GetFlag(FLAGS_minutes));
  std::vector<std::thread> threads;
  for (int c = 0; c < citizens; ++c) {
    threads.emplace_back([&, c] {
      absl::StatusOr<testing::Person> person;
      if (!Timed(stats, "register+enrol", [&] {
            person = testing::EnrolPerson(*identity, (*env)->conninfo(), channel, 900 + c);
            return person.ok();
          })) {
        std::fprintf(stderr, "soak: citizen %d: %s\n", c, person.status().ToString().c_str());
        return;
      }
      person->app->SetAutoDecision(consent::Decision::kApprove, testing::kPin);
      if (!person->app->StartWatching().ok()) return;
      std::string token;
      const auto login = [&] {
        return Timed(stats, "login", [&] {
          token = testing::Login(*identity, person->username);
          return !token.empty();
        });
      };
      if (!login()) return;
      pb::Certificate cert;
      if (!Timed(stats, "accept_contract", [&] {
            pb::Contract contract;
            grpc::ClientContext c1;
            if (!lifecycle->GetContract(&c1, pb::GetContractRequest(), &contract).ok()) {
              return false;
            }
            pb::AcceptContractRequest accept;
            accept.set_version(contract.version());
            accept.set_text_sha256(contract.text_sha256());
            pb::ContractAcceptance accepted;
            grpc::ClientContext c2;
            Bearer(c2, token);
            return lifecycle->AcceptContract(&c2, accept, &accepted).ok();
          })) {
        return;
      }
      if (!Timed(stats, "issue", [&] {
            pb::IssueRequest req;
            req.set_client_request_id(absl::StrCat("soak-", c));
            grpc::ClientContext ctx;
            Bearer(ctx, token);
            return lifecycle->Issue(&ctx, req, &cert).ok();
          })) {
        return;
      }
      for (int64_t n = 0; absl::Now() < end; ++n) {
        if (n > 0 && !login()) {
          absl::SleepFor(absl::Milliseconds(100));
          continue;
        }
        pb::AuthorizeRequest auth;
        auth.set_credential_id(cert.certificate_id());
        auth.set_hash_algorithm_oid("2.16.840.1.101.3.4.2.1");
        for (int i = 0; i < batch; ++i) auth.add_hashes(RandomishHash(c, n, i));
        std::string sad;
        if (!Timed(stats, "authorize+approve", [&] {
              pb::AuthorizeResponse started;
              grpc::ClientContext ctx;
              Bearer(ctx, token);
              if (!consent->Authorize(&ctx, auth, &started).ok()) return false;
              pb::AwaitAuthorizationRequest await;
              await.set_request_id(started.request_id());
              await.mutable_max_wait()->set_seconds(10);
              pb::AwaitAuthorizationResponse answer;
              grpc::ClientContext wctx;
              Bearer(wctx, token);
              if (!consent->AwaitAuthorization(&wctx, await, &answer).ok()) return false;
              sad = answer.sad();
              return answer.state() == pb::CONSENT_REQUEST_STATE_APPROVED && !sad.empty();
            })) {
          absl::SleepFor(absl::Milliseconds(100));
          continue;
        }
        Timed(stats, absl::StrCat("sign_hash x", batch), [&] {
          pb::SignHashRequest req;
          req.set_credential_id(cert.certificate_id());
          req.set_hash_algorithm_oid("2.16.840.1.101.3.4.2.1");
          req.set_sign_algorithm_oid("1.2.840.10045.4.3.2");
          *req.mutable_hashes() = auth.hashes();
          req.set_sad(sad);
          pb::SignHashResponse resp;
          grpc::ClientContext ctx;
          ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
          return signer->SignHash(&ctx, req, &resp).ok() && resp.signatures_size() == batch;
        });
      }
      Timed(stats, "revoke", [&] {
        pb::RevokeRequest req;
        req.set_certificate_id(cert.certificate_id());
        pb::Certificate out;
        grpc::ClientContext ctx;
        Bearer(ctx, token);
        return lifecycle->Revoke(&ctx, req, &out).ok();
      });
    });
  }
  for (std::thread& t : threads) t.join();
  done.store(true);
  sampler.join();
  auto [rss, fds] = Sample((*qsignd)->pid());
  samples.emplace_back(absl::ToDoubleSeconds(absl::Now() - t0), rss, fds);

  std::printf("soak: %d citizens, %.1f min of signing (batches of %d), qsignd pid %d\n", citizens,
              absl::GetFlag(FLAGS_minutes), batch, static_cast<int>((*qsignd)->pid()));
  stats.Print();
  std::printf("%-8s %10s %6s\n", "t (s)", "RSS (kB)", "fds");
  for (const auto& [t, r, f] : samples) {
    std::printf("%-8.0f %10lld %6lld\n", t, static_cast<long long>(r), static_cast<long long>(f));
  }
  const int64_t errors = stats.Errors();
  std::printf("errors: %lld\n", static_cast<long long>(errors));
  (*qsignd)->Stop();
  return errors == 0 ? 0 : 1;
}

}  // namespace
}  // namespace qsign::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return qsign::bench::Main();
}
