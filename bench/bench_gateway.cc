// What the CSC gateway costs on top of the signer, and OCSP with a nonce on qsignd's own lifecycle
// stack, in one run:
//   grpc_signhash   Signer.SignHash over gRPC on loopback, as the gateway calls it (its service
//                   credential), one hash and its own SAD per call;
//   csc_signhash    the same through POST /csc/v2/signatures/signHash (common/http, JSON, OAuth
//                   bearer token of a relying party, then the same gRPC call), keep-alive HTTP;
//                   ratio = csc / grpc (the gateway should cost little: close to 1);
//   ocsp_nonce      POST /ocsp with a nonce (wrk, keep-alive) to the lifecycle stack's listener as
//                   qsignd builds it (the status from lifecycle's status cache over PostgreSQL,
//                   kept exact by LISTEN/NOTIFY; signed in SoftHSM2 each time; the signed-response
//                   budget off) for a serial never issued (unknown), ratio to bare P-256 signing
//                   on its token.
// SADs are minted beforehand with consent's SAD key (what Authorize would return after the
// user's approval), so that neither path waits for an approval.
//   build/bench/bench_gateway [--clients=4] [--calls=4000] [--seconds=4] [--connections=32]
// Prints a table, then one JSON line per case (contracts.md: bench JSON lines).
#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench/http_load.h"
#include "common/clock.h"
#include "common/daemon/deferred_channel.h"
#include "common/log.h"
#include "common/secret.h"
#include "consent/sad.h"
#include "nlohmann/json.hpp"
#include "qsign/v1/signer.grpc.pb.h"
#include "services/gateway/testing/signing_stack.h"
#include "services/gateway/text.h"
#include "services/lifecycle/stack.h"
#include "tests/testing/service_env.h"
#include "tests/testing/shell.h"
#include "tests/testing/stacks.h"
#include "tests/testing/test_data.h"

ABSL_FLAG(int, clients, 4, "concurrent signHash clients (one credential each)");
ABSL_FLAG(int, calls, 4000, "signHash calls per path, spread over the clients");
ABSL_FLAG(double, seconds, 4.0, "duration of the OCSP case and of the bare signing rate");
ABSL_FLAG(int, connections, 32, "keep-alive connections of the OCSP case (wrk)");

namespace qsign::bench {
namespace {

namespace pb = ::qsign::v1;
using Json = nlohmann::json;

constexpr char kSha256Oid[] = "2.16.840.1.101.3.4.2.1";
constexpr char kEcdsaSha256Oid[] = "1.2.840.10045.4.3.2";

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "bench_gateway: %s\n", what.c_str());
  std::exit(1);
}

void Check(const absl::Status& s, const std::string& what) {
  if (!s.ok()) Fail(absl::StrCat(what, ": ", s.ToString()));
}

struct Call {
  std::string credential_id;
  std::string hash;  // 32 bytes.
  std::string sad;
};

struct Timing {
  double per_s = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  long failures = 0;
  double load1 = 0;
};

// Runs `calls` (client c takes every clients-th one) with `one(client, call)`; latencies kept.
template <typename F>
Timing Timed(const std::vector<Call>& calls, int clients, F one) {
  Timing t{.load1 = Load1()};
  std::vector<std::vector<double>> ms(static_cast<size_t>(clients));
  std::atomic<long> failures{0};
  const absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      for (size_t i = static_cast<size_t>(c); i < calls.size(); i += static_cast<size_t>(clients)) {
        const absl::Time t0 = absl::Now();
        if (!one(c, calls[i])) ++failures;
        ms[static_cast<size_t>(c)].push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
      }
    });
  }
  for (auto& th : threads) th.join();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::vector<double> all;
  for (auto& v : ms) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  t.per_s = static_cast<double>(calls.size()) / seconds;
  if (!all.empty()) {
    t.p50_ms = all[all.size() / 2];
    t.p99_ms = all[std::min(all.size() - 1, all.size() * 99 / 100)];
  }
  t.failures = failures.load();
  return t;
}

int Main() {
  SetMinLogLevel(LogLevel::kError);
  const int clients = std::max(1, absl::GetFlag(FLAGS_clients));
  const int calls_per_path = std::max(clients, absl::GetFlag(FLAGS_calls));
  const double seconds = absl::GetFlag(FLAGS_seconds);
  std::string out;
  if (testing::RunCommand("command -v wrk", &out) != 0) Fail("wrk not found (Debian package wrk)");

  auto env = testing::ServiceEnv::Start({.pool_size = 16, .hsm_sessions = 8});
  Check(env.status(), "postgresql and softhsm");
  auto stack = gateway::testing::SigningStack::Start(env->get(), {});
  Check(stack.status(), "signer and consent");
  std::vector<std::string> credentials, accounts;
  for (int i = 0; i < clients; ++i) {
    accounts.push_back(absl::StrCat("acct-bench-", i));
    credentials.push_back(absl::StrCat("cred-bench-", i));
    Check((*stack)->ActiveCredential(credentials.back(), accounts.back()).status(), "credential");
  }

  // Every call's SAD, as consent mints it after an approval: one hash, one signature.
  auto minter = consent::SadMinter::New(&(*env)->hsm("consent"), "qsign-sad-1");
  Check(minter.status(), "SAD minter");
  std::vector<Call> grpc_calls(static_cast<size_t>(calls_per_path));
  std::vector<Call> csc_calls(static_cast<size_t>(calls_per_path));
  {
    std::vector<std::thread> minting;
    std::atomic<bool> failed{false};
    for (int c = 0; c < clients; ++c) {
      minting.emplace_back([&, c] {
        for (size_t i = static_cast<size_t>(c); i < 2 * grpc_calls.size();
             i += static_cast<size_t>(clients)) {
          Call& call = i < grpc_calls.size() ? grpc_calls[i] : csc_calls[i - grpc_calls.size()];
          const size_t who = i % static_cast<size_t>(clients);
          call.credential_id = credentials[who];
          call.hash = absl::StrFormat("%032d", i);
          auto sad = (*minter)->Mint({.account_id = accounts[who],
                                      .credential_id = call.credential_id,
                                      .hash_algorithm_oid = kSha256Oid,
                                      .hashes = {call.hash},
                                      .num_signatures = 1},
                                     absl::Now(), absl::Minutes(10));
          if (!sad.ok()) {
            failed = true;
            return;
          }
          call.sad = *std::move(sad);
        }
      });
    }
    for (auto& t : minting) t.join();
    if (failed.load()) Fail("minting SADs");
  }

  // The gateway as gateway::kStack builds it, over the same signer channel.
  gateway::GatewayHttpOptions http_options{.threads = 64};
  http_options.limits.max_connections_per_address = 0;
  auto server =
      gateway::testing::GatewayOverStack::Start(**stack, {}, http_options, "bench", "bench-secret");
  Check(server.status(), "gateway");

  const std::string service_auth = "Service gateway.gateway-secret";
  std::vector<std::unique_ptr<pb::Signer::Stub>> stubs;
  std::vector<std::unique_ptr<httplib::Client>> http;
  std::string bearer;
  for (int c = 0; c < clients; ++c) {
    stubs.push_back(pb::Signer::NewStub((*stack)->signer_channel()));
    http.push_back(std::make_unique<httplib::Client>("127.0.0.1", (*server)->port()));
    http.back()->set_keep_alive(true);
    http.back()->set_tcp_nodelay(true);  // As curl: no Nagle wait between header and body.
    http.back()->set_read_timeout(30, 0);
  }
  {
    auto res =
        http[0]->Post("/csc/v2/oauth2/token",
                      "grant_type=client_credentials&client_id=bench&client_secret=bench-secret",
                      "application/x-www-form-urlencoded");
    if (!res || res->status != 200) Fail("oauth2/token");
    bearer = absl::StrCat("Bearer ", Json::parse(res->body)["access_token"].get<std::string>());
  }
  const auto grpc_one = [&](int c, const Call& call) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", service_auth);
    pb::SignHashRequest req;
    req.set_credential_id(call.credential_id);
    req.set_hash_algorithm_oid(kSha256Oid);
    req.set_sign_algorithm_oid(kEcdsaSha256Oid);
    req.add_hashes(call.hash);
    req.set_sad(call.sad);
    pb::SignHashResponse res;
    const grpc::Status s = stubs[static_cast<size_t>(c)]->SignHash(&ctx, req, &res);
    if (!s.ok()) std::fprintf(stderr, "SignHash: %s\n", s.error_message().c_str());
    return s.ok() && res.signatures_size() == 1;
  };
  const auto csc_one = [&](int c, const Call& call) {
    const std::string body = Json{
        {"credentialID", call.credential_id},
        {"SAD", call.sad},
        {"hashes", {gateway::EncodeBase64(call.hash)}},
        {"hashAlgorithmOID", kSha256Oid},
        {"signAlgo",
         kEcdsaSha256Oid}}.dump();
    auto res = http[static_cast<size_t>(c)]->Post(
        "/csc/v2/signatures/signHash", {{"Authorization", bearer}}, body, "application/json");
    if (res && res->status != 200) {
      std::fprintf(stderr, "signHash: %d %s\n", res->status, res->body.substr(0, 200).c_str());
    }
    return res && res->status == 200;
  };
  // Alternating halves, so that neither path has the warmer cache or the longer journal.
  Timing grpc_t, csc_t;
  {
    const size_t half = grpc_calls.size() / 2;
    const std::vector<Call> g1(grpc_calls.begin(), grpc_calls.begin() + static_cast<long>(half));
    const std::vector<Call> g2(grpc_calls.begin() + static_cast<long>(half), grpc_calls.end());
    const std::vector<Call> h1(csc_calls.begin(), csc_calls.begin() + static_cast<long>(half));
    const std::vector<Call> h2(csc_calls.begin() + static_cast<long>(half), csc_calls.end());
    const Timing a = Timed(g1, clients, grpc_one);
    const Timing b = Timed(h1, clients, csc_one);
    const Timing a2 = Timed(g2, clients, grpc_one);
    const Timing b2 = Timed(h2, clients, csc_one);
    const auto merge = [](const Timing& x, const Timing& y, size_t nx, size_t ny) {
      const double seconds = static_cast<double>(nx) / x.per_s + static_cast<double>(ny) / y.per_s;
      return Timing{.per_s = static_cast<double>(nx + ny) / seconds,
                    .p50_ms = (x.p50_ms + y.p50_ms) / 2,
                    .p99_ms = std::max(x.p99_ms, y.p99_ms),
                    .failures = x.failures + y.failures,
                    .load1 = x.load1};
    };
    grpc_t = merge(a, a2, g1.size(), g2.size());
    csc_t = merge(b, b2, h1.size(), h2.size());
  }
  server->reset();

  // OCSP with a nonce on the lifecycle stack qsignd runs.
  auto lifecycle = testing::Stacks::Start(
      **env, {.services = {"lifecycle"}, .configure = [](config::v1::ServerConfig& c) {
                c.mutable_lifecycle()->set_http_listen("127.0.0.1:0");
                c.mutable_lifecycle()->set_ocsp_signatures_per_second(0);
                c.mutable_http()->set_max_connections_per_address(0);
              }});
  Check(lifecycle.status(), "lifecycle");
  const int ocsp_port = lifecycle::HttpPort((*lifecycle)->server().stack("lifecycle"));
  const std::string base = absl::StrCat("http://127.0.0.1:", ocsp_port);
  const std::string dir = (*env)->token().dir();
  const std::string issuer = dir + "/bench-gw-issuer.pem";
  if (testing::RunCommand(
          absl::StrCat("curl -sf ", base, "/ca/qualified.crt | openssl x509 -inform DER -out ",
                       issuer),
          &out) != 0) {
    Fail(absl::StrCat("the qualified CA's certificate: ", out));
  }
  const std::string nonce = dir + "/bench-gw-nonce.der";
  Check(MakeOcspRequest(issuer, "0x51A7E5C0FFEE", true, nonce), "OCSP request");
  if (testing::RunCommand(
          absl::StrCat("openssl ocsp -issuer ", issuer, " -serial 0x51A7E5C0FFEE -reqin ", nonce,
                       " -url ", base, "/ocsp -noverify"),
          &out) != 0 ||
      out.find("0x51A7E5C0FFEE: unknown") == std::string::npos) {
    Fail(absl::StrCat("openssl ocsp: ", out));
  }
  const double bare_load = Load1();
  double cpu_start = ProcessCpuSeconds();
  auto bare = BareP256SignRate(&(*env)->hsm("lifecycle"), 8, seconds);
  Check(bare.status(), "bare signing");
  // CPU of this process per signature / per answer (the listener, the responder and libpq;
  // PostgreSQL's backend and wrk are other processes: wrk's is in ocsp->wrk_cpu_us).
  const double bare_cpu_us = 1e6 * (ProcessCpuSeconds() - cpu_start) / (*bare * seconds);
  cpu_start = ProcessCpuSeconds();
  auto ocsp = RunWrk({.url = base + "/ocsp",
                      .body_file = nonce,
                      .content_type = "application/ocsp-request",
                      .connections = absl::GetFlag(FLAGS_connections),
                      .threads = 2,
                      .seconds = seconds,
                      .work_dir = dir});
  Check(ocsp.status(), "wrk");
  const double ocsp_answers = ocsp->per_s * std::max(1.0, seconds);
  const double ocsp_cpu_us =
      ocsp_answers > 0 ? 1e6 * (ProcessCpuSeconds() - cpu_start) / ocsp_answers : 0;
  (*lifecycle)->Shutdown(absl::ZeroDuration());

  const double ratio = grpc_t.per_s > 0 ? csc_t.per_s / grpc_t.per_s : 0;
  std::printf("%-22s %9s %8s %8s %7s %5s %6s\n", "case", "per s", "p50 ms", "p99 ms", "ratio",
              "fail", "load1");
  std::printf("%-22s %9.1f %8.2f %8.2f %7s %5ld %6.2f\n", "grpc_signhash", grpc_t.per_s,
              grpc_t.p50_ms, grpc_t.p99_ms, "", grpc_t.failures, grpc_t.load1);
  std::printf("%-22s %9.1f %8.2f %8.2f %7.3f %5ld %6.2f\n", "csc_signhash (HTTP)", csc_t.per_s,
              csc_t.p50_ms, csc_t.p99_ms, ratio, csc_t.failures, csc_t.load1);
  std::printf("%-22s %9.1f %8s %8s %7s %5d %6.2f  cpu %.1f us/signature\n", "bare_hsm_p256_sign",
              *bare, "", "", "", 0, bare_load, bare_cpu_us);
  std::printf("%-22s %9.1f %8.2f %8.2f %7.3f %5ld %6.2f  cpu %.1f us/answer, wrk %.1f us\n",
              "ocsp_nonce (lifecycle)", ocsp->per_s, ocsp->p50_ms, ocsp->p99_ms,
              ocsp->per_s / *bare, ocsp->failures, ocsp->load1, ocsp_cpu_us, ocsp->wrk_cpu_us);
  std::printf(
      "%s\n",
      absl::StrFormat(
          R"({"bench":"gateway","case":"csc_signhash","clients":%d,"per_s":%.1f,"p50_ms":%.2f,"p99_ms":%.2f,"ref":"grpc_signhash","ref_per_s":%.1f,"ref_p50_ms":%.2f,"ratio":%.3f,"failures":%d,"load1":%.2f})",
          clients, csc_t.per_s, csc_t.p50_ms, csc_t.p99_ms, grpc_t.per_s, grpc_t.p50_ms, ratio,
          csc_t.failures + grpc_t.failures, csc_t.load1)
          .c_str());
  std::printf(
      "%s\n",
      absl::StrFormat(
          R"({"bench":"gateway","case":"ocsp_nonce","connections":%d,"per_s":%.1f,"p50_ms":%.2f,"p99_ms":%.2f,"ref":"bare_hsm_p256_sign","ref_per_s":%.1f,"ratio":%.3f,"cpu_us_per_req":%.1f,"wrk_cpu_us_per_req":%.1f,"ref_cpu_us":%.1f,"failures":%d,"load1":%.2f})",
          absl::GetFlag(FLAGS_connections), ocsp->per_s, ocsp->p50_ms, ocsp->p99_ms, *bare,
          ocsp->per_s / *bare, ocsp_cpu_us, ocsp->wrk_cpu_us, bare_cpu_us, ocsp->failures,
          ocsp->load1)
          .c_str());
  const long failures = csc_t.failures + grpc_t.failures + ocsp->failures;
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace qsign::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return qsign::bench::Main();
}
