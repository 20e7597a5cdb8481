// Timestamp throughput of the TSA: RFC 3161 queries over gRPC on loopback (qsign.v1.Tsa, the
// same TimestampAuthority the HTTP listener serves: a serial from PostgreSQL, TSTInfo, a CMS
// SignedData signed with the TSA key in SoftHSM2), next to the bare HSM signing rate of the same
// key type measured in the same run — the ceiling, since every token is one C_Sign.
//   build/bench/bench_tsa [--concurrency=8] [--seconds=3]
// Prints a table and one JSON line with timestamps/s, p50/p99 and the ratio to the bare rate.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/cades/signed_data.h"
#include "common/cades/timestamp.h"
#include "hsm/hsm.h"
#include "qsign/v1/tsa.grpc.pb.h"
#include "tests/testing/service_env.h"
#include "tests/testing/stacks.h"

ABSL_FLAG(int, concurrency, 8, "concurrent client threads (and HSM threads for the bare rate)");
ABSL_FLAG(double, seconds, 3.0, "duration of each timed loop");
ABSL_FLAG(int, hsm_sessions, 8, "PKCS#11 sessions");

namespace qsign::bench {
namespace {

namespace pb = ::qsign::v1;

struct Run {
  double per_s = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  int failures = 0;
};

// `threads` loops of `op` for `seconds`; rate and latency percentiles.
template <typename Op>
Run Timed(int threads, double seconds, Op op) {
  std::vector<std::vector<double>> latencies(threads);
  std::atomic<int> failures{0};
  const absl::Time end = absl::Now() + absl::Seconds(seconds);
  const absl::Time start = absl::Now();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      while (absl::Now() < end) {
        const absl::Time a = absl::Now();
        if (!op(t)) failures.fetch_add(1);
        latencies[t].push_back(absl::ToDoubleMilliseconds(absl::Now() - a));
      }
    });
  }
  for (auto& w : workers) w.join();
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  Run r;
  r.failures = failures.load();
  r.per_s = static_cast<double>(all.size() - r.failures) / elapsed;
  if (!all.empty()) {
    r.p50_ms = all[all.size() / 2];
    r.p99_ms = all[std::min(all.size() - 1, all.size() * 99 / 100)];
  }
  return r;
}

int Main() {
  const int threads = absl::GetFlag(FLAGS_concurrency);
  const double seconds = absl::GetFlag(FLAGS_seconds);
  auto env = testing::ServiceEnv::Start(
      {.pool_size = 32, .hsm_sessions = absl::GetFlag(FLAGS_hsm_sessions)});
  if (!env.ok()) {
    std::fprintf(stderr, "bench_tsa: %s\n", env.status().ToString().c_str());
    return 1;
  }
  auto stacks = testing::Stacks::Start(**env, {.services = {"lifecycle", "tsa"}});
  if (!stacks.ok()) {
    std::fprintf(stderr, "bench_tsa: %s\n", stacks.status().ToString().c_str());
    return 1;
  }
  std::vector<std::unique_ptr<pb::Tsa::Stub>> stubs;
  for (int t = 0; t < threads; ++t) stubs.push_back(pb::Tsa::NewStub((*stacks)->NewChannel()));
  const std::string query = *cades::TimestampQuery(cades::Sha256("bench"), "", true);
  auto stamp = [&](int t) {
    grpc::ClientContext ctx;
    pb::TimestampRequest req;
    req.set_query(query);
    pb::TimestampResponse resp;
    return stubs[t]->Timestamp(&ctx, req, &resp).ok() && resp.granted();
  };
  // The TSA asks lifecycle for its certificate once the listener is up.
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (!stamp(0)) {
    if (absl::Now() > give_up) {
      std::fprintf(stderr, "bench_tsa: the TSA never granted a timestamp\n");
      return 1;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }

  // The ceiling: bare ECDSA P-256 signatures with a token key through hsm/, same threads.
  hsm::Hsm& hsm = (*env)->hsm("tsa");  // The TSA key's token.
  if (!hsm.GenerateKeyPair("bench-bare", hsm::KeyType::kEcP256).ok()) return 1;
  const std::string digest = cades::Sha256("bare");
  const Run bare = Timed(threads, seconds, [&](int) {
    return hsm.SignDigest("bench-bare", {.scheme = hsm::SignScheme::kEcdsa}, digest).ok();
  });
  const Run tsa = Timed(threads, seconds, stamp);
  const double ratio = bare.per_s > 0 ? tsa.per_s / bare.per_s : 0;

  std::printf("%-34s %10s %10s %10s %8s\n", "case", "per s", "p50 ms", "p99 ms", "ratio");
  std::printf("%-34s %10.1f %10.2f %10.2f %8s\n", "bare HSM C_Sign (EC P-256)", bare.per_s,
              bare.p50_ms, bare.p99_ms, "");
  std::printf("%-34s %10.1f %10.2f %10.2f %8.3f\n", "TSA timestamps (gRPC)", tsa.per_s, tsa.p50_ms,
              tsa.p99_ms, ratio);
  std::printf(
      "%s\n",
      absl::StrFormat(
          R"({"bench":"tsa","threads":%d,"per_s":%.1f,"p50_ms":%.2f,"p99_ms":%.2f,"bare_sign_per_s":%.1f,"ratio":%.3f,"failures":%d})",
          threads, tsa.per_s, tsa.p50_ms, tsa.p99_ms, bare.per_s, ratio, tsa.failures)
          .c_str());
  (*stacks)->Shutdown(absl::ZeroDuration());
  return tsa.failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace qsign::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return qsign::bench::Main();
}
