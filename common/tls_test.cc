#include "common/tls.h"

#include <gmock/gmock.h>
#include <google/protobuf/descriptor.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <stdlib.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/grpc_server.h"
#include "common/metrics.h"
#include "common/metrics_http.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "qsign/v1/consent.pb.h"
#include "qsign/v1/identity.pb.h"
#include "qsign/v1/lifecycle.pb.h"
#include "qsign/v1/options.pb.h"
#include "qsign/v1/signer.grpc.pb.h"
#include "qsign/v1/tsa.pb.h"

namespace qsign::tls {
namespace {

using ::testing::HasSubstr;

std::string* cert_dir = nullptr;

std::string CertPath(const std::string& file) { return *cert_dir + "/" + file; }

config::v1::Tls TlsFor(const std::string& name, const std::string& ca = "ca") {
  config::v1::Tls tls;
  tls.set_cert_file(CertPath(name + ".crt"));
  tls.set_key_file(CertPath(name + ".key"));
  tls.set_client_ca_file(CertPath(ca + ".crt"));
  return tls;
}

google::protobuf::RepeatedPtrField<config::v1::Allow> AllowList(
    std::initializer_list<std::pair<std::string, std::vector<std::string>>> entries) {
  google::protobuf::RepeatedPtrField<config::v1::Allow> allow;
  for (const auto& [group, clients] : entries) {
    config::v1::Allow* a = allow.Add();
    a->set_group(group);
    for (const std::string& c : clients) a->add_clients(c);
  }
  return allow;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class TlsEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tls_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    cert_dir = new std::string(tmpl);
    const std::string quiet = " >/dev/null";
    ASSERT_EQ(std::system((std::string(QSIGN_GEN_CERTS) + " " + *cert_dir +
                           " server gateway lifecycle" + quiet)
                              .c_str()),
              0);
    ASSERT_EQ(
        std::system(
            (std::string(QSIGN_GEN_CERTS) + " --ca other " + *cert_dir + " rogue" + quiet).c_str()),
        0);
  }
  void TearDown() override {
    if (cert_dir != nullptr) std::filesystem::remove_all(*cert_dir);
  }
};

const ::testing::Environment* const environment =
    ::testing::AddGlobalTestEnvironment(new TlsEnvironment());

// A signer whose read and admin methods only count that they ran.
class CountingSigner final : public v1::Signer::Service {
 public:
  grpc::Status ListCredentials(grpc::ServerContext* context, const v1::ListCredentialsRequest*,
                               v1::ListCredentialsResponse*) override {
    ++calls;
    identities = PeerIdentities(*context->auth_context());
    return grpc::Status::OK;
  }
  grpc::Status CreateKey(grpc::ServerContext*, const v1::CreateKeyRequest*,
                         v1::CredentialInfo*) override {
    ++calls;
    return grpc::Status::OK;
  }
  std::atomic<int> calls{0};
  std::vector<std::string> identities;
};

class TlsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto policy = AccessPolicy::New(
        AllowList({{"signer.read", {"gateway"}}, {"signer.admin", {"lifecycle"}}}));
    ASSERT_TRUE(policy.ok()) << policy.status();
    auto credentials = ServerCredentialsFromConfig(TlsFor("server"), *policy);
    ASSERT_TRUE(credentials.ok()) << credentials.status();
    GrpcServerOptions options;
    options.credentials = *credentials;
    options.metrics = &registry_;
    auto server = GrpcServer::Start(options, {&signer_});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  std::shared_ptr<grpc::Channel> ChannelAs(const std::string& name, const std::string& ca = "ca") {
    auto credentials = ChannelCredentialsFromConfig(TlsFor(name, ca));
    EXPECT_TRUE(credentials.ok()) << credentials.status();
    return grpc::CreateChannel(server_->local_target(), *credentials);
  }

  grpc::Status ListCredentials(const std::shared_ptr<grpc::Channel>& channel) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::ListCredentialsRequest request;
    request.set_account_id("acc-1");
    v1::ListCredentialsResponse response;
    return v1::Signer::NewStub(channel)->ListCredentials(&context, request, &response);
  }

  grpc::Status CreateKey(const std::shared_ptr<grpc::Channel>& channel) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::CreateKeyRequest request;
    v1::CredentialInfo response;
    return v1::Signer::NewStub(channel)->CreateKey(&context, request, &response);
  }

  metrics::Registry registry_;
  CountingSigner signer_;
  std::unique_ptr<GrpcServer> server_;
};

TEST_F(TlsServerTest, AllowListedClientIsServedAndIdentifiedByItsCertificate) {
  EXPECT_TRUE(ListCredentials(ChannelAs("gateway")).ok());
  EXPECT_EQ(signer_.calls, 1);
  EXPECT_THAT(signer_.identities, ::testing::ElementsAre("gateway", "localhost"));
  EXPECT_TRUE(CreateKey(ChannelAs("lifecycle")).ok());
  EXPECT_EQ(signer_.calls, 2);
}

TEST_F(TlsServerTest, VerifiedClientNotOnTheAllowListIsDeniedBeforeTheHandler) {
  ::testing::internal::CaptureStderr();
  grpc::Status status = CreateKey(ChannelAs("gateway"));
  std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(status.error_message(),
            "client \"gateway\" may not call /qsign.v1.Signer/CreateKey (RPC group signer.admin)");
  EXPECT_THAT(log, HasSubstr("\"client\":\"gateway\""));
  EXPECT_THAT(log, HasSubstr("\"method\":\"/qsign.v1.Signer/CreateKey\""));
  EXPECT_THAT(log, HasSubstr("\"group\":\"signer.admin\""));

  status = ListCredentials(ChannelAs("lifecycle"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("client \"lifecycle\""));
  EXPECT_THAT(status.error_message(), HasSubstr("(RPC group signer.read)"));
  EXPECT_EQ(signer_.calls, 0);
}

TEST_F(TlsServerTest, HealthIsOpenToEveryVerifiedClient) {
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  // "server" is on no allow-list.
  grpc::Status status =
      grpc::health::v1::Health::NewStub(ChannelAs("server"))->Check(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(TlsServerTest, CertificateFromAnotherCaFailsTheHandshake) {
  // The rogue client trusts our CA, so only the server's check of its certificate refuses it.
  grpc::Status status = ListCredentials(ChannelAs("rogue", "ca"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_EQ(signer_.calls, 0);
}

TEST_F(TlsServerTest, ClientWithoutCertificateFailsTheHandshake) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ReadAll(CertPath("ca.crt"));
  grpc::Status status =
      ListCredentials(grpc::CreateChannel(server_->local_target(), grpc::SslCredentials(options)));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_EQ(signer_.calls, 0);
}

TEST_F(TlsServerTest, PlaintextClientFails) {
  grpc::Status status = ListCredentials(
      grpc::CreateChannel(server_->local_target(), grpc::InsecureChannelCredentials()));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_EQ(signer_.calls, 0);
}

TEST_F(TlsServerTest, ClientRefusesAServerFromAnotherCa) {
  // The client trusts only the other CA; our server's certificate does not chain to it.
  grpc::Status status = ListCredentials(ChannelAs("rogue", "other"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_EQ(signer_.calls, 0);
}

TEST(AccessPolicyTest, UnknownGroupIsAConfigErrorNamingTheField) {
  auto policy = AccessPolicy::New(
      AllowList({{"signer.read", {"gateway"}}, {"signer.everything", {"gateway"}}}));
  EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(policy.status().message(), "allow[1].group: unknown RPC group \"signer.everything\"");
}

TEST(AccessPolicyTest, EmptyClientsAndGroupAreConfigErrors) {
  EXPECT_EQ(AccessPolicy::New(AllowList({{"signer.read", {}}})).status().message(),
            "allow[0].clients: empty (name the client identities)");
  EXPECT_EQ(AccessPolicy::New(AllowList({{"", {"gateway"}}})).status().message(),
            "allow[0].group: required");
  EXPECT_EQ(AccessPolicy::New(AllowList({{"signer.read", {"gateway", ""}}})).status().message(),
            "allow[0].clients[1]: empty");
  EXPECT_EQ(
      AccessPolicy::New(AllowList({{"signer.read", {"gateway", "LocalHost"}}})).status().message(),
      "allow[0].clients[1]: \"localhost\" names no one client (every local certificate "
      "has it)");
}

TEST(AccessPolicyTest, ChecksIdentitiesAgainstTheMethodsGroup) {
  auto policy = AccessPolicy::New(AllowList(
      {{"signer.sign", {"gateway", "relying-party-1"}}, {"signer.sign", {"relying-party-2"}}}));
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_TRUE((*policy)->Check("/qsign.v1.Signer/SignHash", {"x", "relying-party-2"}).ok());
  EXPECT_TRUE((*policy)->Check("/qsign.v1.Signer/SignHash", {"gateway"}).ok());
  EXPECT_EQ((*policy)->Check("/qsign.v1.Signer/SignHash", {"consent"}).message(),
            "client \"consent\" may not call /qsign.v1.Signer/SignHash (RPC group signer.sign)");
  EXPECT_EQ((*policy)->Check("/qsign.v1.Signer/SignHash", {}).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ((*policy)->Check("/qsign.v1.Signer/Nope", {"gateway"}).message(),
            "client \"gateway\" may not call /qsign.v1.Signer/Nope (in no RPC group)");
  EXPECT_EQ((*policy)->Check("", {"gateway"}).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE((*policy)->Check("/grpc.health.v1.Health/Check", {}).ok());
  EXPECT_TRUE(
      (*policy)
          ->Check("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", {"anyone"})
          .ok());
}

// The RPC group table of docs/operations.md: rows "| `group` | `Service/Method`, `Method`, ... |".
std::map<std::string, std::set<std::string>> DocumentedRpcGroups() {
  std::ifstream in(QSIGN_OPERATIONS_MD);
  EXPECT_TRUE(in.good()) << QSIGN_OPERATIONS_MD;
  std::map<std::string, std::set<std::string>> groups;
  std::string line;
  bool in_table = false;
  while (std::getline(in, line)) {
    if (line.starts_with("| group | methods |")) {
      in_table = true;
      continue;
    }
    if (!in_table || line.starts_with("|---")) continue;
    if (!line.starts_with("| `")) break;
    std::vector<std::string> cells = absl::StrSplit(line, '|');
    if (cells.size() < 4) break;
    std::string group(absl::StripAsciiWhitespace(cells[1]));
    group = group.substr(1, group.size() - 2);  // Strip the backticks.
    std::set<std::string>& methods = groups[group];
    std::string service;
    for (absl::string_view item : absl::StrSplit(cells[2], ',')) {
      std::string name(absl::StripAsciiWhitespace(item));
      name = name.substr(1, name.size() - 2);
      if (auto slash = name.find('/'); slash != std::string::npos) {
        service = name.substr(0, slash);
        name = name.substr(slash + 1);
      }
      methods.insert(absl::StrCat("/qsign.v1.", service, "/", name));
    }
  }
  EXPECT_FALSE(groups.empty()) << "no RPC group table in " << QSIGN_OPERATIONS_MD;
  return groups;
}

TEST(AccessPolicyTest, EveryQsignMethodIsInExactlyOneGroup) {
  // Referencing one message of each file links its descriptors into the generated pool.
  const google::protobuf::FileDescriptor* files[] = {
      v1::SignHashRequest::descriptor()->file(), v1::ApproveRequest::descriptor()->file(),
      v1::StartLoginRequest::descriptor()->file(), v1::IssueRequest::descriptor()->file(),
      v1::TimestampRequest::descriptor()->file()};
  std::set<std::string> in_protos;
  for (const google::protobuf::FileDescriptor* file : files) {
    ASSERT_EQ(file->package(), "qsign.v1");
    for (int s = 0; s < file->service_count(); ++s) {
      const google::protobuf::ServiceDescriptor* service = file->service(s);
      for (int m = 0; m < service->method_count(); ++m) {
        in_protos.insert("/" + service->full_name() + "/" + service->method(m)->name());
      }
    }
  }
  ASSERT_EQ(in_protos.size(), 7u + 15u + 15u + 11u + 1u) << "a service was not linked";
  // No other qsign.v1 service hides in a file not referenced above.
  for (const char* name : {"qsign/v1/sad.proto", "qsign/v1/common.proto"}) {
    const google::protobuf::FileDescriptor* f =
        google::protobuf::DescriptorPool::generated_pool()->FindFileByName(name);
    if (f != nullptr) {
      EXPECT_EQ(f->service_count(), 0) << name;
    }
  }

  // Every method carries option (qsign.v1.rpc_group).
  for (const google::protobuf::FileDescriptor* file : files) {
    for (int s = 0; s < file->service_count(); ++s) {
      const google::protobuf::ServiceDescriptor* service = file->service(s);
      for (int m = 0; m < service->method_count(); ++m) {
        EXPECT_FALSE(service->method(m)->options().GetExtension(v1::rpc_group).empty())
            << service->method(m)->full_name() << " has no option (qsign.v1.rpc_group)";
      }
    }
  }

  std::multiset<std::string> in_groups;
  std::map<std::string, std::set<std::string>> methods_of_group;
  for (const RpcGroup& group : QsignRpcGroups()) {
    std::set<std::string> methods(group.methods.begin(), group.methods.end());
    EXPECT_TRUE(methods_of_group.emplace(group.name, std::move(methods)).second)
        << "duplicate group " << group.name;
    EXPECT_FALSE(group.methods.empty()) << group.name;
    for (const std::string& m : group.methods) in_groups.insert(m);
  }
  for (const std::string& method : in_protos) {
    EXPECT_EQ(in_groups.count(method), 1u) << method << " must be in exactly one RPC group";
  }
  for (const std::string& method : in_groups) {
    EXPECT_TRUE(in_protos.contains(method)) << method << " is in a group but not in the protos";
  }
  // The groups and their methods are the table in docs/operations.md ("TLS and allow-lists").
  EXPECT_EQ(methods_of_group, DocumentedRpcGroups());
  EXPECT_TRUE(AccessPolicy::New({}).ok());
}

TEST(ServerCredentialsTest, MissingKeyFileNamesTheField) {
  config::v1::Tls tls = TlsFor("server");
  tls.set_key_file(CertPath("missing.key"));
  auto policy = AccessPolicy::New({});
  ASSERT_TRUE(policy.ok());
  auto credentials = ServerCredentialsFromConfig(tls, *policy);
  EXPECT_EQ(credentials.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(credentials.status().message(), HasSubstr("tls.key_file: "));
  EXPECT_THAT(credentials.status().message(), HasSubstr(CertPath("missing.key")));
}

TEST(ServerCredentialsTest, BadFilesNameTheField) {
  auto policy = AccessPolicy::New({});
  ASSERT_TRUE(policy.ok());
  config::v1::Tls tls = TlsFor("server");
  tls.set_key_file(CertPath("gateway.key"));
  EXPECT_THAT(ServerCredentialsFromConfig(tls, *policy).status().message(),
              HasSubstr("tls.key_file: " + CertPath("gateway.key") + ": not the key of"));
  tls = TlsFor("server");
  tls.set_cert_file(CertPath("server.key"));
  EXPECT_THAT(ServerCredentialsFromConfig(tls, *policy).status().message(),
              HasSubstr("tls.cert_file: " + CertPath("server.key") + ": no PEM certificate"));
  tls = TlsFor("server");
  tls.set_client_ca_file(CertPath("nope.crt"));
  EXPECT_THAT(ChannelCredentialsFromConfig(tls).status().message(),
              HasSubstr("tls.client_ca_file: " + CertPath("nope.crt") + ": cannot open"));
  tls = TlsFor("server");
  tls.clear_cert_file();
  EXPECT_EQ(ChannelCredentialsFromConfig(tls).status().message(), "tls.cert_file: required");
}

TEST(OwnIdentityTest, FirstDnsNameOfTheCertificate) {
  absl::StatusOr<std::string> name = OwnIdentity(TlsFor("gateway"));
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(*name, "gateway");
  config::v1::Tls tls = TlsFor("gateway");
  tls.set_cert_file(CertPath("ca.crt"));  // A CA certificate: no subjectAltName.
  EXPECT_EQ(OwnIdentity(tls).status().message(),
            "tls.cert_file: " + CertPath("ca.crt") + ": no DNS subjectAltName");
  tls.set_cert_file(CertPath("gateway.key"));
  EXPECT_EQ(OwnIdentity(tls).status().message(),
            "tls.cert_file: " + CertPath("gateway.key") + ": no PEM certificate");
}

class MetricsHttpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_.AddCounter("qsign_tls_test_total", "test", {});
    auto server = metrics::MetricsHttpServer::Start(
        "127.0.0.1:0", &registry_,
        {CertPath("server.crt"), CertPath("server.key"), CertPath("ca.crt")});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  httplib::Result Get(const std::string& client) {
    std::unique_ptr<httplib::SSLClient> cli =
        client.empty() ? std::make_unique<httplib::SSLClient>("127.0.0.1", server_->port())
                       : std::make_unique<httplib::SSLClient>("127.0.0.1", server_->port(),
                                                              CertPath(client + ".crt"),
                                                              CertPath(client + ".key"));
    cli->set_ca_cert_path(CertPath("ca.crt").c_str());
    cli->enable_server_certificate_verification(true);
    cli->set_connection_timeout(5);
    return cli->Get("/metrics");
  }
  metrics::Registry registry_;
  std::unique_ptr<metrics::MetricsHttpServer> server_;
};

TEST_F(MetricsHttpsTest, ScraperWithCertificateGetsMetrics) {
  httplib::Result res = Get("gateway");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_THAT(res->body, HasSubstr("qsign_tls_test_total 1"));
}

TEST_F(MetricsHttpsTest, ScraperWithoutOrWithForeignCertificateIsRefused) {
  EXPECT_FALSE(Get(""));
  EXPECT_FALSE(Get("rogue"));
}

TEST(MetricsHttpsConfigTest, MissingKeyFileNamesTheField) {
  metrics::Registry registry;
  auto server = metrics::MetricsHttpServer::Start(
      "127.0.0.1:0", &registry,
      {CertPath("server.crt"), CertPath("missing.key"), CertPath("ca.crt")});
  EXPECT_THAT(server.status().message(), HasSubstr("tls.key_file: "));
}

}  // namespace
}  // namespace qsign::tls
