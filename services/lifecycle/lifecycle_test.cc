// The lifecycle service over real gRPC on loopback, with the real signer service (over gRPC), a
// real SoftHSM2 token and a real PostgreSQL; identity and consent are fakes (other services).
// Independent tools check what relying parties see: openssl verify -crl_check, openssl ocsp.
#include "services/lifecycle/lifecycle.h"

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "common/db/audit.h"
#include "common/db/testing/pg_test.h"
#include "common/file.h"
#include "common/grpc_server.h"
#include "common/mail/mailer.h"
#include "common/metrics.h"
#include "common/ossl.h"
#include "common/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsm/hsm.h"
#include "qsign/v1/lifecycle.grpc.pb.h"
#include "qsign/v1/signer.grpc.pb.h"
#include "services/lifecycle/ca/ca_setup.h"
#include "services/lifecycle/ca/ca_store.h"
#include "services/lifecycle/ca/certificate.h"
#include "services/lifecycle/ca/der.h"
#include "services/lifecycle/ca/ocsp.h"
#include "services/lifecycle/clients_grpc.h"
#include "services/lifecycle/contracts.h"
#include "services/lifecycle/lifecycle_grpc.h"
#include "services/lifecycle/lifecycle_store.h"
#include "services/lifecycle/scheduler.h"
#include "services/lifecycle/schema.h"
#include "services/lifecycle/status_cache.h"
#include "services/lifecycle/status_http.h"
#include "services/lifecycle/testing/cert_testing.h"
#include "tests/testing/audit_pages.h"
#include "tests/testing/metrics.h"
#include "tests/testing/qsignd_process.h"
#include "tests/testing/service_test.h"
#include "tests/testing/stacks.h"
#include "tests/testing/test_data.h"
#include "tests/testing/test_pki.h"

namespace qsign::lifecycle {
namespace {

// Where the signer keeps a credential's key: its own token, in the user namespace
// (docs/security-model.md). Spelled here, not taken from the signer's headers.
std::string SignerKeyId(const std::string& credential_id) { return "user/" + credential_id; }

namespace pb = ::qsign::v1;
using ::qsign::testing::MetricValue;
using ::testing::ElementsAre;
using testing::FindExtension;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::NameEntries;
using ::testing::SizeIs;

constexpr char kOperatorSecret[] = "operator-secret-1";
constexpr char kConsentSecret[] = "consent-secret-1";

// --- Fakes of the services lifecycle calls -----------------------------------------------------

// Accounts, and users' sessions by opaque tokens (the real verification, common/auth's
// SessionKeyCache against the identity service, is tests/session_auth_test.cc).
class FakeIdentity final : public IdentityClient, public auth::SessionVerifier {
 public:
  explicit FakeIdentity(const Clock* clock) : clock_(clock) {}

  void AddAccount(Account a) {
    absl::MutexLock lock(&mu_);
    accounts_[a.account_id] = std::move(a);
  }
  void SetLevel(const std::string& id, AssuranceLevel level) {
    absl::MutexLock lock(&mu_);
    accounts_[id].assurance_level = level;
  }
  // A session approved on the phone now.
  std::string Login(const std::string& account_id) {
    absl::MutexLock lock(&mu_);
    std::string token = absl::StrCat("token-", ++next_);
    sessions_[token] = auth::SessionClaims{.session_id = absl::StrCat("session-", next_),
                                           .account_id = account_id,
                                           .auth_time = clock_->Now()};
    return token;
  }

  absl::StatusOr<Account> GetAccount(std::string_view account_id) override {
    if (on_get_account) on_get_account(account_id);
    absl::MutexLock lock(&mu_);
    auto it = accounts_.find(std::string(account_id));
    if (it == accounts_.end()) return absl::NotFoundError("account_id: no such account");
    return it->second;
  }
  absl::StatusOr<auth::SessionClaims> Verify(std::string_view token, bool) override {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(std::string(token));
    if (it == sessions_.end()) return absl::UnauthenticatedError("session token: not valid");
    return it->second;
  }
  // Called first by GetAccount (to hold a call there); set before the calls start.
  std::function<void(std::string_view)> on_get_account;

  absl::StatusOr<int> RevokeSessions(std::string_view account_id, std::string_view) override {
    absl::MutexLock lock(&mu_);
    int n = 0;
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      if (it->second.account_id == account_id) {
        sessions_.erase(it++);
        ++n;
      } else {
        ++it;
      }
    }
    return n;
  }

 private:
  const Clock* clock_;
  absl::Mutex mu_;
  std::map<std::string, Account> accounts_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, auth::SessionClaims> sessions_ ABSL_GUARDED_BY(mu_);
  int next_ ABSL_GUARDED_BY(mu_) = 0;
};

// The consent service as far as revoke-all goes: devices that can approve until deactivated.
class FakeConsent final : public ConsentClient {
 public:
  void AddDevice(const std::string& account, const std::string& device) {
    absl::MutexLock lock(&mu_);
    active_[account].insert(device);
  }
  // What Consent.Approve checks first: the device must be active.
  absl::Status Approve(const std::string& account, const std::string& device) {
    absl::MutexLock lock(&mu_);
    if (!active_[account].contains(device)) {
      return absl::PermissionDeniedError("device: not active");
    }
    return absl::OkStatus();
  }
  absl::StatusOr<int> DeactivateDevices(std::string_view account_id, std::string_view) override {
    absl::MutexLock lock(&mu_);
    auto& devices = active_[std::string(account_id)];
    const int n = static_cast<int>(devices.size());
    devices.clear();
    return n;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, std::set<std::string>> active_ ABSL_GUARDED_BY(mu_);
};

// The real signer client with injectable crashes.
class FaultySigner final : public SignerClient {
 public:
  explicit FaultySigner(SignerClient* inner) : inner_(inner) {}
  absl::StatusOr<std::string> CreateKey(std::string_view id, std::string_view account,
                                        hsm::KeyType type) override {
    if (before_create_key) before_create_key();
    {
      absl::MutexLock lock(&mu_);
      ++create_key_calls_[std::string(id)];
      // A transient failure of the first attempt of every credential: before the signer saw it,
      // or after it made the key (the reply lost), alternately.
      if (flaky_create_key && create_key_calls_[std::string(id)] == 1 &&
          (flaky_count_++ % 2 == 0)) {
        return absl::UnavailableError("injected: signer unreachable");
      }
    }
    auto spki = inner_->CreateKey(id, account, type);
    if (spki.ok() && flaky_create_key) {
      absl::MutexLock lock(&mu_);
      if (create_key_calls_[std::string(id)] == 1) {
        return absl::UnavailableError("injected: the reply was lost");
      }
    }
    // The key exists in the HSM now; the process "dies" before anything else is stored (CANCELLED:
    // not a failure the issuance retries by itself).
    if (spki.ok() && crash_after_create_key.exchange(false)) {
      return absl::CancelledError("injected crash after CreateKey");
    }
    return spki;
  }
  int create_key_calls(const std::string& id) {
    absl::MutexLock lock(&mu_);
    return create_key_calls_[id];
  }
  absl::Status SetCertificate(std::string_view id, const std::vector<std::string>& chain) override {
    if (before_set_certificate) before_set_certificate();
    if (fail_set_certificate.exchange(false)) {
      return absl::UnavailableError("injected failure of SetCertificate");
    }
    return inner_->SetCertificate(id, chain);
  }
  absl::Status DisableCredential(std::string_view id) override {
    if (down) return absl::UnavailableError("injected: the signer is down");
    calls.push_back(absl::StrCat("disable ", std::string(id)));
    return inner_->DisableCredential(id);
  }
  absl::Status DestroyKey(std::string_view id, KeyEnd why) override {
    if (down) return absl::UnavailableError("injected: the signer is down");
    if (fail_destroy_key.exchange(false)) {
      return absl::UnavailableError("injected failure of DestroyKey");
    }
    calls.push_back(absl::StrCat("destroy ", std::string(id)));
    return inner_->DestroyKey(id, why);
  }
  // Called first by CreateKey and SetCertificate (to hold an issuance there); set before the
  // calls start.
  std::function<void()> before_create_key;
  std::function<void()> before_set_certificate;
  std::atomic<bool> crash_after_create_key{false};
  // Every call fails UNAVAILABLE, as when the signer's process is gone.
  std::atomic<bool> down{false};
  // DisableCredential and DestroyKey calls that reached the signer, in order (one test thread).
  std::vector<std::string> calls;
  std::atomic<bool> fail_set_certificate{false};
  std::atomic<bool> fail_destroy_key{false};
  std::atomic<bool> flaky_create_key{false};

 private:
  SignerClient* inner_;  // Not owned.
  absl::Mutex mu_;
  std::map<std::string, int> create_key_calls_ ABSL_GUARDED_BY(mu_);
  int flaky_count_ ABSL_GUARDED_BY(mu_) = 0;
};

// --- Fixture -----------------------------------------------------------------------------------

ContractRegistry TestContracts() {
  return ContractRegistry({{"2024-01", "old terms\n", ""}, {"2025-01", "current terms\n", ""}});
}

class LifecycleTest : public qsign::testing::ServiceTest {
 protected:
  void SetUp() override {
    ServiceTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(MigrateLifecycleSchema(pool()).ok());

    // The signer service, for real, over gRPC: built by its stack as qsignd builds it.
    auto stacks = qsign::testing::Stacks::Start(env(), {.services = {"signer"}, .clock = &clock_});
    ASSERT_TRUE(stacks.ok()) << stacks.status();
    signer_stacks_ = *std::move(stacks);
    signer_stub_ = pb::Signer::NewStub(signer_stacks_->channel());
    signer_client_ = std::make_unique<GrpcSignerClient>(
        qsign::daemon::DeferredChannel::Connected("signer", signer_stacks_->channel()),
        ServiceCredential{.client_id = "lifecycle",
                          .secret = qsign::testing::ServiceSecret("lifecycle")});
    faulty_signer_ = std::make_unique<FaultySigner>(signer_client_.get());

    // The CA.
    ca_store_ = NewPostgresCaStore(&pool());
    auto cas = CaSet::Init(&hsm("lifecycle"), ca_store_.get(), clock_, CaConfig{});
    ASSERT_TRUE(cas.ok()) << cas.status();
    cas_ = *std::move(cas);

    // Lifecycle.
    identity_.AddAccount({.account_id = "alice",
                          .username = "alice@example.rs",
                          .given_name = "Alisa",
                          .surname = "Petrović",
                          .national_id = "0101990710006",
                          .certificate_email = "alisa@example.rs",
                          .assurance_level = AssuranceLevel::kHigh});
    identity_.AddAccount({.account_id = "bob",
                          .username = "bob@example.rs",
                          .given_name = "Bogdan",
                          .surname = "Jovanović",
                          .national_id = "0202985710011",
                          .assurance_level = AssuranceLevel::kHigh});
    store_ = NewPostgresLifecycleStore(&pool());
    lifecycle_ = std::make_unique<Lifecycle>(cas_.get(), store_.get(), faulty_signer_.get(),
                                             &identity_, &consent_, &contracts_, &clock_,
                                             LifecycleConfig{.pds_url = "https://qsign.test/pds"});
    auth::CredentialTable operators;
    ASSERT_TRUE(operators.AddSecret("op1", kOperatorSecret).ok());
    auth::CredentialTable services;
    ASSERT_TRUE(services.AddSecret("consent", kConsentSecret).ok());
    ASSERT_TRUE(services.AddSecret("gateway", "gateway-secret").ok());
    authenticator_ = std::make_unique<auth::Authenticator>(
        std::move(operators), std::move(services), &identity_, "lifecycle");
    grpc_ = std::make_unique<LifecycleGrpc>(lifecycle_.get(), authenticator_.get());
    auto server = GrpcServer::Start({}, {grpc_.get()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = pb::Lifecycle::NewStub(
        grpc::CreateChannel(server_->local_target(), grpc::InsecureChannelCredentials()));

    ocsp_ = std::make_unique<OcspResponder>(cas_.get(), lifecycle_->status_source(), &clock_);
    auto http = StatusHttpServer::Start({}, ocsp_.get(), lifecycle_.get(), cas_.get());
    ASSERT_TRUE(http.ok()) << http.status();
    http_ = *std::move(http);
  }

  void TearDown() override {
    http_.reset();
    if (server_) server_->Shutdown(absl::ZeroDuration());
    if (signer_stacks_) signer_stacks_->Shutdown(absl::ZeroDuration());
    for (const std::string& f : temp_files_) unlink(f.c_str());
  }

  std::unique_ptr<grpc::ClientContext> As(const std::string& authorization) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!authorization.empty()) ctx->AddMetadata("authorization", authorization);
    return ctx;
  }
  std::string Bearer(const std::string& account) {
    return absl::StrCat("Bearer ", identity_.Login(account));
  }
  std::string Operator() { return absl::StrCat("Operator op1.", kOperatorSecret); }
  std::string ConsentService() { return absl::StrCat("Service consent.", kConsentSecret); }

  grpc::Status Accept(const std::string& auth, const std::string& version = "2025-01") {
    pb::AcceptContractRequest req;
    req.set_version(version);
    auto contract = contracts_.Find(version);
    req.set_text_sha256(contract.ok() ? (*contract)->sha256 : "");
    req.mutable_client()->set_client_address("203.0.113.7");
    pb::ContractAcceptance resp;
    return stub_->AcceptContract(As(auth).get(), req, &resp);
  }

  grpc::Status Issue(const std::string& auth, const std::string& request_id, pb::Certificate* cert,
                     pb::KeyAlgorithm algorithm = pb::KEY_ALGORITHM_UNSPECIFIED) {
    pb::IssueRequest req;
    req.set_client_request_id(request_id);
    req.set_key_algorithm(algorithm);
    return stub_->Issue(As(auth).get(), req, cert);
  }

  // Accepts the contract and issues: the happy path.
  pb::Certificate IssueFor(const std::string& account, const std::string& request_id = "req-1") {
    const std::string auth = Bearer(account);
    grpc::Status s = Accept(auth);
    EXPECT_TRUE(s.ok()) << s.error_message();
    pb::Certificate cert;
    s = Issue(auth, request_id, &cert);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return cert;
  }

  grpc::Status Revoke(const std::string& auth, const std::string& certificate_id,
                      pb::RevocationReason reason, pb::Certificate* out) {
    pb::RevokeRequest req;
    req.set_certificate_id(certificate_id);
    req.set_reason(reason);
    return stub_->Revoke(As(auth).get(), req, out);
  }

  pb::GetStatusResponse Status(const std::string& auth) {
    pb::GetStatusResponse resp;
    grpc::Status s = stub_->GetStatus(As(auth).get(), pb::GetStatusRequest(), &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }

  pb::Certificate EnrolledPhone(const std::string& account, const std::string& device_id);
  // The certificate's state as lifecycle stores it.
  CertState StateOf(const std::string& id) {
    auto record = store_->GetCertificate(id);
    EXPECT_TRUE(record.ok()) << record.status();
    return record.ok() ? record->state : CertState::kAbandoned;
  }

  pb::CredentialInfo Credential(const std::string& id) {
    pb::GetCredentialInfoRequest req;
    req.set_credential_id(id);
    pb::CredentialInfo info;
    grpc::ClientContext ctx;
    grpc::Status s = signer_stub_->GetCredentialInfo(&ctx, req, &info);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return info;
  }

  std::string Temp(const std::string& data, const std::string& suffix) {
    temp_files_.push_back(testing::WriteTempFile(data, suffix));
    return temp_files_.back();
  }
  std::string Pem(const std::string& der, const std::string& suffix = ".pem") {
    return Temp(testing::CertificatePem(der), suffix);
  }
  std::string HttpGet(const std::string& path, int* status = nullptr) {
    httplib::Client client("127.0.0.1", http_->port());
    auto res = client.Get(path);
    if (!res) return "";
    if (status != nullptr) *status = res->status;
    return res->body;
  }

  // Real time, whole seconds: openssl checks certificate, CRL and OCSP times against its clock.
  FakeClock clock_{absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()))};
  std::unique_ptr<qsign::testing::Stacks> signer_stacks_;
  std::unique_ptr<pb::Signer::Stub> signer_stub_;
  std::unique_ptr<GrpcSignerClient> signer_client_;
  std::unique_ptr<FaultySigner> faulty_signer_;
  std::unique_ptr<CaStore> ca_store_;
  std::unique_ptr<CaSet> cas_;
  FakeIdentity identity_{&clock_};
  FakeConsent consent_;
  ContractRegistry contracts_ = TestContracts();
  std::unique_ptr<LifecycleStore> store_;
  std::unique_ptr<Lifecycle> lifecycle_;
  std::unique_ptr<auth::Authenticator> authenticator_;
  std::unique_ptr<LifecycleGrpc> grpc_;
  std::unique_ptr<GrpcServer> server_;
  std::unique_ptr<pb::Lifecycle::Stub> stub_;
  std::unique_ptr<OcspResponder> ocsp_;
  std::unique_ptr<StatusHttpServer> http_;
  std::vector<std::string> temp_files_;
};

// --- Contracts ---------------------------------------------------------------------------------

TEST(ContractsTest, TheRepositoryContractIsCompiledIn) {
  const ContractRegistry& builtin = ContractRegistry::BuiltIn();
  EXPECT_EQ(builtin.current().version, "2025-01");
  EXPECT_THAT(builtin.current().text, HasSubstr("Version 2025-01"));
  EXPECT_THAT(builtin.current().text, HasSubstr("PNORS-"));
  EXPECT_EQ(builtin.current().sha256, Sha256(builtin.current().text));
  EXPECT_EQ(builtin.Find("1999-01").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(LifecycleTest, GetContractNeedsNoCredential) {
  pb::GetContractRequest req;
  pb::Contract contract;
  ASSERT_TRUE(stub_->GetContract(As("").get(), req, &contract).ok());
  EXPECT_EQ(contract.version(), "2025-01");
  EXPECT_EQ(contract.text(), "current terms\n");
  EXPECT_EQ(contract.text_sha256(), Sha256("current terms\n"));
  EXPECT_TRUE(contract.current());
  req.set_version("2024-01");
  ASSERT_TRUE(stub_->GetContract(As("").get(), req, &contract).ok());
  EXPECT_FALSE(contract.current());
}

// A 20,000-character version is echoed as a short prefix: the status message is a header the
// client must be able to receive.
TEST_F(LifecycleTest, ContractRefusalsEchoOnlyAShortPrefixOfTheVersion) {
  const std::string huge(20000, 'v');
  pb::GetContractRequest get;
  get.set_version(huge);
  pb::Contract contract;
  grpc::Status s = stub_->GetContract(As("").get(), get, &contract);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message().size();
  EXPECT_THAT(s.error_message(), HasSubstr("version: no contract \"vvvv"));
  EXPECT_LT(s.error_message().size(), 200u);

  pb::AcceptContractRequest accept;
  accept.set_version(huge);
  accept.set_text_sha256(Sha256("current terms\n"));
  pb::ContractAcceptance acceptance;
  s = stub_->AcceptContract(As(Bearer("alice")).get(), accept, &acceptance);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message().size();
  EXPECT_THAT(s.error_message(), HasSubstr("(20000 bytes)"));
  EXPECT_LT(s.error_message().size(), 200u);
}

TEST_F(LifecycleTest, AcceptContractIsRecordedOnceAndMailed) {
  const std::string auth = Bearer("alice");
  pb::AcceptContractRequest req;
  req.set_version("2025-01");
  req.set_text_sha256(Sha256("something else"));
  pb::ContractAcceptance first, second;
  grpc::Status s = stub_->AcceptContract(As(auth).get(), req, &first);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("text_sha256"));

  req.set_version("2024-01");
  req.set_text_sha256(Sha256("old terms\n"));
  s = stub_->AcceptContract(As(auth).get(), req, &first);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("accept 2025-01"));

  req.set_version("2025-01");
  req.set_text_sha256(Sha256("current terms\n"));
  req.mutable_client()->set_client_address("203.0.113.7");
  ASSERT_TRUE(stub_->AcceptContract(As(auth).get(), req, &first).ok());
  EXPECT_EQ(first.account_id(), "alice");
  EXPECT_EQ(first.version(), "2025-01");
  EXPECT_EQ(first.text_sha256(), Sha256("current terms\n"));
  clock_.Advance(absl::Minutes(1));
  ASSERT_TRUE(stub_->AcceptContract(As(auth).get(), req, &second).ok());
  EXPECT_EQ(second.accepted_at().seconds(), first.accepted_at().seconds());

  // One e-mail with the contract, to the login address.
  auto mail = store_->PendingOutbox(10);
  ASSERT_TRUE(mail.ok());
  ASSERT_THAT(*mail, SizeIs(1));
  EXPECT_EQ((*mail)[0].recipient, "alice@example.rs");
  EXPECT_EQ((*mail)[0].body, "current terms\n");
  EXPECT_THAT((*mail)[0].subject, HasSubstr("2025-01"));
  auto recorded = store_->FindAcceptance("alice", "2025-01");
  ASSERT_TRUE(recorded.ok() && recorded->has_value());
  EXPECT_EQ((*recorded)->client_address, "203.0.113.7");
  EXPECT_TRUE(db::VerifyAuditChain(pool(), kSchema).ok());
}

// A minimal SMTP server on 127.0.0.1 (any free port): accepts one message per connection and
// keeps what it received.
class TinySmtpServer {
 public:
  struct Mail {
    std::string mail_from;
    std::vector<std::string> rcpt_to;
    std::string data;
  };

  TinySmtpServer() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen(fd_, 8);
    thread_ = std::thread([this] { Serve(); });
  }
  ~TinySmtpServer() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  int port() const { return port_; }
  std::vector<Mail> mails() {
    absl::MutexLock lock(&mu_);
    return mails_;
  }

 private:
  static bool ReadLine(int c, std::string& buf, std::string& line) {
    for (;;) {
      if (auto pos = buf.find("\r\n"); pos != std::string::npos) {
        line = buf.substr(0, pos);
        buf.erase(0, pos + 2);
        return true;
      }
      char tmp[4096];
      ssize_t n = recv(c, tmp, sizeof(tmp), 0);
      if (n <= 0) return false;
      buf.append(tmp, n);
    }
  }
  static void Reply(int c, std::string_view r) {
    std::string line = absl::StrCat(Av(r), "\r\n");
    (void)!send(c, line.data(), line.size(), MSG_NOSIGNAL);
  }
  void Serve() {
    while (!stop_) {
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      Session(c);
      close(c);
    }
  }
  void Session(int c) {
    std::string buf, line;
    Mail mail;
    Reply(c, "220 tiny.test ESMTP");
    while (ReadLine(c, buf, line)) {
      std::string upper = line;
      for (char& ch : upper) ch = static_cast<char>(toupper(static_cast<unsigned char>(ch)));
      if (upper.rfind("EHLO", 0) == 0 || upper.rfind("HELO", 0) == 0) {
        Reply(c, "250 tiny.test");
      } else if (upper.rfind("MAIL FROM:", 0) == 0) {
        mail = Mail{.mail_from = line.substr(10)};
        Reply(c, "250 OK");
      } else if (upper.rfind("RCPT TO:", 0) == 0) {
        mail.rcpt_to.push_back(line.substr(8));
        Reply(c, "250 OK");
      } else if (upper == "DATA") {
        Reply(c, "354 go ahead");
        std::string::size_type end;
        while ((end = buf.find("\r\n.\r\n")) == std::string::npos) {
          char tmp[4096];
          ssize_t n = recv(c, tmp, sizeof(tmp), 0);
          if (n <= 0) return;
          buf.append(tmp, n);
        }
        mail.data = buf.substr(0, end + 2);
        buf.erase(0, end + 5);
        {
          absl::MutexLock lock(&mu_);
          mails_.push_back(mail);
        }
        Reply(c, "250 queued");
      } else if (upper == "QUIT") {
        Reply(c, "221 bye");
        return;
      } else {
        Reply(c, "250 OK");
      }
    }
  }

  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<Mail> mails_ ABSL_GUARDED_BY(mu_);
};

// A loopback port nobody listens on.
int ClosedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

TEST_F(LifecycleTest, ContractMailIsDeliveredOverSmtpAndRetriedAfterAFailure) {
  pb::AcceptContractRequest req;
  req.set_version("2025-01");
  req.set_text_sha256(Sha256("current terms\n"));
  pb::ContractAcceptance accepted;
  ASSERT_TRUE(stub_->AcceptContract(As(Bearer("alice")).get(), req, &accepted).ok());

  // Nobody listening: the mail stays queued, with the attempt and its error.
  SmtpMailer down({.url = absl::StrCat("smtp://127.0.0.1:", ClosedPort()),
                   .from = "qsign@example.rs",
                   .timeout = absl::Seconds(5)});
  auto failed = lifecycle_->DeliverOutbox(down, 10);
  ASSERT_TRUE(failed.ok()) << failed.status();
  EXPECT_EQ(failed->sent, 0);
  EXPECT_EQ(failed->failed, 1);
  auto pending = store_->PendingOutbox(10);
  ASSERT_TRUE(pending.ok());
  ASSERT_THAT(*pending, SizeIs(1));
  EXPECT_EQ((*pending)[0].attempts, 1);
  EXPECT_THAT((*pending)[0].last_error, HasSubstr("smtp"));

  // A later run with the server up delivers it, once.
  TinySmtpServer server;
  SmtpMailer up({.url = absl::StrCat("smtp://127.0.0.1:", server.port()),
                 .from = "qsign@example.rs",
                 .timeout = absl::Seconds(5)});
  auto run = lifecycle_->DeliverOutbox(up, 10);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->sent, 1);
  EXPECT_EQ(run->failed, 0);
  pending = store_->PendingOutbox(10);
  ASSERT_TRUE(pending.ok());
  EXPECT_THAT(*pending, IsEmpty());
  auto again = lifecycle_->DeliverOutbox(up, 10);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->sent, 0);

  auto mails = server.mails();
  ASSERT_THAT(mails, SizeIs(1));
  EXPECT_EQ(mails[0].mail_from, "<qsign@example.rs>");
  EXPECT_THAT(mails[0].rcpt_to, ElementsAre("<alice@example.rs>"));
  EXPECT_THAT(mails[0].data, HasSubstr("To: <alice@example.rs>\r\n"));
  EXPECT_THAT(mails[0].data, HasSubstr("Subject: Your qsign contract, version 2025-01\r\n"));
  EXPECT_THAT(mails[0].data, HasSubstr("\r\n\r\ncurrent terms\r\n"));
  auto row = pool().Exec("SELECT attempts, sent_at IS NOT NULL FROM lifecycle.outbox");
  ASSERT_TRUE(row.ok());
  EXPECT_EQ(row->Get(0, 0), "2");
  EXPECT_EQ(row->Get(0, 1), "t");
}

// --- Issue -------------------------------------------------------------------------------------

TEST_F(LifecycleTest, IssueRefusesEachPreconditionClearly) {
  pb::Certificate cert;
  // No credential, wrong kind of credential.
  EXPECT_EQ(Issue("", "r1", &cert).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Issue("Bearer nonsense", "r1", &cert).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Issue("Operator op1.wrong", "r1", &cert).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Issue(Operator(), "r1", &cert).error_code(), grpc::StatusCode::PERMISSION_DENIED);

  std::string auth = Bearer("alice");
  grpc::Status s = Issue(auth, "bad id!", &cert);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("client_request_id"));
  s = Issue(auth, "r1", &cert, pb::KEY_ALGORITHM_RSA_2048);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("key_algorithm"));

  identity_.SetLevel("alice", AssuranceLevel::kSubstantial);
  s = Issue(auth, "r1", &cert);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("identity not proofed"));
  identity_.SetLevel("alice", AssuranceLevel::kHigh);

  s = Issue(auth, "r1", &cert);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("contract version 2025-01 not accepted"));
  ASSERT_TRUE(Accept(auth, "2025-01").ok());

  clock_.Advance(absl::Minutes(5) + absl::Seconds(1));
  s = Issue(auth, "r1", &cert);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("log in again"));

  auth = Bearer("alice");
  ASSERT_TRUE(Issue(auth, "r1", &cert).ok());
  s = Issue(auth, "r2", &cert);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(s.error_message(), HasSubstr("use Renew"));
}

TEST_F(LifecycleTest, IssuedCertificateIsQualifiedAndActiveInTheSigner) {
  pb::Certificate cert = IssueFor("alice");
  EXPECT_EQ(cert.kind(), pb::CERTIFICATE_KIND_QUALIFIED);
  EXPECT_EQ(cert.status(), pb::CERTIFICATE_STATUS_ACTIVE);
  EXPECT_EQ(cert.account_id(), "alice");
  EXPECT_EQ(cert.key_algorithm(), pb::KEY_ALGORITHM_EC_P256);
  ASSERT_THAT(cert.issuer_chain_der(), SizeIs(2));
  EXPECT_EQ(cert.issuer_chain_der(0), cas_->qualified().cert_der());
  EXPECT_EQ(cert.issuer_chain_der(1), cas_->root().cert_der());
  EXPECT_EQ(cert.renew_opens_at().seconds(), cert.not_after().seconds() - 30 * 24 * 3600);

  OsslPtr<X509> x = ParseCertificate(cert.certificate_der());
  ASSERT_NE(x, nullptr);
  EXPECT_EQ(SerialHex(x.get()), cert.serial_hex());
  EXPECT_EQ(Asn1TimeToAbsl(X509_get0_notBefore(x.get())), clock_.Now());
  EXPECT_EQ(Asn1TimeToAbsl(X509_get0_notAfter(x.get())), AddYears(clock_.Now(), 5));
  auto subject = NameEntries(X509_get_subject_name(x.get()));
  ASSERT_THAT(subject, SizeIs(5));
  EXPECT_EQ(subject[1].value, "Petrović");
  EXPECT_EQ(subject[2].value, "Alisa");
  EXPECT_EQ(subject[3].value, "PNORS-0101990710006");
  EXPECT_EQ(subject[4].value, "Alisa Petrović");
  EXPECT_TRUE(FindExtension(x.get(), "2.5.29.17").has_value());  // Asked for an e-mail.
  auto qc = FindExtension(x.get(), "1.3.6.1.5.5.7.1.3");
  ASSERT_TRUE(qc.has_value());
  EXPECT_THAT(testing::FirstOids(qc->der),
              ElementsAre("1.3.6.1.5.5.7.11.2", "0.4.0.1862.1.1", "0.4.0.1862.1.4",
                          "0.4.0.1862.1.6", "0.4.0.1862.1.5"));

  // The signer holds the key and this certificate: the credential is active.
  pb::CredentialInfo info = Credential(cert.certificate_id());
  EXPECT_EQ(info.status(), pb::CREDENTIAL_STATUS_ACTIVE);
  EXPECT_EQ(info.account_id(), "alice");
  ASSERT_THAT(info.certificate_chain_der(), SizeIs(3));
  EXPECT_EQ(info.certificate_chain_der(0), cert.certificate_der());
  EXPECT_EQ(ToDer(X509_get_X509_PUBKEY(x.get()), i2d_X509_PUBKEY), info.public_key_spki());

  pb::GetStatusResponse status = Status(Bearer("alice"));
  EXPECT_EQ(status.state(), pb::ACCOUNT_CERTIFICATE_STATE_ACTIVE);
  EXPECT_EQ(status.certificate().certificate_id(), cert.certificate_id());
  EXPECT_EQ(status.valid_until().seconds(), cert.not_after().seconds());
  EXPECT_FALSE(status.renewal_open());
  EXPECT_EQ(status.accepted_contract_version(), "2025-01");
  EXPECT_TRUE(db::VerifyAuditChain(pool(), kSchema).ok());
}

TEST_F(LifecycleTest, NoEmailAskedNoEmailInTheCertificate) {
  pb::Certificate cert = IssueFor("bob");
  OsslPtr<X509> x = ParseCertificate(cert.certificate_der());
  ASSERT_NE(x, nullptr);
  EXPECT_FALSE(FindExtension(x.get(), "2.5.29.17").has_value());
}

TEST_F(LifecycleTest, IssueWithRsa3072) {
  const std::string auth = Bearer("alice");
  ASSERT_TRUE(Accept(auth).ok());
  pb::Certificate cert;
  grpc::Status s = Issue(auth, "rsa", &cert, pb::KEY_ALGORITHM_RSA_3072);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(cert.key_algorithm(), pb::KEY_ALGORITHM_RSA_3072);
  OsslPtr<X509> x = ParseCertificate(cert.certificate_der());
  EXPECT_EQ(EVP_PKEY_get_bits(X509_get0_pubkey(x.get())), 3072);
}

TEST_F(LifecycleTest, IssueIsIdempotentOnTheClientRequestId) {
  const std::string auth = Bearer("alice");
  ASSERT_TRUE(Accept(auth).ok());
  pb::Certificate first, again;
  ASSERT_TRUE(Issue(auth, "same", &first).ok());
  ASSERT_TRUE(Issue(auth, "same", &again).ok());
  EXPECT_EQ(again.certificate_id(), first.certificate_id());
  EXPECT_EQ(again.certificate_der(), first.certificate_der());
  grpc::Status s = Issue(auth, "same", &again, pb::KEY_ALGORITHM_RSA_3072);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("other parameters"));
  auto all = store_->ListCertificates("alice");
  ASSERT_TRUE(all.ok());
  EXPECT_THAT(*all, SizeIs(1));
}

// Eight citizens issuing at once, three times over, while the first key generation of every
// certificate fails transiently (before reaching the signer, or with its reply lost): every
// Issue succeeds, each with one active certificate whose key is the signer's.
TEST_F(LifecycleTest, ConcurrentIssuesAllSucceedThroughTransientKeyGenerationFailures) {
  faulty_signer_->flaky_create_key = true;
  for (int round = 0; round < 3; ++round) {
    std::vector<std::string> accounts;
    for (int i = 0; i < 8; ++i) {
      accounts.push_back(absl::StrCat("citizen-", round, "-", i));
      identity_.AddAccount({.account_id = accounts.back(),
                            .username = absl::StrCat(accounts.back(), "@example.rs"),
                            .given_name = "Ana",
                            .surname = "Petrović",
                            .national_id = qsign::testing::NationalId(100 + round * 8 + i),
                            .assurance_level = AssuranceLevel::kHigh});
    }
    std::vector<std::string> auths;
    for (const std::string& account : accounts) {
      auths.push_back(Bearer(account));
      ASSERT_TRUE(Accept(auths.back()).ok());
    }
    std::vector<grpc::Status> results(accounts.size());
    std::vector<pb::Certificate> certs(accounts.size());
    std::vector<std::thread> threads;
    for (size_t i = 0; i < accounts.size(); ++i) {
      threads.emplace_back([&, i] { results[i] = Issue(auths[i], "issue", &certs[i]); });
    }
    for (std::thread& t : threads) t.join();
    for (size_t i = 0; i < accounts.size(); ++i) {
      SCOPED_TRACE(accounts[i]);
      ASSERT_TRUE(results[i].ok()) << results[i].error_message();
      EXPECT_EQ(certs[i].status(), pb::CERTIFICATE_STATUS_ACTIVE);
      EXPECT_GE(faulty_signer_->create_key_calls(certs[i].certificate_id()), 2);
      const pb::CredentialInfo cred = Credential(certs[i].certificate_id());
      EXPECT_EQ(cred.status(), pb::CREDENTIAL_STATUS_ACTIVE);
      EXPECT_EQ(qsign::testing::SpkiOfCertificate(cred.certificate_chain_der(0)),
                cred.public_key_spki());
      auto key = hsm("signer").GetPublicKey(SignerKeyId(certs[i].certificate_id()));
      ASSERT_TRUE(key.ok()) << key.status();
      EXPECT_EQ(key->spki_der, cred.public_key_spki());
      auto records = store_->ListCertificates(accounts[i]);
      ASSERT_TRUE(records.ok());
      EXPECT_THAT(*records, SizeIs(1));
    }
  }
}

TEST_F(LifecycleTest, CrashBetweenKeyGenerationAndStorageLeavesNoActiveCertificate) {
  const std::string auth = Bearer("alice");
  ASSERT_TRUE(Accept(auth).ok());
  faulty_signer_->crash_after_create_key = true;
  pb::Certificate cert;
  EXPECT_EQ(Issue(auth, "crashy", &cert).error_code(), grpc::StatusCode::CANCELLED);

  // Nothing signed, nothing active: the intent is pending with its serial reserved, the
  // signer's key cannot sign (no certificate).
  EXPECT_EQ(Status(auth).state(), pb::ACCOUNT_CERTIFICATE_STATE_NONE);
  auto records = store_->ListCertificates("alice");
  ASSERT_TRUE(records.ok());
  ASSERT_THAT(*records, SizeIs(1));
  const CertRecord intent = (*records)[0];
  EXPECT_EQ(intent.state, CertState::kPending);
  EXPECT_TRUE(intent.certificate_der.empty());
  EXPECT_EQ(Credential(intent.certificate_id).status(), pb::CREDENTIAL_STATUS_PENDING);
  pb::ListCertificatesResponse listed;
  ASSERT_TRUE(stub_->ListCertificates(As(auth).get(), pb::ListCertificatesRequest(), &listed).ok());
  EXPECT_THAT(listed.certificates(), IsEmpty());

  // Another request while it is fresh: refused as in progress.
  grpc::Status s = Issue(auth, "other", &cert);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_THAT(s.error_message(), HasSubstr("in progress"));

  // The retry finishes it: the reserved serial, the key generated before the crash.
  ASSERT_TRUE(Issue(auth, "crashy", &cert).ok());
  EXPECT_EQ(cert.certificate_id(), intent.certificate_id);
  EXPECT_EQ(cert.serial_hex(), intent.serial_hex);
  EXPECT_EQ(Credential(intent.certificate_id).status(), pb::CREDENTIAL_STATUS_ACTIVE);
  records = store_->ListCertificates("alice");
  ASSERT_TRUE(records.ok());
  EXPECT_THAT(*records, SizeIs(1));
}

TEST_F(LifecycleTest, AStaleInterruptedIssuanceIsAbandonedAndItsKeyDestroyed) {
  const std::string auth = Bearer("alice");
  ASSERT_TRUE(Accept(auth).ok());
  faulty_signer_->crash_after_create_key = true;
  pb::Certificate cert;
  EXPECT_EQ(Issue(auth, "crashy", &cert).error_code(), grpc::StatusCode::CANCELLED);
  auto records = store_->ListCertificates("alice");
  ASSERT_TRUE(records.ok());
  const std::string orphan = (*records)[0].certificate_id;

  clock_.Advance(absl::Minutes(3));
  const std::string auth2 = Bearer("alice");
  ASSERT_TRUE(Issue(auth2, "fresh", &cert).ok());
  EXPECT_NE(cert.certificate_id(), orphan);
  EXPECT_EQ(Credential(orphan).status(), pb::CREDENTIAL_STATUS_DISABLED);
  EXPECT_EQ(hsm("signer").GetPublicKey(SignerKeyId(orphan)).status().code(),
            absl::StatusCode::kNotFound);
  // The abandoned request id is not reused.
  grpc::Status s = Issue(auth2, "crashy", &cert);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("abandoned"));
}

TEST_F(LifecycleTest, FailureAfterSigningIsFinishedByTheRetry) {
  const std::string auth = Bearer("alice");
  ASSERT_TRUE(Accept(auth).ok());
  faulty_signer_->fail_set_certificate = true;
  pb::Certificate cert;
  EXPECT_EQ(Issue(auth, "r", &cert).error_code(), grpc::StatusCode::UNAVAILABLE);
  auto records = store_->ListCertificates("alice");
  ASSERT_TRUE(records.ok());
  ASSERT_THAT(*records, SizeIs(1));
  EXPECT_EQ((*records)[0].state, CertState::kIssued);
  EXPECT_EQ(Credential((*records)[0].certificate_id).status(), pb::CREDENTIAL_STATUS_PENDING);
  ASSERT_TRUE(Issue(auth, "r", &cert).ok());
  EXPECT_EQ(cert.certificate_der(), (*records)[0].certificate_der);
  EXPECT_EQ(Credential(cert.certificate_id()).status(), pb::CREDENTIAL_STATUS_ACTIVE);
}

// --- Legal person ------------------------------------------------------------------------------

TEST_F(LifecycleTest, LegalPersonNeedsAnOperatorsApproval) {
  const std::string auth = Bearer("alice");
  ASSERT_TRUE(Accept(auth).ok());
  pb::IssueRequest req;
  req.set_client_request_id("lp-1");
  req.mutable_legal_person()->set_organization_name("Primer d.o.o.");
  req.mutable_legal_person()->set_pib("100000024");
  pb::Certificate cert;
  grpc::Status s = stub_->Issue(As(auth).get(), req, &cert);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("no operator approval"));

  pb::ApproveLegalPersonRequest approve;
  approve.set_account_id("alice");
  approve.mutable_legal_person()->set_organization_name("Primer d.o.o.");
  approve.mutable_legal_person()->set_pib("100000025");
  approve.set_note("power of attorney no. 17/2026 checked");
  pb::LegalPersonApproval approval;
  s = stub_->ApproveLegalPerson(As(Operator()).get(), approve, &approval);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("check digit"));
  approve.mutable_legal_person()->set_pib("100000024");
  EXPECT_EQ(stub_->ApproveLegalPerson(As(auth).get(), approve, &approval).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  s = stub_->ApproveLegalPerson(As(Operator()).get(), approve, &approval);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(approval.approved_by(), "op1");

  s = stub_->Issue(As(auth).get(), req, &cert);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(cert.legal_person().pib(), "100000024");
  OsslPtr<X509> x = ParseCertificate(cert.certificate_der());
  auto subject = NameEntries(X509_get_subject_name(x.get()));
  ASSERT_THAT(subject, SizeIs(7));
  EXPECT_EQ(subject[1].oid, "2.5.4.10");
  EXPECT_EQ(subject[1].value, "Primer d.o.o.");
  EXPECT_EQ(subject[2].oid, "2.5.4.97");
  EXPECT_EQ(subject[2].value, "VATRS-100000024");
}

// --- Renew -------------------------------------------------------------------------------------

TEST_F(LifecycleTest, RenewWindowOpensThirtyDaysBeforeExpiryToTheSecond) {
  pb::Certificate old = IssueFor("alice");
  const absl::Time not_after = absl::FromUnixSeconds(old.not_after().seconds());
  const absl::Time opens = not_after - absl::Hours(24 * 30);
  pb::RenewRequest req;
  req.set_certificate_id(old.certificate_id());
  pb::Certificate renewed;

  clock_.Set(opens - absl::Seconds(1));
  req.set_client_request_id("renew-early");
  grpc::Status s = stub_->Renew(As(Bearer("alice")).get(), req, &renewed);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(),
              HasSubstr(absl::StrCat("renewal opens at ", absl::FormatTime(absl::RFC3339_sec, opens,
                                                                           absl::UTCTimeZone()))));
  pb::GetStatusResponse status = Status(Bearer("alice"));
  EXPECT_FALSE(status.renewal_open());
  EXPECT_EQ(status.renew_opens_at().seconds(), absl::ToUnixSeconds(opens));

  clock_.Set(opens);
  EXPECT_TRUE(Status(Bearer("alice")).renewal_open());
  req.set_client_request_id("renew-1");
  s = stub_->Renew(As(Bearer("alice")).get(), req, &renewed);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_NE(renewed.certificate_id(), old.certificate_id());
  EXPECT_NE(renewed.serial_hex(), old.serial_hex());
  EXPECT_EQ(renewed.not_before().seconds(), absl::ToUnixSeconds(opens));
  EXPECT_EQ(renewed.subject_dn(), old.subject_dn());
  // A new key, in the signer; the old certificate stays valid: signing never stops.
  EXPECT_NE(Credential(renewed.certificate_id()).public_key_spki(),
            Credential(old.certificate_id()).public_key_spki());
  EXPECT_EQ(Credential(old.certificate_id()).status(), pb::CREDENTIAL_STATUS_ACTIVE);
  status = Status(Bearer("alice"));
  EXPECT_EQ(status.certificate().certificate_id(), renewed.certificate_id());
  pb::ListCertificatesResponse listed;
  ASSERT_TRUE(
      stub_->ListCertificates(As(Bearer("alice")).get(), pb::ListCertificatesRequest(), &listed)
          .ok());
  ASSERT_THAT(listed.certificates(), SizeIs(2));
  EXPECT_EQ(listed.certificates(0).certificate_id(), renewed.certificate_id());  // Newest first.
  EXPECT_EQ(listed.certificates(1).status(), pb::CERTIFICATE_STATUS_ACTIVE);

  // Renewed once only.
  req.set_client_request_id("renew-2");
  s = stub_->Renew(As(Bearer("alice")).get(), req, &renewed);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("already renewed"));
}

TEST_F(LifecycleTest, MetricsCountIssuedRenewedAndRevokedCertificates) {
  const std::string issued =
      "qsign_lifecycle_certificates_issued_total{ca=\"qualified\",key_type=\"EC_P256\"}";
  const std::string renewed =
      "qsign_lifecycle_certificates_renewed_total{ca=\"qualified\",key_type=\"EC_P256\"}";
  const std::string revoked =
      "qsign_lifecycle_certificates_revoked_total{ca=\"qualified\",reason=\"keyCompromise\"}";
  const double issued_before = MetricValue(issued);
  const double renewed_before = MetricValue(renewed);
  const double revoked_before = MetricValue(revoked);

  pb::Certificate old = IssueFor("alice");
  clock_.Set(absl::FromUnixSeconds(old.not_after().seconds()) - absl::Hours(24));
  pb::RenewRequest req;
  req.set_certificate_id(old.certificate_id());
  req.set_client_request_id("renew-metrics");
  pb::Certificate fresh;
  ASSERT_TRUE(stub_->Renew(As(Bearer("alice")).get(), req, &fresh).ok());
  pb::Certificate gone;
  grpc::Status s =
      Revoke(Bearer("alice"), old.certificate_id(), pb::REVOCATION_REASON_KEY_COMPROMISE, &gone);
  ASSERT_TRUE(s.ok()) << s.error_message();

  EXPECT_EQ(MetricValue(issued) - issued_before, 1);
  EXPECT_EQ(MetricValue(renewed) - renewed_before, 1);
  EXPECT_EQ(MetricValue(revoked) - revoked_before, 1);
}

TEST_F(LifecycleTest, RenewClosesAtExpiryToTheSecond) {
  pb::Certificate old = IssueFor("alice");
  const absl::Time not_after = absl::FromUnixSeconds(old.not_after().seconds());
  pb::RenewRequest req;
  req.set_certificate_id(old.certificate_id());
  pb::Certificate renewed;

  clock_.Set(not_after);
  req.set_client_request_id("renew-late");
  grpc::Status s = stub_->Renew(As(Bearer("alice")).get(), req, &renewed);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("use Issue"));
  pb::GetStatusResponse status = Status(Bearer("alice"));
  EXPECT_EQ(status.state(), pb::ACCOUNT_CERTIFICATE_STATE_EXPIRED);

  clock_.Set(not_after - absl::Seconds(1));
  req.set_client_request_id("renew-last-second");
  s = stub_->Renew(As(Bearer("alice")).get(), req, &renewed);
  ASSERT_TRUE(s.ok()) << s.error_message();
}

TEST_F(LifecycleTest, ACrashedRenewalDoesNotBlockTheNextOne) {
  pb::Certificate old = IssueFor("alice");
  clock_.Set(absl::FromUnixSeconds(old.not_after().seconds()) - absl::Hours(24 * 10));
  pb::RenewRequest req;
  req.set_certificate_id(old.certificate_id());
  req.set_client_request_id("renew-crash");
  pb::Certificate renewed;
  faulty_signer_->crash_after_create_key = true;
  EXPECT_EQ(stub_->Renew(As(Bearer("alice")).get(), req, &renewed).error_code(),
            grpc::StatusCode::CANCELLED);
  req.set_client_request_id("renew-again");
  grpc::Status s = stub_->Renew(As(Bearer("alice")).get(), req, &renewed);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ABORTED);  // Still fresh: in progress.
  clock_.Advance(absl::Minutes(3));
  s = stub_->Renew(As(Bearer("alice")).get(), req, &renewed);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(renewed.status(), pb::CERTIFICATE_STATUS_ACTIVE);
}

TEST_F(LifecycleTest, RenewChecksOwnershipAndState) {
  pb::Certificate bobs = IssueFor("bob");
  pb::RenewRequest req;
  req.set_client_request_id("steal");
  req.set_certificate_id(bobs.certificate_id());
  pb::Certificate out;
  EXPECT_EQ(stub_->Renew(As(Bearer("alice")).get(), req, &out).error_code(),
            grpc::StatusCode::NOT_FOUND);
  pb::Certificate revoked;
  ASSERT_TRUE(Revoke(Bearer("bob"), bobs.certificate_id(),
                     pb::REVOCATION_REASON_CESSATION_OF_OPERATION, &revoked)
                  .ok());
  clock_.Set(absl::FromUnixSeconds(bobs.not_after().seconds()) - absl::Hours(24));
  grpc::Status s = stub_->Renew(As(Bearer("bob")).get(), req, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("revoked"));
}

// --- Revoke ------------------------------------------------------------------------------------

TEST_F(LifecycleTest, RevokeDestroysTheKeyAndIsAnsweredClearlyTheSecondTime) {
  pb::Certificate cert = IssueFor("alice");
  pb::Certificate revoked;
  // Not another account's certificate, not a reason Revoke never accepts.
  EXPECT_EQ(
      Revoke(Bearer("bob"), cert.certificate_id(), pb::REVOCATION_REASON_KEY_COMPROMISE, &revoked)
          .error_code(),
      grpc::StatusCode::NOT_FOUND);
  grpc::Status s = Revoke(Bearer("alice"), cert.certificate_id(),
                          pb::REVOCATION_REASON_CERTIFICATE_HOLD, &revoked);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("never suspended"));
  EXPECT_EQ(Revoke(Bearer("alice"), cert.certificate_id(),
                   pb::REVOCATION_REASON_PRIVILEGE_WITHDRAWN, &revoked)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  s = Revoke(Bearer("alice"), cert.certificate_id(), pb::REVOCATION_REASON_KEY_COMPROMISE,
             &revoked);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(revoked.status(), pb::CERTIFICATE_STATUS_REVOKED);
  EXPECT_EQ(revoked.revocation_reason(), pb::REVOCATION_REASON_KEY_COMPROMISE);
  EXPECT_EQ(revoked.revoked_at().seconds(), absl::ToUnixSeconds(clock_.Now()));
  EXPECT_EQ(Credential(cert.certificate_id()).status(), pb::CREDENTIAL_STATUS_DISABLED);
  EXPECT_EQ(hsm("signer").GetPublicKey(SignerKeyId(cert.certificate_id())).status().code(),
            absl::StatusCode::kNotFound);

  pb::RevokeRequest by_serial;
  by_serial.set_serial_hex(absl::AsciiStrToLower(cert.serial_hex()));
  s = stub_->Revoke(As(Bearer("alice")).get(), by_serial, &revoked);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("already revoked at"));
  EXPECT_THAT(s.error_message(), HasSubstr("keyCompromise"));

  EXPECT_EQ(Status(Bearer("alice")).state(), pb::ACCOUNT_CERTIFICATE_STATE_REVOKED);
  // A new certificate may be issued after revocation.
  pb::Certificate next;
  ASSERT_TRUE(Issue(Bearer("alice"), "after-revoke", &next).ok());
}

TEST_F(LifecycleTest, ConcurrentRevokesOfOneCertificateRevokeItOnceAndAnswerTheRestClearly) {
  pb::Certificate cert = IssueFor("alice");
  constexpr int kCallers = 6;
  std::vector<grpc::Status> answers(kCallers);
  std::vector<std::thread> callers;
  for (int i = 0; i < kCallers; ++i) {
    callers.emplace_back([&, i] {
      pb::Certificate revoked;
      answers[i] = Revoke(Bearer("alice"), cert.certificate_id(),
                          pb::REVOCATION_REASON_KEY_COMPROMISE, &revoked);
    });
  }
  for (std::thread& t : callers) t.join();

  int ok = 0;
  for (const grpc::Status& s : answers) {
    if (s.ok()) {
      ++ok;
      continue;
    }
    // Every other caller hears that it was revoked, and when: never an internal error.
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("already revoked at"));
  }
  EXPECT_EQ(ok, 1);
  auto recorded = pool().Exec(
      "SELECT count(*) FROM lifecycle.audit_log WHERE action = 'certificate.revoke' AND "
      "details LIKE $1",
      {db::Param::Text(absl::StrCat("%certificate_id=", cert.certificate_id(), " %"))});
  ASSERT_TRUE(recorded.ok()) << recorded.status();
  EXPECT_EQ(recorded->GetInt64(0, 0).value_or(-1), 1);
  EXPECT_EQ(hsm("signer").GetPublicKey(SignerKeyId(cert.certificate_id())).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(LifecycleTest, OperatorRevokesAnyCertificate) {
  pb::Certificate cert = IssueFor("bob");
  pb::Certificate revoked;
  grpc::Status s = Revoke(Operator(), cert.certificate_id(),
                          pb::REVOCATION_REASON_PRIVILEGE_WITHDRAWN, &revoked);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(revoked.revocation_reason(), pb::REVOCATION_REASON_PRIVILEGE_WITHDRAWN);
}

TEST_F(LifecycleTest, RevokeNeverLeavesARevokedCertificateWhoseKeyCanSign) {
  pb::Certificate cert = IssueFor("alice");
  const std::string id = cert.certificate_id();
  pb::Certificate revoked;

  // The signer cannot disable the credential: nothing is revoked, and the answer says so.
  faulty_signer_->down = true;
  grpc::Status s = Revoke(Bearer("alice"), id, pb::REVOCATION_REASON_KEY_COMPROMISE, &revoked);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("not revoked"));
  EXPECT_EQ(StateOf(id), CertState::kIssued);
  faulty_signer_->down = false;

  // Key destruction fails after the revocation: the credential is disabled already.
  faulty_signer_->fail_destroy_key = true;
  s = Revoke(Bearer("alice"), id, pb::REVOCATION_REASON_KEY_COMPROMISE, &revoked);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(revoked.status(), pb::CERTIFICATE_STATUS_REVOKED);
  EXPECT_EQ(Credential(id).status(), pb::CREDENTIAL_STATUS_DISABLED);
  EXPECT_THAT(faulty_signer_->calls, ElementsAre(absl::StrCat("disable ", id)));
  // The sweeper finishes it.
  auto swept = lifecycle_->Sweep();
  ASSERT_TRUE(swept.ok()) << swept.status();
  EXPECT_EQ(swept->keys_destroyed, 1);
  EXPECT_EQ(hsm("signer").GetPublicKey(SignerKeyId(id)).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(faulty_signer_->calls,
              ElementsAre(absl::StrCat("disable ", id), absl::StrCat("destroy ", id)));
  auto record = store_->GetCertificate(id);
  ASSERT_TRUE(record.ok());
  EXPECT_TRUE(record->key_destroyed);
  swept = lifecycle_->Sweep();
  ASSERT_TRUE(swept.ok());
  EXPECT_EQ(swept->keys_destroyed, 0);
  EXPECT_TRUE(db::VerifyAuditChain(pool(), kSchema).ok());
}

// The gap between the two steps of a revocation: the signer disabled the credential, then marking
// the certificate revoked failed (a crash, the database gone). The certificate must not stay GOOD
// with a dead key and nobody to finish it: the recorded request is finished by the scheduler.
TEST_F(LifecycleTest, ARevocationInterruptedAfterTheSignerDisabledTheKeyIsFinishedByTheScheduler) {
  pb::Certificate cert = IssueFor("alice");
  const std::string id = cert.certificate_id();
  // The database refuses to mark it revoked, once.
  ASSERT_TRUE(pool()
                  .Exec("CREATE FUNCTION lifecycle.test_refuse_revoked() RETURNS trigger "
                        "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected: the database "
                        "went away'; END $$")
                  .ok());
  ASSERT_TRUE(pool()
                  .Exec("CREATE TRIGGER test_refuse_revoked BEFORE UPDATE ON "
                        "lifecycle.certificates FOR EACH ROW WHEN (NEW.state = 'REVOKED') "
                        "EXECUTE FUNCTION lifecycle.test_refuse_revoked()")
                  .ok());
  pb::Certificate revoked;
  grpc::Status s = Revoke(Bearer("alice"), id, pb::REVOCATION_REASON_KEY_COMPROMISE, &revoked);
  EXPECT_FALSE(s.ok());
  // The state the issue names: disabled at the signer, not (yet) revoked.
  EXPECT_EQ(StateOf(id), CertState::kIssued);
  EXPECT_EQ(Credential(id).status(), pb::CREDENTIAL_STATUS_DISABLED);
  ASSERT_TRUE(pool().Exec("DROP TRIGGER test_refuse_revoked ON lifecycle.certificates").ok());
  ASSERT_TRUE(pool().Exec("DROP FUNCTION lifecycle.test_refuse_revoked()").ok());

  // The scheduler's own thread finishes it once the call that asked can no longer be at it.
  clock_.Advance(absl::Seconds(11));
  Scheduler background(lifecycle_.get(), nullptr, "lifecycle-test", absl::Minutes(10),
                       absl::Milliseconds(50));
  background.Start();
  for (int i = 0; i < 200; ++i) {
    auto r = store_->GetCertificate(id);
    if (r.ok() && r->state == CertState::kRevoked && r->key_destroyed) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  background.Stop();
  auto record = store_->GetCertificate(id);
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->state, CertState::kRevoked);
  EXPECT_EQ(record->revocation_reason, 1);
  EXPECT_TRUE(record->key_destroyed);
  EXPECT_EQ(hsm("signer").GetPublicKey(SignerKeyId(id)).status().code(),
            absl::StatusCode::kNotFound);
  auto audit = pool().Exec(
      "SELECT actor, details FROM lifecycle.audit_log WHERE action = 'certificate.revoke'");
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->rows(), 1);
  EXPECT_EQ(audit->Get(0, 0), "service:lifecycle-sweeper");
  EXPECT_THAT(std::string(audit->Get(0, 1)), HasSubstr("requested_by=account:alice"));
  EXPECT_TRUE(db::VerifyAuditChain(pool(), kSchema).ok());
  std::string crl = HttpGet("/crl/qualified.crl");
  EXPECT_THAT(crl, HasSubstr(absl::HexStringToBytes(cert.serial_hex())));
  // Nothing is left to finish.
  auto again = lifecycle_->Sweep();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->revocations_finished, 0);
}

// --- Device certificates and revoke-all --------------------------------------------------------

std::string DeviceKey() {
  OsslPtr<EVP_PKEY> key(EVP_EC_gen("P-256"));
  return ToDer(key.get(), i2d_PUBKEY);
}

// A consent app enrolled for `account`: its device certificate, and the device active in consent.
pb::Certificate LifecycleTest::EnrolledPhone(const std::string& account,
                                             const std::string& device_id) {
  pb::IssueDeviceCertificateRequest dev;
  dev.set_account_id(account);
  dev.set_device_id(device_id);
  dev.set_device_public_key(DeviceKey());
  pb::Certificate device;
  grpc::Status s = stub_->IssueDeviceCertificate(As(ConsentService()).get(), dev, &device);
  EXPECT_TRUE(s.ok()) << s.error_message();
  consent_.AddDevice(account, device_id);
  return device;
}

TEST_F(LifecycleTest, DeviceCertificateIsIdempotentAndSupersededByANewEnrolment) {
  pb::IssueDeviceCertificateRequest req;
  req.set_account_id("alice");
  req.set_device_id("dev-1");
  req.set_device_public_key(DeviceKey());
  req.set_device_name("Alisa's phone");
  pb::Certificate first, again, second;
  EXPECT_EQ(stub_->IssueDeviceCertificate(As(Bearer("alice")).get(), req, &first).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(stub_->IssueDeviceCertificate(As("Service gateway.gateway-secret").get(), req, &first)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  grpc::Status s = stub_->IssueDeviceCertificate(As(ConsentService()).get(), req, &first);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(first.kind(), pb::CERTIFICATE_KIND_DEVICE);
  EXPECT_EQ(first.device_id(), "dev-1");
  EXPECT_EQ(first.issuer_chain_der(0), cas_->device().cert_der());
  OsslPtr<X509> x = ParseCertificate(first.certificate_der());
  EXPECT_EQ(ToDer(X509_get_X509_PUBKEY(x.get()), i2d_X509_PUBKEY), req.device_public_key());
  EXPECT_THAT(FindExtension(x.get(), "2.5.29.17")->der, HasSubstr("urn:qsign:device:dev-1"));
  ASSERT_TRUE(stub_->IssueDeviceCertificate(As(ConsentService()).get(), req, &again).ok());
  EXPECT_EQ(again.certificate_id(), first.certificate_id());

  req.set_device_id("dev-2");
  req.set_device_public_key(DeviceKey());
  ASSERT_TRUE(stub_->IssueDeviceCertificate(As(ConsentService()).get(), req, &second).ok());
  pb::ListCertificatesRequest list;
  list.set_include_device(true);
  pb::ListCertificatesResponse listed;
  ASSERT_TRUE(stub_->ListCertificates(As(Bearer("alice")).get(), list, &listed).ok());
  ASSERT_THAT(listed.certificates(), SizeIs(2));
  EXPECT_EQ(listed.certificates(1).certificate_id(), first.certificate_id());
  EXPECT_EQ(listed.certificates(1).status(), pb::CERTIFICATE_STATUS_REVOKED);
  EXPECT_EQ(listed.certificates(1).revocation_reason(), pb::REVOCATION_REASON_SUPERSEDED);

  req.set_device_public_key("not a key");
  s = stub_->IssueDeviceCertificate(As(ConsentService()).get(), req, &second);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("device_public_key"));
}

// The RA console's view of lifecycle's records about one account: its contract, certificates
// (qualified and the app's) and their revocation, newest first; nothing of another account.
TEST_F(LifecycleTest, AnOperatorReadsOneAccountsAuditTrailNewestFirst) {
  pb::Certificate cert = IssueFor("alice");
  clock_.Advance(absl::Seconds(1));
  pb::Certificate phone = EnrolledPhone("alice", "phone-1");
  clock_.Advance(absl::Seconds(1));
  pb::Certificate bobs = IssueFor("bob", "bob-1");
  clock_.Advance(absl::Seconds(1));
  pb::Certificate revoked;
  ASSERT_TRUE(
      Revoke(Bearer("alice"), cert.certificate_id(), pb::REVOCATION_REASON_KEY_COMPROMISE, &revoked)
          .ok());

  std::vector<std::string> actions;
  std::vector<int64_t> times;
  auto list = [&](const pb::ListAccountAuditRequest& req, pb::ListAccountAuditResponse* resp) {
    return stub_->ListAccountAudit(As(Operator()).get(), req, resp);
  };
  for (const pb::AuditRecord& r : qsign::testing::AllAuditPages(list, "alice", 2)) {
    actions.push_back(r.action());
    times.push_back(r.at().seconds() * 1'000'000'000LL + r.at().nanos());
    EXPECT_EQ(r.source(), "lifecycle.audit_log");
    EXPECT_TRUE(r.target() == "alice" || r.target() == cert.serial_hex() ||
                r.target() == phone.serial_hex() || r.actor() == "account:alice")
        << r.action() << " " << r.target();
    EXPECT_NE(r.target(), bobs.serial_hex());
  }
  EXPECT_TRUE(std::is_sorted(times.rbegin(), times.rend()));
  EXPECT_THAT(actions, ElementsAre("certificate.revoke", "certificate.revoke.request",
                                   "device_certificate.issue", "certificate.issue",
                                   "certificate.issue.intent", "contract.accept"));

  // Operators only; each bad field named.
  pb::ListAccountAuditRequest req;
  req.set_account_id("alice");
  pb::ListAccountAuditResponse resp;
  EXPECT_EQ(stub_->ListAccountAudit(As(Bearer("alice")).get(), req, &resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(stub_->ListAccountAudit(As("").get(), req, &resp).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(stub_->ListAccountAudit(As(ConsentService()).get(), req, &resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  req.set_page_token("1.9.1");
  grpc::Status s = stub_->ListAccountAudit(As(Operator()).get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("page_token"));
  req.set_page_token("");
  req.set_page_size(201);
  s = stub_->ListAccountAudit(As(Operator()).get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("page_size"));
  req.set_page_size(0);
  req.set_account_id("");
  s = stub_->ListAccountAudit(As(Operator()).get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("account_id"));
  req.set_account_id("nobody");
  EXPECT_EQ(stub_->ListAccountAudit(As(Operator()).get(), req, &resp).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(LifecycleTest, RevokeAllEndsEverything) {
  pb::Certificate qualified = IssueFor("alice");
  pb::Certificate device = EnrolledPhone("alice", "phone-1");
  ASSERT_TRUE(consent_.Approve("alice", "phone-1").ok());
  const std::string other_session = Bearer("alice");

  const std::string auth = Bearer("alice");
  pb::RevokeAllRequest req;
  req.set_reason(pb::REVOCATION_REASON_KEY_COMPROMISE);
  pb::RevokeAllResponse resp;
  grpc::Status s = stub_->RevokeAll(As(auth).get(), req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_THAT(resp.revoked_certificates(), SizeIs(2));
  std::set<std::string> ids;
  for (const auto& c : resp.revoked_certificates()) {
    ids.insert(c.certificate_id());
    EXPECT_EQ(c.status(), pb::CERTIFICATE_STATUS_REVOKED);
    EXPECT_EQ(c.revocation_reason(), pb::REVOCATION_REASON_KEY_COMPROMISE);
  }
  EXPECT_EQ(ids, (std::set<std::string>{qualified.certificate_id(), device.certificate_id()}));
  EXPECT_EQ(resp.devices_deactivated(), 1u);
  EXPECT_GE(resp.sessions_ended(), 3u);  // Both of ours and the one IssueFor used.

  // The old phone can approve nothing; the key is gone; every session ended.
  EXPECT_EQ(consent_.Approve("alice", "phone-1").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Credential(qualified.certificate_id()).status(), pb::CREDENTIAL_STATUS_DISABLED);
  EXPECT_EQ(hsm("signer").GetPublicKey(SignerKeyId(qualified.certificate_id())).status().code(),
            absl::StatusCode::kNotFound);
  pb::GetStatusResponse st;
  EXPECT_EQ(stub_->GetStatus(As(other_session).get(), pb::GetStatusRequest(), &st).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  // An operator repeating it: nothing left to do.
  req.set_account_id("alice");
  pb::RevokeAllResponse again;
  ASSERT_TRUE(stub_->RevokeAll(As(Operator()).get(), req, &again).ok());
  EXPECT_THAT(again.revoked_certificates(), IsEmpty());
  EXPECT_EQ(again.devices_deactivated(), 0u);
  EXPECT_EQ(again.sessions_ended(), 0u);
  req.set_account_id("nobody");
  EXPECT_EQ(stub_->RevokeAll(As(Operator()).get(), req, &again).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(db::VerifyAuditChain(pool(), kSchema).ok());
}

TEST_F(LifecycleTest, RevokeAllWithTheSignerDownEndsPhoneAndSessionsAtOnceAndFinishesLater) {
  pb::Certificate qualified = IssueFor("alice");
  const std::string id = qualified.certificate_id();
  pb::Certificate device = EnrolledPhone("alice", "phone-1");
  const std::string other_session = Bearer("alice");

  faulty_signer_->down = true;
  pb::RevokeAllRequest req;
  req.set_reason(pb::REVOCATION_REASON_KEY_COMPROMISE);
  pb::RevokeAllResponse resp;
  grpc::Status s = stub_->RevokeAll(As(Bearer("alice")).get(), req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_FALSE(resp.complete());
  EXPECT_NE(resp.job_id(), 0u);
  EXPECT_EQ(resp.devices_deactivated(), 1u);
  // At once: the phone approves nothing (so no SAD, no signature), every session is dead.
  EXPECT_EQ(consent_.Approve("alice", "phone-1").code(), absl::StatusCode::kPermissionDenied);
  pb::GetStatusResponse st;
  EXPECT_EQ(stub_->GetStatus(As(other_session).get(), pb::GetStatusRequest(), &st).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // The device certificate is revoked; the qualified one is not marked revoked while its
  // credential could not be disabled.
  ASSERT_THAT(resp.revoked_certificates(), SizeIs(1));
  EXPECT_EQ(resp.revoked_certificates(0).certificate_id(), device.certificate_id());
  EXPECT_EQ(StateOf(id), CertState::kIssued);
  auto job = pool().Exec(
      "SELECT state, devices_done, sessions_done, certificates_done, keys_done, attempts, "
      "last_error FROM lifecycle.revoke_all_jobs WHERE id = $1",
      {db::Param::Int(static_cast<int64_t>(resp.job_id()))});
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(job->rows(), 1);
  EXPECT_EQ(job->Get(0, 0), "RUNNING");
  EXPECT_EQ(job->Get(0, 1), "t");
  EXPECT_EQ(job->Get(0, 2), "t");
  EXPECT_EQ(job->Get(0, 3), "f");
  EXPECT_EQ(job->Get(0, 5), "1");
  EXPECT_THAT(std::string(job->Get(0, 6)), HasSubstr("the signer is down"));

  // The scheduler keeps trying while the signer is down...
  Scheduler scheduler(lifecycle_.get(), nullptr, "lifecycle-test");
  scheduler.Sweep();
  EXPECT_EQ(StateOf(id), CertState::kIssued);
  EXPECT_EQ(MetricValue("qsign_lifecycle_revoke_all_jobs_unfinished"), 1);
  EXPECT_EQ(Credential(id).status(), pb::CREDENTIAL_STATUS_ACTIVE);

  // ...and its own thread finishes the job once the signer is back: the credential disabled,
  // then the certificate revoked, then the key destroyed.
  Scheduler background(lifecycle_.get(), nullptr, "lifecycle-test", absl::Minutes(10),
                       absl::Milliseconds(50));
  background.Start();
  faulty_signer_->down = false;
  auto job_state = [&] {
    auto r = pool().Exec("SELECT state FROM lifecycle.revoke_all_jobs WHERE id = $1",
                         {db::Param::Int(static_cast<int64_t>(resp.job_id()))});
    return r.ok() && r->rows() == 1 ? std::string(r->Get(0, 0)) : std::string();
  };
  for (int i = 0; i < 200 && job_state() != "DONE"; ++i) absl::SleepFor(absl::Milliseconds(50));
  background.Stop();
  EXPECT_EQ(MetricValue("qsign_lifecycle_revoke_all_jobs_unfinished"), 0);
  EXPECT_THAT(faulty_signer_->calls,
              ElementsAre(absl::StrCat("disable ", id), absl::StrCat("destroy ", id)));
  auto record = store_->GetCertificate(id);
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->state, CertState::kRevoked);
  EXPECT_EQ(record->revocation_reason, 1);
  EXPECT_TRUE(record->key_destroyed);
  EXPECT_EQ(Credential(id).status(), pb::CREDENTIAL_STATUS_DISABLED);
  EXPECT_EQ(hsm("signer").GetPublicKey(SignerKeyId(id)).status().code(),
            absl::StatusCode::kNotFound);
  job = pool().Exec("SELECT state, keys_done FROM lifecycle.revoke_all_jobs WHERE id = $1",
                    {db::Param::Int(static_cast<int64_t>(resp.job_id()))});
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->Get(0, 0), "DONE");
  EXPECT_EQ(job->Get(0, 1), "t");
  auto audit =
      pool().Exec("SELECT actor FROM lifecycle.audit_log WHERE action = 'account.revoke_all.done'");
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->rows(), 1);
  EXPECT_EQ(audit->Get(0, 0), "service:lifecycle-sweeper");
  EXPECT_TRUE(db::VerifyAuditChain(pool(), kSchema).ok());
  // OCSP and the CRL say revoked.
  std::string crl = HttpGet("/crl/qualified.crl");
  EXPECT_THAT(crl, HasSubstr(absl::HexStringToBytes(qualified.serial_hex())));
}

// An Issue whose login came before a revoke-all, held at each step while the revoke-all runs to
// the end (before its intent is recorded, while its key is made, before the signer gets the
// certificate): it never yields an active credential, and no key of it is left.
TEST_F(LifecycleTest, AnIssueInFlightDuringRevokeAllNeverYieldsAnActiveCredential) {
  enum Hold { kBeforeIntent, kInKeyGeneration, kBeforeAttaching };
  for (Hold hold : {kBeforeIntent, kInKeyGeneration, kBeforeAttaching}) {
    SCOPED_TRACE(::testing::Message() << "held at step " << hold);
    clock_.Advance(absl::Seconds(1));  // A login after the previous round's revoke-all.
    const std::string auth = Bearer("alice");
    ASSERT_TRUE(Accept(auth).ok());
    absl::Notification held, resume;
    std::atomic<bool> once{false};
    auto hold_here = [&] {
      if (once.exchange(true)) return;
      held.Notify();
      resume.WaitForNotification();
    };
    if (hold == kBeforeIntent) {
      identity_.on_get_account = [&](std::string_view id) {
        if (id == "alice") hold_here();
      };
    }
    if (hold == kInKeyGeneration) faulty_signer_->before_create_key = hold_here;
    if (hold == kBeforeAttaching) faulty_signer_->before_set_certificate = hold_here;
    const std::string request_id = absl::StrCat("in-flight-", hold);
    grpc::Status issued;
    std::thread issue([&] {
      pb::Certificate cert;
      issued = Issue(auth, request_id, &cert);
    });
    held.WaitForNotification();

    pb::RevokeAllRequest req;
    req.set_account_id("alice");
    req.set_reason(pb::REVOCATION_REASON_KEY_COMPROMISE);
    pb::RevokeAllResponse done;
    grpc::Status s = stub_->RevokeAll(As(Operator()).get(), req, &done);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_TRUE(done.complete());
    resume.Notify();
    issue.join();
    identity_.on_get_account = nullptr;
    faulty_signer_->before_create_key = nullptr;
    faulty_signer_->before_set_certificate = nullptr;

    EXPECT_FALSE(issued.ok());
    auto certs = store_->ListCertificates("alice");
    ASSERT_TRUE(certs.ok());
    for (const CertRecord& c : *certs) {
      EXPECT_NE(c.state, CertState::kIssued) << c.certificate_id << " is active";
      if (c.client_request_id != request_id) continue;
      if (hold != kBeforeIntent) {
        // Whatever the signer has of it never signs.
        pb::GetCredentialInfoRequest info_req;
        info_req.set_credential_id(c.certificate_id);
        pb::CredentialInfo info;
        grpc::ClientContext ctx;
        if (signer_stub_->GetCredentialInfo(&ctx, info_req, &info).ok()) {
          EXPECT_NE(info.status(), pb::CREDENTIAL_STATUS_ACTIVE);
        }
      }
      auto swept = lifecycle_->Sweep();
      ASSERT_TRUE(swept.ok()) << swept.status();
      EXPECT_EQ(hsm("signer").GetPublicKey(SignerKeyId(c.certificate_id)).status().code(),
                absl::StatusCode::kNotFound);
    }
  }
  EXPECT_TRUE(db::VerifyAuditChain(pool(), kSchema).ok());
}

TEST_F(LifecycleTest, ASecondRevokeAllResumesTheUnfinishedJob) {
  IssueFor("alice");
  faulty_signer_->down = true;
  pb::RevokeAllRequest req;
  req.set_account_id("alice");
  pb::RevokeAllResponse first, second;
  ASSERT_TRUE(stub_->RevokeAll(As(Operator()).get(), req, &first).ok());
  EXPECT_FALSE(first.complete());
  faulty_signer_->down = false;
  ASSERT_TRUE(stub_->RevokeAll(As(Operator()).get(), req, &second).ok());
  EXPECT_EQ(second.job_id(), first.job_id());
  EXPECT_TRUE(second.complete());
  ASSERT_THAT(second.revoked_certificates(), SizeIs(1));
}

// --- Expiry: the sweeper ends credentials whose certificate ended ------------------------------

TEST_F(LifecycleTest, TheSweeperExpiresCredentialsAndDestroysTheirKeysAudited) {
  pb::Certificate cert = IssueFor("alice");
  const std::string id = cert.certificate_id();
  const absl::Time not_after = absl::FromUnixSeconds(cert.not_after().seconds());
  auto swept = lifecycle_->Sweep();
  ASSERT_TRUE(swept.ok()) << swept.status();
  EXPECT_EQ(swept->keys_expired, 0);
  EXPECT_TRUE(hsm("signer").GetPublicKey(SignerKeyId(id)).ok());

  clock_.Set(not_after);
  swept = lifecycle_->Sweep();
  ASSERT_TRUE(swept.ok());
  EXPECT_EQ(swept->keys_expired, 0) << "notAfter itself is still valid";

  clock_.Set(not_after + absl::Seconds(1));
  // The signer reports it expired at once, before any sweep.
  EXPECT_EQ(Credential(id).status(), pb::CREDENTIAL_STATUS_EXPIRED);
  EXPECT_EQ(Status(Bearer("alice")).state(), pb::ACCOUNT_CERTIFICATE_STATE_EXPIRED);
  const double expired_before = MetricValue("qsign_lifecycle_expired_keys_destroyed_total");
  swept = lifecycle_->Sweep();
  ASSERT_TRUE(swept.ok()) << swept.status();
  EXPECT_EQ(swept->keys_expired, 1);
  EXPECT_EQ(MetricValue("qsign_lifecycle_expired_keys_destroyed_total"), expired_before + 1);
  EXPECT_EQ(swept->failures, 0);
  EXPECT_EQ(hsm("signer").GetPublicKey(SignerKeyId(id)).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(Credential(id).status(), pb::CREDENTIAL_STATUS_EXPIRED);
  auto stored = pool().Exec(
      "SELECT status, key_destroyed_at IS NOT NULL FROM signer.credentials WHERE "
      "credential_id = $1",
      {db::Param::Text(id)});
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->Get(0, 0), "EXPIRED");
  EXPECT_EQ(stored->Get(0, 1), "t");
  auto record = store_->GetCertificate(id);
  ASSERT_TRUE(record.ok());
  EXPECT_TRUE(record->key_destroyed);
  auto audit = pool().Exec(
      "SELECT target, details FROM lifecycle.audit_log WHERE action = 'certificate.expire'");
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->rows(), 1);
  EXPECT_EQ(audit->Get(0, 0), cert.serial_hex());
  auto signer_audit = pool().Exec(
      "SELECT action FROM signer.audit_log WHERE target = $1 ORDER BY seq", {db::Param::Text(id)});
  ASSERT_TRUE(signer_audit.ok());
  ASSERT_EQ(signer_audit->rows(), 4);
  EXPECT_EQ(signer_audit->Get(2, 0), "signer.expire");
  EXPECT_EQ(signer_audit->Get(3, 0), "signer.destroy_key");
  EXPECT_TRUE(db::VerifyAuditChain(pool(), kSchema).ok());
  EXPECT_TRUE(db::VerifyAuditChain(pool(), "signer").ok());
  // Once.
  swept = lifecycle_->Sweep();
  ASSERT_TRUE(swept.ok());
  EXPECT_EQ(swept->keys_expired, 0);
}

// --- CRL and OCSP, checked with openssl ---------------------------------------------------------

TEST_F(LifecycleTest, CrlIsServedAndOpensslVerifyUsesIt) {
  pb::Certificate good = IssueFor("alice");
  pb::Certificate bad = IssueFor("bob");
  const std::string ca_file = Temp(testing::CertificatePem(cas_->root().cert_der()) +
                                       testing::CertificatePem(cas_->qualified().cert_der()),
                                   ".pem");

  int http_status = 0;
  std::string crl1 = HttpGet("/crl/qualified.crl", &http_status);
  ASSERT_EQ(http_status, 200);
  pb::Certificate revoked;
  ASSERT_TRUE(
      Revoke(Bearer("bob"), bad.certificate_id(), pb::REVOCATION_REASON_KEY_COMPROMISE, &revoked)
          .ok());
  std::string crl2 = HttpGet("/crl/qualified.crl", &http_status);
  ASSERT_EQ(http_status, 200);

  // Parsed: issuer, numbers increasing, the revoked serial with its reason, nextUpdate.
  auto parse = [](const std::string& der) {
    const unsigned char* p = Bytes(der);
    return OsslPtr<X509_CRL>(d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size())));
  };
  OsslPtr<X509_CRL> c1 = parse(crl1), c2 = parse(crl2);
  ASSERT_NE(c1, nullptr);
  ASSERT_NE(c2, nullptr);
  EXPECT_EQ(X509_CRL_verify(c2.get(), X509_get0_pubkey(cas_->qualified().cert())), 1);
  EXPECT_EQ(X509_CRL_get_version(c2.get()), 1);  // v2
  auto number = [](X509_CRL* crl) {
    OsslPtr<ASN1_INTEGER> n(
        static_cast<ASN1_INTEGER*>(X509_CRL_get_ext_d2i(crl, NID_crl_number, nullptr, nullptr)));
    return ASN1_INTEGER_get(n.get());
  };
  EXPECT_GT(number(c2.get()), number(c1.get()));
  EXPECT_LE(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(c1.get())), 0);  // No entries at all.
  ASSERT_EQ(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(c2.get())), 1);
  X509_REVOKED* entry = sk_X509_REVOKED_value(X509_CRL_get_REVOKED(c2.get()), 0);
  OsslPtr<BIGNUM> serial(ASN1_INTEGER_to_BN(X509_REVOKED_get0_serialNumber(entry), nullptr));
  OsslPtr<char> hex(BN_bn2hex(serial.get()));
  EXPECT_EQ(std::string(hex.get()), bad.serial_hex());
  OsslPtr<ASN1_ENUMERATED> reason(static_cast<ASN1_ENUMERATED*>(
      X509_REVOKED_get_ext_d2i(entry, NID_crl_reason, nullptr, nullptr)));
  ASSERT_NE(reason, nullptr);
  EXPECT_EQ(ASN1_ENUMERATED_get(reason.get()), 1);
  EXPECT_EQ(Asn1TimeToAbsl(X509_CRL_get0_nextUpdate(c2.get())) -
                Asn1TimeToAbsl(X509_CRL_get0_lastUpdate(c2.get())),
            absl::Hours(24));

  // openssl verify -crl_check: the good one passes, the revoked one is refused.
  const std::string crl_file = Temp(crl2, ".crl");
  std::string out;
  const std::string verify = absl::StrCat("openssl verify -crl_check -CAfile ", ca_file,
                                          " -CRLfile ", crl_file, " -inform DER ");
  EXPECT_EQ(testing::RunCommand(
                absl::StrCat("openssl crl -inform DER -in ", crl_file, " -out ", crl_file,
                             ".pem && openssl verify -crl_check -CAfile ", ca_file, " -CRLfile ",
                             crl_file, ".pem ", Pem(good.certificate_der())),
                &out),
            0)
      << out;
  EXPECT_THAT(out, HasSubstr(": OK"));
  EXPECT_NE(
      testing::RunCommand(absl::StrCat("openssl verify -crl_check -CAfile ", ca_file, " -CRLfile ",
                                       crl_file, ".pem ", Pem(bad.certificate_der())),
                          &out),
      0);
  EXPECT_THAT(out, HasSubstr("certificate revoked"));
  temp_files_.push_back(crl_file + ".pem");

  EXPECT_EQ(HttpGet("/ca/qualified.crt"), cas_->qualified().cert_der());
  HttpGet("/crl/nonsense.crl", &http_status);
  EXPECT_EQ(http_status, 404);
}

TEST_F(LifecycleTest, OpensslOcspSeesGoodThenRevoked) {
  pb::Certificate cert = IssueFor("alice");
  const std::string issuer = Pem(cas_->qualified().cert_der());
  const std::string leaf = Pem(cert.certificate_der());
  const std::string ca_file = Pem(cas_->root().cert_der());
  const std::string command =
      absl::StrCat("openssl ocsp -issuer ", issuer, " -cert ", leaf, " -url ", http_->base_url(),
                   "/ocsp -CAfile ", ca_file, " -resp_text");
  std::string out;
  ASSERT_EQ(testing::RunCommand(command, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("Response verify OK"));
  EXPECT_THAT(out, HasSubstr(": good"));
  EXPECT_THAT(out, HasSubstr("OCSP Nonce"));
  EXPECT_THAT(out, ::testing::Not(HasSubstr("WARNING")));
  EXPECT_THAT(out, HasSubstr("Responder Id"));

  pb::Certificate revoked;
  ASSERT_TRUE(Revoke(Bearer("alice"), cert.certificate_id(),
                     pb::REVOCATION_REASON_CESSATION_OF_OPERATION, &revoked)
                  .ok());
  ASSERT_EQ(testing::RunCommand(command, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("Response verify OK"));
  EXPECT_THAT(out, HasSubstr(": revoked"));
  EXPECT_THAT(out, HasSubstr("Reason: cessationOfOperation"));
}

// A DER OCSP request for `serial` issued by the qualified CA, with a nonce.
std::string OcspRequest(const CaSet& cas, const std::string& serial_bytes, bool nonce = true) {
  OsslPtr<BIGNUM> bn(
      BN_bin2bn(Bytes(serial_bytes), static_cast<int>(serial_bytes.size()), nullptr));
  OsslPtr<ASN1_INTEGER> serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
  const X509* issuer = cas.qualified().cert();
  OCSP_CERTID* id = OCSP_cert_id_new(EVP_sha1(), X509_get_subject_name(issuer),
                                     X509_get0_pubkey_bitstr(issuer), serial.get());
  OsslPtr<OCSP_REQUEST> req(OCSP_REQUEST_new());
  OCSP_request_add0_id(req.get(), id);
  if (nonce) OCSP_request_add1_nonce(req.get(), nullptr, 16);
  return ToDer(req.get(), i2d_OCSP_REQUEST);
}

int ResponseCertStatus(const std::string& request_der, const std::string& response_der,
                       int* reason = nullptr) {
  const unsigned char* p = Bytes(response_der);
  OsslPtr<OCSP_RESPONSE> resp(
      d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(response_der.size())));
  if (resp == nullptr) return -100;
  if (OCSP_response_status(resp.get()) != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
    return -OCSP_response_status(resp.get());
  }
  OsslPtr<OCSP_BASICRESP> basic(OCSP_response_get1_basic(resp.get()));
  const unsigned char* q = Bytes(request_der);
  OsslPtr<OCSP_REQUEST> req(d2i_OCSP_REQUEST(nullptr, &q, static_cast<long>(request_der.size())));
  // 1: the nonce echoed; 2: neither has one.
  const int nonce = OCSP_check_nonce(req.get(), basic.get());
  if (nonce != 1 && nonce != 2) return -101;
  int status = -1, r = -1;
  OCSP_single_get0_status(OCSP_resp_get0(basic.get(), 0), &r, nullptr, nullptr, nullptr);
  status = OCSP_single_get0_status(OCSP_resp_get0(basic.get(), 0), &r, nullptr, nullptr, nullptr);
  if (reason != nullptr) *reason = r;
  return status;
}

TEST_F(LifecycleTest, OcspOverGetAndPostAndMalformedRequests) {
  pb::Certificate cert = IssueFor("alice");
  std::string serial;
  serial = absl::HexStringToBytes(cert.serial_hex());
  const std::string req = OcspRequest(*cas_, serial);

  httplib::Client client("127.0.0.1", http_->port());
  auto post = client.Post("/ocsp", req, "application/ocsp-request");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->get_header_value("Content-Type"), "application/ocsp-response");
  EXPECT_EQ(ResponseCertStatus(req, post->body), V_OCSP_CERTSTATUS_GOOD);

  // GET: base64, URL-encoded (RFC 6960 A.1).
  std::string b64;
  absl::Base64Escape(req, &b64);
  std::string encoded;
  for (char c : b64) {
    if (c == '+') {
      encoded += "%2B";
    } else if (c == '/') {
      encoded += "%2F";
    } else if (c == '=') {
      encoded += "%3D";
    } else {
      encoded += c;
    }
  }
  auto get = client.Get(absl::StrCat("/ocsp/", encoded));
  ASSERT_TRUE(get);
  EXPECT_EQ(ResponseCertStatus(req, get->body), V_OCSP_CERTSTATUS_GOOD);

  // Unknown serial of our CA: unknown.
  const std::string unknown = OcspRequest(*cas_, RandomSerial());
  auto u = client.Post("/ocsp", unknown, "application/ocsp-request");
  ASSERT_TRUE(u);
  EXPECT_EQ(ResponseCertStatus(unknown, u->body), V_OCSP_CERTSTATUS_UNKNOWN);

  // Garbage: malformedRequest, and the server keeps serving.
  auto bad = client.Post("/ocsp", "this is not DER", "application/ocsp-request");
  ASSERT_TRUE(bad);
  EXPECT_EQ(ResponseCertStatus("", bad->body), -OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
  auto bad_get = client.Get("/ocsp/%%%not-base64");
  ASSERT_TRUE(bad_get);
  EXPECT_EQ(ResponseCertStatus("", bad_get->body), -OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);

  pb::Certificate revoked;
  ASSERT_TRUE(
      Revoke(Bearer("alice"), cert.certificate_id(), pb::REVOCATION_REASON_KEY_COMPROMISE, &revoked)
          .ok());
  auto after = client.Post("/ocsp", req, "application/ocsp-request");
  ASSERT_TRUE(after);
  int reason = -1;
  EXPECT_EQ(ResponseCertStatus(req, after->body, &reason), V_OCSP_CERTSTATUS_REVOKED);
  EXPECT_EQ(reason, OCSP_REVOKED_STATUS_KEYCOMPROMISE);
}

TEST_F(LifecycleTest, OcspReusesNoncelessResponsesUntilARevocation) {
  pb::Certificate cert = IssueFor("alice");
  const std::string serial = absl::HexStringToBytes(cert.serial_hex());
  const std::string plain = OcspRequest(*cas_, serial, /*nonce=*/false);
  const std::string first = ocsp_->Respond(plain);
  EXPECT_EQ(ResponseCertStatus(plain, first), V_OCSP_CERTSTATUS_GOOD);
  clock_.Advance(absl::Seconds(30));
  EXPECT_EQ(ocsp_->Respond(plain), first);  // The same signed bytes: served from the cache.
  // With a nonce: signed for this request.
  const std::string with_nonce = OcspRequest(*cas_, serial);
  EXPECT_NE(ocsp_->Respond(with_nonce), first);
  // Past the cache lifetime: signed again.
  clock_.Advance(absl::Seconds(31));
  const std::string second = ocsp_->Respond(plain);
  EXPECT_NE(second, first);
  EXPECT_EQ(ResponseCertStatus(plain, second), V_OCSP_CERTSTATUS_GOOD);
  // A revocation is seen at once.
  pb::Certificate revoked;
  ASSERT_TRUE(
      Revoke(Bearer("alice"), cert.certificate_id(), pb::REVOCATION_REASON_UNSPECIFIED, &revoked)
          .ok());
  EXPECT_EQ(ResponseCertStatus(plain, ocsp_->Respond(plain)), V_OCSP_CERTSTATUS_REVOKED);
  // "unknown" is never cached: it may be a certificate being issued.
  const std::string unknown = OcspRequest(*cas_, RandomSerial(), /*nonce=*/false);
  EXPECT_NE(ocsp_->Respond(unknown), ocsp_->Respond(unknown));
}

// The HTTP listener answers from the cache on its I/O thread by the request's bytes alone: the
// same answers Respond gives, never a signature, and never past a revocation or the lifetime.
TEST_F(LifecycleTest, OcspCachedAnswersByTheRequestsBytes) {
  pb::Certificate cert = IssueFor("alice");
  const std::string serial = absl::HexStringToBytes(cert.serial_hex());
  const std::string plain = OcspRequest(*cas_, serial, /*nonce=*/false);
  EXPECT_EQ(ocsp_->CachedAnswer(plain), std::nullopt);  // Nothing signed yet.
  const std::string first = ocsp_->Respond(plain);
  EXPECT_EQ(ocsp_->CachedAnswer(plain), first);
  // A nonce makes every answer unique: never from the cache.
  const std::string with_nonce = OcspRequest(*cas_, serial);
  EXPECT_EQ(ResponseCertStatus(with_nonce, ocsp_->Respond(with_nonce)), V_OCSP_CERTSTATUS_GOOD);
  EXPECT_EQ(ocsp_->CachedAnswer(with_nonce), std::nullopt);
  EXPECT_EQ(ocsp_->CachedAnswer("not DER"), std::nullopt);
  // Past the cache lifetime: nothing, until Respond signs again.
  clock_.Advance(absl::Seconds(61));
  EXPECT_EQ(ocsp_->CachedAnswer(plain), std::nullopt);
  const std::string second = ocsp_->Respond(plain);
  EXPECT_EQ(ocsp_->CachedAnswer(plain), second);
  // A revocation here: the good answer is never served again.
  pb::Certificate revoked;
  ASSERT_TRUE(
      Revoke(Bearer("alice"), cert.certificate_id(), pb::REVOCATION_REASON_UNSPECIFIED, &revoked)
          .ok());
  EXPECT_EQ(ocsp_->CachedAnswer(plain), std::nullopt);
  const std::string after = ocsp_->Respond(plain);
  EXPECT_EQ(ResponseCertStatus(plain, after), V_OCSP_CERTSTATUS_REVOKED);
  EXPECT_EQ(ocsp_->CachedAnswer(plain), after);
}

// Requests with a nonce cost an HSM signature each: past the budget the responder answers with the
// cached nonce-less response (or tryLater), so a flood cannot take the HSM from citizens' signing.
TEST_F(LifecycleTest, OcspNoncesHaveASignatureBudget) {
  OcspResponder ocsp(cas_.get(), lifecycle_->status_source(), &clock_,
                     OcspConfig{.signatures_per_second = 3});
  pb::Certificate cert = IssueFor("alice");
  const std::string serial = absl::HexStringToBytes(cert.serial_hex());
  const std::string plain = OcspRequest(*cas_, serial, /*nonce=*/false);
  const std::string cached = ocsp.Respond(plain);  // Signature 1.
  EXPECT_EQ(ResponseCertStatus(plain, cached), V_OCSP_CERTSTATUS_GOOD);
  for (int i = 0; i < 2; ++i) {  // Signatures 2 and 3: the nonce echoed.
    const std::string with_nonce = OcspRequest(*cas_, serial);
    EXPECT_EQ(ResponseCertStatus(with_nonce, ocsp.Respond(with_nonce)), V_OCSP_CERTSTATUS_GOOD);
  }
  const double before = MetricValue("qsign_ocsp_over_budget_total{answer=\"cached\"}");
  for (int i = 0; i < 20; ++i) {
    // Spent: the cached nonce-less bytes, no new signature.
    EXPECT_EQ(ocsp.Respond(OcspRequest(*cas_, serial)), cached);
  }
  EXPECT_EQ(MetricValue("qsign_ocsp_over_budget_total{answer=\"cached\"}") - before, 20);
  // Nothing cached to fall back on: try later.
  const std::string unknown = OcspRequest(*cas_, RandomSerial());
  EXPECT_EQ(ocsp.Respond(unknown), OcspResponder::ErrorResponse(OcspResponseStatus::kTryLater));
  // A second later the budget is back.
  clock_.Advance(absl::Seconds(1));
  const std::string with_nonce = OcspRequest(*cas_, serial);
  EXPECT_EQ(ResponseCertStatus(with_nonce, ocsp.Respond(with_nonce)), V_OCSP_CERTSTATUS_GOOD);
}

// `openssl ocsp` (the judge) checks the signed answer for every status, with and without a
// nonce: the signature chains to the root through the delegated responder, the status and the
// nonce are what was asked. Its requests are in the shape Respond reads in place.
TEST_F(LifecycleTest, OpensslOcspJudgesEveryStatusWithAndWithoutANonce) {
  pb::Certificate cert = IssueFor("alice");
  const std::string issuer = Pem(cas_->qualified().cert_der());
  const std::string ca_file = Pem(cas_->root().cert_der());
  const std::string unknown_serial = "0x" + absl::BytesToHexString(RandomSerial());
  auto judge = [&](const std::string& serial, bool nonce, std::string* out) {
    const std::string request = Temp("", ".der");
    const std::string command =
        absl::StrCat("openssl ocsp -issuer ", issuer, " -serial ", serial,
                     nonce ? "" : " -no_nonce", " -reqout ", request, " -url ", http_->base_url(),
                     "/ocsp -CAfile ", ca_file, " -resp_text");
    EXPECT_EQ(testing::RunCommand(command, out), 0) << *out;
    EXPECT_TRUE(OcspResponder::ReadsInPlace(ReadFileToString(request).value_or("")));
    EXPECT_THAT(*out, HasSubstr("Response verify OK"));
    EXPECT_THAT(*out, ::testing::Not(HasSubstr("WARNING")));
    if (nonce) {
      EXPECT_THAT(*out, HasSubstr("OCSP Nonce"));
    } else {
      EXPECT_THAT(*out, ::testing::Not(HasSubstr("OCSP Nonce")));
    }
  };
  const std::string serial = "0x" + cert.serial_hex();
  std::string out;
  for (bool nonce : {true, false}) {
    SCOPED_TRACE(nonce ? "nonce" : "no nonce");
    judge(serial, nonce, &out);
    EXPECT_THAT(out, HasSubstr(serial + ": good"));
    judge(unknown_serial, nonce, &out);
    EXPECT_THAT(out, HasSubstr(unknown_serial + ": unknown"));
  }
  pb::Certificate revoked;
  ASSERT_TRUE(
      Revoke(Bearer("alice"), cert.certificate_id(), pb::REVOCATION_REASON_KEY_COMPROMISE, &revoked)
          .ok());
  for (bool nonce : {true, false}) {
    SCOPED_TRACE(nonce ? "nonce" : "no nonce");
    judge(serial, nonce, &out);
    EXPECT_THAT(out, HasSubstr(serial + ": revoked"));
    EXPECT_THAT(out, HasSubstr("Reason: keyCompromise"));
  }
}

// The request with a requestor name added: the same question in a shape Respond decodes with
// OpenSSL (the general way).
std::string WithRequestorName(const std::string& request_der) {
  const unsigned char* p = Bytes(request_der);
  OsslPtr<OCSP_REQUEST> req(d2i_OCSP_REQUEST(nullptr, &p, static_cast<long>(request_der.size())));
  OsslPtr<X509_NAME> name(X509_NAME_new());
  X509_NAME_add_entry_by_txt(name.get(), "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>("relying party"), -1, -1, 0);
  OCSP_request_set1_name(req.get(), name.get());
  return ToDer(req.get(), i2d_OCSP_REQUEST);
}

// The ResponseData (what the responder signs) of a successful OCSPResponse; empty otherwise.
std::string SignedResponseData(const std::string& response_der) {
  auto response = der::ReadAll(response_der);
  if (!response.ok()) return "";
  auto parts = der::Children(response->content);  // responseStatus, [0] responseBytes.
  if (!parts.ok() || parts->size() != 2) return "";
  auto bytes = der::ReadAll((*parts)[1].content);  // ResponseBytes.
  if (!bytes.ok()) return "";
  auto type_and_value = der::Children(bytes->content);
  if (!type_and_value.ok() || type_and_value->size() != 2) return "";
  auto basic = der::ReadAll((*type_and_value)[1].content);  // BasicOCSPResponse.
  if (!basic.ok()) return "";
  auto fields = der::Children(basic->content);
  if (!fields.ok() || fields->empty()) return "";
  return std::string((*fields)[0].encoded);
}

// Requests in the usual shape are read in place and the answer spliced from parts encoded once;
// every other shape goes through OpenSSL's decoder. Both must sign the same ResponseData for
// the same question: good, revoked, unknown, with and without a nonce, and an issuer that is not
// ours (unauthorized, nothing signed).
TEST_F(LifecycleTest, OcspSignsTheSameAnswerWhicheverWayTheRequestIsRead) {
  OcspResponder ocsp(cas_.get(), lifecycle_->status_source(), &clock_,
                     OcspConfig{.cache_ttl = absl::ZeroDuration(), .signatures_per_second = 0});
  pb::Certificate cert = IssueFor("alice");
  const std::string serial = absl::HexStringToBytes(cert.serial_hex());
  auto same_answer = [&](const std::string& simple, int status) {
    const std::string general = WithRequestorName(simple);
    ASSERT_TRUE(OcspResponder::ReadsInPlace(simple));
    ASSERT_FALSE(OcspResponder::ReadsInPlace(general));
    const std::string fast = ocsp.Respond(simple);
    const std::string slow = ocsp.Respond(general);
    EXPECT_EQ(ResponseCertStatus(simple, fast), status);
    EXPECT_EQ(ResponseCertStatus(general, slow), status);
    const std::string signed_fast = SignedResponseData(fast);
    EXPECT_FALSE(signed_fast.empty());
    EXPECT_EQ(signed_fast, SignedResponseData(slow));
  };
  for (bool nonce : {true, false}) {
    SCOPED_TRACE(nonce ? "nonce" : "no nonce");
    same_answer(OcspRequest(*cas_, serial, nonce), V_OCSP_CERTSTATUS_GOOD);
    same_answer(OcspRequest(*cas_, RandomSerial(), nonce), V_OCSP_CERTSTATUS_UNKNOWN);
    // A serial with its high bit set (a leading zero octet in DER).
    same_answer(OcspRequest(*cas_, "\x80" + RandomSerial(), nonce), V_OCSP_CERTSTATUS_UNKNOWN);
  }
  pb::Certificate revoked;
  ASSERT_TRUE(Revoke(Bearer("alice"), cert.certificate_id(),
                     pb::REVOCATION_REASON_CESSATION_OF_OPERATION, &revoked)
                  .ok());
  for (bool nonce : {true, false}) {
    SCOPED_TRACE(nonce ? "nonce" : "no nonce");
    same_answer(OcspRequest(*cas_, serial, nonce), V_OCSP_CERTSTATUS_REVOKED);
  }

  // Issued by the root (no responder of ours answers for it): unauthorized either way.
  const X509* root = cas_->root().cert();
  OsslPtr<BIGNUM> bn(BN_bin2bn(Bytes(serial), static_cast<int>(serial.size()), nullptr));
  OsslPtr<ASN1_INTEGER> number(BN_to_ASN1_INTEGER(bn.get(), nullptr));
  OsslPtr<OCSP_REQUEST> req(OCSP_REQUEST_new());
  OCSP_request_add0_id(req.get(), OCSP_cert_id_new(EVP_sha1(), X509_get_subject_name(root),
                                                   X509_get0_pubkey_bitstr(root), number.get()));
  OCSP_request_add1_nonce(req.get(), nullptr, 16);
  const std::string foreign = ToDer(req.get(), i2d_OCSP_REQUEST);
  ASSERT_TRUE(OcspResponder::ReadsInPlace(foreign));
  const std::string unauthorized = OcspResponder::ErrorResponse(OcspResponseStatus::kUnauthorized);
  EXPECT_EQ(ocsp.Respond(foreign), unauthorized);
  EXPECT_EQ(ocsp.Respond(WithRequestorName(foreign)), unauthorized);
}

// RFC 9654 2.1: a nonce of 0 or more than 128 octets is refused with malformedRequest (nothing
// signed), whichever way the request is read; 1 and 128 octets are echoed.
TEST_F(LifecycleTest, OcspRefusesNoncesOutsideOneTo128Octets) {
  OcspResponder ocsp(cas_.get(), lifecycle_->status_source(), &clock_,
                     OcspConfig{.signatures_per_second = 0});
  pb::Certificate cert = IssueFor("alice");
  const std::string serial = absl::HexStringToBytes(cert.serial_hex());
  const std::string plain = OcspRequest(*cas_, serial, /*nonce=*/false);
  // The CertID of that request: OCSPRequest / tbsRequest / requestList / Request / CertID.
  auto tbs = der::ReadAll(der::ReadAll(plain)->content);
  auto request = der::ReadAll(der::ReadAll(tbs->content)->content);
  const std::string cert_id(der::ReadAll(request->content)->encoded);
  auto with_nonce = [&](const std::string& nonce) {
    const std::string extension = der::Sequence(
        {der::Oid("1.3.6.1.5.5.7.48.1.2"), der::OctetString(der::OctetString(nonce))});
    return der::Sequence({der::Sequence({
        der::Sequence({der::Sequence({cert_id})}),
        der::Explicit(2, der::Sequence({extension})),
    })});
  };
  const std::string malformed = OcspResponder::ErrorResponse(OcspResponseStatus::kMalformedRequest);
  for (size_t length : {size_t{1}, size_t{16}, size_t{32}, size_t{128}}) {
    SCOPED_TRACE(length);
    const std::string simple = with_nonce(std::string(length, '\x5a'));
    ASSERT_TRUE(OcspResponder::ReadsInPlace(simple));
    EXPECT_EQ(ResponseCertStatus(simple, ocsp.Respond(simple)), V_OCSP_CERTSTATUS_GOOD);
    const std::string general = WithRequestorName(simple);
    EXPECT_EQ(ResponseCertStatus(general, ocsp.Respond(general)), V_OCSP_CERTSTATUS_GOOD);
  }
  for (size_t length : {size_t{0}, size_t{129}, size_t{4000}}) {
    SCOPED_TRACE(length);
    const std::string simple = with_nonce(std::string(length, '\x5a'));
    EXPECT_EQ(ocsp.Respond(simple), malformed);
    EXPECT_EQ(ocsp.Respond(WithRequestorName(simple)), malformed);
  }
}

// --- The status cache of signed (nonce) OCSP answers -------------------------------------------

// Counts the lookups that reach lifecycle's store.
class CountingStatusSource final : public CertStatusSource {
 public:
  explicit CountingStatusSource(CertStatusSource* inner) : inner_(inner) {}
  absl::StatusOr<CertStatus> Status(std::string_view ca_name,
                                    std::string_view serial_hex) override {
    calls_.fetch_add(1);
    return inner_->Status(ca_name, serial_hex);
  }
  uint64_t Generation() const override { return inner_->Generation(); }
  int calls() const { return calls_.load(); }

 private:
  CertStatusSource* inner_;
  std::atomic<int> calls_{0};
};

class OcspStatusCacheTest : public LifecycleTest {
 protected:
  void SetUp() override {
    LifecycleTest::SetUp();
    if (HasFatalFailure()) return;
    counting_ = std::make_unique<CountingStatusSource>(lifecycle_->status_source());
    auto cache = CachedStatusSource::Start(conninfo(), counting_.get());
    ASSERT_TRUE(cache.ok()) << cache.status();
    cache_ = *std::move(cache);
    // As qsignd's lifecycle stack builds it: the cache between the responder and the store.
    cached_ocsp_ = std::make_unique<OcspResponder>(cas_.get(), cache_.get(), &clock_);
    auto http = StatusHttpServer::Start({}, cached_ocsp_.get(), lifecycle_.get(), cas_.get());
    ASSERT_TRUE(http.ok()) << http.status();
    cached_http_ = *std::move(http);
    // Another replica: its own store on the same database, nothing shared with this process.
    replica_store_ = NewPostgresLifecycleStore(&pool());
  }
  void TearDown() override {
    cached_http_.reset();
    cache_.reset();
    LifecycleTest::TearDown();
  }

  // `openssl ocsp` with a nonce (its default) against the cached listener; its output.
  std::string OpensslOcsp(const pb::Certificate& cert) {
    const std::string command =
        absl::StrCat("openssl ocsp -issuer ", Pem(cas_->qualified().cert_der()), " -cert ",
                     Pem(cert.certificate_der()), " -url ", cached_http_->base_url(),
                     "/ocsp -CAfile ", Pem(cas_->root().cert_der()), " -resp_text");
    std::string out;
    EXPECT_EQ(testing::RunCommand(command, &out), 0) << out;
    EXPECT_THAT(out, HasSubstr("Response verify OK"));
    EXPECT_THAT(out, HasSubstr("OCSP Nonce"));
    EXPECT_THAT(out, ::testing::Not(HasSubstr("WARNING")));
    return out;
  }
  // What another replica does when it revokes: the store's transaction, nothing in this process.
  void RevokeOnAnotherReplica(const pb::Certificate& cert) {
    auto revoked = replica_store_->MarkRevoked(cert.certificate_id(), 5, clock_.Now(),
                                               {.actor = "op1",
                                                .action = "certificate.revoke",
                                                .target = cert.serial_hex(),
                                                .outcome = "ok"});
    ASSERT_TRUE(revoked.ok()) << revoked.status();
  }
  template <class Done>
  static bool WaitFor(Done done) {
    for (int i = 0; i < 500 && !done(); ++i) absl::SleepFor(absl::Milliseconds(10));
    return done();
  }

  std::unique_ptr<CountingStatusSource> counting_;
  std::unique_ptr<CachedStatusSource> cache_;
  std::unique_ptr<OcspResponder> cached_ocsp_;
  std::unique_ptr<StatusHttpServer> cached_http_;
  std::unique_ptr<LifecycleStore> replica_store_;
};

TEST_F(OcspStatusCacheTest, NonceAnswersComeFromTheCacheAndSeeAnotherReplicasRevocation) {
  const pb::Certificate cert = IssueFor("alice");
  ASSERT_TRUE(WaitFor([&] { return cache_->live(); }));
  EXPECT_THAT(OpensslOcsp(cert), HasSubstr(": good"));
  EXPECT_EQ(counting_->calls(), 1);
  // The next signed answer (a new nonce) takes the status from the cache, not PostgreSQL.
  EXPECT_THAT(OpensslOcsp(cert), HasSubstr(": good"));
  EXPECT_EQ(counting_->calls(), 1);

  const uint64_t heard = cache_->notifications();
  RevokeOnAnotherReplica(cert);
  // The trigger's NOTIFY, sent with the revocation's commit, empties the cache.
  ASSERT_TRUE(WaitFor([&] { return cache_->notifications() > heard; }));
  const std::string out = OpensslOcsp(cert);
  EXPECT_THAT(out, HasSubstr(": revoked"));
  EXPECT_THAT(out, HasSubstr("Reason: cessationOfOperation"));
  EXPECT_EQ(counting_->calls(), 2);
  EXPECT_THAT(OpensslOcsp(cert), HasSubstr(": revoked"));
  EXPECT_EQ(counting_->calls(), 2);
}

TEST_F(OcspStatusCacheTest, ARevocationInThisProcessIsSeenWithoutWaitingForTheNotify) {
  const pb::Certificate cert = IssueFor("alice");
  ASSERT_TRUE(WaitFor([&] { return cache_->live(); }));
  EXPECT_THAT(OpensslOcsp(cert), HasSubstr(": good"));
  pb::Certificate revoked;
  ASSERT_TRUE(Revoke(Bearer("alice"), cert.certificate_id(),
                     pb::REVOCATION_REASON_CESSATION_OF_OPERATION, &revoked)
                  .ok());
  EXPECT_THAT(OpensslOcsp(cert), HasSubstr(": revoked"));
}

TEST_F(OcspStatusCacheTest, ALostListenConnectionEmptiesTheCache) {
  const pb::Certificate cert = IssueFor("alice");
  ASSERT_TRUE(WaitFor([&] { return cache_->live(); }));
  EXPECT_THAT(OpensslOcsp(cert), HasSubstr(": good"));
  // A notification lost: the trigger off while another replica revokes. The cache still says
  // good, which shows it answers without PostgreSQL (and why it must trust nothing after a loss).
  ASSERT_TRUE(pool()
                  .Exec("ALTER TABLE lifecycle.certificates DISABLE TRIGGER "
                        "certificates_status_changed")
                  .ok());
  RevokeOnAnotherReplica(cert);
  EXPECT_THAT(OpensslOcsp(cert), HasSubstr(": good"));
  ASSERT_TRUE(pool()
                  .Exec("ALTER TABLE lifecycle.certificates ENABLE TRIGGER "
                        "certificates_status_changed")
                  .ok());

  // The listener's connection dies (as in a PostgreSQL restart or a network cut).
  auto killed = db::testing::EndListenerSessions(pool(), kStatusChannel);
  ASSERT_TRUE(killed.ok()) << killed.status();
  ASSERT_EQ(*killed, 1);
  ASSERT_TRUE(WaitFor([&] { return cache_->reconnects() >= 1 && cache_->live(); }));
  const std::string out = OpensslOcsp(cert);
  EXPECT_THAT(out, HasSubstr(": revoked"));
  EXPECT_THAT(out, HasSubstr("Reason: cessationOfOperation"));
}

TEST_F(OcspStatusCacheTest, AnUnknownSerialIsUnknownOnlyUntilACertificateWithItCommits) {
  ASSERT_TRUE(WaitFor([&] { return cache_->live(); }));
  const std::string request = OcspRequest(*cas_, std::string("\x7a\x11\x22\x33", 4));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(ResponseCertStatus(request, cached_ocsp_->Respond(request)),
              V_OCSP_CERTSTATUS_UNKNOWN);
  }
  EXPECT_EQ(counting_->calls(), 1);  // Unknown is cached too, until a row with the serial commits.

  // Another replica stores a certificate with that serial (the row's INSERT notifies).
  const uint64_t heard = cache_->notifications();
  const absl::Time now = clock_.Now();
  auto stored = replica_store_->InsertDeviceCertificate(
      {.certificate_id = "replica-device-1",
       .account_id = "bob",
       .kind = CertKind::kDevice,
       .state = CertState::kIssued,
       .ca_name = std::string(kQualifiedCa),
       .serial_hex = "7A112233",
       .client_request_id = "replica-1",
       .request_fingerprint = "replica-1",
       .device_id = "phone-1",
       .device_name = "phone",
       .device_public_key = "spki",
       .certificate_der = "der",
       .subject_dn = "CN=phone",
       .not_before = now,
       .not_after = now + absl::Hours(24),
       .created_at = now},
      {.actor = "lifecycle", .action = "certificate.issue", .target = "7A112233", .outcome = "ok"});
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_TRUE(WaitFor([&] { return cache_->notifications() > heard; }));
  EXPECT_EQ(ResponseCertStatus(request, cached_ocsp_->Respond(request)), V_OCSP_CERTSTATUS_GOOD);
  EXPECT_EQ(counting_->calls(), 2);
}

TEST_F(OcspStatusCacheTest, TheCacheIsOffWhileTheListenerIsDown) {
  const pb::Certificate cert = IssueFor("alice");
  ASSERT_TRUE(WaitFor([&] { return cache_->live(); }));
  EXPECT_THAT(OpensslOcsp(cert), HasSubstr(": good"));
  EXPECT_EQ(counting_->calls(), 1);
  // No new connection to this database (from another one: PostgreSQL refuses it for the
  // current one): the listener cannot come back.
  auto db = pool().Exec("SELECT current_database()");
  ASSERT_TRUE(db.ok()) << db.status();
  const std::string name(db->Get(0, 0));
  auto admin = db::Connection::Open(absl::StrCat(conninfo(), " dbname=postgres"));
  ASSERT_TRUE(admin.ok()) << admin.status();
  const auto allow = [&](bool on) {
    auto res = (*admin)->Exec(
        absl::StrCat("ALTER DATABASE \"", name, "\" ALLOW_CONNECTIONS ", on ? "true" : "false"));
    EXPECT_TRUE(res.ok()) << res.status();
  };
  allow(false);
  ASSERT_TRUE(db::testing::EndListenerSessions(pool(), kStatusChannel).ok());
  ASSERT_TRUE(WaitFor([&] { return !cache_->live(); }));
  // Every answer reads PostgreSQL now, so this replica's revocation is seen without a NOTIFY.
  EXPECT_THAT(OpensslOcsp(cert), HasSubstr(": good"));
  EXPECT_THAT(OpensslOcsp(cert), HasSubstr(": good"));
  EXPECT_EQ(counting_->calls(), 3);
  RevokeOnAnotherReplica(cert);
  EXPECT_THAT(OpensslOcsp(cert), HasSubstr(": revoked"));
  allow(true);
  ASSERT_TRUE(WaitFor([&] { return cache_->live(); }));
}

TEST_F(OcspStatusCacheTest, AListenerThatStopsAnsweringTurnsTheCacheOffWithinSeconds) {
  const pb::Certificate cert = IssueFor("alice");
  ASSERT_TRUE(WaitFor([&] { return cache_->live(); }));
  EXPECT_THAT(OpensslOcsp(cert), HasSubstr(": good"));
  EXPECT_EQ(counting_->calls(), 1);
  // The listener's server process stops answering (a hung server, a silent network cut): its
  // socket stays open, so only the missing heartbeat tells.
  auto backend = pool().Exec(
      "SELECT pid FROM pg_stat_activity WHERE application_name = "
      "'qsign listen lifecycle_cert_status' AND datname = current_database()");
  ASSERT_TRUE(backend.ok()) << backend.status();
  ASSERT_EQ(backend->rows(), 1);
  auto pid = backend->GetInt64(0, 0);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_EQ(kill(static_cast<pid_t>(*pid), SIGSTOP), 0);
  struct Resume {
    pid_t pid;
    ~Resume() { kill(pid, SIGCONT); }
  } resume{static_cast<pid_t>(*pid)};
  const absl::Time stopped = absl::Now();
  ASSERT_TRUE(WaitFor([&] { return !cache_->live(); }));
  EXPECT_LT(absl::Now() - stopped, absl::Seconds(3));
  // Its NOTIFY cannot arrive; the cache is off, so the answer reads PostgreSQL.
  RevokeOnAnotherReplica(cert);
  EXPECT_THAT(OpensslOcsp(cert), HasSubstr(": revoked"));
  kill(resume.pid, SIGCONT);
  ASSERT_TRUE(WaitFor([&] { return cache_->live(); }));
  EXPECT_THAT(OpensslOcsp(cert), HasSubstr(": revoked"));
}

TEST_F(LifecycleTest, RenewalRemindersAreQueuedOncePerCertificate) {
  pb::Certificate cert = IssueFor("alice");
  auto none = lifecycle_->QueueRenewalReminders();
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, 0);
  clock_.Set(absl::FromUnixSeconds(cert.not_after().seconds()) - absl::Hours(24 * 30));
  auto queued = lifecycle_->QueueRenewalReminders();
  ASSERT_TRUE(queued.ok()) << queued.status();
  EXPECT_EQ(*queued, 1);
  auto again = lifecycle_->QueueRenewalReminders();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0);
  auto mail = store_->PendingOutbox(10);
  ASSERT_TRUE(mail.ok());
  ASSERT_THAT(*mail, SizeIs(2));  // The contract, then the reminder.
  EXPECT_EQ((*mail)[1].kind, "renewal_reminder");
  EXPECT_EQ((*mail)[1].recipient, "alice@example.rs");
  EXPECT_THAT((*mail)[1].body, HasSubstr(cert.serial_hex()));
}

TEST_F(LifecycleTest, QsignLifecycleBinaryLoadsTheCaAndServesStatus) {
  // The CA exists (the fixture made it): no create_missing_keys. The peers are never called here.
  config::v1::ServerConfig config =
      qsign::testing::LaptopConfig(conninfo(), env().TokensConfig(2), {"lifecycle"}, token().dir());
  config.set_create_missing_keys(false);
  config.mutable_lifecycle()->set_http_listen("127.0.0.1:0");
  config.mutable_peers()->set_signer("127.0.0.1:1");
  config.mutable_peers()->set_identity("127.0.0.1:1");
  config.mutable_peers()->set_consent("127.0.0.1:1");
  auto process = qsign::testing::QsigndProcess::Start(QSIGN_LIFECYCLE_PATH, config, token().dir(),
                                                      "lifecycle");
  ASSERT_TRUE(process.ok()) << process.status();
  const int http_port = (*process)->LoggedPort("OCSP/CRL listener", "http_port");
  ASSERT_GT(http_port, 0) << (*process)->log();
  httplib::Client client("127.0.0.1", http_port);
  auto crl = client.Get("/crl/qualified.crl");
  ASSERT_TRUE(crl) << (*process)->log();
  EXPECT_EQ(crl->status, 200);
  EXPECT_EQ(crl->get_header_value("Content-Type"), "application/pkix-crl");
  auto root = client.Get("/ca/root.crt");
  ASSERT_TRUE(root);
  EXPECT_EQ(root->body, cas_->root().cert_der());
  // GetContract needs no credential and no other service.
  auto stub = pb::Lifecycle::NewStub(
      grpc::CreateChannel((*process)->target(), grpc::InsecureChannelCredentials()));
  pb::Contract contract;
  EXPECT_TRUE(stub->GetContract(As("").get(), pb::GetContractRequest(), &contract).ok());
  EXPECT_EQ(contract.version(), ContractRegistry::BuiltIn().current().version);
  const int status = (*process)->Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << (*process)->log();
}

}  // namespace
}  // namespace qsign::lifecycle
