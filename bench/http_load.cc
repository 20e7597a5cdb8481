#include "bench/http_load.h"

#include <sys/resource.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "tests/testing/shell.h"

namespace qsign::bench {

namespace {

// CPU time (user + system) of the finished children this process waited for.
double ChildrenCpuSeconds() {
  struct rusage ru {};
  getrusage(RUSAGE_CHILDREN, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

}  // namespace

double ProcessCpuSeconds() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

double Load1() {
  std::ifstream in("/proc/loadavg");
  double load = 0;
  in >> load;
  return load;
}

absl::StatusOr<WrkResult> RunWrk(const WrkRun& run) {
  const std::string script = absl::StrCat(run.work_dir, "/bench-wrk.lua");
  // The body is read once per wrk thread; done() prints what this file parses.
  std::ofstream(script) << absl::StrFormat(
      R"(local f = assert(io.open("%s", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "%s"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRKSUMMARY %%d %%d %%.3f %%.3f %%d\n", summary.requests,
    summary.duration, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.status + e.timeout))
end
)",
      run.body_file, run.content_type);
  WrkResult result{.load1 = Load1()};
  const std::string command = absl::StrFormat(
      "wrk -t%d -c%d -d%.0fs --timeout 10s -s %s %s", std::min(run.threads, run.connections),
      run.connections, std::max(1.0, run.seconds), script, run.url);
  std::string out;
  const double children_cpu = ChildrenCpuSeconds();
  const int status = testing::RunCommand(command, &out);
  // wrk runs under `sh -c`, which waits for it: both are counted once popen's shell is reaped.
  const double wrk_cpu = ChildrenCpuSeconds() - children_cpu;
  const size_t at = out.find("WRKSUMMARY ");
  if (status != 0 || at == std::string::npos) {
    return absl::UnavailableError(absl::StrCat(command, ": exit ", status, ":\n", out));
  }
  const size_t end = out.find('\n', at);
  std::vector<std::string> f = absl::StrSplit(out.substr(at + 11, end - at - 11), ' ');
  double requests = 0, duration_us = 0;
  if (f.size() != 5 || !absl::SimpleAtod(f[0], &requests) ||
      !absl::SimpleAtod(f[1], &duration_us) || !absl::SimpleAtod(f[2], &result.p50_ms) ||
      !absl::SimpleAtod(f[3], &result.p99_ms) || !absl::SimpleAtoi(f[4], &result.failures)) {
    return absl::InternalError(absl::StrCat("cannot read wrk's summary: ", out));
  }
  result.per_s = duration_us > 0 ? requests / (duration_us / 1e6) : 0;
  result.wrk_cpu_us = requests > 0 ? 1e6 * wrk_cpu / requests : 0;
  return result;
}

absl::Status MakeOcspRequest(const std::string& issuer_pem, const std::string& serial, bool nonce,
                             const std::string& out_file) {
  std::string out;
  const std::string command = absl::StrCat("openssl ocsp -issuer ", issuer_pem, " -serial ", serial,
                                           nonce ? "" : " -no_nonce", " -reqout ", out_file);
  if (testing::RunCommand(command, &out) != 0)
    return absl::InternalError(absl::StrCat(command, ": ", out));
  return absl::OkStatus();
}

absl::StatusOr<double> BareP256SignRate(hsm::Hsm* hsm, int threads, double seconds) {
  if (!hsm->GetPublicKey("bench-bare").ok()) {
    if (auto key = hsm->GenerateKeyPair("bench-bare", hsm::KeyType::kEcP256); !key.ok()) {
      return key.status();
    }
  }
  const std::string digest(32, '\x42');
  std::atomic<int64_t> count{0};
  std::atomic<bool> failed{false};
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::Seconds(seconds);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      while (absl::Now() < end) {
        if (!hsm->SignDigest("bench-bare", {.scheme = hsm::SignScheme::kEcdsa}, digest).ok()) {
          failed = true;
          return;
        }
        count.fetch_add(1);
      }
    });
  }
  for (auto& w : workers) w.join();
  if (failed.load()) return absl::InternalError("bare HSM signature failed");
  return static_cast<double>(count.load()) / absl::ToDoubleSeconds(absl::Now() - start);
}

}  // namespace qsign::bench
