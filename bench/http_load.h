// What bench_http and bench_gateway share: wrk (Debian's wrk, an independent HTTP/1.1 load
// generator) driving keep-alive connections with one fixed POST body, OCSP requests made by
// `openssl ocsp -reqout`, and the load average printed beside every figure.
#ifndef QSIGN_BENCH_HTTP_LOAD_H_
#define QSIGN_BENCH_HTTP_LOAD_H_

#include <string>

#include "absl/status/statusor.h"
#include "hsm/hsm.h"

namespace qsign::bench {

// The 1-minute load average (/proc/loadavg).
double Load1();

// CPU time of this process so far, user + system, in seconds.
double ProcessCpuSeconds();

struct WrkRun {
  std::string url;
  std::string body_file;     // POSTed as is on every request.
  std::string content_type;  // Of that body.
  int connections = 32;      // Kept alive for the whole run.
  int threads = 2;
  double seconds = 4;
  std::string work_dir;  // Where the Lua script is written.
};

struct WrkResult {
  double per_s = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  long failures = 0;  // Connect/read/write errors, timeouts and non-2xx answers.
  double load1 = 0;   // At the start.
  // wrk's own CPU time (user + system, its threads and the kernel work done for them) per
  // request: on two cores the load generator's share is CPU the server cannot have.
  double wrk_cpu_us = 0;
};

// Runs wrk; an error when it cannot run or its summary cannot be read.
absl::StatusOr<WrkResult> RunWrk(const WrkRun& run);

// `openssl ocsp -issuer issuer_pem -serial serial [-no_nonce] -reqout out_file`.
absl::Status MakeOcspRequest(const std::string& issuer_pem, const std::string& serial, bool nonce,
                             const std::string& out_file);

// ECDSA P-256 signatures per second through hsm/ on `hsm` (a key "bench-bare", made there once),
// `threads` threads for `seconds`: the ceiling of anything that signs once per answer.
absl::StatusOr<double> BareP256SignRate(hsm::Hsm* hsm, int threads, double seconds);

}  // namespace qsign::bench

#endif  // QSIGN_BENCH_HTTP_LOAD_H_
