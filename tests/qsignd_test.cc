// Starts the real qsignd (and qsign-<service>) binaries on config files against a real PostgreSQL
// and SoftHSM2 token and drives them over gRPC and HTTP as their clients would: create a
// credential, sign with a SAD, stop with SIGTERM; consent, identity and the CSC gateway in one
// process; a service reached at its peers.<name> in another process; --check_config.
#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <regex>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/auth/credential_table.h"
#include "common/file.h"
#include "consent/sad.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "hsm/hsm.h"
#include "qsign/v1/consent.grpc.pb.h"
#include "qsign/v1/signer.grpc.pb.h"
#include "tests/testing/qsignd_process.h"
#include "tests/testing/service_test.h"
#include "tests/testing/test_pki.h"

namespace qsign {
namespace {

namespace pb = ::qsign::v1;
namespace cfg = ::qsign::config::v1;
using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) { return ReadFileToString(path).value_or(""); }

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

std::string HashLine(const std::string& id, const std::string& secret) {
  return id + " " + absl::BytesToHexString(auth::Sha256(secret)) + "\n";
}

// Each test: its own SoftHSM2 token (whose temp dir holds configs and logs) and its own
// PostgreSQL database; the binaries under test open both themselves.
class QsigndTest : public testing::ServiceTest {
 protected:
  QsigndTest() : ServiceTest({.pool_size = 0, .hsm_sessions = 0}) {}

  void SetUp() override {
    ServiceTest::SetUp();
    if (HasFatalFailure()) return;
    dir_ = token().dir();
  }

  std::string dir_;
};

TEST_F(QsigndTest, ServesSignHashEndToEndAndStopsCleanly) {
  // The SAD key in consent's token (the test plays consent), pinned for qsignd's signer.
  ASSERT_TRUE(env().SadPublicKeyFile().ok());
  cfg::ServerConfig server =
      testing::LaptopConfig(conninfo(), env().TokensConfig(4), {"signer"}, token().dir());
  server.mutable_observability()->set_metrics_listen("127.0.0.1:0");
  // The test plays lifecycle too: the signer's administrative RPCs need its credential.
  WriteFile(dir_ + "/services", HashLine("lifecycle", "lifecycle-secret"));
  server.set_services_file(dir_ + "/services");
  auto started = testing::QsigndProcess::Start(QSIGND_PATH, server, token().dir());
  ASSERT_TRUE(started.ok()) << started.status();
  testing::QsigndProcess& qsignd = **started;
  const int port = qsignd.port();
  ASSERT_GT(port, 0);
  // A laptop config says so at start-up.
  EXPECT_NE(
      qsignd.log().find("\"level\":\"warning\",\"component\":\"qsignd\",\"msg\":\"insecure_dev"),
      std::string::npos)
      << qsignd.log();
  auto stub = pb::Signer::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));

  {
    auto health = grpc::health::v1::Health::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(health->Check(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }

  // The consent service's part, played by the test: mint a SAD with the pinned key.
  ASSERT_TRUE(OpenHsm(2).ok());
  auto minter = consent::SadMinter::New(&hsm("consent"), "qsign-sad-1");
  ASSERT_TRUE(minter.ok()) << minter.status();

  pb::CreateKeyRequest create;
  create.set_credential_id("cred-e2e");
  create.set_account_id("alice");
  create.set_key_algorithm(pb::KEY_ALGORITHM_EC_P256);
  pb::CredentialInfo cred;
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Service lifecycle.lifecycle-secret");
    grpc::Status s = stub->CreateKey(&ctx, create, &cred);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  // The private key is in the token, not in the test: only the public half is readable.
  EXPECT_EQ(cred.status(), pb::CREDENTIAL_STATUS_PENDING);

  const std::string hash(32, '\x42');
  consent::SadGrant grant{.account_id = "alice",
                          .credential_id = "cred-e2e",
                          .hash_algorithm_oid = "2.16.840.1.101.3.4.2.1",
                          .hashes = {hash}};
  auto sad = (*minter)->Mint(grant, absl::Now());
  ASSERT_TRUE(sad.ok());
  pb::SignHashRequest req;
  req.set_credential_id("cred-e2e");
  req.set_hash_algorithm_oid("2.16.840.1.101.3.4.2.1");
  req.set_sign_algorithm_oid("1.2.840.10045.4.3.2");
  req.add_hashes(hash);
  req.set_sad(*sad);
  {
    // No certificate yet: the credential cannot sign, and says why.
    grpc::ClientContext ctx;
    pb::SignHashResponse resp;
    grpc::Status s = stub->SignHash(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_NE(s.error_message().find("PENDING"), std::string::npos) << s.error_message();
  }

  // Lifecycle's part: attach a certificate, which activates the credential.
  pb::SetCertificateRequest set;
  set.set_credential_id("cred-e2e");
  set.add_certificate_chain_der(testing::CertificateFor(cred.public_key_spki()));
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Service lifecycle.lifecycle-secret");
    pb::CredentialInfo active;
    grpc::Status s = stub->SetCertificate(&ctx, set, &active);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(active.status(), pb::CREDENTIAL_STATUS_ACTIVE);
  }
  {
    // The SAD was not used up by the refusal above; now it signs, once.
    grpc::ClientContext ctx;
    pb::SignHashResponse resp;
    grpc::Status s = stub->SignHash(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(resp.signatures_size(), 1);
    EXPECT_TRUE(testing::VerifyDigestSignature(cred.public_key_spki(), hash, resp.signatures(0),
                                               EVP_sha256()));
    grpc::ClientContext again;
    EXPECT_EQ(stub->SignHash(&again, req, &resp).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
  }

  {
    // Operators see every RPC by method and outcome on /metrics.
    const int metrics_port = qsignd.LoggedPort("serving /metrics");
    ASSERT_GT(metrics_port, 0) << qsignd.log();
    httplib::Client metrics("127.0.0.1", metrics_port);
    auto res = metrics.Get("/metrics");
    ASSERT_TRUE(res);
    EXPECT_NE(res->body.find("qsign_grpc_requests_total{method=\"/qsign.v1.Signer/SignHash\","
                             "code=\"OK\"} 1\n"),
              std::string::npos)
        << res->body;
    EXPECT_NE(res->body.find("code=\"FAILED_PRECONDITION\"} 2\n"), std::string::npos) << res->body;
    EXPECT_NE(res->body.find("qsign_db_pool_connections{state=\"open\"}"), std::string::npos);
    EXPECT_NE(res->body.find("qsign_insecure_dev 1\n"), std::string::npos) << res->body;
  }

  EXPECT_EQ(qsignd.Stop(), 0) << qsignd.log();
  EXPECT_NE(qsignd.log().find("\"msg\":\"stopped\""), std::string::npos);
  // Nothing secret in the log: no token's PIN.
  for (const hsm::Pkcs11TokenConfig& token : env().TokensConfig().tokens) {
    std::string pin = ReadFile(token.pin_file);
    while (!pin.empty() && pin.back() == '\n') pin.pop_back();
    EXPECT_EQ(qsignd.log().find(pin), std::string::npos);
  }
  EXPECT_EQ(qsignd.log().find(*sad), std::string::npos);
}

TEST_F(QsigndTest, ServesConsentWhenConfigured) {
  const std::string& dir = dir_;
  WriteFile(dir + "/pepper", std::string(32, 'p'));
  WriteFile(dir + "/services",
            HashLine("gateway", "gateway-secret") + HashLine("lifecycle", "lifecycle-secret"));

  // Consent makes the SAD key on the first start and pins it for the signer in this process.
  cfg::ServerConfig server = testing::LaptopConfig(conninfo(), env().TokensConfig(4),
                                                   {"signer", "consent", "identity"}, dir);
  server.set_services_file(dir + "/services");
  server.mutable_consent()->set_pin_pepper_file(dir + "/pepper");
  server.mutable_consent()->set_device_ca_cert_file(dir + "/device-ca.der");
  auto started = testing::QsigndProcess::Start(QSIGND_PATH, server, dir);
  ASSERT_TRUE(started.ok()) << started.status();
  testing::QsigndProcess& qsignd = **started;
  const int port = qsignd.port();
  ASSERT_GT(port, 0);
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
  auto stub = pb::Consent::NewStub(channel);
  EXPECT_FALSE(ReadFile(dir + "/device-ca.der").empty()) << "the device CA certificate is kept";
  {
    pb::GetChallengeRequest req;
    req.set_device_id("dev-00112233445566778899aabbccddeeff");
    pb::GetChallengeResponse resp;
    grpc::ClientContext ctx;
    grpc::Status s = stub->GetChallenge(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(resp.challenge().rfind("QSIGN-CONSENT-CHALLENGE-V1", 0), 0u);
  }
  // Authorize asks the signer (on the same port) about the credential.
  pb::AuthorizeRequest auth;
  auth.set_credential_id("cred-1");
  auth.set_hash_algorithm_oid("2.16.840.1.101.3.4.2.1");
  auth.add_hashes(std::string(32, 'a'));
  {
    pb::AuthorizeResponse resp;
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Service gateway.gateway-secret");
    EXPECT_EQ(stub->Authorize(&ctx, auth, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  auto signer = pb::Signer::NewStub(channel);
  pb::CreateKeyRequest create;
  create.set_credential_id("cred-1");
  create.set_account_id("alice");
  create.set_key_algorithm(pb::KEY_ALGORITHM_EC_P256);
  pb::CredentialInfo cred;
  {
    // Only lifecycle may create keys once services_file is configured.
    grpc::ClientContext ctx;
    EXPECT_EQ(signer->CreateKey(&ctx, create, &cred).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Service lifecycle.lifecycle-secret");
    ASSERT_TRUE(signer->CreateKey(&ctx, create, &cred).ok());
  }
  pb::SetCertificateRequest set;
  set.set_credential_id("cred-1");
  set.add_certificate_chain_der(testing::CertificateFor(cred.public_key_spki()));
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Service lifecycle.lifecycle-secret");
    pb::CredentialInfo active;
    ASSERT_TRUE(signer->SetCertificate(&ctx, set, &active).ok());
  }
  {
    pb::AuthorizeResponse resp;
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Service gateway.gateway-secret");
    grpc::Status s = stub->Authorize(&ctx, auth, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
    EXPECT_NE(s.error_message().find("no active consent app"), std::string::npos);
  }
  EXPECT_EQ(qsignd.Stop(), 0) << qsignd.log();
  EXPECT_EQ(qsignd.log().find(std::string(32, 'p')), std::string::npos);
}

// gRPC and httplib both set SO_REUSEPORT by default, so a second qsignd on the same ports used
// to bind too and serve beside the first. Now it must fail to start, naming the address.
TEST_F(QsigndTest, SecondInstanceOnTheSamePortsFailsToBind) {
  ASSERT_TRUE(env().SadPublicKeyFile().ok());
  cfg::ServerConfig server =
      testing::LaptopConfig(conninfo(), env().TokensConfig(2), {"signer"}, dir_);
  server.mutable_observability()->set_metrics_listen("127.0.0.1:0");
  auto first = testing::QsigndProcess::Start(QSIGND_PATH, server, dir_, "first");
  ASSERT_TRUE(first.ok()) << first.status();
  const int port = (*first)->port();
  const int metrics_port = (*first)->LoggedPort("serving /metrics");
  ASSERT_GT(port, 0);
  ASSERT_GT(metrics_port, 0) << (*first)->log();

  // The same gRPC port.
  cfg::ServerConfig same_grpc = server;
  same_grpc.set_listen(absl::StrCat("127.0.0.1:", port));
  same_grpc.mutable_observability()->clear_metrics_listen();
  auto second = testing::QsigndProcess::Start(QSIGND_PATH, same_grpc, dir_, "second");
  ASSERT_FALSE(second.ok()) << "a second qsignd started on gRPC port " << port;
  EXPECT_THAT(std::string(second.status().message()),
              HasSubstr(absl::StrCat("listen: cannot listen on 127.0.0.1:", port)));
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("address in use"));

  // The same /metrics port (HTTP), gRPC elsewhere.
  cfg::ServerConfig same_http = server;
  same_http.mutable_observability()->set_metrics_listen(absl::StrCat("127.0.0.1:", metrics_port));
  auto third = testing::QsigndProcess::Start(QSIGND_PATH, same_http, dir_, "third");
  ASSERT_FALSE(third.ok()) << "a second qsignd started on metrics port " << metrics_port;
  EXPECT_THAT(
      std::string(third.status().message()),
      HasSubstr(absl::StrCat("observability.metrics_listen: HTTP: cannot listen on 127.0.0.1:",
                             metrics_port)));

  // The first one still serves, alone.
  auto health = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(health->Check(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ((*first)->Stop(), 0) << (*first)->log();
}

TEST_F(QsigndTest, CheckConfigValidatesWithoutStarting) {
  const std::string& dir = dir_;
  ASSERT_TRUE(env().SadPublicKeyFile().ok());
  cfg::ServerConfig c = testing::LaptopConfig("host=/nonexistent dbname=qsign",
                                              env().TokensConfig(2), {"signer"}, dir);
  testing::WriteConfig(c, dir + "/signer.textproto");
  // Valid: nothing is started (there is no PostgreSQL at that conninfo).
  testing::CheckConfigResult ok = testing::CheckConfig(QSIGND_PATH, dir + "/signer.textproto");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_THAT(ok.output, HasSubstr("signer.textproto: OK (signer)"));
  ok = testing::CheckConfig(QSIGN_SIGNER_PATH, dir + "/signer.textproto");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;

  // Each problem on its own line, naming the field.
  c.mutable_consent()->set_pin_pepper_file(dir + "/no-pepper");
  testing::SetTokens(c, env().TokensConfig(2));
  c.mutable_hsm()->mutable_token(0)->set_pin_file(dir + "/no-pin");
  testing::WriteConfig(c, dir + "/bad.textproto");
  testing::CheckConfigResult bad = testing::CheckConfig(QSIGND_PATH, dir + "/bad.textproto");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.output,
              HasSubstr("config: hsm.token[0].pin_file: " + dir + "/no-pin: cannot open"));
  EXPECT_THAT(bad.output,
              HasSubstr("config: consent.pin_pepper_file: " + dir + "/no-pepper: cannot open"));
  EXPECT_THAT(bad.output, HasSubstr("config: peers.identity: required"));

  // Key separation: a signer without its pinned SAD key, two roles on one token.
  cfg::ServerConfig unpinned = testing::LaptopConfig("host=/nonexistent dbname=qsign",
                                                     env().TokensConfig(2), {"signer"}, dir);
  unpinned.mutable_signer()->clear_sad_keys();
  testing::WriteConfig(unpinned, dir + "/unpinned.textproto");
  testing::CheckConfigResult unpinned_check =
      testing::CheckConfig(QSIGN_SIGNER_PATH, dir + "/unpinned.textproto");
  EXPECT_EQ(unpinned_check.exit_code, 1);
  EXPECT_THAT(unpinned_check.output, HasSubstr("config: signer.sad_keys: required"));
  cfg::ServerConfig shared = testing::LaptopConfig(
      "host=/nonexistent dbname=qsign", env().TokensConfig(2), {"signer", "identity"}, dir);
  shared.mutable_peers()->set_consent("127.0.0.1:1");
  testing::WriteConfig(shared, dir + "/shared.textproto");
  EXPECT_EQ(testing::CheckConfig(QSIGND_PATH, dir + "/shared.textproto").exit_code, 0);
  shared.mutable_hsm()->mutable_token(1)->set_label(shared.hsm().token(0).label());
  testing::WriteConfig(shared, dir + "/shared.textproto");
  testing::CheckConfigResult shared_check =
      testing::CheckConfig(QSIGND_PATH, dir + "/shared.textproto");
  EXPECT_EQ(shared_check.exit_code, 1);
  EXPECT_THAT(shared_check.output, HasSubstr("config: hsm.token[1].label: \"qsign-signer\": the "
                                        "same token as hsm.token[0] (role \"signer\")"));

  // A per-service binary runs its own section only.
  WriteFile(dir + "/pepper", std::string(32, 'p'));
  c.mutable_consent()->set_pin_pepper_file(dir + "/pepper");
  c.mutable_consent()->set_device_ca_cert_file(dir + "/device-ca.der");
  c.mutable_identity();
  testing::SetTokens(c, env().TokensConfig(2));
  testing::WriteConfig(c, dir + "/three.textproto");
  EXPECT_EQ(testing::CheckConfig(QSIGND_PATH, dir + "/three.textproto").exit_code, 0);
  testing::CheckConfigResult one =
      testing::CheckConfig(QSIGN_SIGNER_PATH, dir + "/three.textproto");
  EXPECT_EQ(one.exit_code, 1);
  EXPECT_THAT(one.output, HasSubstr("qsign-signer runs only the signer service, the config has "
                                    "section(s) signer, consent, identity"));

  // A parse error says where.
  WriteFile(dir + "/typo.textproto", "insecure_dev: true\nsigner {\n  max_bach: 5\n}\n");
  testing::CheckConfigResult typo = testing::CheckConfig(QSIGND_PATH, dir + "/typo.textproto");
  EXPECT_EQ(typo.exit_code, 1);
  EXPECT_THAT(typo.output, HasSubstr("typo.textproto:3:"));
  EXPECT_THAT(typo.output, HasSubstr("\"max_bach\""));

  // A start with a bad config logs the problem as JSON and exits 1.
  auto refused = testing::QsigndProcess::Start(QSIGND_PATH, c, dir, "refused");
  EXPECT_FALSE(refused.ok());
  cfg::ServerConfig none = c;
  none.clear_signer();
  none.clear_consent();
  none.clear_identity();
  auto nothing = testing::QsigndProcess::Start(QSIGND_PATH, none, dir, "nothing");
  ASSERT_FALSE(nothing.ok());
  EXPECT_THAT(std::string(nothing.status().message()),
              HasSubstr("\"msg\":\"config\",\"error\":\"config: no service section"));
}

// The CSC gateway inside qsignd next to consent and identity, the signer in its own process
// (qsign-signer) reached at peers.signer, and a lone qsign-gateway reaching both.
TEST_F(QsigndTest, GatewayInProcessAndServicesAtTheirPeers) {
  const std::string& dir = dir_;
  WriteFile(dir + "/pepper", std::string(32, 'p'));
  WriteFile(dir + "/gateway.secret", "gateway-secret\n");
  WriteFile(dir + "/services", HashLine("gateway", "gateway-secret"));
  WriteFile(dir + "/relying-parties",
            "rp-1 " + absl::BytesToHexString(auth::Sha256("rp-secret")) +
                " Test RP\n+client_credentials rp-1\n");

  ASSERT_TRUE(env().SadPublicKeyFile().ok());  // Pinned before either process starts.
  cfg::ServerConfig signer_config =
      testing::LaptopConfig(conninfo(), env().TokensConfig(2), {"signer"}, dir);
  auto signer = testing::QsigndProcess::Start(QSIGN_SIGNER_PATH, signer_config, dir, "signer");
  ASSERT_TRUE(signer.ok()) << signer.status();
  EXPECT_THAT((*signer)->log(), HasSubstr("\"services\":\"qsign.v1.Signer\""));

  cfg::ServerConfig main = testing::LaptopConfig(conninfo(), env().TokensConfig(2),
                                                 {"identity", "consent", "gateway"}, dir);
  main.set_services_file(dir + "/services");
  main.mutable_peers()->set_signer((*signer)->target());
  main.mutable_consent()->set_pin_pepper_file(dir + "/pepper");
  main.mutable_consent()->set_device_ca_cert_file(dir + "/device-ca.der");
  main.mutable_gateway()->set_http_listen("127.0.0.1:0");
  main.mutable_gateway()->set_client_secret_file(dir + "/gateway.secret");
  main.mutable_gateway()->set_relying_parties_file(dir + "/relying-parties");
  auto qsignd = testing::QsigndProcess::Start(QSIGND_PATH, main, dir, "qsignd");
  ASSERT_TRUE(qsignd.ok()) << qsignd.status();
  EXPECT_THAT((*qsignd)->log(), HasSubstr("\"services\":\"qsign.v1.Consent,qsign.v1.Identity\""));

  // Consent asks the signer in the other process about the credential.
  auto consent = pb::Consent::NewStub(
      grpc::CreateChannel((*qsignd)->target(), grpc::InsecureChannelCredentials()));
  pb::AuthorizeRequest auth;
  auth.set_credential_id("cred-nowhere");
  auth.set_hash_algorithm_oid("2.16.840.1.101.3.4.2.1");
  auth.add_hashes(std::string(32, 'a'));
  {
    pb::AuthorizeResponse resp;
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Service gateway.gateway-secret");
    grpc::Status s = consent->Authorize(&ctx, auth, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  }

  // The gateway in qsignd answers CSC over HTTP and signs in relying parties.
  const int gateway_port = (*qsignd)->LoggedPort("CSC gateway listener", "http_port");
  ASSERT_GT(gateway_port, 0) << (*qsignd)->log();
  {
    httplib::Client http("127.0.0.1", gateway_port);
    auto info = http.Post("/csc/v2/info", "{}", "application/json");
    ASSERT_TRUE(info);
    EXPECT_EQ(info->status, 200) << info->body;
    EXPECT_THAT(info->body, HasSubstr("\"qsign\""));
    auto token_reply = http.Post("/csc/v2/oauth2/token",
                                 "{\"grant_type\":\"client_credentials\",\"client_id\":\"rp-1\","
                                 "\"client_secret\":\"rp-secret\"}",
                                 "application/json");
    ASSERT_TRUE(token_reply);
    EXPECT_EQ(token_reply->status, 200) << token_reply->body;
    EXPECT_THAT(token_reply->body, HasSubstr("access_token"));
  }

  // qsign-gateway alone: no PostgreSQL, no HSM, signer and consent at their peers.
  cfg::ServerConfig lone;
  lone.set_insecure_dev(true);
  lone.mutable_peers()->set_signer((*signer)->target());
  lone.mutable_peers()->set_consent((*qsignd)->target());
  *lone.mutable_gateway() = main.gateway();
  auto gateway = testing::QsigndProcess::Start(QSIGN_GATEWAY_PATH, lone, dir, "gateway");
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  EXPECT_EQ((*gateway)->port(), 0) << "no gRPC listener without a gRPC service";
  {
    httplib::Client http("127.0.0.1", (*gateway)->LoggedPort("CSC gateway listener", "http_port"));
    auto info = http.Post("/csc/v2/info", "{}", "application/json");
    ASSERT_TRUE(info) << (*gateway)->log();
    EXPECT_EQ(info->status, 200) << info->body;
  }

  EXPECT_EQ((*gateway)->Stop(), 0) << (*gateway)->log();
  EXPECT_EQ((*qsignd)->Stop(), 0) << (*qsignd)->log();
  EXPECT_EQ((*signer)->Stop(), 0) << (*signer)->log();
  EXPECT_EQ((*qsignd)->log().find("gateway-secret"), std::string::npos);
}

// Production transport: mutual TLS with allow-lists on the main listener (the process's own
// calls to itself too), a plaintext listener for health probes only, /metrics over HTTPS.
TEST_F(QsigndTest, MutualTlsAllowListsAndPlaintextHealthListener) {
  const std::string& dir = dir_;
  const std::string certs = dir + "/certs";
  ASSERT_EQ(std::system((std::string(QSIGN_GEN_CERTS) + " " + certs +
                         " qsignd gateway rogue >/dev/null 2>&1")
                            .c_str()),
            0);
  WriteFile(dir + "/pepper", std::string(32, 'p'));
  WriteFile(dir + "/services", HashLine("gateway", "gateway-secret"));

  cfg::ServerConfig c = testing::LaptopConfig(conninfo(), env().TokensConfig(2),
                                              {"signer", "identity", "consent"}, dir);
  c.set_insecure_dev(false);
  c.mutable_tls()->set_cert_file(certs + "/qsignd.crt");
  c.mutable_tls()->set_key_file(certs + "/qsignd.key");
  c.mutable_tls()->set_client_ca_file(certs + "/ca.crt");
  auto allow = [&](const std::string& group, std::vector<std::string> clients) {
    cfg::Allow* a = c.add_allow();
    a->set_group(group);
    for (const std::string& client : clients) a->add_clients(client);
  };
  allow("signer.read", {"qsignd"});  // consent asks the signer here, on the same listener.
  allow("consent.authorize", {"gateway"});
  allow("identity.session", {"qsignd"});
  c.set_services_file(dir + "/services");
  c.mutable_consent()->set_pin_pepper_file(dir + "/pepper");
  c.mutable_consent()->set_device_ca_cert_file(dir + "/device-ca.der");
  c.mutable_observability()->set_health_listen("127.0.0.1:0");
  c.mutable_observability()->set_metrics_listen("127.0.0.1:0");
  testing::WriteConfig(c, dir + "/tls.textproto");
  testing::CheckConfigResult check = testing::CheckConfig(QSIGND_PATH, dir + "/tls.textproto");
  EXPECT_EQ(check.exit_code, 0) << check.output;
  auto qsignd = testing::QsigndProcess::Start(QSIGND_PATH, c, dir);
  ASSERT_TRUE(qsignd.ok()) << qsignd.status();
  EXPECT_EQ((*qsignd)->log().find("insecure_dev"), std::string::npos);

  auto tls_channel = [&](const std::string& name) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = ReadFile(certs + "/ca.crt");
    o.pem_cert_chain = ReadFile(certs + "/" + name + ".crt");
    o.pem_private_key = ReadFile(certs + "/" + name + ".key");
    return grpc::CreateChannel(absl::StrCat("localhost:", (*qsignd)->port()),
                               grpc::SslCredentials(o));
  };
  pb::AuthorizeRequest auth;
  auth.set_credential_id("cred-nowhere");
  auth.set_hash_algorithm_oid("2.16.840.1.101.3.4.2.1");
  auth.add_hashes(std::string(32, 'a'));
  {
    // The gateway may authorize; consent's own call to the signer (TLS, to itself) gets through.
    auto consent = pb::Consent::NewStub(tls_channel("gateway"));
    pb::AuthorizeResponse resp;
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Service gateway.gateway-secret");
    grpc::Status s = consent->Authorize(&ctx, auth, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message() << (*qsignd)->log();
  }
  {
    // The gateway's certificate does not open signer.admin.
    auto signer = pb::Signer::NewStub(tls_channel("gateway"));
    pb::CreateKeyRequest create;
    create.set_credential_id("cred-1");
    create.set_account_id("alice");
    create.set_key_algorithm(pb::KEY_ALGORITHM_EC_P256);
    pb::CredentialInfo cred;
    grpc::ClientContext ctx;
    grpc::Status s = signer->CreateKey(&ctx, create, &cred);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("signer.admin"));
  }
  {
    // A certificate from our CA that no allow entry names opens nothing (the allow-list fails
    // closed, whatever the credential in the metadata).
    auto consent = pb::Consent::NewStub(tls_channel("rogue"));
    pb::AuthorizeResponse resp;
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Service gateway.gateway-secret");
    grpc::Status s = consent->Authorize(&ctx, auth, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("consent.authorize"));
  }
  {
    // No client certificate, no call.
    auto plain = pb::Signer::NewStub(
        grpc::CreateChannel((*qsignd)->target(), grpc::InsecureChannelCredentials()));
    pb::ListCredentialsRequest req;
    pb::ListCredentialsResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    EXPECT_EQ(plain->ListCredentials(&ctx, req, &resp).error_code(), grpc::StatusCode::UNAVAILABLE);
  }
  {
    // Kubernetes probes: plaintext, health only.
    const int health_port = (*qsignd)->LoggedPort("listening");
    std::smatch m;
    const std::string log = (*qsignd)->log();
    std::regex listening("\"msg\":\"listening\".*\"port\":\"([0-9]+)\"");
    std::vector<int> ports;
    for (auto it = std::sregex_iterator(log.begin(), log.end(), listening);
         it != std::sregex_iterator(); ++it) {
      ports.push_back(std::stoi((*it)[1]));
    }
    ASSERT_EQ(ports.size(), 2u) << log;
    EXPECT_EQ(ports[0], health_port);
    EXPECT_EQ(ports[0], (*qsignd)->port());
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", ports[1]),
                                       grpc::InsecureChannelCredentials());
    auto health = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(health->Check(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
    auto signer = pb::Signer::NewStub(channel);
    pb::ListCredentialsRequest list;
    pb::ListCredentialsResponse listed;
    grpc::ClientContext ctx2;
    EXPECT_EQ(signer->ListCredentials(&ctx2, list, &listed).error_code(),
              grpc::StatusCode::UNIMPLEMENTED);
  }
  {
    // /metrics over HTTPS, for a scraper with a client certificate from the CA.
    httplib::SSLClient metrics("127.0.0.1", (*qsignd)->LoggedPort("serving /metrics"),
                               certs + "/gateway.crt", certs + "/gateway.key");
    metrics.set_ca_cert_path((certs + "/ca.crt").c_str());
    metrics.enable_server_certificate_verification(true);
    auto res = metrics.Get("/metrics");
    ASSERT_TRUE(res) << httplib::to_string(res.error());
    EXPECT_EQ(res->status, 200);
    EXPECT_THAT(res->body, HasSubstr("qsign_insecure_dev 0\n"));
  }
  EXPECT_EQ((*qsignd)->Stop(), 0) << (*qsignd)->log();
}

}  // namespace
}  // namespace qsign
