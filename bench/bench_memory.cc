// What qsignd's memory and threads cost per account and per open consent-app stream (issue 15):
// a real qsignd (identity, consent and the signer, its own PostgreSQL and SoftHSM2 tokens, the
// config of the fault tests and the soak), 10,000 accounts registered through its RPCs
// (RegisterAccount + the e-mailed link's ConfirmRegistration), then 1,000 Consent.WatchRequests
// streams held open by a callback-API client (no client thread per stream), spread over a few
// enrolled apps. Reports qsignd's VmRSS and thread count (/proc/<pid>) at each step, and the growth
// per stream, as one JSON line.
//   build/bench/bench_memory [--accounts=10000] [--streams=1000] [--apps=50] [--clients=8]
//                            [--qsignd=PATH]
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/db/pg.h"
#include "consent/app_simulator.h"
#include "qsign/v1/identity.grpc.pb.h"
#include "tests/faults/fault_stack.h"
#include "tests/testing/people.h"
#include "tests/testing/qsignd_process.h"
#include "tests/testing/registration.h"
#include "tests/testing/service_env.h"
#include "tests/testing/test_data.h"
#include "tests/testing/watch_streams.h"

ABSL_FLAG(int, accounts, 10000, "accounts registered before the streams open (apps included)");
ABSL_FLAG(int, streams, 1000, "WatchRequests streams held open");
ABSL_FLAG(int, apps, 50, "enrolled consent apps the streams are spread over");
ABSL_FLAG(int, clients, 8, "client threads registering accounts");
ABSL_FLAG(std::string, qsignd, QSIGND_PATH, "the qsignd binary (e.g. an older build to compare)");

namespace qsign::bench {
namespace {

namespace pb = ::qsign::v1;

// VmRSS (KiB) of `pid`.
int64_t RssKib(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

double Load1() {
  double load = -1;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load) != 1) load = -1;
    std::fclose(f);
  }
  return load;
}

// User + system CPU time of `pid` so far, in seconds.
double CpuSeconds(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const size_t close = text.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(text.substr(close + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stod(field);
    if (i == 15) stime = std::stod(field);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct Sample {
  int64_t rss_kib;
  int threads;
};

int Main() {
  const int accounts = absl::GetFlag(FLAGS_accounts);
  const int streams = absl::GetFlag(FLAGS_streams);
  const int apps = std::max(1, absl::GetFlag(FLAGS_apps));
  const int clients = std::max(1, absl::GetFlag(FLAGS_clients));
  const double load1 = Load1();
  auto env = testing::ServiceEnv::Start({.pool_size = 4, .hsm_sessions = 0});
  if (!env.ok()) {
    std::fprintf(stderr, "bench_memory: %s\n", env.status().ToString().c_str());
    return 1;
  }
  config::v1::ServerConfig config =
      testing::FaultStackConfig(**env, {"identity", "consent", "signer"});
  // Every registration comes from 127.0.0.1.
  config.mutable_identity()->set_registrations_per_address_per_hour(0);
  auto qsignd =
      testing::QsigndProcess::Start(absl::GetFlag(FLAGS_qsignd), config, (*env)->token().dir());
  if (!qsignd.ok()) {
    std::fprintf(stderr, "bench_memory: qsignd: %s\n", qsignd.status().ToString().c_str());
    return 1;
  }
  const pid_t pid = (*qsignd)->pid();
  auto sample = [&] { return Sample{RssKib(pid), testing::ThreadCount(pid)}; };
  auto print = [](const char* what, const Sample& s) {
    std::printf("%-34s RSS %8lld KiB  threads %4d\n", what, static_cast<long long>(s.rss_kib),
                s.threads);
    std::fflush(stdout);
  };
  auto channel = grpc::CreateChannel((*qsignd)->target(), grpc::InsecureChannelCredentials());
  auto identity = pb::Identity::NewStub(channel);
  const Sample started = sample();
  print("qsignd started", started);

  // The apps first (registered, proofed, enrolled), then plain registrations up to `accounts`.
  std::vector<std::unique_ptr<consent::ConsentAppSimulator>> enrolled(apps);
  std::atomic<int> failures{0};
  const absl::Time t0 = absl::Now();
  {
    std::vector<std::thread> threads;
    std::atomic<int> next{0};
    for (int c = 0; c < clients; ++c) {
      threads.emplace_back([&] {
        auto pool = db::Pool::New({.conninfo = (*env)->conninfo(), .size = 1});
        for (int i = next++; i < accounts; i = next++) {
          if (i < apps) {
            auto person = testing::EnrolPerson(*identity, (*env)->conninfo(), channel, i);
            if (person.ok()) {
              enrolled[i] = std::move(person->app);
            } else {
              ++failures;
              std::fprintf(stderr, "enrol %d: %s\n", i, person.status().ToString().c_str());
            }
            continue;
          }
          pb::RegisterAccountRequest reg;
          reg.set_username(absl::StrCat("citizen", i, "@example.rs"));
          reg.set_given_name("Jelena");
          reg.set_surname("Jovanović");
          reg.set_national_id(testing::ManyNationalId(i));
          auto account = pool.ok() ? testing::RegisterAndConfirm(*identity, **pool, reg)
                                   : absl::StatusOr<pb::Account>(pool.status());
          if (!account.ok() && ++failures <= 5) {
            std::fprintf(stderr, "register %d: %s\n", i, account.status().ToString().c_str());
          }
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  const double accounts_s = absl::ToDoubleSeconds(absl::Now() - t0);
  const Sample with_accounts = sample();
  print(absl::StrFormat("%d accounts (%.1f s)", accounts, accounts_s).c_str(), with_accounts);

  std::vector<const consent::ConsentAppSimulator*> watching;
  for (const auto& app : enrolled) {
    if (app) watching.push_back(app.get());
  }
  if (watching.empty()) {
    std::fprintf(stderr, "bench_memory: no app enrolled\n");
    return 1;
  }
  const int per_app = (streams + static_cast<int>(watching.size()) - 1) / watching.size();
  const absl::Time t1 = absl::Now();
  auto open = testing::WatchStreams::Open(
      grpc::CreateChannel((*qsignd)->target(), grpc::InsecureChannelCredentials()), watching,
      per_app, absl::Seconds(60));
  if (!open.ok()) {
    std::fprintf(stderr, "bench_memory: streams: %s\n", open.status().ToString().c_str());
    return 1;
  }
  const double open_s = absl::ToDoubleSeconds(absl::Now() - t1);
  const int opened = (*open)->size();
  absl::SleepFor(absl::Seconds(2));  // Let what the opening allocated settle.
  const Sample with_streams = sample();
  print(absl::StrFormat("%d streams open (%.1f s)", opened, open_s).c_str(), with_streams);

  // What the open streams cost while nothing happens: the safety-net re-reads (poll_interval).
  const double cpu0 = CpuSeconds(pid);
  absl::SleepFor(absl::Seconds(5));
  const double idle_cpu_pct = (CpuSeconds(pid) - cpu0) / 5 * 100;
  std::printf("qsignd CPU with the streams open and idle: %.1f %% of one core\n", idle_cpu_pct);
  const double kib_per_stream =
      static_cast<double>(with_streams.rss_kib - with_accounts.rss_kib) / opened;
  const double kib_per_account =
      static_cast<double>(with_accounts.rss_kib - started.rss_kib) / accounts;
  std::printf("per open stream: %.1f KiB, %.3f threads; per account: %.2f KiB\n", kib_per_stream,
              static_cast<double>(with_streams.threads - with_accounts.threads) / opened,
              kib_per_account);
  std::printf(
      "{\"bench\":\"memory\",\"case\":\"rss_%dk_accounts_%d_watch\",\"accounts\":%d,"
      "\"streams\":%d,\"apps\":%zu,\"rss_kib\":%lld,\"rss_kib_started\":%lld,"
      "\"rss_kib_accounts\":%lld,\"kib_per_stream\":%.1f,\"kib_per_account\":%.2f,"
      "\"threads_started\":%d,\"threads_accounts\":%d,\"threads\":%d,\"accounts_s\":%.1f,"
      "\"streams_open_s\":%.1f,\"idle_cpu_pct\":%.1f,\"per_s\":null,\"ref\":null,\"ref_per_s\":"
      "null,\"ratio\":null,"
      "\"failures\":%d,\"load1\":%.2f}\n",
      accounts / 1000, opened, accounts, opened, watching.size(),
      static_cast<long long>(with_streams.rss_kib), static_cast<long long>(started.rss_kib),
      static_cast<long long>(with_accounts.rss_kib), kib_per_stream, kib_per_account,
      started.threads, with_accounts.threads, with_streams.threads, accounts_s, open_s,
      idle_cpu_pct, failures.load(), load1);
  open->reset();
  return failures.load() == 0 ? 0 : 1;
}

}  // namespace
}  // namespace qsign::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return qsign::bench::Main();
}
