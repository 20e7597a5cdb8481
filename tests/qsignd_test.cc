// Starts the real qsignd binary against a real PostgreSQL and SoftHSM2 token and drives it
// over gRPC as a relying party would: create a credential, sign with a SAD, stop with SIGTERM.
#include <grpcpp/grpcpp.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <httplib.h>

#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/time/clock.h"
#include "common/db/testing/pg_server.h"
#include "common/testing/crypto_testing.h"
#include "consent/sad.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "hsm/hsm.h"
#include "hsm/testing/softhsm_token.h"
#include "qsign/v1/consent.grpc.pb.h"
#include "qsign/v1/signer.grpc.pb.h"
#include "common/auth/credential_table.h"

namespace qsign {
namespace {

namespace pb = ::qsign::v1;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class QsigndProcess {
 public:
  QsigndProcess(const std::vector<std::string>& args, std::string log_path)
      : log_path_(std::move(log_path)) {
    pid_ = fork();
    if (pid_ == 0) {
      FILE* log = std::freopen(log_path_.c_str(), "w", stderr);
      (void)log;
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  ~QsigndProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  // Waits for the "ready" log line and returns the port from the "listening" line.
  int WaitReady() {
    std::regex port_re("\"msg\":\"listening\".*\"port\":\"([0-9]+)\"");
    for (int i = 0; i < 300; ++i) {
      std::string log = ReadFile(log_path_);
      std::smatch m;
      if (log.find("\"msg\":\"ready\"") != std::string::npos &&
          std::regex_search(log, m, port_re)) {
        return std::stoi(m[1]);
      }
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        ADD_FAILURE() << "qsignd exited:\n" << log;
        return 0;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    ADD_FAILURE() << "qsignd not ready:\n" << ReadFile(log_path_);
    return 0;
  }
  // SIGTERM, then the exit status.
  int Stop() {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }
  std::string log() const { return ReadFile(log_path_); }

 private:
  std::string log_path_;
  pid_t pid_ = -1;
};

TEST(QsigndTest, ServesSignHashEndToEndAndStopsCleanly) {
  auto pg = db::testing::PgServer::Start();
  ASSERT_TRUE(pg.ok()) << pg.status();
  auto conninfo = (*pg)->CreateDatabase();
  ASSERT_TRUE(conninfo.ok()) << conninfo.status();
  auto token = hsm::testing::SoftHsmToken::Create("qsign");
  ASSERT_TRUE(token.ok()) << token.status();
  const hsm::Pkcs11Config config = (*token)->config(4);

  QsigndProcess qsignd(
      {QSIGND_PATH, "--listen=127.0.0.1:0", "--db=" + conninfo->conninfo,
       "--pkcs11_module=" + config.module_path, "--token_label=" + config.token_label,
       "--pin_file=" + config.pin_file, "--create_missing_keys",
                        "--metrics_listen=127.0.0.1:0"},
      (*token)->dir() + "/qsignd.log");
  int port = qsignd.WaitReady();
  ASSERT_GT(port, 0);
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

  // The consent service's part, played by the test: mint a SAD with the key qsignd created.
  auto hsm = hsm::NewPkcs11Hsm(config);
  ASSERT_TRUE(hsm.ok()) << hsm.status();
  auto minter = consent::SadMinter::New(hsm->get(), "qsign-sad-1");
  ASSERT_TRUE(minter.ok()) << minter.status();

  pb::CreateKeyRequest create;
  create.set_credential_id("cred-e2e");
  create.set_account_id("alice");
  create.set_key_algorithm(pb::KEY_ALGORITHM_EC_P256);
  pb::CredentialInfo cred;
  {
    grpc::ClientContext ctx;
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
    std::smatch m;
    const std::string log = qsignd.log();
    ASSERT_TRUE(std::regex_search(log, m, std::regex("serving /metrics.*\"port\":\"([0-9]+)\"")))
        << log;
    httplib::Client metrics("127.0.0.1", std::stoi(m[1]));
    auto res = metrics.Get("/metrics");
    ASSERT_TRUE(res);
    EXPECT_NE(res->body.find("qsign_grpc_requests_total{method=\"/qsign.v1.Signer/SignHash\","
                             "code=\"OK\"} 1\n"),
              std::string::npos)
        << res->body;
    EXPECT_NE(res->body.find("code=\"FAILED_PRECONDITION\"} 2\n"), std::string::npos)
        << res->body;
    EXPECT_NE(res->body.find("qsign_db_pool_connections{state=\"open\"}"), std::string::npos);
  }

  EXPECT_EQ(qsignd.Stop(), 0) << qsignd.log();
  EXPECT_NE(qsignd.log().find("\"msg\":\"stopped\""), std::string::npos);
  // Nothing secret in the log.
  std::string pin = ReadFile(config.pin_file);
  while (!pin.empty() && pin.back() == '\n') pin.pop_back();
  EXPECT_EQ(qsignd.log().find(pin), std::string::npos);
  EXPECT_EQ(qsignd.log().find(*sad), std::string::npos);
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

TEST(QsigndTest, ServesConsentWhenConfigured) {
  auto pg = db::testing::PgServer::Start();
  ASSERT_TRUE(pg.ok()) << pg.status();
  auto conninfo = (*pg)->CreateDatabase();
  ASSERT_TRUE(conninfo.ok()) << conninfo.status();
  auto token = hsm::testing::SoftHsmToken::Create("qsign");
  ASSERT_TRUE(token.ok()) << token.status();
  const hsm::Pkcs11Config config = (*token)->config(4);
  const std::string dir = (*token)->dir();
  WriteFile(dir + "/pepper", std::string(32, 'p'));
  WriteFile(dir + "/services",
            "gateway " + absl::BytesToHexString(auth::Sha256("gateway-secret")) + "\n");

  QsigndProcess qsignd({QSIGND_PATH, "--listen=127.0.0.1:0", "--db=" + conninfo->conninfo,
                        "--pkcs11_module=" + config.module_path,
                        "--token_label=" + config.token_label, "--pin_file=" + config.pin_file,
                        "--create_missing_keys", "--consent_pin_pepper_file=" + dir + "/pepper",
                        "--consent_services_file=" + dir + "/services",
                        "--device_ca_cert_file=" + dir + "/device-ca.der"},
                       dir + "/qsignd.log");
  int port = qsignd.WaitReady();
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
    grpc::ClientContext ctx;
    ASSERT_TRUE(signer->CreateKey(&ctx, create, &cred).ok());
  }
  pb::SetCertificateRequest set;
  set.set_credential_id("cred-1");
  set.add_certificate_chain_der(testing::CertificateFor(cred.public_key_spki()));
  {
    grpc::ClientContext ctx;
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

}  // namespace
}  // namespace qsign
