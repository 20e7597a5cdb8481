#include "tests/faults/fault_stack.h"

#include <fstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/auth/credential_table.h"
#include "common/db/pg.h"
#include "gtest/gtest.h"
#include "tests/testing/qsignd_process.h"
#include "tests/testing/signing_load.h"
#include "tests/testing/test_data.h"

namespace qsign::testing {

config::v1::ServerConfig FaultStackConfig(const ServiceEnv& env,
                                          const std::vector<std::string>& services) {
  const std::string dir = env.token().dir();
  std::ofstream(dir + "/pepper") << std::string(32, 'p');
  std::ofstream(dir + "/operators")
      << kOperatorId << " " << absl::BytesToHexString(auth::Sha256(kOperatorSecret)) << "\n";
  // The test plays lifecycle towards the signer with kSigningLifecycleSecret; a lifecycle
  // service in the config presents the same one.
  const std::string services_file = WriteLifecycleServicesFile(dir);
  std::ofstream(dir + "/lifecycle.secret") << kSigningLifecycleSecret << "\n";
  for (const char* service : {"identity", "consent"}) {
    std::ofstream(services_file, std::ios::app)
        << service << " " << absl::BytesToHexString(auth::Sha256(ServiceSecret(service))) << "\n";
    std::ofstream(absl::StrCat(dir, "/", service, ".secret")) << ServiceSecret(service) << "\n";
  }
  config::v1::ServerConfig config =
      LaptopConfig(env.conninfo(), env.TokensConfig(4), services, dir);
  config.set_services_file(services_file);
  config.set_operators_file(dir + "/operators");
  config.mutable_database()->set_pool_size(8);
  if (config.has_identity()) {
    config.mutable_identity()->set_client_secret_file(dir + "/identity.secret");
    // The tests' portals log in again and again, all from 127.0.0.1.
    config.mutable_identity()->set_logins_per_account_per_minute(0);
    config.mutable_identity()->set_logins_per_address_per_minute(0);
  }
  if (config.has_consent()) {
    config::v1::ConsentService& c = *config.mutable_consent();
    c.set_client_secret_file(dir + "/consent.secret");
    c.set_pin_pepper_file(dir + "/pepper");
    c.set_device_ca_cert_file(dir + "/device-ca.der");
    c.set_pin_argon2_m_kib(256);
    c.set_enrollments_per_address_per_minute(0);
    c.set_approvals_per_device_per_minute(0);
    c.set_authorizations_per_account_per_minute(0);
  }
  if (config.has_lifecycle()) {
    config.mutable_lifecycle()->set_client_secret_file(dir + "/lifecycle.secret");
  }
  return config;
}

std::string Login(v1::Identity::Stub& identity, const std::string& username) {
  v1::StartLoginRequest start;
  start.set_username(username);
  start.mutable_client()->set_client_address("198.51.100.23");
  v1::StartLoginResponse started;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    if (!identity.StartLogin(&ctx, start, &started).ok()) return "";
  }
  v1::AwaitLoginRequest await;
  await.set_login_id(started.login_id());
  await.mutable_max_wait()->set_seconds(5);
  v1::AwaitLoginResponse done;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(8)));
  if (!identity.AwaitLogin(&ctx, await, &done).ok()) return "";
  return done.state() == v1::LOGIN_STATE_APPROVED ? done.session_token() : "";
}

std::set<std::string> Column(db::Connection& conn, const std::string& sql) {
  std::set<std::string> out;
  auto rows = conn.Exec(sql);
  EXPECT_TRUE(rows.ok()) << rows.status() << " " << sql;
  if (!rows.ok()) return out;
  for (int r = 0; r < rows->rows(); ++r) out.insert(std::string(rows->Get(r, 0)));
  return out;
}

bool AwaitAtLeast(const std::atomic<int>& n, int want, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (n.load() < want && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  return n.load() >= want;
}

absl::StatusOr<int> SessionsMissing(const std::string& conninfo,
                                    const std::map<std::string, int>& logins_of) {
  auto conn = db::Connection::Open(conninfo);
  if (!conn.ok()) return conn.status();
  int missing = 0;
  for (const auto& [account, acknowledged] : logins_of) {
    auto rows = (*conn)->Exec(
        "SELECT count(*) FROM identity.sessions s JOIN identity.logins l USING (session_id) "
        "WHERE s.account_id = $1 AND l.state = 'APPROVED'",
        {db::Param::Text(account)});
    if (!rows.ok()) return rows.status();
    const int64_t stored = rows->GetInt64(0, 0).value_or(-1);
    if (stored < acknowledged) missing += static_cast<int>(acknowledged - stored);
  }
  return missing;
}

}  // namespace qsign::testing
