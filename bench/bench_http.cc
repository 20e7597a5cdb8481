// OCSP over qsign's public HTTP server (common/http: the event-driven listener lifecycle serves
// /ocsp on), driven by wrk (an independent load generator, keep-alive connections, 2 threads),
// next to the bare HSM signing rate measured in the same run.
//
//   build/bench/bench_http [--seconds=4] [--connections=8,32,1000] [--wrk_threads=2]
//
// The responder is lifecycle's OcspResponder over a CA set in a SoftHSM2 token (P-256, the
// delegated OCSP signer key), served by lifecycle's StatusHttpServer with its default 8 workers;
// requests are made by `openssl ocsp -reqout` for a certificate the status source calls good.
// The status source is an in-memory table here (qsignd reads lifecycle's PostgreSQL store for a
// response it signs; bench_issue's OCSP lines include that), and the signed-response budget
// (lifecycle.ocsp_signatures_per_second) is off, so that "nonce" measures HTTP + responder + HSM.
// Cases, each for --seconds on fresh connections:
//   bare_hsm_p256_sign  ECDSA P-256 C_Sign through hsm/ on the same token, as many threads as
//                       the token has sessions: the ceiling of the nonce path, measured before
//                       each connection count (the ratios divide by the one next to them).
//   ocsp_cached         no nonce: the pre-signed response from the responder's cache.
//   ocsp_nonce          a nonce: signed in the HSM for every request.
// Beside each case: this process's CPU per answer (cpu us), wrk's (wrk us), and the ratio those
// predict when the case has both cores to itself (cpu ratio = bare cpu us / (cpu us + wrk us));
// docs/PERFORMANCE.md ("The OCSP nonce path") shows why wrk's share bounds ocsp_nonce here.
// Targets (issue 15): ocsp_nonce per_s / bare >= 0.8; ocsp_cached p99 <= 20 ms at 32 and 1,000.
// Prints a table, then one JSON line per case (contracts.md: bench JSON lines).
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/http_load.h"
#include "common/clock.h"
#include "common/ossl.h"
#include "hsm/hsm.h"
#include "services/lifecycle/ca/ca_setup.h"
#include "services/lifecycle/ca/ca_store.h"
#include "services/lifecycle/ca/ocsp.h"
#include "services/lifecycle/schema.h"
#include "services/lifecycle/status_http.h"
#include "tests/testing/service_env.h"
#include "tests/testing/shell.h"

ABSL_FLAG(double, seconds, 4.0, "duration of each case");
ABSL_FLAG(std::vector<std::string>, connections, std::vector<std::string>({"8", "32", "1000"}),
          "keep-alive connections wrk holds open, one run per value");
ABSL_FLAG(int, wrk_threads, 2, "wrk threads");
ABSL_FLAG(int, http_threads, 8, "worker threads of the OCSP listener (lifecycle's default)");
ABSL_FLAG(int, hsm_sessions, 8, "PKCS#11 sessions of the token (and threads of the bare rate)");

namespace qsign::bench {
namespace {

// Every certificate is good: the status lookup costs nothing here (see the header).
class AllGood final : public lifecycle::CertStatusSource {
 public:
  absl::StatusOr<lifecycle::CertStatus> Status(std::string_view, std::string_view) override {
    return lifecycle::CertStatus{.kind = lifecycle::CertStatus::Kind::kGood};
  }
};

struct Result {
  std::string name;
  int connections = 0;
  WrkResult r;
  double bare_per_s = 0;  // The bare rate measured just before (load moves during a run).
  // CPU time of this process (the listener and the responder; wrk is another process) per
  // answer, or per signature for the bare rate: on a shared machine it moves far less than the
  // rates do.
  double cpu_us = 0;
  double bare_cpu_us = 0;  // The bare rate's CPU per signature, measured with bare_per_s.
};

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "bench_http: %s\n", what.c_str());
  std::exit(1);
}

int Main() {
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const int sessions = absl::GetFlag(FLAGS_hsm_sessions);
  std::string out;
  if (testing::RunCommand("command -v wrk", &out) != 0) {
    Fail("wrk not found (Debian package wrk; scripts/setup installs it)");
  }
  auto env = testing::ServiceEnv::Start({.pool_size = 2, .hsm_sessions = sessions});
  if (!env.ok()) Fail(env.status().ToString());
  db::Pool* pool = &(*env)->pool();
  hsm::Hsm* hsm = &(*env)->hsm("lifecycle");
  if (auto s = lifecycle::MigrateLifecycleSchema(*pool); !s.ok()) Fail(s.ToString());
  auto ca_store = lifecycle::NewPostgresCaStore(pool);
  auto cas = lifecycle::CaSet::Init(hsm, ca_store.get(), RealClock::Get(), {});
  if (!cas.ok()) Fail(cas.status().ToString());
  AllGood status;
  lifecycle::OcspConfig ocsp_config;
  ocsp_config.signatures_per_second = 0;
  lifecycle::OcspResponder ocsp(cas->get(), &status, &RealClock::Get(), ocsp_config);
  lifecycle::StatusHttpOptions http_options{.threads = absl::GetFlag(FLAGS_http_threads)};
  // wrk's connections all come from 127.0.0.1.
  http_options.limits.max_connections_per_address = 0;
  auto http = lifecycle::StatusHttpServer::Start(http_options, &ocsp, nullptr, cas->get());
  if (!http.ok()) Fail(http.status().ToString());
  const std::string url = absl::StrCat("http://127.0.0.1:", (*http)->port(), "/ocsp");

  // The requests, made by openssl for a serial of the qualified CA; wrk POSTs them.
  const std::string dir = (*env)->token().dir();
  const std::string issuer = dir + "/bench-issuer.pem";
  {
    OsslPtr<BIO> bio(BIO_new_file(issuer.c_str(), "w"));
    if (bio == nullptr ||
        PEM_write_bio_X509(bio.get(), const_cast<X509*>((*cas)->qualified().cert())) != 1) {
      Fail("cannot write the issuer certificate");
    }
  }
  const std::string plain = dir + "/bench-plain.der", nonce = dir + "/bench-nonce.der";
  const std::string serial = "0x51A7E5C0FFEE";
  if (auto s = MakeOcspRequest(issuer, serial, false, plain); !s.ok()) Fail(s.ToString());
  if (auto s = MakeOcspRequest(issuer, serial, true, nonce); !s.ok()) Fail(s.ToString());
  // One answer of each, checked by openssl: successful, good, the nonce echoed.
  for (const std::string& file : {plain, nonce}) {
    const std::string command = absl::StrCat("openssl ocsp -issuer ", issuer, " -serial ", serial,
                                             " -reqin ", file, " -url ", url, " -noverify");
    if (testing::RunCommand(command, &out) != 0 ||
        out.find(serial + ": good") == std::string::npos ||
        out.find("WARNING") != std::string::npos) {
      Fail(absl::StrCat(command, ": ", out));
    }
  }
  const auto wrk = [&](const std::string& name, const std::string& body, int connections) {
    const double cpu_start = ProcessCpuSeconds();
    auto r = RunWrk({.url = url,
                     .body_file = body,
                     .content_type = "application/ocsp-request",
                     .connections = connections,
                     .threads = absl::GetFlag(FLAGS_wrk_threads),
                     .seconds = seconds,
                     .work_dir = dir});
    if (!r.ok()) Fail(r.status().ToString());
    const double answers = r->per_s * std::max(1.0, seconds);
    return Result{.name = name,
                  .connections = connections,
                  .r = *r,
                  .cpu_us = answers > 0 ? 1e6 * (ProcessCpuSeconds() - cpu_start) / answers : 0};
  };

  std::vector<Result> results;
  for (const std::string& c : absl::GetFlag(FLAGS_connections)) {
    int connections = 0;
    if (!absl::SimpleAtoi(c, &connections) || connections < 1) Fail("--connections: " + c);
    // The ceiling of the nonce path, measured next to it: bare P-256 signatures on the same
    // token, every session busy.
    Result bare{.name = "bare_hsm_p256_sign", .r = {.load1 = Load1()}};
    const double cpu_start = ProcessCpuSeconds();
    auto rate = BareP256SignRate(hsm, sessions, seconds);
    if (!rate.ok()) Fail(rate.status().ToString());
    bare.r.per_s = bare.bare_per_s = *rate;
    bare.cpu_us = bare.bare_cpu_us = 1e6 * (ProcessCpuSeconds() - cpu_start) / (*rate * seconds);
    results.push_back(bare);
    for (const auto& [name, body] :
         {std::pair{"ocsp_cached", plain}, std::pair{"ocsp_nonce", nonce}}) {
      results.push_back(wrk(name, body, connections));
      results.back().bare_per_s = *rate;
      results.back().bare_cpu_us = bare.cpu_us;
    }
  }

  // "cpu ratio": the ratio the CPU figures predict when this bench has both cores to itself
  // (as the bare loop's 8 threads keep them busy): bare CPU per signature over the listener's
  // plus wrk's CPU per answer. It moves far less with other load than the rates do; the ratio of
  // record is still per_s over the bare rate.
  const auto cpu_ratio = [](const Result& r) {
    const double per_answer = r.cpu_us + r.r.wrk_cpu_us;
    return per_answer > 0 ? r.bare_cpu_us / per_answer : 0;
  };
  std::printf("%-20s %6s %10s %8s %8s %7s %8s %8s %9s %6s %6s\n", "case", "conns", "per s",
              "p50 ms", "p99 ms", "/bare", "cpu us", "wrk us", "cpu ratio", "fail", "load1");
  for (const Result& x : results) {
    std::printf("%-20s %6d %10.0f %8.2f %8.2f %7.3f %8.1f %8.1f %9.3f %6ld %6.2f\n", x.name.c_str(),
                x.connections, x.r.per_s, x.r.p50_ms, x.r.p99_ms, x.r.per_s / x.bare_per_s,
                x.cpu_us, x.r.wrk_cpu_us, cpu_ratio(x), x.r.failures, x.r.load1);
  }
  for (const Result& x : results) {
    std::string extra;
    if (x.name == "ocsp_nonce") extra = R"(,"target":0.8)";
    if (x.name == "ocsp_cached" && x.connections >= 32) extra = R"(,"target_p99_ms":20)";
    std::printf(
        "%s\n",
        absl::StrFormat(
            R"({"bench":"http","case":"%s","connections":%d,"per_s":%.1f,"p50_ms":%.2f,"p99_ms":%.2f,"ref":"bare_hsm_p256_sign","ref_per_s":%.1f,"ratio":%.3f%s,"cpu_us_per_req":%.1f,"wrk_cpu_us_per_req":%.1f,"cpu_ratio":%.3f,"failures":%d,"load1":%.2f})",
            x.name, x.connections, x.r.per_s, x.r.p50_ms, x.r.p99_ms, x.bare_per_s,
            x.r.per_s / x.bare_per_s, extra, x.cpu_us, x.r.wrk_cpu_us, cpu_ratio(x), x.r.failures,
            x.r.load1)
            .c_str());
  }
  http->reset();
  long failures = 0;
  for (const Result& r : results) failures += r.r.failures;
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace qsign::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return qsign::bench::Main();
}
