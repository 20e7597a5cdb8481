// PAdES signatures end to end through CSC signatures/signDoc: the gateway prepares the PDF
// (incremental update, signed attributes), the consent-app simulator approves (one approval per
// call), the signer signs in SoftHSM2, the TSA timestamps (B-T), the gateway writes the signed
// PDF. Two runs in one process: one document per call (one approval per document) and batches
// of --batch documents under one approval. The shares of time come from the gateway's
// Server-Timing header (prepare + finish = PDF and CMS writing, signer = SignHash incl. HSM,
// tsa = timestamp requests, approval = the app's round trip). The ceiling, measured in the same
// run: bare ECDSA P-256 signatures through hsm/ on the signer's token, one thread per client
// (every PAdES signature is one such C_Sign, and at B-T one more by the TSA).
//   bench_pades [--seconds=10] [--clients=4] [--batch=10] [--level=B-T|B-B] [--tsa_url=URL]
// Without --tsa_url, B-T uses qsign's own TSA (lifecycle + tsa stacks in this process, its HTTP
// listener on loopback), as signDoc reaches it in a deployment.
#include <httplib.h>
#include <unistd.h>

#include <atomic>
#include <iostream>
#include <map>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/http_load.h"
#include "common/cades/signed_data.h"
#include "common/cades/timestamp.h"
#include "common/clock.h"
#include "common/daemon/deferred_channel.h"
#include "common/log.h"
#include "common/pades/testing/test_pdfs.h"
#include "common/secret.h"
#include "consent/app_simulator.h"
#include "hsm/hsm.h"
#include "nlohmann/json.hpp"
#include "services/gateway/backend_grpc.h"
#include "services/gateway/gateway.h"
#include "services/gateway/gateway_http.h"
#include "services/gateway/relying_parties.h"
#include "services/gateway/testing/signing_stack.h"
#include "services/gateway/text.h"
#include "services/gateway/tokens.h"
#include "tests/testing/service_env.h"
#include "tests/testing/stacks.h"
#include "tests/testing/test_data.h"

ABSL_FLAG(double, seconds, 10, "how long each of the two runs lasts");
ABSL_FLAG(int, clients, 4, "relying parties calling signDoc at once, each for its own user");
ABSL_FLAG(int, batch, 10, "documents per signDoc call in the batch run");
ABSL_FLAG(std::string, level, "B-T", "B-T (signature timestamp) or B-B");
ABSL_FLAG(std::string, tsa_url, "",
          "RFC 3161 TSA over HTTP for B-T, e.g. a qsignd's http://127.0.0.1:8318/tsa; empty: "
          "qsign's TSA started in this process");
ABSL_FLAG(int, pages, 3, "pages of each test PDF");

namespace qsign {
namespace {

using Json = nlohmann::json;

void Check(const absl::Status& s, std::string_view what) {
  if (!s.ok()) {
    std::cerr << what << ": " << s << "\n";
    std::exit(1);
  }
}

// Until the TSA grants a timestamp (it asks lifecycle for its certificate after start-up).
absl::Status WaitForTsa(int port) {
  const std::string query = *cades::TimestampQuery(cades::Sha256("bench"), "", true);
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  httplib::Client http("127.0.0.1", port);
  while (absl::Now() < give_up) {
    auto res = http.Post("/tsa", query, "application/timestamp-query");
    if (res && res->status == 200 &&
        cades::ParseTimestampReply(res->body, cades::Sha256("bench"), "").ok()) {
      return absl::OkStatus();
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  return absl::DeadlineExceededError("no timestamp granted within 30 s");
}

struct RunResult {
  int64_t documents = 0;
  int64_t calls = 0;
  int64_t failures = 0;
  double seconds = 0;
  std::map<std::string, double> ms;  // Server-Timing totals.
};

RunResult RunOnce(int port, const std::vector<std::string>& credentials, int batch,
                  const std::string& level, const std::vector<std::string>& pdfs_b64,
                  double seconds) {
  RunResult out;
  absl::Mutex mu;
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::Seconds(seconds);
  std::vector<std::thread> clients;
  for (size_t i = 0; i < credentials.size(); ++i) {
    clients.emplace_back([&, i] {
      httplib::Client http("127.0.0.1", port);
      http.set_read_timeout(60, 0);
      auto token_res =
          http.Post("/csc/v2/oauth2/token",
                    "grant_type=client_credentials&client_id=bench&client_secret=bench-secret",
                    "application/x-www-form-urlencoded");
      if (!token_res || token_res->status != 200) std::exit(2);
      const std::string bearer =
          absl::StrCat("Bearer ", Json::parse(token_res->body)["access_token"].get<std::string>());
      Json docs = Json::array();
      for (int d = 0; d < batch; ++d) {
        docs.push_back({{"document", pdfs_b64[static_cast<size_t>(d)]},
                        {"signature_format", "P"},
                        {"conformance_level", absl::StrCat("Ades-", level)}});
      }
      const std::string body = Json{{"credentialID", credentials[i]}, {"documents", docs}}.dump();
      RunResult mine;
      while (absl::Now() < end) {
        auto res = http.Post("/csc/v2/signatures/signDoc", {{"Authorization", bearer}}, body,
                             "application/json");
        if (!res || res->status != 200) {
          ++mine.failures;
          if (res) std::cerr << res->status << " " << res->body.substr(0, 300) << "\n";
          continue;
        }
        ++mine.calls;
        mine.documents += batch;
        // "prepare;dur=1.2, approval;dur=3.4, ..."
        for (absl::string_view part :
             absl::StrSplit(res->get_header_value("Server-Timing"), ", ")) {
          std::pair<std::string, std::string> kv = absl::StrSplit(part, ";dur=");
          double v = 0;
          if (absl::SimpleAtod(kv.second, &v)) mine.ms[kv.first] += v;
        }
      }
      absl::MutexLock lock(&mu);
      out.calls += mine.calls;
      out.documents += mine.documents;
      out.failures += mine.failures;
      for (const auto& [k, v] : mine.ms) out.ms[k] += v;
    });
  }
  for (auto& t : clients) t.join();
  out.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return out;
}

Json Shares(const RunResult& r) {
  const double total = r.ms.count("total") ? r.ms.at("total") : 0;
  const auto share = [&](std::initializer_list<const char*> keys) {
    double v = 0;
    for (const char* k : keys) v += r.ms.count(k) ? r.ms.at(k) : 0;
    return total > 0 ? std::round(1000 * v / total) / 1000 : 0.0;
  };
  return {{"pdf_and_cms", share({"prepare", "finish"})},
          {"hsm_signer", share({"signer"})},
          {"tsa", share({"tsa"})},
          {"approval", share({"approval"})}};
}

int Run() {
  SetMinLogLevel(LogLevel::kError);
  const int clients = absl::GetFlag(FLAGS_clients);
  const std::string level = absl::GetFlag(FLAGS_level);
  auto env = testing::ServiceEnv::Start({.pool_size = 16, .hsm_sessions = 8});
  Check(env.status(), "postgresql and softhsm");
  if (level != "B-B" && level != "B-T") {
    std::cerr << "bench_pades: --level: B-T or B-B\n";
    return 1;
  }
  std::string tsa_url = absl::GetFlag(FLAGS_tsa_url);
  std::unique_ptr<testing::Stacks> tsa_stacks;
  if (level == "B-T" && tsa_url.empty()) {
    // qsign's TSA (its certificate from lifecycle) on a loopback HTTP port of its own.
    const int port = testing::FreeLoopbackPort();
    auto stacks = testing::Stacks::Start(
        **env, {.services = {"lifecycle", "tsa"}, .configure = [port](auto& c) {
                  c.mutable_tsa()->set_http_listen(absl::StrCat("127.0.0.1:", port));
                }});
    Check(stacks.status(), "lifecycle and tsa");
    tsa_stacks = *std::move(stacks);
    tsa_url = absl::StrCat("http://127.0.0.1:", port, "/tsa");
    Check(WaitForTsa(port), "the TSA");
  }
  auto stack = gateway::testing::SigningStack::Start(
      env->get(), {.max_hashes_per_authorization = 100,
                   .max_batch = 100,
                   // One simulated app per client approves every call at once: no per-device
                   // limit (a person's phone is limited to 20 approvals a minute).
                   .approvals_per_device_per_minute = 0});
  Check(stack.status(), "signer and consent");

  std::vector<std::string> credentials;
  std::vector<std::unique_ptr<consent::ConsentAppSimulator>> apps;
  for (int i = 0; i < clients; ++i) {
    const std::string account = absl::StrCat("acct-bench-", i);
    const std::string credential = absl::StrCat("cred-bench-", i);
    Check((*stack)->ActiveCredential(credential, account).status(), "credential");
    auto app = (*stack)->EnrolledApp(account, testing::kPin);
    Check(app.status(), "app");
    (*app)->SetAutoDecision(consent::Decision::kApprove, testing::kPin);
    credentials.push_back(credential);
    apps.push_back(*std::move(app));
  }

  gateway::GatewayConfig config;
  config.tsa_url = tsa_url;
  auto server = gateway::testing::GatewayOverStack::Start(
      **stack, config, {.threads = 2 * clients + 4, .max_body_bytes = 64 << 20}, "bench",
      "bench-secret");
  Check(server.status(), "gateway");

  const double seconds = absl::GetFlag(FLAGS_seconds);
  const int batch = absl::GetFlag(FLAGS_batch);
  // Distinct documents: the same document twice in one call would be the same hash twice.
  std::vector<std::string> pdfs_b64;
  std::string pdf;
  for (int d = 0; d < std::max(batch, 1); ++d) {
    pdf = pades::testing::SimplePdf(absl::GetFlag(FLAGS_pages), absl::StrCat("Ugovor o radu ", d));
    pdfs_b64.push_back(gateway::EncodeBase64(pdf));
  }
  auto bare_rate = bench::BareP256SignRate(&(*env)->hsm("signer"), clients, seconds);
  Check(bare_rate.status(), "bare signing");
  const double bare = *bare_rate;
  const RunResult single = RunOnce((*server)->port(), credentials, 1, level, pdfs_b64, seconds);
  const RunResult batched =
      RunOnce((*server)->port(), credentials, batch, level, pdfs_b64, seconds);

  const double single_rate = static_cast<double>(single.documents) / single.seconds;
  const double batch_rate = static_cast<double>(batched.documents) / batched.seconds;
  const auto ratio = [bare](double rate) {
    return bare > 0 ? std::round(1000 * rate / bare) / 1000 : 0.0;
  };
  absl::PrintF(
      "bench_pades: PAdES %s, %d clients, %d-page PDF (%d bytes): bare HSM ECDSA P-256 %.1f/s; "
      "one approval per document %.1f signatures/s (%.3f of bare); batches of %d under one "
      "approval %.1f signatures/s (%.3f of bare); failures %d/%d\n",
      level, clients, absl::GetFlag(FLAGS_pages), pdf.size(), bare, single_rate, ratio(single_rate),
      batch, batch_rate, ratio(batch_rate), single.failures, batched.failures);
  Json line = {{"bench", "pades"},
               {"level", level},
               {"clients", clients},
               {"pdf_bytes", pdf.size()},
               {"bare_sign_per_s", std::round(10 * bare) / 10},
               {"single_signatures_per_s", std::round(10 * single_rate) / 10},
               {"single_ratio", ratio(single_rate)},
               {"single_share", Shares(single)},
               {"batch", batch},
               {"batch_signatures_per_s", std::round(10 * batch_rate) / 10},
               {"batch_ratio", ratio(batch_rate)},
               {"batch_share", Shares(batched)},
               {"failures", single.failures + batched.failures}};
  std::cout << line.dump() << std::endl;
  for (auto& app : apps) app->StopWatching();
  server->reset();
  if (tsa_stacks) tsa_stacks->Shutdown(absl::ZeroDuration());
  return single.failures + batched.failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace qsign

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return qsign::Run();
}
