// The timestamp authority as an operator runs it: the real qsignd with the lifecycle and tsa
// sections on SoftHSM2 and PostgreSQL; queries made and replies verified by `openssl ts`, the
// TSA certificate inspected by `openssl x509`, over the real HTTP listener and gRPC.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <fstream>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/auth/credential_table.h"
#include "qsign/config/v1/config.pb.h"
#include "qsign/v1/tsa.grpc.pb.h"
#include "tests/testing/qsignd_process.h"
#include "tests/testing/service_test.h"
#include "tests/testing/shell.h"

namespace qsign::tsa {
namespace {

namespace cfg = ::qsign::config::v1;
namespace pb = ::qsign::v1;
using ::qsign::testing::RunCommand;

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class TsaTest : public testing::ServiceTest {
 protected:
  TsaTest() : ServiceTest({.pool_size = 2, .hsm_sessions = 0}) {}

  void SetUp() override {
    ServiceTest::SetUp();
    if (HasFatalFailure()) return;
    dir_ = token().dir();
    WriteFile(dir_ + "/tsa.secret", "tsa-secret");
    WriteFile(dir_ + "/lifecycle.secret", "lifecycle-secret");
    WriteFile(dir_ + "/gateway.secret", "gateway-secret");
    WriteFile(
        dir_ + "/services",
        absl::StrCat("tsa ", absl::BytesToHexString(auth::Sha256("tsa-secret")), "\n", "lifecycle ",
                     absl::BytesToHexString(auth::Sha256("lifecycle-secret")), "\n", "gateway ",
                     absl::BytesToHexString(auth::Sha256("gateway-secret")), "\n"));
    WriteFile(dir_ + "/relying-parties",
              absl::StrCat("e-uprava ", absl::BytesToHexString(auth::Sha256("rp-secret")),
                           " e-Uprava\n+client_credentials e-uprava\n"));
    cfg::ServerConfig c =
        testing::LaptopConfig(conninfo(), env().TokensConfig(4), {"lifecycle", "gateway"}, dir_);
    c.set_services_file(dir_ + "/services");
    c.mutable_lifecycle()->set_http_listen("127.0.0.1:0");
    c.mutable_lifecycle()->set_client_secret_file(dir_ + "/lifecycle.secret");
    c.mutable_tsa()->set_http_listen("127.0.0.1:0");
    c.mutable_tsa()->set_client_secret_file(dir_ + "/tsa.secret");
    c.mutable_tsa()->set_accuracy_ms(1500);
    // The TSA's key in its own token (role "tsa").
    testing::SetTokens(c, env().TokensConfig(4));
    // The CSC gateway in the same process: signatures/timestamp through qsign.v1.Tsa.
    c.mutable_gateway()->set_http_listen("127.0.0.1:0");
    c.mutable_gateway()->set_client_secret_file(dir_ + "/gateway.secret");
    c.mutable_gateway()->set_relying_parties_file(dir_ + "/relying-parties");
    for (auto* peer : {c.mutable_peers()->mutable_signer(), c.mutable_peers()->mutable_identity(),
                       c.mutable_peers()->mutable_consent()}) {
      *peer = "127.0.0.1:1";
    }
    auto started = testing::QsigndProcess::Start(QSIGND_PATH, c, dir_);
    ASSERT_TRUE(started.ok()) << started.status();
    qsignd_ = *std::move(started);
    tsa_port_ = qsignd_->LoggedPort("TSA listener", "http_port");
    ca_port_ = qsignd_->LoggedPort("OCSP/CRL listener", "http_port");
    ASSERT_GT(tsa_port_, 0) << qsignd_->log();
    ASSERT_GT(ca_port_, 0) << qsignd_->log();
    csc_port_ = qsignd_->LoggedPort("CSC gateway listener", "http_port");
    ASSERT_GT(csc_port_, 0) << qsignd_->log();
    // The root: the trust anchor relying parties configure.
    httplib::Client ca("127.0.0.1", ca_port_);
    auto root = ca.Get("/ca/root.crt");
    ASSERT_TRUE(root && root->status == 200);
    WriteFile(dir_ + "/root.der", root->body);
    std::string out;
    ASSERT_EQ(RunCommand(absl::StrCat("openssl x509 -inform DER -in ", dir_, "/root.der -out ",
                                      dir_, "/root.pem"),
                         &out),
              0)
        << out;
    WriteFile(dir_ + "/data.txt", "Ugovor o zakupu stana, Beograd\n");
    // The TSA is granted once lifecycle has issued its certificate (in the background).
    const absl::Time give_up = absl::Now() + absl::Seconds(30);
    while (absl::Now() < give_up) {
      if (Query("-cert", "ready")) return;
      absl::SleepFor(absl::Milliseconds(200));
    }
    FAIL() << "the TSA never granted a timestamp\n" << qsignd_->log();
  }

  // `openssl ts -query` over data.txt with `flags`, posted to the TSA; the reply in <name>.tsr.
  // True when it was granted.
  bool Query(const std::string& flags, const std::string& name) {
    std::string out;
    if (RunCommand(absl::StrCat("openssl ts -query -data ", dir_, "/data.txt -sha256 ", flags,
                                " -out ", dir_, "/", name, ".tsq"),
                   &out) != 0) {
      ADD_FAILURE() << out;
      return false;
    }
    auto reply = Post(ReadFile(absl::StrCat(dir_, "/", name, ".tsq")));
    WriteFile(absl::StrCat(dir_, "/", name, ".tsr"), reply);
    return ReplyText(name).find("Status: Granted.") != std::string::npos;
  }

  std::string Post(const std::string& body,
                   const std::string& type = "application/timestamp-query") {
    httplib::Client tsa("127.0.0.1", tsa_port_);
    auto res = tsa.Post("/tsa", body, type.c_str());
    if (!res) {
      ADD_FAILURE() << "no answer from the TSA";
      return "";
    }
    last_status_ = res->status;
    EXPECT_EQ(res->get_header_value("Content-Type"), "application/timestamp-reply");
    return res->body;
  }

  std::string ReplyText(const std::string& name) {
    std::string out;
    RunCommand(absl::StrCat("openssl ts -reply -in ", dir_, "/", name, ".tsr -text"), &out);
    return out;
  }

  std::string PostText(const std::string& body, const std::string& name,
                       const std::string& type = "application/timestamp-query") {
    WriteFile(absl::StrCat(dir_, "/", name, ".tsr"), Post(body, type));
    return ReplyText(name);
  }

  int Verify(const std::string& name, const std::string& extra, std::string* out) {
    return RunCommand(absl::StrCat("openssl ts -verify -data ", dir_, "/data.txt -in ", dir_, "/",
                                   name, ".tsr -CAfile ", dir_, "/root.pem ", extra),
                      out);
  }

  std::string dir_;
  std::unique_ptr<testing::QsigndProcess> qsignd_;
  int tsa_port_ = 0;
  int ca_port_ = 0;
  int csc_port_ = 0;
  int last_status_ = 0;
};

TEST_F(TsaTest, OpensslVerifiesTheTokenAndItsPolicyAccuracyNonceAndSerial) {
  ASSERT_TRUE(Query("-cert", "a"));
  std::string out;
  EXPECT_EQ(Verify("a", "", &out), 0) << out;
  EXPECT_NE(out.find("Verification: OK"), std::string::npos) << out;
  // The query's nonce comes back; policy and accuracy are the configured ones.
  std::string query;
  RunCommand(absl::StrCat("openssl ts -query -in ", dir_, "/a.tsq -text"), &query);
  const std::string reply = ReplyText("a");
  const size_t at = query.find("Nonce: ");
  ASSERT_NE(at, std::string::npos) << query;
  const std::string nonce = query.substr(at, query.find('\n', at) - at);
  EXPECT_NE(reply.find(nonce), std::string::npos) << reply;
  EXPECT_NE(reply.find("Policy OID: 0.4.0.2023.1.1"), std::string::npos) << reply;
  EXPECT_NE(reply.find("Accuracy: 0x01 seconds, 0x01F4 millis, unspecified micros"),
            std::string::npos)
      << reply;
  EXPECT_NE(reply.find("TSA: DirName:"), std::string::npos) << reply;

  // Serial numbers never repeat: each token takes the next one from PostgreSQL.
  ASSERT_TRUE(Query("-cert", "b"));
  auto serial = [&](const std::string& name) {
    const std::string text = ReplyText(name);
    const size_t s = text.find("Serial number: ");
    return s == std::string::npos ? std::string() : text.substr(s, text.find('\n', s) - s);
  };
  EXPECT_NE(serial("a"), serial("b"));
  auto rows = pool().Exec("SELECT count(DISTINCT serial), count(*) FROM tsa.tokens");
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(rows->Get(0, 0), rows->Get(0, 1));
  // The journal of tokens is append-only.
  EXPECT_FALSE(pool().Exec("UPDATE tsa.tokens SET policy_oid = 'x'").ok());

  // The content the token is for, changed: openssl refuses.
  WriteFile(dir_ + "/data.txt", "Ugovor o zakupu stana, Novi Sad\n");
  EXPECT_NE(Verify("a", "", &out), 0) << out;
}

TEST_F(TsaTest, TheCertificateIsForTimestampingOnlyAndComesFromTheQualifiedCa) {
  ASSERT_TRUE(Query("-cert", "c"));
  std::string out;
  ASSERT_EQ(RunCommand(absl::StrCat("openssl ts -reply -in ", dir_,
                                    "/c.tsr -token_out | openssl pkcs7 -inform DER -print_certs > ",
                                    dir_, "/certs.pem"),
                       &out),
            0)
      << out;
  // The TSA certificate and the qualified CA; not the root (the relying party's anchor).
  ASSERT_EQ(RunCommand(absl::StrCat("openssl ts -reply -in ", dir_,
                                    "/c.tsr -token_out | openssl pkcs7 -inform DER -print_certs "
                                    "-text -noout"),
                       &out),
            0);
  EXPECT_EQ(out.find("Subject: C=RS, O=qsign, CN=qsign Root CA"), std::string::npos) << out;
  EXPECT_NE(out.find("X509v3 Extended Key Usage: critical\n                Time Stamping"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("Subject: C=RS, O=qsign, CN=qsign TSA"), std::string::npos) << out;
  EXPECT_NE(out.find("Subject: C=RS, O=qsign, CN=qsign Qualified CA"), std::string::npos) << out;
  // Issued and installed with an audit record on both sides.
  auto tsa_audit = pool().Exec(
      "SELECT count(*) FROM tsa.audit_log WHERE action = "
      "'tsa_certificate.install'");
  ASSERT_TRUE(tsa_audit.ok()) << tsa_audit.status();
  EXPECT_EQ(tsa_audit->Get(0, 0), "1");
  auto ca_audit = pool().Exec(
      "SELECT count(*) FROM lifecycle.audit_log WHERE action = "
      "'tsa_certificate.issue'");
  ASSERT_TRUE(ca_audit.ok()) << ca_audit.status();
  EXPECT_EQ(ca_audit->Get(0, 0), "1");

  // Without certReq the token carries no certificate: openssl needs it given.
  ASSERT_TRUE(Query("", "nocert"));
  EXPECT_NE(Verify("nocert", "", &out), 0) << out;
  EXPECT_EQ(Verify("nocert", absl::StrCat("-untrusted ", dir_, "/certs.pem"), &out), 0) << out;
}

TEST_F(TsaTest, BadQueriesGetARejectionNeverACrash) {
  std::string text = PostText("not a timestamp query", "garbage");
  EXPECT_NE(text.find("Status: Rejected."), std::string::npos) << text;
  EXPECT_NE(text.find("the data submitted has the wrong format"), std::string::npos) << text;

  std::string out;
  RunCommand(
      absl::StrCat("openssl ts -query -data ", dir_, "/data.txt -sha1 -out ", dir_, "/sha1.tsq"),
      &out);
  text = PostText(ReadFile(dir_ + "/sha1.tsq"), "sha1");
  EXPECT_NE(text.find("unrecognized or unsupported algorithm"), std::string::npos) << text;

  RunCommand(absl::StrCat("openssl ts -query -data ", dir_, "/data.txt -sha256 -tspolicy 1.2.3.4",
                          " -out ", dir_, "/policy.tsq"),
             &out);
  text = PostText(ReadFile(dir_ + "/policy.tsq"), "policy");
  EXPECT_NE(text.find("the requested TSA policy is not supported"), std::string::npos) << text;

  text = PostText(ReadFile(dir_ + "/policy.tsq"), "type", "text/plain");
  EXPECT_NE(text.find("Status: Rejected."), std::string::npos) << text;

  text = PostText(std::string(20000, 'x'), "big");
  EXPECT_EQ(last_status_, 413);
  EXPECT_NE(text.find("Status: Rejected."), std::string::npos) << text;

  // Truncations of a good query, byte by byte: each one answered.
  const std::string good = ReadFile(dir_ + "/ready.tsq");
  for (size_t n = 0; n < good.size(); n += 7) {
    httplib::Client tsa("127.0.0.1", tsa_port_);
    auto res = tsa.Post("/tsa", good.substr(0, n), "application/timestamp-query");
    ASSERT_TRUE(res) << n;
    EXPECT_EQ(res->status, 200);
  }
  // Still serving.
  EXPECT_TRUE(Query("-cert", "after"));
}

TEST_F(TsaTest, GrpcTimestampIsTheSameExchange) {
  auto stub =
      pb::Tsa::NewStub(grpc::CreateChannel(qsignd_->target(), grpc::InsecureChannelCredentials()));
  pb::TimestampRequest req;
  req.set_query(ReadFile(dir_ + "/ready.tsq"));
  pb::TimestampResponse resp;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub->Timestamp(&ctx, req, &resp).ok());
  }
  EXPECT_TRUE(resp.granted());
  WriteFile(dir_ + "/grpc.tsr", resp.reply());
  std::string out;
  EXPECT_EQ(Verify("grpc", "", &out), 0) << out;

  req.set_query("");
  grpc::ClientContext ctx;
  const grpc::Status empty = stub->Timestamp(&ctx, req, &resp);
  EXPECT_EQ(empty.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(empty.error_message().find("query"), std::string::npos);
}

TEST_F(TsaTest, CscSignaturesTimestampAnswersATokenOpensslVerifies) {
  httplib::Client csc("127.0.0.1", csc_port_);
  auto info = csc.Post("/csc/v2/info", "{}", "application/json");
  ASSERT_TRUE(info);
  EXPECT_NE(info->body.find("\"signatures/timestamp\""), std::string::npos) << info->body;
  auto token = csc.Post("/csc/v2/oauth2/token",
                        "grant_type=client_credentials&client_id=e-uprava&client_secret=rp-secret",
                        "application/x-www-form-urlencoded");
  ASSERT_TRUE(token && token->status == 200) << (token ? token->body : "");
  const size_t at = token->body.find("\"access_token\":\"");
  ASSERT_NE(at, std::string::npos);
  const size_t from = at + 16;
  const std::string access = token->body.substr(from, token->body.find('"', from) - from);
  const httplib::Headers auth = {{"Authorization", "Bearer " + access}};

  std::string out;
  RunCommand(
      absl::StrCat("openssl dgst -sha256 -binary ", dir_, "/data.txt > ", dir_, "/data.sha256"),
      &out);
  const std::string digest = ReadFile(dir_ + "/data.sha256");
  auto stamped = csc.Post("/csc/v2/signatures/timestamp", auth,
                          absl::StrCat(R"({"hash":")", absl::Base64Escape(digest),
                                       R"(","hashAlgorithmOID":"2.16.840.1.101.3.4.2.1",)",
                                       R"("nonce":"0123456789abcdef0123456789abcdef"})"),
                          "application/json");
  ASSERT_TRUE(stamped);
  ASSERT_EQ(stamped->status, 200) << stamped->body;
  const size_t t = stamped->body.find("\"timestamp\":\"");
  ASSERT_NE(t, std::string::npos) << stamped->body;
  const size_t t_from = t + 13;
  std::string der;
  ASSERT_TRUE(absl::Base64Unescape(
      stamped->body.substr(t_from, stamped->body.find('"', t_from) - t_from), &der));
  WriteFile(dir_ + "/csc.token", der);
  EXPECT_EQ(RunCommand(absl::StrCat("openssl ts -verify -token_in -in ", dir_, "/csc.token -data ",
                                    dir_, "/data.txt -CAfile ", dir_, "/root.pem"),
                       &out),
            0)
      << out;

  // A hash of the wrong length is the request's fault.
  auto bad = csc.Post("/csc/v2/signatures/timestamp", auth,
                      R"({"hash":"AAAA","hashAlgorithmOID":"2.16.840.1.101.3.4.2.1"})",
                      "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400) << bad->body;
  EXPECT_NE(bad->body.find("hash"), std::string::npos) << bad->body;
}

}  // namespace
}  // namespace qsign::tsa
