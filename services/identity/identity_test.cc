// The identity service over real gRPC on loopback, with a real PostgreSQL, a real SoftHSM2 token
// and a fake consent service (the one part outside this service).
#include "services/identity/identity.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/auth/credential_table.h"
#include "common/client_address.h"
#include "common/clock.h"
#include "common/db/audit.h"
#include "common/db/pg.h"
#include "common/grpc_server.h"
#include "common/grpc_status.h"
#include "common/mail/mailer.h"
#include "common/rate_limit.h"
#include "common/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsm/hsm.h"
#include "qsign/v1/consent.grpc.pb.h"
#include "qsign/v1/identity.grpc.pb.h"
#include "services/identity/consent_client_grpc.h"
#include "services/identity/identity_grpc.h"
#include "services/identity/identity_store.h"
#include "services/identity/session_token.h"
#include "services/identity/testing/fake_consent_client.h"
#include "tests/testing/registration.h"
#include "tests/testing/service_test.h"
#include "tests/testing/test_data.h"

namespace qsign::identity {
namespace {

namespace pb = ::qsign::v1;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);  // 2027-01-15 08:00 UTC.
constexpr char kSessionKey[] = "identity-session-1";
constexpr char kOperatorSecret[] = "op-secret-ana-7f3c";
constexpr char kConsentSecret[] = "svc-secret-consent-19a2";
constexpr char kLifecycleSecret[] = "svc-secret-lifecycle-c0de";
const std::string kOperator = absl::StrCat("Operator ra-ana.", kOperatorSecret);
const std::string kConsent = absl::StrCat("Service consent.", kConsentSecret);
const std::string kLifecycle = absl::StrCat("Service lifecycle.", kLifecycleSecret);
const std::string kDeviceKey = std::string(32, '\x11');

std::string Bearer(const std::string& token) { return absl::StrCat("Bearer ", token); }

absl::Time FromProto(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

google::protobuf::Duration Seconds(double s) {
  google::protobuf::Duration d;
  d.set_seconds(static_cast<int64_t>(s));
  d.set_nanos(static_cast<int32_t>((s - static_cast<int64_t>(s)) * 1e9));
  return d;
}

class IdentityTest : public qsign::testing::ServiceTest {
 protected:
  void SetUp() override {
    ServiceTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(hsm("identity").GenerateKeyPair(kSessionKey, hsm::KeyType::kEcP256).ok());

    ASSERT_TRUE(MigrateIdentitySchema(pool()).ok());
    store_ = NewPostgresIdentityStore(&pool());
    consent_ = std::make_unique<FakeConsentClient>(&clock_);
    CredentialTable operators, services;
    ASSERT_TRUE(operators.AddSecret("ra-ana", kOperatorSecret).ok());
    ASSERT_TRUE(services.AddSecret("consent", kConsentSecret).ok());
    ASSERT_TRUE(services.AddSecret("lifecycle", kLifecycleSecret).ok());
    auto identity =
        Identity::New(&hsm("identity"), store_.get(), consent_.get(), &clock_, std::move(operators),
                      std::move(services), IdentityConfig{.session_key_ids = {kSessionKey}});
    ASSERT_TRUE(identity.ok()) << identity.status();
    identity_ = *std::move(identity);
    // The test's calls come from 127.0.0.1, as an ingress's would; x-forwarded-for names the user.
    auto client_address = ClientAddressResolver::New("x-forwarded-for", {"127.0.0.0/8"});
    ASSERT_TRUE(client_address.ok());
    grpc_ = std::make_unique<IdentityGrpc>(identity_.get(), *std::move(client_address));
    auto server = GrpcServer::Start({}, {grpc_.get()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = pb::Identity::NewStub(
        grpc::CreateChannel(server_->local_target(), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    if (server_) server_->Shutdown(absl::ZeroDuration());
  }

  template <typename Req, typename Resp>
  grpc::Status Call(grpc::Status (pb::Identity::Stub::*method)(grpc::ClientContext*, const Req&,
                                                               Resp*),
                    const Req& req, Resp* resp, const std::string& authorization = "",
                    const std::string& forwarded_for = "") {
    grpc::ClientContext ctx;
    if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
    if (!forwarded_for.empty()) ctx.AddMetadata("x-forwarded-for", forwarded_for);
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    return (stub_.get()->*method)(&ctx, req, resp);
  }

  static pb::RegisterAccountRequest Registration(const std::string& username = "ana@example.rs",
                                                 const std::string& national_id = "0101990710008") {
    pb::RegisterAccountRequest req;
    req.set_username(username);
    req.set_given_name("Ana");
    req.set_surname("Petrović");
    req.set_national_id(national_id);
    req.mutable_client()->set_client_address("203.0.113.7");
    return req;
  }

  // RegisterAccount, then the e-mailed link (read from the outbox) through ConfirmRegistration.
  pb::Account Register(const std::string& username = "ana@example.rs",
                       const std::string& national_id = "0101990710008") {
    auto account =
        qsign::testing::RegisterAndConfirm(*stub_, pool(), Registration(username, national_id));
    EXPECT_TRUE(account.ok()) << account.status();
    return account.value_or(pb::Account());
  }

  static pb::ProofIdentityRequest Proofing(const std::string& account_id,
                                           pb::AssuranceLevel level = pb::ASSURANCE_LEVEL_HIGH) {
    pb::ProofIdentityRequest req;
    req.set_account_id(account_id);
    req.set_assurance_level(level);
    req.mutable_evidence()->set_document_type(pb::IDENTITY_DOCUMENT_TYPE_NATIONAL_ID_CARD);
    req.mutable_evidence()->set_document_number("012345678");
    req.mutable_evidence()->set_note("in person, branch Novi Sad");
    return req;
  }

  pb::ProofIdentityResponse Proof(const std::string& account_id,
                                  pb::AssuranceLevel level = pb::ASSURANCE_LEVEL_HIGH) {
    pb::ProofIdentityResponse resp;
    grpc::Status s =
        Call(&pb::Identity::Stub::ProofIdentity, Proofing(account_id, level), &resp, kOperator);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }

  grpc::Status Redeem(const std::string& code, const std::string& device_key,
                      pb::RedeemActivationCodeResponse* resp,
                      const std::string& authorization = kConsent) {
    pb::RedeemActivationCodeRequest req;
    req.set_activation_code(code);
    req.set_device_key_sha256(device_key);
    return Call(&pb::Identity::Stub::RedeemActivationCode, req, resp, authorization);
  }

  pb::StartLoginResponse StartLogin(const std::string& username) {
    pb::StartLoginRequest req;
    req.set_username(username);
    req.mutable_client()->set_client_address("198.51.100.23");
    req.mutable_client()->set_user_agent("Firefox 140");
    pb::StartLoginResponse resp;
    grpc::Status s = Call(&pb::Identity::Stub::StartLogin, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }

  grpc::Status AwaitLogin(const std::string& login_id, pb::AwaitLoginResponse* resp,
                          double max_wait_seconds = 0) {
    pb::AwaitLoginRequest req;
    req.set_login_id(login_id);
    *req.mutable_max_wait() = Seconds(max_wait_seconds);
    return Call(&pb::Identity::Stub::AwaitLogin, req, resp);
  }

  // The consent request the last StartLogin created.
  std::string LastConsentRequest() {
    auto created = consent_->created();
    EXPECT_FALSE(created.empty());
    return created.empty() ? "" : created.back().status.request_id;
  }

  // A registered account with an active device, logged in: its session token.
  std::string Login(const std::string& username = "ana@example.rs") {
    pb::StartLoginResponse start = StartLogin(username);
    EXPECT_TRUE(consent_->Approve(LastConsentRequest()).ok());
    pb::AwaitLoginResponse resp;
    grpc::Status s = AwaitLogin(start.login_id(), &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(resp.state(), pb::LOGIN_STATE_APPROVED);
    return resp.session_token();
  }

  grpc::Status Validate(const std::string& token, pb::SessionInfo* info,
                        const std::string& authorization = kLifecycle) {
    pb::ValidateSessionRequest req;
    req.set_session_token(token);
    return Call(&pb::Identity::Stub::ValidateSession, req, info, authorization);
  }

  void ExpectStatus(const grpc::Status& s, grpc::StatusCode code, const std::string& part) {
    EXPECT_EQ(s.error_code(), code) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(part));
  }

  std::vector<std::string> AuditActions() {
    std::vector<std::string> out;
    auto rows = pool().Exec("SELECT action FROM identity.audit_log ORDER BY seq");
    EXPECT_TRUE(rows.ok()) << rows.status();
    if (!rows.ok()) return out;
    for (int i = 0; i < rows->rows(); ++i) out.emplace_back(rows->Get(i, 0));
    return out;
  }

  // The logins journal as an auditor reads it: action and outcome, in order.
  std::vector<std::string> JournalEvents() {
    std::vector<std::string> out;
    auto rows = pool().Exec("SELECT action, outcome FROM identity.login_journal ORDER BY seq");
    EXPECT_TRUE(rows.ok()) << rows.status();
    if (!rows.ok()) return out;
    for (int i = 0; i < rows->rows(); ++i) {
      out.push_back(absl::StrCat(Av(rows->Get(i, 0)), " ", Av(rows->Get(i, 1))));
    }
    return out;
  }

  FakeClock clock_{kStart};
  std::unique_ptr<IdentityStore> store_;
  std::unique_ptr<FakeConsentClient> consent_;
  std::unique_ptr<Identity> identity_;
  std::unique_ptr<IdentityGrpc> grpc_;
  std::unique_ptr<GrpcServer> server_;
  std::unique_ptr<pb::Identity::Stub> stub_;
};

// ---- Registration. ----

TEST_F(IdentityTest, RegisterCreatesALowAccountWithTheUsernameLowerCased) {
  pb::RegisterAccountRequest req = Registration("Ana.Petrovic@Example.RS");
  req.set_certificate_email("ana.petrovic@posao.example.rs");
  auto confirmed = qsign::testing::RegisterAndConfirm(*stub_, pool(), req);
  ASSERT_TRUE(confirmed.ok()) << confirmed.status();
  const pb::Account& account = *confirmed;
  EXPECT_THAT(account.account_id(),
              MatchesRegex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"));
  EXPECT_EQ(account.username(), "ana.petrovic@example.rs");
  EXPECT_EQ(account.given_name(), "Ana");
  EXPECT_EQ(account.surname(), "Petrović");
  EXPECT_EQ(account.national_id(), "0101990710008");
  EXPECT_EQ(account.certificate_email(), "ana.petrovic@posao.example.rs");
  EXPECT_EQ(account.assurance_level(), pb::ASSURANCE_LEVEL_LOW);
  EXPECT_FALSE(account.has_proofed_at());
  EXPECT_EQ(FromProto(account.created_at()), kStart);

  pb::GetAccountRequest get;
  get.set_username("ANA.PETROVIC@example.rs");
  pb::Account stored;
  ASSERT_TRUE(Call(&pb::Identity::Stub::GetAccount, get, &stored, kOperator).ok());
  EXPECT_EQ(stored.SerializeAsString(), account.SerializeAsString());
}

TEST_F(IdentityTest, RegisterRefusesEachBadFieldNamingTheFieldAndRule) {
  struct Case {
    std::function<void(pb::RegisterAccountRequest&)> mutate;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](auto& r) { r.clear_username(); }, "username: required"},
      {[](auto& r) { r.set_username("ana.example.rs"); },
       "username: an e-mail address has exactly one '@'"},
      {[](auto& r) { r.set_username("ana@localhost"); },
       "username: the domain needs at least two labels"},
      {[](auto& r) { r.set_username("an a@example.rs"); }, "username: the part before '@' allows"},
      {[](auto& r) { r.clear_given_name(); }, "given_name: required"},
      {[](auto& r) { r.set_given_name("Ana3"); }, "given_name: letters (Latin or Cyrillic)"},
      {[](auto& r) { r.set_given_name(std::string(65, 'a')); },
       "given_name: at most 64 characters"},
      {[](auto& r) { r.clear_surname(); }, "surname: required"},
      {[](auto& r) { r.set_surname("Petrović "); }, "surname: ends with a letter or '.'"},
      {[](auto& r) {
         r.set_given_name(std::string(40, 'a'));
         r.set_surname(std::string(30, 'b'));
       },
       "given_name, surname: \"<given_name> <surname>\" is at most 64 characters"},
      {[](auto& r) { r.clear_national_id(); }, "national_id: required"},
      {[](auto& r) { r.set_national_id("010199071000"); }, "national_id: exactly 13 digits"},
      {[](auto& r) { r.set_national_id("01019907100O8"); }, "national_id: digits only"},
      {[](auto& r) { r.set_national_id("0101990710007"); }, "national_id: the check digit"},
      {[](auto& r) { r.set_national_id("0101990710130"); }, "gives 10"},
      {[](auto& r) { r.set_national_id("3104990710008"); },
       "national_id: digits 1-7 are not a real date"},
      {[](auto& r) { r.set_national_id("0113990710006"); },
       "national_id: digits 3-4 are the month"},
      {[](auto& r) { r.set_national_id("0101800710007"); }, "national_id: digits 5-7 are the year"},
      {[](auto& r) { r.set_national_id("1601027710007"); },
       "national_id: the date of birth (digits 1-7) is in the future"},
      {[](auto& r) { r.set_certificate_email("not-an-address"); },
       "certificate_email: an e-mail address has exactly one '@'"},
  };
  for (const auto& c : cases) {
    pb::RegisterAccountRequest req = Registration();
    c.mutate(req);
    pb::RegisterAccountResponse answer;
    grpc::Status s = Call(&pb::Identity::Stub::RegisterAccount, req, &answer);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.message;
    EXPECT_THAT(s.error_message(), HasSubstr(c.message));
  }
  // Nothing was stored.
  auto rows = pool().Exec("SELECT count(*) FROM identity.accounts");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->Get(0, 0), "0");
}

// The answer never tells whether an address is registered: one generic outcome (check your
// e-mail), and only the mailbox learns which (a link, or "you already have an account").
TEST_F(IdentityTest, RegisterAnswersTheSameWhetherOrNotTheUsernameIsRegistered) {
  Register("ana@example.rs", "0101990710008");
  pb::RegisterAccountResponse fresh, taken;
  ASSERT_TRUE(Call(&pb::Identity::Stub::RegisterAccount,
                   Registration("bob@example.rs", "0202990710009"), &fresh)
                  .ok());
  // Case-insensitively the same address: the same answer, no error.
  grpc::Status s = Call(&pb::Identity::Stub::RegisterAccount,
                        Registration("ANA@Example.rs", "0202990710009"), &taken);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(taken.next_step(), fresh.next_step());
  EXPECT_EQ(taken.link_expires_at().SerializeAsString(),
            fresh.link_expires_at().SerializeAsString());
  EXPECT_EQ(taken.ByteSizeLong(), fresh.ByteSizeLong());
  EXPECT_THAT(fresh.next_step(), HasSubstr("check your e-mail"));
  EXPECT_EQ(FromProto(fresh.link_expires_at()), kStart + absl::Hours(24));
  auto mail = pool().Exec(
      "SELECT kind FROM identity.outbox WHERE recipient = 'ana@example.rs' ORDER BY id");
  ASSERT_TRUE(mail.ok());
  ASSERT_EQ(mail->rows(), 2);
  EXPECT_EQ(mail->Get(1, 0), "registration_exists");
  // Nothing is registered until the link is opened; the link works once.
  auto token = qsign::testing::RegistrationToken(pool(), "bob@example.rs");
  ASSERT_TRUE(token.ok()) << token.status();
  pb::GetAccountRequest get;
  get.set_username("bob@example.rs");
  pb::Account out;
  ExpectStatus(Call(&pb::Identity::Stub::GetAccount, get, &out, kOperator),
               grpc::StatusCode::NOT_FOUND, "no such account");
  pb::ConfirmRegistrationRequest confirm;
  confirm.set_token(*token);
  ASSERT_TRUE(Call(&pb::Identity::Stub::ConfirmRegistration, confirm, &out).ok());
  EXPECT_EQ(out.username(), "bob@example.rs");
  ExpectStatus(Call(&pb::Identity::Stub::ConfirmRegistration, confirm, &out),
               grpc::StatusCode::NOT_FOUND, "token: unknown, used or expired");
  // Two pending registrations of one address: the first link opened wins, the second says so.
  ASSERT_TRUE(Call(&pb::Identity::Stub::RegisterAccount,
                   Registration("cara@example.rs", "0202990710009"), &fresh)
                  .ok());
  auto first = qsign::testing::RegistrationToken(pool(), "cara@example.rs");
  ASSERT_TRUE(Call(&pb::Identity::Stub::RegisterAccount,
                   Registration("cara@example.rs", "0202990710009"), &fresh)
                  .ok());
  auto second = qsign::testing::RegistrationToken(pool(), "cara@example.rs");
  ASSERT_TRUE(first.ok() && second.ok());
  confirm.set_token(*second);
  ASSERT_TRUE(Call(&pb::Identity::Stub::ConfirmRegistration, confirm, &out).ok());
  confirm.set_token(*first);
  ExpectStatus(Call(&pb::Identity::Stub::ConfirmRegistration, confirm, &out),
               grpc::StatusCode::ALREADY_EXISTS, "username: already registered");
}

TEST_F(IdentityTest, RegistrationLinksExpireAndTheMailIsSentThroughTheRelay) {
  pb::RegisterAccountResponse answer;
  ASSERT_TRUE(Call(&pb::Identity::Stub::RegisterAccount, Registration(), &answer).ok());
  auto link = qsign::testing::RegistrationToken(pool(), "ana@example.rs");
  ASSERT_TRUE(link.ok());
  // Delivered to the relay (a mail drop directory here); the stored body is then cleared.
  MailDropMailer mailbox(absl::StrCat(token().dir(), "/mail"), "qsign@example.rs");
  auto run = identity_->DeliverOutbox(mailbox, 10);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->sent, 1);
  auto left = pool().Exec("SELECT body, sent_at IS NOT NULL FROM identity.outbox");
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(left->Get(0, 0), "");
  EXPECT_EQ(left->Get(0, 1), "t");
  // A day later the link is dead, and the cleanup forgets it.
  clock_.Advance(absl::Hours(24));
  pb::ConfirmRegistrationRequest confirm;
  confirm.set_token(*link);
  pb::Account out;
  ExpectStatus(Call(&pb::Identity::Stub::ConfirmRegistration, confirm, &out),
               grpc::StatusCode::NOT_FOUND, "token: unknown, used or expired");
  ASSERT_TRUE(identity_->ExpireUnproofedAccounts().ok());
  auto pending = pool().Exec("SELECT count(*) FROM identity.registrations");
  ASSERT_TRUE(pending.ok());
  EXPECT_EQ(pending->Get(0, 0), "0");
}

// Nobody can squat a citizen's JMBG: a registration reserves nothing; the proofing (the officer
// saw the ID card) binds it, one proofed account per person.
TEST_F(IdentityTest, TheNationalIdIsBoundAtProofingNotAtRegistration) {
  pb::Account squatter = Register("squatter@example.rs", "0101990710008");
  pb::Account ana = Register("ana@example.rs", "0101990710008");
  EXPECT_FALSE(ana.account_id().empty());
  Proof(ana.account_id());
  pb::ProofIdentityResponse resp;
  ExpectStatus(
      Call(&pb::Identity::Stub::ProofIdentity, Proofing(squatter.account_id()), &resp, kOperator),
      grpc::StatusCode::FAILED_PRECONDITION, "national_id: already bound");
  // Ana can be re-proofed; the squatter's registration stays LOW and unbound.
  Proof(ana.account_id());
  auto level = pool().Exec("SELECT assurance_level FROM identity.accounts WHERE account_id = $1",
                           {db::Param::Text(squatter.account_id())});
  ASSERT_TRUE(level.ok());
  EXPECT_EQ(level->Get(0, 0), "1");
}

// Unproofed registrations expire (the scheduled cleanup), audited; proofed accounts stay.
TEST_F(IdentityTest, UnproofedRegistrationsExpire) {
  pb::Account stale = Register("stale@example.rs", "0101990710008");
  pb::Account proofed = Register("ana@example.rs", "0202990710009");
  Proof(proofed.account_id());
  clock_.Advance(absl::Hours(24 * 29));
  pb::Account recent = Register("recent@example.rs", "0101990710008");
  auto none = identity_->ExpireUnproofedAccounts();
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(*none, 0);
  clock_.Advance(absl::Hours(24 * 1 + 1));
  auto expired = identity_->ExpireUnproofedAccounts();
  ASSERT_TRUE(expired.ok()) << expired.status();
  EXPECT_EQ(*expired, 1);
  pb::GetAccountRequest req;
  pb::Account out;
  req.set_account_id(stale.account_id());
  ExpectStatus(Call(&pb::Identity::Stub::GetAccount, req, &out, kOperator),
               grpc::StatusCode::NOT_FOUND, "no account");
  for (const pb::Account* kept : {&proofed, &recent}) {
    req.set_account_id(kept->account_id());
    EXPECT_TRUE(Call(&pb::Identity::Stub::GetAccount, req, &out, kOperator).ok());
  }
  auto audit = pool().Exec(
      "SELECT actor, outcome FROM identity.audit_log WHERE action = 'identity.account.expire' "
      "AND target = $1",
      {db::Param::Text(stale.account_id())});
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->rows(), 1);
  EXPECT_EQ(audit->Get(0, 0), "service:identity");
  EXPECT_TRUE(db::VerifyAuditChain(pool(), "identity").ok());
  // The username is free again.
  Register("stale@example.rs", "0101990710008");
}

// ---- Proofing and activation codes. ----

TEST_F(IdentityTest, ProofIdentityNeedsOperatorCredentials) {
  pb::Account account = Register();
  const std::string user = [&] {
    consent_->AddDevice(account.account_id());
    return Login();
  }();
  pb::ProofIdentityResponse resp;
  const auto req = Proofing(account.account_id());
  ExpectStatus(Call(&pb::Identity::Stub::ProofIdentity, req, &resp),
               grpc::StatusCode::UNAUTHENTICATED, "authorization: operator credentials required");
  ExpectStatus(Call(&pb::Identity::Stub::ProofIdentity, req, &resp, "Operator ra-ana.wrong"),
               grpc::StatusCode::UNAUTHENTICATED, "operator credentials not valid");
  ExpectStatus(Call(&pb::Identity::Stub::ProofIdentity, req, &resp,
                    absl::StrCat("Operator ra-bob.", kOperatorSecret)),
               grpc::StatusCode::UNAUTHENTICATED, "operator credentials not valid");
  ExpectStatus(Call(&pb::Identity::Stub::ProofIdentity, req, &resp, "Basic cmEtYW5hOng="),
               grpc::StatusCode::UNAUTHENTICATED, "authorization: expected");
  // An operator secret presented as a service's is not an operator.
  ExpectStatus(Call(&pb::Identity::Stub::ProofIdentity, req, &resp,
                    absl::StrCat("Service ra-ana.", kOperatorSecret)),
               grpc::StatusCode::UNAUTHENTICATED, "service credentials not valid");
  ExpectStatus(Call(&pb::Identity::Stub::ProofIdentity, req, &resp, kLifecycle),
               grpc::StatusCode::PERMISSION_DENIED, "this call is for operator only");
  ExpectStatus(Call(&pb::Identity::Stub::ProofIdentity, req, &resp, Bearer(user)),
               grpc::StatusCode::PERMISSION_DENIED, "this call is for operator only");

  pb::GetAccountRequest get;
  get.set_account_id(account.account_id());
  pb::Account stored;
  ASSERT_TRUE(Call(&pb::Identity::Stub::GetAccount, get, &stored, kOperator).ok());
  EXPECT_EQ(stored.assurance_level(), pb::ASSURANCE_LEVEL_LOW);
  auto codes = pool().Exec("SELECT count(*) FROM identity.activation_codes");
  ASSERT_TRUE(codes.ok());
  EXPECT_EQ(codes->Get(0, 0), "0");
}

TEST_F(IdentityTest, ProofIdentityRaisesTheLevelAndHandsOutAHashedCode) {
  pb::Account account = Register();
  clock_.Advance(absl::Hours(1));
  pb::ProofIdentityResponse resp = Proof(account.account_id());
  EXPECT_EQ(resp.account().assurance_level(), pb::ASSURANCE_LEVEL_HIGH);
  EXPECT_EQ(FromProto(resp.account().proofed_at()), kStart + absl::Hours(1));
  EXPECT_THAT(resp.activation_code(),
              MatchesRegex("[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-"
                           "[0-9A-HJKMNP-TV-Z]{4}"));
  EXPECT_EQ(FromProto(resp.activation_code_expires_at()), kStart + absl::Hours(1 + 72));

  // Stored as SHA-256 of the canonical code, never the code.
  std::string canonical = resp.activation_code();
  canonical.erase(std::remove(canonical.begin(), canonical.end(), '-'), canonical.end());
  auto rows = pool().Exec("SELECT code_sha256 FROM identity.activation_codes");
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->rows(), 1);
  EXPECT_EQ(*rows->GetBytes(0, 0), Sha256(canonical));
  auto leak = pool().Exec(
      "SELECT count(*) FROM identity.audit_log WHERE details LIKE '%' || $1 || '%' "
      "OR details LIKE '%' || $2 || '%'",
      {db::Param::Text(canonical), db::Param::Text(resp.activation_code())});
  ASSERT_TRUE(leak.ok());
  EXPECT_EQ(leak->Get(0, 0), "0");

  // Re-proofing at the same level is allowed (before a PIN unblock); lowering is not.
  Proof(account.account_id(), pb::ASSURANCE_LEVEL_HIGH);
  pb::ProofIdentityResponse lower;
  ExpectStatus(
      Call(&pb::Identity::Stub::ProofIdentity,
           Proofing(account.account_id(), pb::ASSURANCE_LEVEL_SUBSTANTIAL), &lower, kOperator),
      grpc::StatusCode::FAILED_PRECONDITION,
      "assurance_level: SUBSTANTIAL is below the account's current level HIGH");

  auto proofings = pool().Exec("SELECT operator_id, document_number FROM identity.proofings");
  ASSERT_TRUE(proofings.ok());
  ASSERT_EQ(proofings->rows(), 2);
  EXPECT_EQ(proofings->Get(0, 0), "ra-ana");
  EXPECT_EQ(proofings->Get(0, 1), "012345678");
}

TEST_F(IdentityTest, ProofIdentityRefusesIncompleteRequests) {
  pb::Account account = Register();
  pb::ProofIdentityResponse resp;
  auto req = Proofing(account.account_id(), pb::ASSURANCE_LEVEL_LOW);
  ExpectStatus(Call(&pb::Identity::Stub::ProofIdentity, req, &resp, kOperator),
               grpc::StatusCode::INVALID_ARGUMENT, "assurance_level: SUBSTANTIAL or HIGH");
  req = Proofing(account.account_id());
  req.mutable_evidence()->clear_document_type();
  ExpectStatus(Call(&pb::Identity::Stub::ProofIdentity, req, &resp, kOperator),
               grpc::StatusCode::INVALID_ARGUMENT, "evidence.document_type: required");
  req = Proofing(account.account_id());
  req.mutable_evidence()->clear_document_number();
  ExpectStatus(Call(&pb::Identity::Stub::ProofIdentity, req, &resp, kOperator),
               grpc::StatusCode::INVALID_ARGUMENT, "evidence.document_number: 1..32 characters");
  req = Proofing(account.account_id());
  req.mutable_evidence()->set_note("line\nbreak");
  ExpectStatus(Call(&pb::Identity::Stub::ProofIdentity, req, &resp, kOperator),
               grpc::StatusCode::INVALID_ARGUMENT, "evidence.note: no control characters");
  req = Proofing("");
  ExpectStatus(Call(&pb::Identity::Stub::ProofIdentity, req, &resp, kOperator),
               grpc::StatusCode::INVALID_ARGUMENT, "account_id: required");
  req = Proofing("00000000-0000-4000-8000-000000000000");
  ExpectStatus(Call(&pb::Identity::Stub::ProofIdentity, req, &resp, kOperator),
               grpc::StatusCode::NOT_FOUND, "account_id: no account");
}

TEST_F(IdentityTest, ActivationCodeIsSingleUse) {
  pb::Account account = Register();
  pb::ProofIdentityResponse proof = Proof(account.account_id());
  pb::RedeemActivationCodeResponse resp;
  grpc::Status s = Redeem(proof.activation_code(), kDeviceKey, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.account_id(), account.account_id());
  EXPECT_EQ(resp.assurance_level(), pb::ASSURANCE_LEVEL_HIGH);

  // Another device cannot use it again.
  ExpectStatus(Redeem(proof.activation_code(), std::string(32, '\x22'), &resp),
               grpc::StatusCode::NOT_FOUND, "activation_code: unknown, already used or expired");
  // The same device retrying a failed enrolment gets the same answer.
  pb::RedeemActivationCodeResponse again;
  ASSERT_TRUE(Redeem(proof.activation_code(), kDeviceKey, &again).ok());
  EXPECT_EQ(again.account_id(), account.account_id());
  EXPECT_TRUE(again.repeated());
  EXPECT_EQ(AuditActions(),
            (std::vector<std::string>{"identity.registration.request", "identity.account.register",
                                      "identity.proof", "identity.activation_code.redeem"}));
}

TEST_F(IdentityTest, ActivationCodeIgnoresCaseAndSeparatorsAsTyped) {
  pb::Account account = Register();
  std::string typed = absl::AsciiStrToLower(Proof(account.account_id()).activation_code());
  typed.erase(std::remove(typed.begin(), typed.end(), '-'), typed.end());
  typed.insert(8, " ");
  pb::RedeemActivationCodeResponse resp;
  grpc::Status s = Redeem(typed, kDeviceKey, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.account_id(), account.account_id());
}

TEST_F(IdentityTest, ActivationCodeExpires) {
  pb::Account account = Register();
  pb::ProofIdentityResponse proof = Proof(account.account_id());
  clock_.Advance(absl::Hours(72));
  pb::RedeemActivationCodeResponse resp;
  ExpectStatus(Redeem(proof.activation_code(), kDeviceKey, &resp), grpc::StatusCode::NOT_FOUND,
               "activation_code: unknown, already used or expired");
}

TEST_F(IdentityTest, ANewProofingCancelsEarlierCodes) {
  pb::Account account = Register();
  pb::ProofIdentityResponse first = Proof(account.account_id());
  pb::RedeemActivationCodeResponse resp;
  ASSERT_TRUE(Redeem(first.activation_code(), kDeviceKey, &resp).ok());
  pb::ProofIdentityResponse second = Proof(account.account_id());
  pb::ProofIdentityResponse third = Proof(account.account_id());
  EXPECT_NE(second.activation_code(), third.activation_code());
  // Unused and used earlier codes alike stop working (even for the device that redeemed one).
  ExpectStatus(Redeem(second.activation_code(), kDeviceKey, &resp), grpc::StatusCode::NOT_FOUND,
               "activation_code");
  ExpectStatus(Redeem(first.activation_code(), kDeviceKey, &resp), grpc::StatusCode::NOT_FOUND,
               "activation_code");
  EXPECT_TRUE(Redeem(third.activation_code(), kDeviceKey, &resp).ok());
}

TEST_F(IdentityTest, OnlyTheConsentServiceRedeemsCodes) {
  pb::Account account = Register();
  pb::ProofIdentityResponse proof = Proof(account.account_id());
  pb::RedeemActivationCodeResponse resp;
  ExpectStatus(Redeem(proof.activation_code(), kDeviceKey, &resp, ""),
               grpc::StatusCode::UNAUTHENTICATED, "credentials required");
  ExpectStatus(Redeem(proof.activation_code(), kDeviceKey, &resp, kLifecycle),
               grpc::StatusCode::PERMISSION_DENIED, "for the consent service only");
  ExpectStatus(Redeem(proof.activation_code(), kDeviceKey, &resp, kOperator),
               grpc::StatusCode::PERMISSION_DENIED, "for the consent service only");
  ExpectStatus(Redeem(proof.activation_code(), "short", &resp), grpc::StatusCode::INVALID_ARGUMENT,
               "device_key_sha256: 32 bytes");
  ExpectStatus(Redeem("", kDeviceKey, &resp), grpc::StatusCode::INVALID_ARGUMENT,
               "activation_code: required");
  ExpectStatus(Redeem("AAAA-BBBB", kDeviceKey, &resp), grpc::StatusCode::NOT_FOUND,
               "activation_code: unknown, already used or expired");
  ExpectStatus(Redeem("UUUU-UUUU-UUUU-UUUU", kDeviceKey, &resp), grpc::StatusCode::NOT_FOUND,
               "activation_code: unknown, already used or expired");
  // None of those used the code up.
  EXPECT_TRUE(Redeem(proof.activation_code(), kDeviceKey, &resp).ok());
}

// ---- Login. ----

TEST_F(IdentityTest, LoginIsApprovedOnThePhoneAndTheTokenVerifiesLocally) {
  pb::Account account = Register();
  consent_->AddDevice(account.account_id());
  pb::StartLoginResponse start = StartLogin("Ana@Example.RS");
  EXPECT_EQ(start.login_id().size(), 43u);
  EXPECT_THAT(start.verification_code(), MatchesRegex("[0-9]{4}"));
  EXPECT_EQ(FromProto(start.expires_at()), kStart + absl::Minutes(2));

  // The phone is asked, showing the same code and where the login came from.
  auto created = consent_->created();
  ASSERT_EQ(created.size(), 1u);
  EXPECT_EQ(created[0].params.account_id, account.account_id());
  EXPECT_EQ(created[0].params.verification_code, start.verification_code());
  EXPECT_EQ(created[0].params.client_description, "198.51.100.23, Firefox 140");
  EXPECT_EQ(created[0].params.lifetime, absl::Minutes(2));

  pb::AwaitLoginResponse pending;
  ASSERT_TRUE(AwaitLogin(start.login_id(), &pending).ok());
  EXPECT_EQ(pending.state(), pb::LOGIN_STATE_PENDING);
  EXPECT_TRUE(pending.session_token().empty());

  clock_.Advance(absl::Seconds(20));
  ASSERT_TRUE(consent_->Approve(created[0].status.request_id).ok());
  pb::AwaitLoginResponse approved;
  ASSERT_TRUE(AwaitLogin(start.login_id(), &approved).ok());
  EXPECT_EQ(approved.state(), pb::LOGIN_STATE_APPROVED);
  EXPECT_EQ(approved.account_id(), account.account_id());
  EXPECT_EQ(FromProto(approved.session_expires_at()),
            kStart + absl::Seconds(20) + absl::Minutes(15));

  // Another service verifies the token with the published key only: no database.
  pb::GetSessionKeysResponse keys;
  ASSERT_TRUE(
      Call(&pb::Identity::Stub::GetSessionKeys, pb::GetSessionKeysRequest(), &keys, kLifecycle)
          .ok());
  ASSERT_EQ(keys.keys_size(), 1);
  EXPECT_EQ(keys.keys(0).key_id(), kSessionKey);
  EXPECT_EQ(FromProto(keys.keys(0).not_after()), clock_.Now() + absl::Minutes(15));
  auto verifier =
      SessionTokenVerifier::New({{keys.keys(0).key_id(), keys.keys(0).public_key_spki()}});
  ASSERT_TRUE(verifier.ok()) << verifier.status();
  auto claims = (*verifier)->Verify(approved.session_token(), clock_.Now());
  ASSERT_TRUE(claims.ok()) << claims.status();
  EXPECT_EQ(claims->account_id, account.account_id());
  EXPECT_EQ(claims->auth_time, kStart + absl::Seconds(20));
  EXPECT_EQ(claims->assurance_level, pb::ASSURANCE_LEVEL_LOW);

  // The token is handed out once.
  pb::AwaitLoginResponse again;
  ExpectStatus(AwaitLogin(start.login_id(), &again), grpc::StatusCode::FAILED_PRECONDITION,
               "handed out only once");
  EXPECT_TRUE(again.session_token().empty());

  // The user sees their own account with it.
  pb::Account own;
  ASSERT_TRUE(Call(&pb::Identity::Stub::GetAccount, pb::GetAccountRequest(), &own,
                   Bearer(approved.session_token()))
                  .ok());
  EXPECT_EQ(own.account_id(), account.account_id());
}

TEST_F(IdentityTest, AwaitLoginWaitsForTheDecision) {
  pb::Account account = Register();
  consent_->AddDevice(account.account_id());
  pb::StartLoginResponse start = StartLogin("ana@example.rs");
  const std::string request = LastConsentRequest();
  std::thread phone([&] {
    absl::SleepFor(absl::Milliseconds(200));
    EXPECT_TRUE(consent_->Approve(request).ok());
  });
  const absl::Time before = absl::Now();
  pb::AwaitLoginResponse resp;
  grpc::Status s = AwaitLogin(start.login_id(), &resp, /*max_wait_seconds=*/10);
  phone.join();
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.state(), pb::LOGIN_STATE_APPROVED);
  EXPECT_LT(absl::Now() - before, absl::Seconds(5));
}

// The first AwaitLogin right after StartLogin starts from the login StartLogin just stored,
// without reading it back; it still sees what happened after: a decision on the phone, a
// revocation of the account's sessions. Any later AwaitLogin reads.
TEST_F(IdentityTest, AwaitLoginRightAfterStartLoginSkipsTheReadAndSeesLaterDecisions) {
  pb::Account account = Register();
  consent_->AddDevice(account.account_id());
  auto round_trips = [&] { return pool().Stats().round_trips; };

  for (int i = 0; i < 2; ++i) {  // The first prepares the statements on the connection.
    // Pending: answered with no database round trip; the next wait reads the login.
    clock_.Advance(absl::Seconds(1));
    pb::StartLoginResponse start = StartLogin("ana@example.rs");
    int64_t before = round_trips();
    pb::AwaitLoginResponse resp;
    ASSERT_TRUE(AwaitLogin(start.login_id(), &resp).ok());
    EXPECT_EQ(resp.state(), pb::LOGIN_STATE_PENDING);
    EXPECT_EQ(round_trips() - before, 0) << "the login StartLogin stored is not read back";
    before = round_trips();
    ASSERT_TRUE(AwaitLogin(start.login_id(), &resp).ok());
    EXPECT_EQ(resp.state(), pb::LOGIN_STATE_PENDING);
    if (i == 1) {
      EXPECT_EQ(round_trips() - before, 1) << "a second wait reads";
    }

    // Approved on the phone after StartLogin: the first wait hands out the token with one round
    // trip, the session's (the login finished in the same statement).
    clock_.Advance(absl::Seconds(1));
    start = StartLogin("ana@example.rs");
    clock_.Advance(absl::Seconds(3));
    ASSERT_TRUE(consent_->Approve(LastConsentRequest()).ok());
    before = round_trips();
    ASSERT_TRUE(AwaitLogin(start.login_id(), &resp).ok());
    if (i == 1) {
      EXPECT_EQ(round_trips() - before, 1);
    }
    ASSERT_EQ(resp.state(), pb::LOGIN_STATE_APPROVED);
    EXPECT_EQ(resp.account_id(), account.account_id());
    pb::SessionInfo info;
    ASSERT_TRUE(Validate(resp.session_token(), &info).ok());
    EXPECT_EQ(FromProto(info.auth_time()), clock_.Now());
  }

  // Sessions revoked after StartLogin, then approved on the phone: the stored login was ended by
  // the revocation, and the first wait, which did not read it, still hands out no token.
  clock_.Advance(absl::Seconds(1));
  pb::StartLoginResponse start = StartLogin("ana@example.rs");
  pb::RevokeSessionsRequest revoke;
  revoke.set_account_id(account.account_id());
  pb::RevokeSessionsResponse revoked;
  ASSERT_TRUE(Call(&pb::Identity::Stub::RevokeSessions, revoke, &revoked, kLifecycle).ok());
  ASSERT_TRUE(consent_->Approve(LastConsentRequest()).ok());
  pb::AwaitLoginResponse resp;
  ASSERT_TRUE(AwaitLogin(start.login_id(), &resp).ok());
  EXPECT_EQ(resp.state(), pb::LOGIN_STATE_DENIED);
  EXPECT_TRUE(resp.session_token().empty());
}

TEST_F(IdentityTest, DeniedLoginStaysDenied) {
  pb::Account account = Register();
  consent_->AddDevice(account.account_id());
  pb::StartLoginResponse start = StartLogin("ana@example.rs");
  ASSERT_TRUE(consent_->Deny(LastConsentRequest()).ok());
  for (int i = 0; i < 2; ++i) {
    pb::AwaitLoginResponse resp;
    ASSERT_TRUE(AwaitLogin(start.login_id(), &resp).ok());
    EXPECT_EQ(resp.state(), pb::LOGIN_STATE_DENIED);
    EXPECT_TRUE(resp.session_token().empty());
  }
  // A request cancelled by the consent service (device replaced) is a denial too.
  pb::StartLoginResponse second = StartLogin("ana@example.rs");
  ASSERT_TRUE(consent_->Cancel(LastConsentRequest()).ok());
  pb::AwaitLoginResponse resp;
  ASSERT_TRUE(AwaitLogin(second.login_id(), &resp).ok());
  EXPECT_EQ(resp.state(), pb::LOGIN_STATE_DENIED);
}

TEST_F(IdentityTest, LoginNobodyApprovesExpires) {
  pb::Account account = Register();
  consent_->AddDevice(account.account_id());
  pb::StartLoginResponse start = StartLogin("ana@example.rs");
  clock_.Advance(absl::Minutes(2));
  pb::AwaitLoginResponse resp;
  ASSERT_TRUE(AwaitLogin(start.login_id(), &resp).ok());
  EXPECT_EQ(resp.state(), pb::LOGIN_STATE_EXPIRED);
  // Approving after the fact changes nothing.
  EXPECT_FALSE(consent_->Approve(LastConsentRequest()).ok());
  ASSERT_TRUE(AwaitLogin(start.login_id(), &resp).ok());
  EXPECT_EQ(resp.state(), pb::LOGIN_STATE_EXPIRED);
}

TEST_F(IdentityTest, UnknownUsernamesAreIndistinguishable) {
  pb::Account with_device = Register("ana@example.rs", "0101990710008");
  pb::Account without_device = Register("bob@example.rs", "0202990710009");
  consent_->AddDevice(with_device.account_id());

  pb::StartLoginResponse real = StartLogin("ana@example.rs");
  pb::StartLoginResponse unknown = StartLogin("nobody@example.rs");
  pb::StartLoginResponse no_device = StartLogin("bob@example.rs");
  consent_->FailCreate(absl::UnavailableError("consent is down"));
  pb::StartLoginResponse consent_down = StartLogin("ana@example.rs");
  for (const auto* r : {&unknown, &no_device, &consent_down}) {
    EXPECT_EQ(r->login_id().size(), real.login_id().size());
    EXPECT_EQ(r->verification_code().size(), real.verification_code().size());
    EXPECT_EQ(r->expires_at().SerializeAsString(), real.expires_at().SerializeAsString());
    EXPECT_EQ(r->ByteSizeLong(), real.ByteSizeLong());
  }
  // Each looks pending, then ends EXPIRED like a real login nobody approved.
  for (const auto* r : {&real, &unknown, &no_device, &consent_down}) {
    pb::AwaitLoginResponse resp;
    ASSERT_TRUE(AwaitLogin(r->login_id(), &resp).ok());
    EXPECT_EQ(resp.state(), pb::LOGIN_STATE_PENDING);
  }
  clock_.Advance(absl::Minutes(2));
  for (const auto* r : {&real, &unknown, &no_device, &consent_down}) {
    pb::AwaitLoginResponse resp;
    ASSERT_TRUE(AwaitLogin(r->login_id(), &resp).ok());
    EXPECT_EQ(resp.state(), pb::LOGIN_STATE_EXPIRED);
    EXPECT_EQ(resp.ByteSizeLong(), 2u);  // The state, nothing else.
  }
  // The phone was asked only for the real account.
  EXPECT_EQ(consent_->created().size(), 1u);
  // The unknown username is not stored anywhere.
  auto leak = pool().Exec(
      "SELECT (SELECT count(*) FROM identity.audit_log WHERE details LIKE '%nobody%') + "
      "(SELECT count(*) FROM identity.login_journal WHERE details LIKE '%nobody%' OR "
      "target LIKE '%nobody%')");
  ASSERT_TRUE(leak.ok());
  EXPECT_EQ(leak->Get(0, 0), "0");
}

// An unknown username and an account without a device do the same work: one consent call that
// pushes nothing, then the same wait. (Timing by work done, not by a stopwatch: robust on a busy
// machine.)
TEST_F(IdentityTest, UnknownUsernameAndAccountWithoutDeviceDoTheSameWork) {
  Register("bob@example.rs", "0202990710009");
  const int before = consent_->create_calls();
  StartLogin("nobody@example.rs");
  EXPECT_EQ(consent_->create_calls() - before, 1);
  StartLogin("bob@example.rs");
  EXPECT_EQ(consent_->create_calls() - before, 2);
  EXPECT_TRUE(consent_->created().empty());  // Nothing was pushed for either.
}

// The StartLogin limits count every username alike (an unknown one too, so the limit tells
// nothing), and the pushes stop with them.
TEST_F(IdentityTest, StartLoginIsLimitedPerUsernameAndPerAddress) {
  pb::Account ana = Register("ana@example.rs", "0101990710008");
  consent_->AddDevice(ana.account_id());
  for (const std::string username : {"ana@example.rs", "nobody@example.rs"}) {
    pb::StartLoginRequest req;
    req.set_username(username);
    pb::StartLoginResponse resp;
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(Call(&pb::Identity::Stub::StartLogin, req, &resp, "", "198.51.100.1").ok());
    }
    req.set_username(absl::AsciiStrToUpper(username));  // Same account.
    grpc::Status s = Call(&pb::Identity::Stub::StartLogin, req, &resp, "", "198.51.100.2");
    ExpectStatus(s, grpc::StatusCode::RESOURCE_EXHAUSTED, "too many logins for this username");
    absl::Status back = FromGrpcStatus(s);
    ASSERT_TRUE(RetryDelay(back).has_value());
    EXPECT_EQ(*RetryDelay(back), absl::Minutes(1));
  }
  EXPECT_EQ(consent_->created().size(), 5u);  // Five pushes, not six.
  clock_.Advance(absl::Minutes(1));
  EXPECT_FALSE(StartLogin("ana@example.rs").login_id().empty());

  // Per address: the trusted proxy's header names the address; another one is not affected.
  pb::StartLoginResponse resp;
  for (int i = 0; i < 60; ++i) {
    pb::StartLoginRequest req;
    req.set_username(absl::StrCat("user", i, "@example.rs"));
    ASSERT_TRUE(Call(&pb::Identity::Stub::StartLogin, req, &resp, "", "203.0.113.9").ok()) << i;
  }
  pb::StartLoginRequest req;
  req.set_username("late@example.rs");
  ExpectStatus(Call(&pb::Identity::Stub::StartLogin, req, &resp, "", "203.0.113.9"),
               grpc::StatusCode::RESOURCE_EXHAUSTED, "too many logins from this address");
  EXPECT_TRUE(Call(&pb::Identity::Stub::StartLogin, req, &resp, "", "203.0.113.10").ok());
}

TEST_F(IdentityTest, RegistrationIsLimitedPerAddress) {
  pb::RegisterAccountResponse account;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(Call(&pb::Identity::Stub::RegisterAccount,
                     Registration(absl::StrCat("user", i, "@example.rs"),
                                  qsign::testing::NationalId(i + 1)),
                     &account, "", "203.0.113.9")
                    .ok())
        << i;
  }
  grpc::Status s = Call(&pb::Identity::Stub::RegisterAccount,
                        Registration("late@example.rs", qsign::testing::NationalId(40)), &account,
                        "", "203.0.113.9");
  ExpectStatus(s, grpc::StatusCode::RESOURCE_EXHAUSTED, "too many registrations from this address");
  EXPECT_TRUE(RetryDelay(FromGrpcStatus(s)).has_value());
  EXPECT_TRUE(Call(&pb::Identity::Stub::RegisterAccount,
                   Registration("late@example.rs", qsign::testing::NationalId(40)), &account, "",
                   "203.0.113.10")
                  .ok());
}

TEST_F(IdentityTest, AwaitLoginForAnUnknownUsernameWaitsLikeARealOne) {
  pb::StartLoginResponse unknown = StartLogin("nobody@example.rs");
  const absl::Time before = absl::Now();
  pb::AwaitLoginResponse resp;
  ASSERT_TRUE(AwaitLogin(unknown.login_id(), &resp, /*max_wait_seconds=*/0.3).ok());
  EXPECT_EQ(resp.state(), pb::LOGIN_STATE_PENDING);
  EXPECT_GE(absl::Now() - before, absl::Milliseconds(300));
}

TEST_F(IdentityTest, AwaitLoginRefusesUnknownAndMalformedIds) {
  pb::AwaitLoginResponse resp;
  ExpectStatus(AwaitLogin("", &resp), grpc::StatusCode::INVALID_ARGUMENT, "login_id: required");
  ExpectStatus(AwaitLogin("abc", &resp), grpc::StatusCode::INVALID_ARGUMENT,
               "login_id: not a login id");
  ExpectStatus(AwaitLogin(std::string(43, 'A'), &resp), grpc::StatusCode::NOT_FOUND,
               "login_id: no such login");
  pb::StartLoginRequest req;
  pb::StartLoginResponse start;
  ExpectStatus(Call(&pb::Identity::Stub::StartLogin, req, &start),
               grpc::StatusCode::INVALID_ARGUMENT, "username: required");
}

TEST_F(IdentityTest, ConcurrentAwaitLoginHandsOutExactlyOneToken) {
  pb::Account account = Register();
  consent_->AddDevice(account.account_id());
  pb::StartLoginResponse start = StartLogin("ana@example.rs");
  ASSERT_TRUE(consent_->Approve(LastConsentRequest()).ok());
  std::atomic<int> tokens{0}, refused{0};
  std::vector<std::thread> portals;
  for (int i = 0; i < 6; ++i) {
    portals.emplace_back([&] {
      pb::AwaitLoginResponse resp;
      grpc::Status s = AwaitLogin(start.login_id(), &resp);
      if (s.ok() && resp.state() == pb::LOGIN_STATE_APPROVED && !resp.session_token().empty()) {
        ++tokens;
      } else if (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
        ++refused;
      }
    });
  }
  for (auto& t : portals) t.join();
  EXPECT_EQ(tokens.load(), 1);
  EXPECT_EQ(refused.load(), 5);
  auto sessions = pool().Exec("SELECT count(*) FROM identity.sessions");
  ASSERT_TRUE(sessions.ok());
  EXPECT_EQ(sessions->Get(0, 0), "1");
}

// ---- Sessions. ----

TEST_F(IdentityTest, ValidateSessionChecksSignatureExpiryAndFreshness) {
  pb::Account account = Register();
  Proof(account.account_id());
  consent_->AddDevice(account.account_id());
  const std::string token = Login();

  pb::SessionInfo info;
  ASSERT_TRUE(Validate(token, &info).ok());
  EXPECT_EQ(info.account_id(), account.account_id());
  EXPECT_THAT(info.session_id(), MatchesRegex("[0-9a-f]{32}"));
  EXPECT_TRUE(info.fresh());
  EXPECT_EQ(info.assurance_level(), pb::ASSURANCE_LEVEL_HIGH);
  EXPECT_EQ(FromProto(info.auth_time()), kStart);
  EXPECT_EQ(FromProto(info.expires_at()), kStart + absl::Minutes(15));

  clock_.Advance(absl::Minutes(5));
  ASSERT_TRUE(Validate(token, &info).ok());
  EXPECT_TRUE(info.fresh());
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(Validate(token, &info).ok());
  EXPECT_FALSE(info.fresh()) << "5 minutes after the approval a sensitive act needs a new login";

  clock_.Advance(absl::Minutes(10) - absl::Seconds(1));
  ExpectStatus(Validate(token, &info), grpc::StatusCode::UNAUTHENTICATED, "session token: expired");
}

TEST_F(IdentityTest, ValidateSessionRefusesTamperedTokensAndNonServiceCallers) {
  pb::Account account = Register();
  consent_->AddDevice(account.account_id());
  const std::string token = Login();
  pb::SessionInfo info;
  std::string tampered = token;
  tampered[10] = tampered[10] == 'A' ? 'B' : 'A';
  ExpectStatus(Validate(tampered, &info), grpc::StatusCode::UNAUTHENTICATED, "session token:");
  ExpectStatus(Validate(token.substr(0, token.size() - 2), &info),
               grpc::StatusCode::UNAUTHENTICATED, "session token:");
  ExpectStatus(Validate("", &info), grpc::StatusCode::INVALID_ARGUMENT, "session_token: required");
  ExpectStatus(Validate(token, &info, kOperator), grpc::StatusCode::PERMISSION_DENIED,
               "this call is for service only");
  ExpectStatus(Validate(token, &info, Bearer(token)), grpc::StatusCode::PERMISSION_DENIED,
               "this call is for service only");
  ExpectStatus(Validate(token, &info, ""), grpc::StatusCode::UNAUTHENTICATED,
               "service credentials required");
  // A token signed by a key the service does not hold.
  ASSERT_TRUE(hsm("identity").GenerateKeyPair("rogue", hsm::KeyType::kEcP256).ok());
  auto rogue = SessionTokenMinter::New(&hsm("identity"), "rogue");
  ASSERT_TRUE(rogue.ok());
  auto forged = (*rogue)->Mint({.session_id = "0123456789abcdef0123456789abcdef",
                                .account_id = account.account_id(),
                                .issued_at = kStart,
                                .auth_time = kStart,
                                .expires_at = kStart + absl::Hours(1)});
  ASSERT_TRUE(forged.ok());
  ExpectStatus(Validate(*forged, &info), grpc::StatusCode::UNAUTHENTICATED,
               "session token: signed by an unknown key");
}

TEST_F(IdentityTest, LogoutRevokesTheSessionEverywhere) {
  pb::Account account = Register();
  consent_->AddDevice(account.account_id());
  const std::string token = Login();
  const std::string other = Login();
  pb::LogoutResponse out;
  ExpectStatus(Call(&pb::Identity::Stub::Logout, pb::LogoutRequest(), &out),
               grpc::StatusCode::UNAUTHENTICATED, "credentials required");
  ExpectStatus(Call(&pb::Identity::Stub::Logout, pb::LogoutRequest(), &out, kLifecycle),
               grpc::StatusCode::PERMISSION_DENIED, "for a user session only");
  ASSERT_TRUE(Call(&pb::Identity::Stub::Logout, pb::LogoutRequest(), &out, Bearer(token)).ok());
  // Idempotent.
  ASSERT_TRUE(Call(&pb::Identity::Stub::Logout, pb::LogoutRequest(), &out, Bearer(token)).ok());

  pb::SessionInfo info;
  ExpectStatus(Validate(token, &info), grpc::StatusCode::UNAUTHENTICATED, "session token: revoked");
  pb::Account own;
  ExpectStatus(Call(&pb::Identity::Stub::GetAccount, pb::GetAccountRequest(), &own, Bearer(token)),
               grpc::StatusCode::UNAUTHENTICATED, "revoked");
  // The other session lives on.
  EXPECT_TRUE(Validate(other, &info).ok());

  // Services learn of it from the feed and refuse it without asking identity.
  pb::ListSessionRevocationsResponse feed;
  ASSERT_TRUE(Call(&pb::Identity::Stub::ListSessionRevocations, pb::ListSessionRevocationsRequest(),
                   &feed, kLifecycle)
                  .ok());
  ASSERT_EQ(feed.revocations_size(), 1);
  EXPECT_EQ(feed.revocations(0).sequence(), 1u);
  EXPECT_EQ(feed.revocations(0).account_id(), account.account_id());
  EXPECT_EQ(FromProto(feed.revocations(0).keep_until()), kStart + absl::Minutes(15));
  EXPECT_EQ(feed.last_sequence(), 1u);
  SessionRevocationList list;
  std::vector<SessionRevocation> entries;
  for (const auto& r : feed.revocations()) {
    entries.push_back({.sequence = r.sequence(),
                       .session_id = r.session_id(),
                       .account_id = r.account_id(),
                       .revoked_at = FromProto(r.revoked_at()),
                       .keep_until = FromProto(r.keep_until())});
  }
  list.Apply(entries);
  auto local = identity_->verifier().Verify(token, clock_.Now(), &list);
  EXPECT_EQ(local.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(identity_->verifier().Verify(other, clock_.Now(), &list).ok());

  // Nothing new after the last sequence.
  pb::ListSessionRevocationsRequest next;
  next.set_after_sequence(feed.last_sequence());
  pb::ListSessionRevocationsResponse empty;
  ASSERT_TRUE(Call(&pb::Identity::Stub::ListSessionRevocations, next, &empty, kLifecycle).ok());
  EXPECT_EQ(empty.revocations_size(), 0);
  EXPECT_EQ(empty.last_sequence(), 1u);
  // Once every token it covers has expired, the entry is no longer listed.
  clock_.Advance(absl::Minutes(15));
  ASSERT_TRUE(Call(&pb::Identity::Stub::ListSessionRevocations, pb::ListSessionRevocationsRequest(),
                   &empty, kLifecycle)
                  .ok());
  EXPECT_EQ(empty.revocations_size(), 0);
}

TEST_F(IdentityTest, ExpiredTokenCannotLogOut) {
  pb::Account account = Register();
  consent_->AddDevice(account.account_id());
  const std::string token = Login();
  clock_.Advance(absl::Minutes(15));
  pb::LogoutResponse out;
  ExpectStatus(Call(&pb::Identity::Stub::Logout, pb::LogoutRequest(), &out, Bearer(token)),
               grpc::StatusCode::UNAUTHENTICATED, "session token: expired");
}

TEST_F(IdentityTest, RevokeSessionsEndsEveryLiveSessionAndPendingLogin) {
  pb::Account ana = Register("ana@example.rs", "0101990710008");
  pb::Account bob = Register("bob@example.rs", "0202990710009");
  consent_->AddDevice(ana.account_id());
  consent_->AddDevice(bob.account_id());
  const std::string t1 = Login("ana@example.rs");
  const std::string t2 = Login("ana@example.rs");
  const std::string bobs = Login("bob@example.rs");
  pb::StartLoginResponse pending = StartLogin("ana@example.rs");

  pb::RevokeSessionsRequest req;
  req.set_account_id(ana.account_id());
  pb::RevokeSessionsResponse resp;
  ExpectStatus(Call(&pb::Identity::Stub::RevokeSessions, req, &resp, Bearer(t1)),
               grpc::StatusCode::PERMISSION_DENIED, "for service only");
  ASSERT_TRUE(Call(&pb::Identity::Stub::RevokeSessions, req, &resp, kLifecycle).ok());
  EXPECT_EQ(resp.sessions_ended(), 2u);
  ASSERT_TRUE(Call(&pb::Identity::Stub::RevokeSessions, req, &resp, kLifecycle).ok());
  EXPECT_EQ(resp.sessions_ended(), 0u) << "idempotent";

  pb::SessionInfo info;
  ExpectStatus(Validate(t1, &info), grpc::StatusCode::UNAUTHENTICATED, "revoked");
  ExpectStatus(Validate(t2, &info), grpc::StatusCode::UNAUTHENTICATED, "revoked");
  EXPECT_TRUE(Validate(bobs, &info).ok());
  // A login waiting for the phone ends DENIED, even if the phone approves it now.
  ASSERT_TRUE(consent_->Approve(LastConsentRequest()).ok());
  pb::AwaitLoginResponse await;
  ASSERT_TRUE(AwaitLogin(pending.login_id(), &await).ok());
  EXPECT_EQ(await.state(), pb::LOGIN_STATE_DENIED);

  // The feed names each ended session, then the account as a whole (by time); a service that
  // applies it refuses both tokens locally.
  pb::ListSessionRevocationsResponse feed;
  ASSERT_TRUE(Call(&pb::Identity::Stub::ListSessionRevocations, pb::ListSessionRevocationsRequest(),
                   &feed, kLifecycle)
                  .ok());
  ASSERT_EQ(feed.revocations_size(), 4);  // 2 sessions + account, then account again.
  std::vector<SessionRevocation> entries;
  for (int i = 0; i < feed.revocations_size(); ++i) {
    const auto& r = feed.revocations(i);
    EXPECT_EQ(r.sequence(), static_cast<uint64_t>(i + 1));
    EXPECT_EQ(r.account_id(), ana.account_id());
    EXPECT_EQ(r.session_id().empty(), i >= 2) << i;
    entries.push_back({.sequence = r.sequence(),
                       .session_id = r.session_id(),
                       .account_id = r.account_id(),
                       .revoked_at = FromProto(r.revoked_at()),
                       .keep_until = FromProto(r.keep_until())});
  }
  SessionRevocationList list;
  list.Apply(entries);
  // Even a verifier that had only the per-session entries (say its clock is far behind).
  SessionRevocationList exact;
  exact.Apply({entries.data(), 2});
  for (const std::string* t : {&t1, &t2}) {
    EXPECT_EQ(identity_->verifier().Verify(*t, clock_.Now(), &list).status().code(),
              absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(identity_->verifier().Verify(*t, clock_.Now(), &exact).status().code(),
              absl::StatusCode::kUnauthenticated);
  }
  EXPECT_TRUE(identity_->verifier().Verify(bobs, clock_.Now(), &list).ok());

  // A later login works again.
  clock_.Advance(absl::Seconds(1));
  const std::string t3 = Login("ana@example.rs");
  EXPECT_TRUE(Validate(t3, &info).ok());

  req.set_account_id("00000000-0000-4000-8000-000000000000");
  ExpectStatus(Call(&pb::Identity::Stub::RevokeSessions, req, &resp, kLifecycle),
               grpc::StatusCode::NOT_FOUND, "account_id: no account");
}

TEST_F(IdentityTest, NoTokenSurvivesARevokeAllRacingItsApproval) {
  pb::Account account = Register();
  consent_->AddDevice(account.account_id());
  pb::RevokeSessionsRequest revoke;
  revoke.set_account_id(account.account_id());
  int issued = 0;
  for (int i = 0; i < 20; ++i) {
    clock_.Advance(absl::Seconds(12));  // Five logins a minute per username.
    pb::StartLoginResponse start = StartLogin("ana@example.rs");
    ASSERT_TRUE(consent_->Approve(LastConsentRequest()).ok());
    pb::AwaitLoginResponse await;
    grpc::Status await_status;
    std::thread portal([&] { await_status = AwaitLogin(start.login_id(), &await); });
    pb::RevokeSessionsResponse revoked;
    ASSERT_TRUE(Call(&pb::Identity::Stub::RevokeSessions, revoke, &revoked, kLifecycle).ok());
    portal.join();
    ASSERT_TRUE(await_status.ok()) << await_status.error_message();
    if (await.state() == pb::LOGIN_STATE_APPROVED) {
      ++issued;
      pb::SessionInfo info;
      ExpectStatus(Validate(await.session_token(), &info), grpc::StatusCode::UNAUTHENTICATED,
                   "revoked");
    } else {
      EXPECT_EQ(await.state(), pb::LOGIN_STATE_DENIED);
    }
  }
  auto live = pool().Exec("SELECT count(*) FROM identity.sessions WHERE ended_at IS NULL");
  ASSERT_TRUE(live.ok());
  EXPECT_EQ(live->Get(0, 0), "0");
  EXPECT_TRUE(db::VerifyAuditChain(pool(), "identity").ok());
  std::cerr << issued << " of 20 approvals won the race\n";
}

TEST_F(IdentityTest, ServiceOnlyCallsRefuseOthers) {
  pb::GetSessionKeysResponse keys;
  ExpectStatus(Call(&pb::Identity::Stub::GetSessionKeys, pb::GetSessionKeysRequest(), &keys),
               grpc::StatusCode::UNAUTHENTICATED, "service credentials required");
  ExpectStatus(
      Call(&pb::Identity::Stub::GetSessionKeys, pb::GetSessionKeysRequest(), &keys, kOperator),
      grpc::StatusCode::PERMISSION_DENIED, "for service only");
  pb::ListSessionRevocationsResponse feed;
  ExpectStatus(
      Call(&pb::Identity::Stub::ListSessionRevocations, pb::ListSessionRevocationsRequest(), &feed,
           absl::StrCat("Service lifecycle.", kConsentSecret)),
      grpc::StatusCode::UNAUTHENTICATED, "service credentials not valid");
}

// ---- Account view. ----

TEST_F(IdentityTest, GetAccountShowsUsersOnlyTheirOwnAccount) {
  pb::Account ana = Register("ana@example.rs", "0101990710008");
  pb::Account bob = Register("bob@example.rs", "0202990710009");
  consent_->AddDevice(ana.account_id());
  const std::string token = Login();

  pb::GetAccountRequest req;
  pb::Account out;
  ExpectStatus(Call(&pb::Identity::Stub::GetAccount, req, &out), grpc::StatusCode::UNAUTHENTICATED,
               "credentials required");
  ASSERT_TRUE(Call(&pb::Identity::Stub::GetAccount, req, &out, Bearer(token)).ok());
  EXPECT_EQ(out.account_id(), ana.account_id());
  req.set_account_id(ana.account_id());
  ASSERT_TRUE(Call(&pb::Identity::Stub::GetAccount, req, &out, Bearer(token)).ok());
  // Another account answers as if it did not exist.
  req.set_account_id(bob.account_id());
  ExpectStatus(Call(&pb::Identity::Stub::GetAccount, req, &out, Bearer(token)),
               grpc::StatusCode::NOT_FOUND, "no such account");
  req.clear_account_id();
  req.set_username("bob@example.rs");
  ExpectStatus(Call(&pb::Identity::Stub::GetAccount, req, &out, Bearer(token)),
               grpc::StatusCode::NOT_FOUND, "no such account");

  // Operators and services name exactly one.
  ASSERT_TRUE(Call(&pb::Identity::Stub::GetAccount, req, &out, kLifecycle).ok());
  EXPECT_EQ(out.account_id(), bob.account_id());
  req.set_account_id(bob.account_id());
  ExpectStatus(Call(&pb::Identity::Stub::GetAccount, req, &out, kOperator),
               grpc::StatusCode::INVALID_ARGUMENT, "account_id, username: set exactly one");
  ExpectStatus(Call(&pb::Identity::Stub::GetAccount, pb::GetAccountRequest(), &out, kOperator),
               grpc::StatusCode::INVALID_ARGUMENT, "set exactly one");
  req.clear_account_id();
  req.set_username("nobody@example.rs");
  ExpectStatus(Call(&pb::Identity::Stub::GetAccount, req, &out, kOperator),
               grpc::StatusCode::NOT_FOUND, "username: no such account");
}

// Input is echoed as a short prefix only: the status message is a header the client must be able
// to receive.
TEST_F(IdentityTest, GetAccountEchoesOnlyAShortPrefixOfTheId) {
  pb::GetAccountRequest req;
  req.set_account_id(std::string(20000, 'a'));
  pb::Account out;
  grpc::Status s = Call(&pb::Identity::Stub::GetAccount, req, &out, kOperator);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message().size();
  EXPECT_THAT(s.error_message(), HasSubstr("account_id: no account aaaa"));
  EXPECT_THAT(s.error_message(), HasSubstr("(20000 bytes)"));
  EXPECT_LT(s.error_message().size(), 200u);
}

// ---- Audit. ----

TEST_F(IdentityTest, EveryStateChangeIsInTheAuditChain) {
  pb::Account account = Register();
  Proof(account.account_id());
  consent_->AddDevice(account.account_id());
  const std::string token = Login();
  pb::StartLoginResponse denied = StartLogin("ana@example.rs");
  ASSERT_TRUE(consent_->Deny(LastConsentRequest()).ok());
  pb::AwaitLoginResponse await;
  ASSERT_TRUE(AwaitLogin(denied.login_id(), &await).ok());
  pb::LogoutResponse out;
  ASSERT_TRUE(Call(&pb::Identity::Stub::Logout, pb::LogoutRequest(), &out, Bearer(token)).ok());
  pb::RevokeSessionsRequest revoke;
  revoke.set_account_id(account.account_id());
  pb::RevokeSessionsResponse revoked;
  ASSERT_TRUE(Call(&pb::Identity::Stub::RevokeSessions, revoke, &revoked, kLifecycle).ok());

  // Administrative acts in the hash chain ...
  EXPECT_THAT(
      AuditActions(),
      ElementsAre("identity.registration.request", "identity.account.register", "identity.proof",
                  "identity.session.logout", "identity.session.revoke_all"));
  auto rows = pool().Exec(
      "SELECT actor, target, outcome, client_address FROM identity.audit_log ORDER BY seq");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->Get(0, 0), "anonymous");
  EXPECT_THAT(std::string(rows->Get(0, 3)), HasSubstr("203.0.113.7 via ipv"));
  EXPECT_EQ(rows->Get(1, 0), "anonymous");  // The e-mailed link opened.
  EXPECT_EQ(rows->Get(1, 1), account.account_id());
  EXPECT_EQ(rows->Get(2, 0), "operator:ra-ana");
  EXPECT_EQ(rows->Get(2, 1), account.account_id());
  EXPECT_EQ(rows->Get(4, 0), "service:lifecycle");
  // ... login events in the logins journal, written with the change they record.
  EXPECT_THAT(JournalEvents(),
              ElementsAre("identity.login.start ok", "identity.session.issue ok",
                          "identity.login.start ok", "identity.login.finish denied"));
  auto journal =
      pool().Exec("SELECT actor, target, client_address FROM identity.login_journal ORDER BY seq");
  ASSERT_TRUE(journal.ok());
  EXPECT_EQ(journal->Get(0, 0), "anonymous");
  EXPECT_EQ(journal->Get(0, 1), account.account_id());
  EXPECT_THAT(std::string(journal->Get(0, 2)), HasSubstr("198.51.100.23 via ipv"));
  EXPECT_EQ(journal->Get(1, 0), absl::StrCat("account:", account.account_id()));
  EXPECT_TRUE(db::VerifyAuditChain(pool(), "identity").ok());

  // Tampering is found.
  ASSERT_TRUE(pool().Exec("ALTER TABLE identity.audit_log DISABLE TRIGGER USER").ok());
  ASSERT_TRUE(
      pool().Exec("UPDATE identity.audit_log SET actor = 'operator:ra-bob' WHERE seq = 2").ok());
  EXPECT_EQ(db::VerifyAuditChain(pool(), "identity").code(), absl::StatusCode::kDataLoss);
}

pb::CorrectIdentityRequest Correction(const std::string& account_id, const std::string& given,
                                      const std::string& surname, const std::string& national_id) {
  pb::CorrectIdentityRequest req;
  req.set_account_id(account_id);
  req.set_given_name(given);
  req.set_surname(surname);
  req.set_national_id(national_id);
  return req;
}

TEST_F(IdentityTest, AnOperatorCorrectsTheNameAndNationalIdUntilProofing) {
  pb::Account account = Register();  // Ana Petrović, 0101990710008.
  const std::string id = account.account_id();
  const std::string corrected_id = qsign::testing::NationalId(7);
  pb::Account out;
  // Operators only.
  auto req = Correction(id, "Ana", "Petrović-Jovanović", corrected_id);
  ExpectStatus(Call(&pb::Identity::Stub::CorrectIdentity, req, &out),
               grpc::StatusCode::UNAUTHENTICATED, "operator");
  ExpectStatus(Call(&pb::Identity::Stub::CorrectIdentity, req, &out, kConsent),
               grpc::StatusCode::PERMISSION_DENIED, "operator");
  // Each field validated as at registration, named in the status.
  ExpectStatus(Call(&pb::Identity::Stub::CorrectIdentity,
                    Correction(id, "Ana", "Petrović", "0101990710009"), &out, kOperator),
               grpc::StatusCode::INVALID_ARGUMENT, "national_id");
  ExpectStatus(Call(&pb::Identity::Stub::CorrectIdentity,
                    Correction(id, "", "Petrović", corrected_id), &out, kOperator),
               grpc::StatusCode::INVALID_ARGUMENT, "given_name");
  ExpectStatus(Call(&pb::Identity::Stub::CorrectIdentity,
                    Correction(id, "Ana", "Petrović", "0101990710008"), &out, kOperator),
               grpc::StatusCode::INVALID_ARGUMENT, "nothing to correct");
  ExpectStatus(
      Call(&pb::Identity::Stub::CorrectIdentity,
           Correction("no-such-account", "Ana", "Petrović", corrected_id), &out, kOperator),
      grpc::StatusCode::NOT_FOUND, "");

  req.set_note("surname as on the ID card");
  ASSERT_TRUE(Call(&pb::Identity::Stub::CorrectIdentity, req, &out, kOperator).ok());
  EXPECT_EQ(out.surname(), "Petrović-Jovanović");
  EXPECT_EQ(out.national_id(), corrected_id);
  pb::GetAccountRequest get;
  get.set_account_id(id);
  pb::Account stored;
  ASSERT_TRUE(Call(&pb::Identity::Stub::GetAccount, get, &stored, kOperator).ok());
  EXPECT_EQ(stored.surname(), "Petrović-Jovanović");
  EXPECT_EQ(stored.national_id(), corrected_id);
  // Audited with the old and the new values, by the operator.
  auto rows = pool().Exec(
      "SELECT actor, target, details FROM identity.audit_log WHERE action = 'identity.correct'");
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->rows(), 1);
  EXPECT_EQ(rows->Get(0, 0), "operator:ra-ana");
  EXPECT_EQ(rows->Get(0, 1), id);
  EXPECT_EQ(rows->Get(0, 2),
            absl::StrCat("surname: Petrović -> Petrović-Jovanović; national_id: 0101990710008 -> ",
                         corrected_id, "; note: surname as on the ID card"));
  EXPECT_TRUE(db::VerifyAuditChain(pool(), "identity").ok());

  // Once proofed, the data is bound to the document checked.
  Proof(id);
  ExpectStatus(Call(&pb::Identity::Stub::CorrectIdentity,
                    Correction(id, "Ana", "Petrović", corrected_id), &out, kOperator),
               grpc::StatusCode::FAILED_PRECONDITION, "already proofed");
}

TEST_F(IdentityTest, CorrectionsAreLimitedPerOperator) {
  pb::Account account = Register();
  pb::Account out;
  for (int i = 0; i < 30; ++i) {
    auto req = Correction(account.account_id(), "Ana", absl::StrCat("Petrović", i % 2 ? "" : "a"),
                          "0101990710008");
    ASSERT_TRUE(Call(&pb::Identity::Stub::CorrectIdentity, req, &out, kOperator).ok()) << i;
  }
  ExpectStatus(
      Call(&pb::Identity::Stub::CorrectIdentity,
           Correction(account.account_id(), "Ana", "Petrović", "0101990710008"), &out, kOperator),
      grpc::StatusCode::RESOURCE_EXHAUSTED, "too many corrections");
}

TEST_F(IdentityTest, OperatorsReadAnAccountsAuditTrailNewestFirst) {
  pb::Account account = Register();
  const std::string id = account.account_id();
  Register("marko@example.rs", qsign::testing::NationalId(8));  // Not in Ana's trail.
  clock_.Advance(absl::Minutes(1));
  pb::Account corrected;
  ASSERT_TRUE(Call(&pb::Identity::Stub::CorrectIdentity,
                   Correction(id, "Ana", "Petrović", qsign::testing::NationalId(9)), &corrected,
                   kOperator)
                  .ok());
  clock_.Advance(absl::Minutes(1));
  Proof(id);
  consent_->AddDevice(id);
  clock_.Advance(absl::Minutes(1));
  const std::string token = Login();

  // Pages of two, newest first, until the end.
  std::vector<std::string> actions;
  std::vector<int64_t> times;
  std::string page_token;
  for (int page = 0; page < 10; ++page) {
    pb::ListAccountAuditRequest req;
    req.set_account_id(id);
    req.set_page_size(2);
    req.set_page_token(page_token);
    pb::ListAccountAuditResponse resp;
    ASSERT_TRUE(Call(&pb::Identity::Stub::ListAccountAudit, req, &resp, kOperator).ok());
    EXPECT_LE(resp.records_size(), 2);
    for (const auto& r : resp.records()) {
      actions.push_back(absl::StrCat(r.source(), " ", r.action()));
      times.push_back(r.at().seconds());
      EXPECT_TRUE(r.target() == id || r.actor() == "account:" + id) << r.action();
    }
    page_token = resp.next_page_token();
    if (page_token.empty()) break;
  }
  EXPECT_THAT(actions, ElementsAre("identity.login_journal identity.session.issue",
                                   "identity.login_journal identity.login.start",
                                   "identity.audit_log identity.proof",
                                   "identity.audit_log identity.correct",
                                   "identity.audit_log identity.account.register"));
  EXPECT_TRUE(std::is_sorted(times.rbegin(), times.rend()));

  // Operators only; the page token is checked.
  pb::ListAccountAuditRequest req;
  req.set_account_id(id);
  pb::ListAccountAuditResponse resp;
  ExpectStatus(Call(&pb::Identity::Stub::ListAccountAudit, req, &resp, Bearer(token)),
               grpc::StatusCode::PERMISSION_DENIED, "operator");
  ExpectStatus(Call(&pb::Identity::Stub::ListAccountAudit, req, &resp),
               grpc::StatusCode::UNAUTHENTICATED, "operator");
  req.set_page_token("1.9.1");
  ExpectStatus(Call(&pb::Identity::Stub::ListAccountAudit, req, &resp, kOperator),
               grpc::StatusCode::INVALID_ARGUMENT, "page_token");
  req.set_page_token("");
  req.set_page_size(201);
  ExpectStatus(Call(&pb::Identity::Stub::ListAccountAudit, req, &resp, kOperator),
               grpc::StatusCode::INVALID_ARGUMENT, "page_size");
  req.set_page_size(0);
  req.set_account_id("no-such-account");
  ExpectStatus(Call(&pb::Identity::Stub::ListAccountAudit, req, &resp, kOperator),
               grpc::StatusCode::NOT_FOUND, "");
}

TEST_F(IdentityTest, EveryLoginIsInTheLoginJournalForAnAuditor) {
  pb::Account account = Register();
  Proof(account.account_id());
  consent_->AddDevice(account.account_id());
  const std::string token = Login();
  pb::StartLoginResponse unknown = StartLogin("nobody@example.rs");
  pb::StartLoginResponse pending = StartLogin("ana@example.rs");
  clock_.Advance(absl::Minutes(10));
  pb::AwaitLoginResponse await;
  ASSERT_TRUE(AwaitLogin(unknown.login_id(), &await).ok());
  EXPECT_EQ(await.state(), pb::LOGIN_STATE_EXPIRED);

  // An auditor finds one login by the SHA-256 of its id, or an account's logins by target.
  auto rows = pool().Exec(
      "SELECT action, outcome, target FROM identity.login_journal WHERE login_id_sha256 = $1 "
      "ORDER BY seq",
      {db::Param::Bytes(Sha256(unknown.login_id()))});
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->rows(), 2);
  EXPECT_EQ(rows->Get(0, 0), "identity.login.start");
  EXPECT_EQ(rows->Get(0, 1), "unknown_username");
  EXPECT_EQ(rows->Get(0, 2), "");
  EXPECT_EQ(rows->Get(1, 0), "identity.login.finish");
  EXPECT_EQ(rows->Get(1, 1), "expired");

  // A revoke-all records how it ended the pending login.
  pb::RevokeSessionsRequest revoke;
  revoke.set_account_id(account.account_id());
  pb::RevokeSessionsResponse revoked;
  ASSERT_TRUE(Call(&pb::Identity::Stub::RevokeSessions, revoke, &revoked, kLifecycle).ok());
  rows = pool().Exec(
      "SELECT action, outcome, actor, details FROM identity.login_journal "
      "WHERE login_id_sha256 = $1 ORDER BY seq",
      {db::Param::Bytes(Sha256(pending.login_id()))});
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->rows(), 2);
  EXPECT_EQ(rows->Get(1, 0), "identity.login.finish");
  EXPECT_EQ(rows->Get(1, 1), "denied");
  EXPECT_EQ(rows->Get(1, 2), "service:lifecycle");
  EXPECT_EQ(rows->Get(1, 3), "revoke-all");
  auto issued = pool().Exec(
      "SELECT count(*) FROM identity.login_journal WHERE target = $1 AND "
      "action = 'identity.session.issue'",
      {db::Param::Text(account.account_id())});
  ASSERT_TRUE(issued.ok());
  EXPECT_EQ(issued->Get(0, 0), "1");

  // No token, login id or PIN in it; and it refuses changes.
  auto leak = pool().Exec(
      "SELECT count(*) FROM identity.login_journal WHERE details LIKE '%' || $1 || '%' OR "
      "details LIKE '%' || $2 || '%'",
      {db::Param::Text(token), db::Param::Text(pending.login_id())});
  ASSERT_TRUE(leak.ok());
  EXPECT_EQ(leak->Get(0, 0), "0");
  EXPECT_FALSE(pool().Exec("UPDATE identity.login_journal SET outcome = 'ok'").ok());
  EXPECT_FALSE(pool().Exec("DELETE FROM identity.login_journal").ok());
  EXPECT_FALSE(pool().Exec("TRUNCATE identity.login_journal").ok());
}

TEST_F(IdentityTest, ATokenCarriesTheLevelOfAProofingDuringTheLogin) {
  pb::Account account = Register();
  Proof(account.account_id(), pb::ASSURANCE_LEVEL_SUBSTANTIAL);
  consent_->AddDevice(account.account_id());
  pb::StartLoginResponse start = StartLogin("ana@example.rs");
  // The level is raised between StartLogin and the approval.
  Proof(account.account_id(), pb::ASSURANCE_LEVEL_HIGH);
  ASSERT_TRUE(consent_->Approve(LastConsentRequest()).ok());
  pb::AwaitLoginResponse await;
  ASSERT_TRUE(AwaitLogin(start.login_id(), &await).ok());
  ASSERT_EQ(await.state(), pb::LOGIN_STATE_APPROVED);
  pb::SessionInfo info;
  ASSERT_TRUE(Validate(await.session_token(), &info).ok());
  EXPECT_EQ(info.assurance_level(), pb::ASSURANCE_LEVEL_HIGH);
  auto level = pool().Exec("SELECT assurance_level FROM identity.sessions");
  ASSERT_TRUE(level.ok());
  EXPECT_EQ(level->Get(0, 0), "3");
}

// ---- The gRPC consent client, against a stand-in Consent server. ----

class StandInConsent final : public pb::Consent::Service {
 public:
  grpc::Status CreateRequest(grpc::ServerContext* ctx, const pb::CreateRequestRequest* req,
                             pb::ConsentRequestStatus* resp) override {
    if (!Authorized(ctx)) return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "who?");
    if (req->account_id() == "no-device") {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "account has no active device");
    }
    last_ = *req;
    resp->set_request_id("req-42");
    resp->set_account_id(req->account_id());
    resp->set_kind(pb::CONSENT_REQUEST_KIND_LOGIN);
    resp->set_state(pb::CONSENT_REQUEST_STATE_PENDING);
    resp->mutable_expires_at()->set_seconds(1'800'000'120);
    return grpc::Status::OK;
  }
  grpc::Status AwaitRequest(grpc::ServerContext* ctx, const pb::AwaitRequestRequest* req,
                            pb::ConsentRequestStatus* resp) override {
    if (!Authorized(ctx)) return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "who?");
    if (req->request_id() != "req-42") return grpc::Status(grpc::StatusCode::NOT_FOUND, "no");
    max_wait_ = req->max_wait();
    resp->set_request_id("req-42");
    resp->set_account_id("acc-1");
    resp->set_state(pb::CONSENT_REQUEST_STATE_APPROVED);
    resp->mutable_decided_at()->set_seconds(1'800'000'010);
    return grpc::Status::OK;
  }

  pb::CreateRequestRequest last_;
  google::protobuf::Duration max_wait_;

 private:
  static bool Authorized(grpc::ServerContext* ctx) {
    auto it = ctx->client_metadata().find("authorization");
    return it != ctx->client_metadata().end() &&
           std::string_view(it->second.data(), it->second.size()) ==
               absl::StrCat("Service identity.", kConsentSecret);
  }
};

TEST(GrpcConsentClientTest, SpeaksTheConsentApi) {
  StandInConsent consent;
  auto server = GrpcServer::Start({}, {&consent});
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = grpc::CreateChannel((*server)->local_target(), grpc::InsecureChannelCredentials());
  GrpcConsentClient client(qsign::daemon::DeferredChannel::Connected("consent", channel),
                           "identity", SecretString(kConsentSecret));

  auto created = client.CreateLoginRequest({.account_id = "acc-1",
                                            .verification_code = "4721",
                                            .client_description = "198.51.100.23",
                                            .lifetime = absl::Minutes(2)});
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->request_id, "req-42");
  EXPECT_EQ(created->state, ConsentState::kPending);
  EXPECT_EQ(created->expires_at, absl::FromUnixSeconds(1'800'000'120));
  EXPECT_EQ(consent.last_.kind(), pb::CONSENT_REQUEST_KIND_LOGIN);
  EXPECT_EQ(consent.last_.login().verification_code(), "4721");
  EXPECT_EQ(consent.last_.lifetime().seconds(), 120);

  auto none = client.CreateLoginRequest({.account_id = "no-device", .lifetime = absl::Minutes(2)});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);

  auto decided = client.AwaitRequest("req-42", absl::Milliseconds(1500));
  ASSERT_TRUE(decided.ok()) << decided.status();
  EXPECT_EQ(decided->state, ConsentState::kApproved);
  EXPECT_EQ(decided->decided_at, absl::FromUnixSeconds(1'800'000'010));
  EXPECT_EQ(consent.max_wait_.seconds(), 1);
  EXPECT_EQ(consent.max_wait_.nanos(), 500'000'000);
  EXPECT_EQ(client.AwaitRequest("req-x", absl::ZeroDuration()).status().code(),
            absl::StatusCode::kNotFound);

  GrpcConsentClient stranger(qsign::daemon::DeferredChannel::Connected("consent", channel),
                             "identity", SecretString("wrong"));
  EXPECT_EQ(stranger.AwaitRequest("req-42", absl::ZeroDuration()).status().code(),
            absl::StatusCode::kUnauthenticated);
  (*server)->Shutdown(absl::ZeroDuration());
}

}  // namespace
}  // namespace qsign::identity
