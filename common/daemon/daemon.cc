#include "common/daemon/daemon.h"

#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/clock.h"
#include "common/daemon/config.h"
#include "common/daemon/stack_helpers.h"
#include "common/daemon/stack_server.h"
#include "common/db/pg.h"
#include "common/grpc_server.h"
#include "common/health.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/metrics_http.h"
#include "common/strings.h"
#include "common/tls.h"
#include "hsm/hsm.h"

ABSL_FLAG(std::string, config, "",
          "the process's config file (text-format qsign.config.v1.ServerConfig)");
ABSL_FLAG(bool, check_config, false,
          "validate --config (reading every file it names) and exit: 0 valid, 1 not");

namespace qsign::daemon {
namespace {

namespace cfg = ::qsign::config::v1;

const sigset_t& StopSignals() {
  static const sigset_t set = [] {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGINT);
    sigaddset(&s, SIGTERM);
    return s;
  }();
  return set;
}

// How this process's gRPC listener and channels are secured: mutual TLS with the allow-lists
// of the config, or plaintext with insecure_dev.
struct Transport {
  std::shared_ptr<grpc::ServerCredentials> server;    // nullptr: plaintext.
  std::shared_ptr<grpc::ChannelCredentials> channel;  // Insecure with insecure_dev.
  std::string own_name;  // This process's identity (DNS SAN), with TLS.

  static absl::StatusOr<Transport> FromConfig(const cfg::ServerConfig& config) {
    Transport t;
    if (!config.has_tls()) {
      t.channel = grpc::InsecureChannelCredentials();
      return t;
    }
    auto policy = tls::AccessPolicy::New(config.allow());
    if (!policy.ok()) return policy.status();
    auto server = tls::ServerCredentialsFromConfig(config.tls(), *policy);
    if (!server.ok()) return server.status();
    auto channel = tls::ChannelCredentialsFromConfig(config.tls());
    if (!channel.ok()) return channel.status();
    auto name = tls::OwnIdentity(config.tls());
    if (!name.ok()) return name.status();
    t.server = *std::move(server);
    t.channel = *std::move(channel);
    t.own_name = *std::move(name);
    return t;
  }
};

// The health probe of a role's token reads a key that role's stack relies on. Without one (the
// signer's token holds only citizens' keys) a NOT_FOUND answer still proves the token answers.
HealthCheck HsmHealthCheck(const std::string& role, const std::string& key, hsm::Hsm* hsm) {
  const std::string name = absl::StrCat("hsm.", role);
  if (key.empty()) {
    return {name, [hsm] {
              absl::Status s = hsm->GetPublicKey("qsign-health-probe").status();
              return s.code() == absl::StatusCode::kNotFound ? absl::OkStatus() : s;
            }};
  }
  return {name, [hsm, key] { return hsm->GetPublicKey(key).status(); }};
}

// Removes the collectors it added from the global registry, which outlives what they read.
struct Collectors {
  std::vector<metrics::Registry::CollectorId> ids;
  ~Collectors() {
    for (auto id : ids) metrics::Registry::Global().RemoveCollector(id);
  }
};

}  // namespace

absl::Status Run(const cfg::ServerConfig& config, std::string_view component_view,
                 absl::Span<const StackFactory> factories) {
  const std::string component(component_view);
  auto fail = [&](std::string_view what, const absl::Status& status) {
    Log(LogLevel::kError, component, what, {{"status", status.ToString()}});
    return status;
  };
  if (config.insecure_dev()) {
    Log(LogLevel::kWarning, component,
        "insecure_dev: plaintext gRPC, no client certificates, no allow-lists; for a laptop only");
  }

  auto transport = Transport::FromConfig(config);
  if (!transport.ok()) return fail("tls", transport.status());

  // The HSM and the pool every backend stack here shares.
  const bool backend = config.has_signer() || config.has_consent() || config.has_identity() ||
                       config.has_lifecycle() || config.has_tsa();
  std::unique_ptr<hsm::HsmTokens> tokens;
  std::unique_ptr<db::Pool> pool;
  if (backend) {
    auto t = hsm::OpenPkcs11Tokens(HsmTokensConfig(config.hsm()));
    if (!t.ok()) return fail("hsm", t.status());
    tokens = *std::move(t);
  }
  // The web alone uses a database only to share browser sessions between its replicas.
  if (backend || (config.has_web() && !config.database().conninfo().empty())) {
    auto p = db::Pool::New(
        {.conninfo = config.database().conninfo(), .size = config.database().pool_size()});
    if (!p.ok()) return fail("postgresql", p.status());
    pool = *std::move(p);
  }
  Collectors collectors;
  collectors.ids.push_back(metrics::Registry::Global().AddCollector(
      [insecure = config.insecure_dev()](metrics::Registry& r) {
        r.SetGauge("qsign_insecure_dev", "1 when this process runs with insecure_dev (no TLS).", {},
                   insecure ? 1 : 0);
      }));

  auto stacks = StackServer::Start({.config = &config,
                                    .tokens = tokens.get(),
                                    .pool = pool.get(),
                                    .clock = &RealClock::Get(),
                                    .server_credentials = transport->server,
                                    .channel_credentials = transport->channel,
                                    .own_name = transport->own_name,
                                    .component = component},
                                   factories);
  if (!stacks.ok()) return stacks.status();  // Logged by StackServer.
  GrpcServer* server = (*stacks)->server();

  std::vector<HealthCheck> checks;
  if (pool) {
    checks.push_back({"postgresql", [p = pool.get()] { return p->Exec("SELECT 1").status(); }});
  }
  if (tokens) {
    for (const std::string& role : tokens->roles()) {
      checks.push_back(HsmHealthCheck(role, (*stacks)->hsm_probe_key(role), tokens->Get(role)));
    }
  }
  std::unique_ptr<HealthProber> health;
  if (server) health = std::make_unique<HealthProber>(server, checks, absl::Seconds(2));
  // Kubernetes' gRPC probes cannot present a client certificate: a plaintext listener that
  // serves grpc.health.v1 only, kept truthful by its own prober.
  std::unique_ptr<GrpcServer> health_server;
  std::unique_ptr<HealthProber> health_only;
  if (!config.observability().health_listen().empty()) {
    auto s = GrpcServer::Start({.listen_address = config.observability().health_listen()}, {});
    if (!s.ok()) return fail("listen", Field("observability.health_listen", s.status()));
    health_server = *std::move(s);
    health_only = std::make_unique<HealthProber>(health_server.get(), checks, absl::Seconds(2));
  }

  std::unique_ptr<metrics::MetricsHttpServer> metrics_http;
  if (!config.observability().metrics_listen().empty()) {
    if (pool) {
      collectors.ids.push_back(
          metrics::Registry::Global().AddCollector([p = pool.get()](metrics::Registry& r) {
            const db::PoolStats stats = p->Stats();
            r.SetGauge("qsign_db_pool_connections", "PostgreSQL connections by state.",
                       {{"state", "in_use"}}, stats.in_use);
            r.SetGauge("qsign_db_pool_connections", "PostgreSQL connections by state.",
                       {{"state", "open"}}, stats.open);
            r.SetGauge("qsign_db_pool_size", "Configured PostgreSQL pool size.", {}, stats.size);
          }));
    }
    // With TLS, HTTPS asking the scraper for a client certificate from tls.client_ca_file.
    auto m = config.has_tls()
                 ? metrics::MetricsHttpServer::Start(
                       config.observability().metrics_listen(), &metrics::Registry::Global(),
                       {.cert_file = config.tls().cert_file(),
                        .key_file = config.tls().key_file(),
                        .client_ca_file = config.tls().client_ca_file()})
                 : metrics::MetricsHttpServer::Start(config.observability().metrics_listen(),
                                                     &metrics::Registry::Global());
    if (!m.ok()) return fail("metrics", Field("observability.metrics_listen", m.status()));
    metrics_http = *std::move(m);
  }

  // The gateway's URL is on its own "CSC gateway listener" line.
  Log(LogLevel::kInfo, component, "ready",
      {{"listen", server ? config.listen() : ""},
       {"port", server ? std::to_string(server->port()) : ""},
       {"services", absl::StrJoin((*stacks)->service_names(), ",")}});
  // SIGINT/SIGTERM are blocked in every thread (see Main) and taken here synchronously.
  int sig = 0;
  sigwait(&StopSignals(), &sig);
  Log(LogLevel::kInfo, component, "stopping: finishing in-flight calls");
  health.reset();  // Before the server goes away: the prober updates its health status.
  health_only.reset();
  // Load balancers and readiness probes see NOT_SERVING for the whole grace period, not only
  // once gRPC's shutdown has begun.
  if (server) server->SetServing(false);
  if (health_server) health_server->SetServing(false);
  // The gateway's calls into this process finish first, then consent's open streams end and
  // lifecycle's scheduler stops, then gRPC finishes what is in flight.
  (*stacks)->Shutdown(absl::Seconds(config.observability().grace_seconds()));
  if (health_server) health_server->Shutdown(absl::ZeroDuration());
  stacks->reset();
  Log(LogLevel::kInfo, component, "stopped");
  return absl::OkStatus();
}

int Main(int argc, char** argv, std::string_view program_view,
         std::vector<StackFactory> factories) {
  // Before any thread exists, so that every thread inherits the mask.
  pthread_sigmask(SIG_BLOCK, &StopSignals(), nullptr);
  const std::string program(program_view);
  // One factory: a per-service binary, whose config has exactly that section.
  const std::string_view only = factories.size() == 1 ? factories[0].section : "";
  absl::SetProgramUsageMessage(
      only.empty()
          ? absl::StrCat(program,
                         " --config=FILE [--check_config]: the qsign services named in FILE")
          : absl::StrCat(program, " --config=FILE [--check_config]: the ", Av(only),
                         " service; FILE has exactly the ", Av(only), " section"));
  absl::ParseCommandLine(argc, argv);
  const std::string path = absl::GetFlag(FLAGS_config);
  const bool check = absl::GetFlag(FLAGS_check_config);
  auto config = LoadConfig(path);
  absl::Status status = config.status();
  if (status.ok() && !only.empty()) {
    const std::vector<std::string> present = ConfiguredServices(*config);
    if (present.size() != 1 || present[0] != only) {
      status = absl::InvalidArgumentError(absl::StrCat(
          path, ": ", program, " runs only the ", Av(only), " service, the config has section(s) ",
          present.empty() ? "none" : absl::StrJoin(present, ", "),
          " (use qsignd for several in one process)"));
    }
  }
  if (check && status.ok()) {
    // The certificates and key parse and match, the allow-list names known groups.
    if (auto transport = Transport::FromConfig(*config); !transport.ok()) {
      status = transport.status();
    }
  }
  if (check) {
    if (!status.ok()) {
      // One line a problem.
      std::fprintf(stderr, "config: %s\n",
                   absl::StrReplaceAll(status.message(), {{"\n", "\nconfig: "}}).c_str());
      return 1;
    }
    std::printf("%s: OK (%s)\n", path.c_str(),
                absl::StrJoin(ConfiguredServices(*config), ", ").c_str());
    return 0;
  }
  if (!status.ok()) {
    Log(LogLevel::kError, program, "config", {{"error", Sv(status.message())}});
    return 1;
  }
  return Run(*config, program, factories).ok() ? 0 : 1;
}

}  // namespace qsign::daemon
