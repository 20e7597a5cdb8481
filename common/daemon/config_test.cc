#include "common/daemon/config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace qsign {
namespace {

namespace cfg = ::qsign::config::v1;
using ::testing::HasSubstr;
using ::testing::Not;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/qsign-config-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    for (const char* role : {"signer", "consent", "identity", "lifecycle", "tsa"}) {
      Write(std::string(role) + ".pin", std::string(role) + "-1234\n");
    }
    Write("sad.pem", "-----BEGIN PUBLIC KEY-----\n");
    Write("pepper", std::string(32, 'p'));
    Write("module.so", "not really a module");
    Write("secret", "s3cret\n");
    Write("table", "consent 00\n");
    Write("cert.pem", "-----BEGIN CERTIFICATE-----\n");
    Write("key.pem", "-----BEGIN PRIVATE KEY-----\n");
    Write("tokenkey", std::string(32, 'k'));
    Write("empty", "");
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  void Write(const std::string& name, const std::string& content) const {
    std::ofstream(Path(name), std::ios::binary) << content;
  }

  // Every service on a laptop: valid as it stands.
  cfg::ServerConfig Laptop() const {
    auto c = ParseConfigText(R"pb(
                               insecure_dev: true
                               database { conninfo: "host=/tmp dbname=qsign" }
                               signer {}
                               identity {}
                               lifecycle {}
                             )pb",
                             "laptop");
    EXPECT_TRUE(c.ok()) << c.status();
    c->mutable_hsm()->set_module(Path("module.so"));
    c->mutable_consent()->set_pin_pepper_file(Path("pepper"));
    for (const char* role : {"signer", "consent", "identity", "lifecycle"}) {
      AddToken(*c, role);
    }
    cfg::SadKey* sad = c->mutable_signer()->add_sad_keys();
    sad->set_key_id("qsign-sad-1");
    sad->set_public_key_file(Path("sad.pem"));
    ApplyConfigDefaults(*c);
    return *c;
  }

  // After sections were removed: only the tokens of the roles still needed, as an operator
  // would write the file.
  static void KeepOwnTokens(cfg::ServerConfig& c) {
    const std::vector<std::string_view> needed = NeededTokenRoles(c);
    auto* tokens = c.mutable_hsm()->mutable_token();
    for (int i = tokens->size() - 1; i >= 0; --i) {
      if (std::find(needed.begin(), needed.end(), tokens->Get(i).role()) == needed.end()) {
        tokens->DeleteSubrange(i, 1);
      }
    }
  }

  // The token of `role`: label "qsign-<role>", PIN file <dir>/<role>.pin.
  void AddToken(cfg::ServerConfig& c, const std::string& role) const {
    cfg::HsmToken* t = c.mutable_hsm()->add_token();
    t->set_role(role);
    t->set_label("qsign-" + role);
    t->set_pin_file(Path(role + ".pin"));
  }

  // The validation errors of `c` after defaults ("" when valid).
  static std::string Errors(cfg::ServerConfig c) {
    ApplyConfigDefaults(c);
    absl::Status s = ValidateConfig(c);
    return std::string(s.message());
  }

  std::string dir_;
};

TEST_F(ConfigTest, LaptopConfigIsValid) { EXPECT_EQ(Errors(Laptop()), ""); }

TEST_F(ConfigTest, TsaDefaultsAndRules) {
  cfg::ServerConfig c = Laptop();
  Write("tsa.secret", "tsa-secret");
  c.mutable_tsa()->set_client_secret_file(Path("tsa.secret"));
  AddToken(c, "tsa");
  ApplyConfigDefaults(c);
  EXPECT_EQ(c.tsa().http_listen(), "127.0.0.1:8318");
  EXPECT_EQ(c.tsa().key_id(), "qsign-tsa-1");
  EXPECT_EQ(c.tsa().policy_oid(), "0.4.0.2023.1.1");
  EXPECT_EQ(c.tsa().accuracy_ms(), 1000);
  EXPECT_EQ(c.tsa().name(), "qsign TSA");
  EXPECT_EQ(c.lifecycle().tsa_client_id(), "tsa");
  EXPECT_EQ(Errors(c), "");

  c.mutable_tsa()->set_policy_oid("not an oid");
  c.mutable_tsa()->set_accuracy_ms(-5);
  c.mutable_tsa()->clear_client_secret_file();
  const std::string e = Errors(c);
  EXPECT_THAT(e, HasSubstr("tsa.policy_oid: \"not an oid\": a dotted OID"));
  EXPECT_THAT(e, HasSubstr("tsa.accuracy_ms: -5: must be 1..60000"));
  EXPECT_THAT(e, HasSubstr("tsa.client_secret_file: required"));

  // Without lifecycle in the process the TSA needs peers.lifecycle for its certificate.
  c = Laptop();
  c.clear_lifecycle();
  c.mutable_tsa()->set_client_secret_file(Path("tsa.secret"));
  AddToken(c, "tsa");
  EXPECT_THAT(Errors(c), HasSubstr("peers.lifecycle: required (tsa calls lifecycle"));
}

TEST_F(ConfigTest, DefaultsAreTheDocumentedOnes) {
  cfg::ServerConfig c = Laptop();
  c.mutable_gateway();
  ApplyConfigDefaults(c);
  EXPECT_EQ(c.listen(), "127.0.0.1:7443");
  EXPECT_EQ(c.database().pool_size(), 16);
  EXPECT_EQ(c.hsm().sessions(), 8);
  EXPECT_EQ(c.hsm().token(0).sessions(), 8);          // hsm.sessions unless the token says.
  EXPECT_FALSE(c.hsm().serialize_object_creation());  // module.so is not SoftHSM2.
  cfg::ServerConfig softhsm;
  softhsm.mutable_signer();
  ApplyConfigDefaults(softhsm);  // The default module, SoftHSM2: object creation serialised.
  EXPECT_EQ(softhsm.hsm().module(), "/usr/lib/softhsm/libsofthsm2.so");
  EXPECT_TRUE(softhsm.hsm().serialize_object_creation());
  EXPECT_EQ(c.observability().grace_seconds(), 10);
  EXPECT_EQ(c.session_verification().refresh_interval_ms(), 500);
  EXPECT_EQ(c.session_verification().max_staleness_ms(), 5000);
  EXPECT_EQ(c.observability().metrics_listen(), "");
  EXPECT_FALSE(c.observability().reflection());
  EXPECT_FALSE(c.create_missing_keys());
  EXPECT_EQ(c.signer().max_batch(), 100);
  EXPECT_EQ(c.consent().sad_key_id(), "qsign-sad-1");
  EXPECT_EQ(c.consent().pin_pepper_id(), "k1");
  EXPECT_EQ(c.consent().pin_argon2_t(), 1);
  EXPECT_EQ(c.consent().pin_argon2_m_kib(), 1024);
  EXPECT_EQ(c.consent().client_id(), "consent");
  EXPECT_EQ(c.consent().device_ca_key_id(), "qsign-device-ca-1");
  ASSERT_EQ(c.identity().session_key_ids_size(), 1);
  EXPECT_EQ(c.identity().session_key_ids(0), "qsign-session-1");
  EXPECT_EQ(c.identity().consent_client_id(), "consent");
  EXPECT_EQ(c.lifecycle().http_listen(), "127.0.0.1:8080");
  EXPECT_EQ(c.lifecycle().public_base_url(), "http://127.0.0.1:8080");
  EXPECT_EQ(c.lifecycle().ca_key_type(), "EC_P256");
  EXPECT_EQ(c.lifecycle().pds_url(), "https://qsign.example/pds/en");
  EXPECT_EQ(c.lifecycle().consent_client_id(), "consent");
  EXPECT_EQ(c.lifecycle().mail_from(), "qsign@localhost");
  EXPECT_EQ(c.gateway().http_listen(), "127.0.0.1:8480");
  EXPECT_EQ(c.gateway().client_id(), "gateway");
  EXPECT_EQ(c.gateway().token_lifetime_seconds(), 600);
  EXPECT_EQ(c.gateway().authorize_wait_seconds(), 25);
  EXPECT_EQ(c.gateway().authorize_check_wait_seconds(), 10);
  EXPECT_EQ(c.gateway().rpc_timeout_seconds(), 10);
  EXPECT_EQ(c.gateway().max_body_bytes(), 12 << 20);
  EXPECT_EQ(c.gateway().signdoc_max_document_bytes(), 8 << 20);
  EXPECT_EQ(c.gateway().signdoc_wait_seconds(), 120);
  EXPECT_EQ(c.gateway().http_threads(), 64);
  EXPECT_EQ(c.gateway().name(), "qsign");
  EXPECT_EQ(c.gateway().region(), "RS");
  // The abuse limits (0 turns one off).
  EXPECT_EQ(c.consent().enrollments_per_address_per_minute(), 30);
  EXPECT_EQ(c.consent().authorizations_per_account_per_minute(), 10);
  EXPECT_EQ(c.identity().logins_per_account_per_minute(), 5);
  EXPECT_EQ(c.identity().logins_per_address_per_minute(), 60);
  EXPECT_EQ(c.identity().registrations_per_address_per_hour(), 20);
  EXPECT_EQ(c.lifecycle().ocsp_signatures_per_second(), 100);
  EXPECT_EQ(c.peers().load_balancing(), "round_robin");  // Calls spread over a peer's replicas.
}

TEST_F(ConfigTest, DefaultsKeepWhatIsSet) {
  cfg::ServerConfig c = Laptop();
  c.set_listen("0.0.0.0:9000");
  c.mutable_hsm()->mutable_token(1)->set_sessions(3);
  c.mutable_hsm()->set_serialize_object_creation(false);
  c.mutable_lifecycle()->set_http_listen("127.0.0.1:18080");
  c.mutable_lifecycle()->clear_public_base_url();
  ApplyConfigDefaults(c);
  EXPECT_EQ(c.listen(), "0.0.0.0:9000");
  EXPECT_EQ(c.hsm().token(1).sessions(), 3);
  EXPECT_FALSE(c.hsm().serialize_object_creation());
  EXPECT_EQ(c.lifecycle().public_base_url(), "http://127.0.0.1:18080");
  // Services not configured get no section from the defaults.
  cfg::ServerConfig signer_only;
  signer_only.mutable_signer();
  ApplyConfigDefaults(signer_only);
  EXPECT_FALSE(signer_only.has_consent());
  EXPECT_FALSE(signer_only.has_gateway());
  EXPECT_EQ(ConfiguredServices(signer_only), std::vector<std::string>{"signer"});
}

TEST_F(ConfigTest, ParseErrorNamesLineColumnAndField) {
  auto c = ParseConfigText("listen: \"127.0.0.1:0\"\ninsecure_dev: true\n  lisen: \"x\"\n",
                           "/etc/qsign/qsignd.textproto");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("/etc/qsign/qsignd.textproto:3:"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("\"lisen\""));

  auto wrong_type = ParseConfigText("signer {\n  max_batch: \"ten\"\n}\n", "f");
  ASSERT_FALSE(wrong_type.ok());
  EXPECT_THAT(std::string(wrong_type.status().message()), HasSubstr("f:2:"));
  EXPECT_THAT(std::string(wrong_type.status().message()), HasSubstr(": max_batch: "));

  auto twice = ParseConfigText("listen: \"a:1\"\nlisten: \"b:2\"\n", "f");
  ASSERT_FALSE(twice.ok());
  EXPECT_THAT(std::string(twice.status().message()), HasSubstr("f:2:"));
}

TEST_F(ConfigTest, LoadConfigReadsParsesDefaultsAndValidates) {
  Write("qsignd.textproto",
        "insecure_dev: true\n"
        "database { conninfo: \"dbname=qsign\" }\n"
        "hsm { module: \"" +
            Path("module.so") + "\" token { role: \"signer\" label: \"qsign-signer\" pin_file: \"" +
            Path("signer.pin") +
            "\" } }\n"
            "signer { max_batch: 10 sad_keys { key_id: \"qsign-sad-1\" public_key_file: \"" +
            Path("sad.pem") + "\" } }\n");
  auto c = LoadConfig(Path("qsignd.textproto"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->signer().max_batch(), 10);
  EXPECT_EQ(c->signer().sad_keys(0).key_id(), "qsign-sad-1");

  auto missing = LoadConfig(Path("nope.textproto"));
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr(Path("nope.textproto") + ": cannot open"));
  EXPECT_THAT(std::string(LoadConfig("").status().message()), HasSubstr("--config: required"));

  Write("bad.textproto", "insecure_dev: true\nsigner {}\n");
  auto invalid = LoadConfig(Path("bad.textproto"));
  ASSERT_FALSE(invalid.ok());
  EXPECT_THAT(std::string(invalid.status().message()), HasSubstr("database.conninfo: required"));
  EXPECT_THAT(std::string(invalid.status().message()),
              HasSubstr("hsm.token: no token for role \"signer\""));
  EXPECT_THAT(std::string(invalid.status().message()), HasSubstr("signer.sad_keys: required"));
}

TEST_F(ConfigTest, NeedsAServiceSection) {
  cfg::ServerConfig c;
  c.set_insecure_dev(true);
  EXPECT_THAT(Errors(c), HasSubstr("config: no service section"));
}

TEST_F(ConfigTest, TlsXorInsecureDev) {
  cfg::ServerConfig c = Laptop();
  c.set_insecure_dev(false);
  EXPECT_THAT(Errors(c), HasSubstr("tls: required unless insecure_dev"));
  c.set_insecure_dev(true);
  c.mutable_tls()->set_cert_file(Path("cert.pem"));
  c.mutable_tls()->set_key_file(Path("key.pem"));
  c.mutable_tls()->set_client_ca_file(Path("cert.pem"));
  EXPECT_THAT(Errors(c), HasSubstr("tls: refused together with insecure_dev"));
  c.set_insecure_dev(false);
  EXPECT_EQ(Errors(c), "");
}

TEST_F(ConfigTest, TlsFilesAreRequiredAndRead) {
  cfg::ServerConfig c = Laptop();
  c.set_insecure_dev(false);
  c.mutable_tls();
  const std::string e = Errors(c);
  EXPECT_THAT(e, HasSubstr("tls.cert_file: required"));
  EXPECT_THAT(e, HasSubstr("tls.key_file: required"));
  EXPECT_THAT(e, HasSubstr("tls.client_ca_file: required"));
  c.mutable_tls()->set_cert_file("/x/cert.pem");
  c.mutable_tls()->set_key_file("/x");
  c.mutable_tls()->set_client_ca_file(dir_);
  const std::string files = Errors(c);
  EXPECT_THAT(files, HasSubstr("tls.cert_file: /x/cert.pem: cannot open"));
  EXPECT_THAT(files, HasSubstr("tls.key_file: /x: cannot open"));
  EXPECT_THAT(files, HasSubstr("tls.client_ca_file: " + dir_ + ": not a regular file"));
  c.mutable_tls()->set_key_file(Path("empty"));
  EXPECT_THAT(Errors(c), HasSubstr("tls.key_file: " + Path("empty") + ": empty"));
}

TEST_F(ConfigTest, SecretsAreNeverInTheMessage) {
  cfg::ServerConfig c = Laptop();
  Write("short-pepper", "tooshort-secret-pepper");
  c.mutable_consent()->set_pin_pepper_file(Path("short-pepper"));
  const std::string e = Errors(c);
  EXPECT_THAT(
      e, HasSubstr("consent.pin_pepper_file: " + Path("short-pepper") + ": shorter than 32 bytes"));
  EXPECT_THAT(e, Not(HasSubstr("tooshort-secret-pepper")));
}

TEST_F(ConfigTest, AllowListsNeedTlsAndNameGroupAndClients) {
  cfg::ServerConfig c = Laptop();
  cfg::Allow* a = c.add_allow();
  a->set_group("signer.sign");
  a->add_clients("gateway.qsign.internal");
  EXPECT_THAT(Errors(c), HasSubstr("allow: has no effect with insecure_dev"));
  c.set_insecure_dev(false);
  c.mutable_tls()->set_cert_file(Path("cert.pem"));
  c.mutable_tls()->set_key_file(Path("key.pem"));
  c.mutable_tls()->set_client_ca_file(Path("cert.pem"));
  EXPECT_EQ(Errors(c), "");
  cfg::Allow* b = c.add_allow();
  b->add_clients("");
  const std::string e = Errors(c);
  EXPECT_THAT(e, HasSubstr("allow[1].group: required"));
  EXPECT_THAT(e, HasSubstr("allow[1].clients[0]: empty"));
  b->set_group("signer.sign");
  b->set_clients(0, "x");
  EXPECT_THAT(Errors(c), HasSubstr("allow[1].group: \"signer.sign\": listed twice"));
  c.add_allow()->set_group("signer.admin");
  EXPECT_THAT(Errors(c), HasSubstr("allow[2].clients: at least one client"));
  c.mutable_allow()->RemoveLast();
  c.mutable_allow()->RemoveLast();
  cfg::Allow* unknown = c.add_allow();
  unknown->set_group("signer.everything");
  unknown->add_clients("x");
  EXPECT_THAT(Errors(c), HasSubstr("allow[1].group: unknown RPC group \"signer.everything\""));
}

TEST_F(ConfigTest, AddressesAreHostPort) {
  cfg::ServerConfig c = Laptop();
  c.set_listen("7443");
  c.mutable_observability()->set_metrics_listen("localhost");
  c.mutable_observability()->set_health_listen("127.0.0.1:70000");
  c.mutable_lifecycle()->set_http_listen(":8080");
  const std::string e = Errors(c);
  EXPECT_THAT(e, HasSubstr("listen: \"7443\": expected host:port"));
  EXPECT_THAT(e, HasSubstr("observability.metrics_listen: \"localhost\""));
  EXPECT_THAT(e, HasSubstr("observability.health_listen: \"127.0.0.1:70000\""));
  EXPECT_THAT(e, HasSubstr("lifecycle.http_listen: \":8080\""));

  EXPECT_TRUE(ParseHostPort("127.0.0.1:0").ok());
  auto v6 = ParseHostPort("[::1]:7443");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->first, "::1");
  EXPECT_EQ(v6->second, 7443);
  EXPECT_FALSE(ParseHostPort("::1:7443").ok());
  EXPECT_FALSE(ParseHostPort("host:-1").ok());
  EXPECT_FALSE(ParseHostPort("host:port").ok());
  EXPECT_FALSE(ParseHostPort("[::1]7443").ok());
}

TEST_F(ConfigTest, DatabaseAndHsmAreRequiredByBackendServices) {
  cfg::ServerConfig c = Laptop();
  c.clear_database();
  c.mutable_hsm()->mutable_token(0)->clear_pin_file();
  c.mutable_hsm()->set_module("/no/such/module.so");
  std::string e = Errors(c);
  EXPECT_THAT(e, HasSubstr("database.conninfo: required"));
  EXPECT_THAT(e, HasSubstr("hsm.token[0].pin_file: required"));
  EXPECT_THAT(e, HasSubstr("hsm.module: /no/such/module.so: cannot open"));
  c = Laptop();
  c.mutable_database()->set_pool_size(-1);
  c.mutable_hsm()->set_sessions(5000);
  c.mutable_hsm()->mutable_token(2)->set_pin_file(Path("nope"));
  e = Errors(c);
  EXPECT_THAT(e, HasSubstr("database.pool_size: -1: must be 1..1000"));
  EXPECT_THAT(e, HasSubstr("hsm.sessions: 5000: must be 1..1024"));
  EXPECT_THAT(e, HasSubstr("hsm.token[2].pin_file: " + Path("nope") + ": cannot open"));
}

// Key separation: every role its own token and PIN, exactly the roles of the sections here.
TEST_F(ConfigTest, EveryRoleItsOwnTokenAndPin) {
  cfg::ServerConfig c = Laptop();
  c.mutable_hsm()->mutable_token(1)->set_label("qsign-signer");  // consent on signer's token
  std::string e = Errors(c);
  EXPECT_THAT(e, HasSubstr("hsm.token[1].label: \"qsign-signer\": the same token as "
                           "hsm.token[0] (role \"signer\"); every role needs its own token"));
  c = Laptop();
  c.mutable_hsm()->mutable_token(3)->set_pin_file(Path("identity.pin"));
  EXPECT_THAT(Errors(c), HasSubstr("hsm.token[3].pin_file: " + Path("identity.pin") +
                                   ": the same PIN file as hsm.token[2] (role \"identity\")"));
  c = Laptop();
  c.mutable_hsm()->mutable_token(3)->set_role("signer");
  e = Errors(c);
  EXPECT_THAT(e, HasSubstr("hsm.token[3].role: \"signer\": also hsm.token[0] (role \"signer\")"));
  EXPECT_THAT(e, HasSubstr("hsm.token: no token for role \"lifecycle\""));
  c = Laptop();
  c.mutable_hsm()->mutable_token(3)->set_role("auditor");
  EXPECT_THAT(Errors(c), HasSubstr("hsm.token[3].role: \"auditor\": unknown role (signer, "));
  // The audit key is the audit tool's alone (qsign-audit sign-heads): no service holds its PIN.
  c = Laptop();
  c.mutable_hsm()->mutable_token(3)->set_role("audit");
  EXPECT_THAT(Errors(c), HasSubstr("hsm.token[3].role: \"audit\": no service opens this token "
                                   "(the audit key"));
  // A process opens only its own roles' tokens: a signer does not hold consent's PIN.
  c = Laptop();
  c.clear_consent();
  c.clear_identity();
  c.clear_lifecycle();
  e = Errors(c);
  EXPECT_THAT(e, HasSubstr("hsm.token[1].role: \"consent\": no consent section in this process"));
  EXPECT_THAT(e, HasSubstr("hsm.token[3].role: \"lifecycle\": no lifecycle section"));
  EXPECT_EQ(NeededTokenRoles(c), std::vector<std::string_view>{"signer"});
  c.mutable_hsm()->mutable_token()->DeleteSubrange(1, 3);
  EXPECT_EQ(Errors(c), "");
  c.mutable_hsm()->mutable_token(0)->set_label(std::string(33, 'x'));
  EXPECT_THAT(Errors(c), HasSubstr("hsm.token[0].label: \"" + std::string(33, 'x') +
                                   "\": must be 1 to 32 bytes"));
}

// The signer trusts only SAD keys pinned in its config.
TEST_F(ConfigTest, SignerNeedsThePinnedSadKey) {
  cfg::ServerConfig c = Laptop();
  c.mutable_signer()->clear_sad_keys();
  EXPECT_THAT(Errors(c), HasSubstr("signer.sad_keys: required"));
  c = Laptop();
  cfg::SadKey* k = c.mutable_signer()->add_sad_keys();
  k->set_key_id("qsign-sad-1");
  k->set_public_key_file(Path("missing.pem"));
  c.mutable_signer()->add_sad_keys();
  const std::string e = Errors(c);
  EXPECT_THAT(e, HasSubstr("signer.sad_keys[1].key_id: \"qsign-sad-1\": listed twice"));
  EXPECT_THAT(
      e, HasSubstr("signer.sad_keys[1].public_key_file: " + Path("missing.pem") + ": cannot open"));
  EXPECT_THAT(e, HasSubstr("signer.sad_keys[2].key_id: required"));
  EXPECT_THAT(e, HasSubstr("signer.sad_keys[2].public_key_file: required"));
}

TEST_F(ConfigTest, CredentialFilesAreRead) {
  cfg::ServerConfig c = Laptop();
  c.set_operators_file(Path("none-ops"));
  c.set_services_file(Path("none-svc"));
  const std::string e = Errors(c);
  EXPECT_THAT(e, HasSubstr("operators_file: " + Path("none-ops") + ": cannot open"));
  EXPECT_THAT(e, HasSubstr("services_file: " + Path("none-svc") + ": cannot open"));
}

TEST_F(ConfigTest, ObservabilityRanges) {
  cfg::ServerConfig c = Laptop();
  c.mutable_observability()->set_grace_seconds(-5);
  EXPECT_THAT(Errors(c), HasSubstr("observability.grace_seconds: -5: must be 1..3600"));
}

TEST_F(ConfigTest, SessionVerificationIsBounded) {
  cfg::ServerConfig c = Laptop();
  ApplyConfigDefaults(c);
  c.mutable_session_verification()->set_max_staleness_ms(120000);
  EXPECT_THAT(Errors(c),
              HasSubstr("session_verification.max_staleness_ms: 120000: must be 100..60000"));
  c.mutable_session_verification()->set_max_staleness_ms(400);
  EXPECT_THAT(Errors(c), HasSubstr("session_verification.max_staleness_ms: 400: must be more "
                                   "than refresh_interval_ms (500)"));
  c.mutable_session_verification()->set_refresh_interval_ms(5);
  EXPECT_THAT(Errors(c),
              HasSubstr("session_verification.refresh_interval_ms: 5: must be 10..30000"));
}

TEST_F(ConfigTest, SignerKeysAndBatch) {
  cfg::ServerConfig c = Laptop();
  c.mutable_signer()->set_max_batch(1001);
  const std::string e = Errors(c);
  EXPECT_THAT(e, HasSubstr("signer.max_batch: 1001: must be 1..1000"));
}

TEST_F(ConfigTest, SignerKeyPoolDefaultsAndRules) {
  cfg::ServerConfig c = Laptop();
  EXPECT_EQ(Errors(c), "");
  cfg::ServerConfig defaults = c;
  ApplyConfigDefaults(defaults);
  EXPECT_EQ(defaults.signer().key_pool_size(), 0);  // Off unless asked for.
  EXPECT_EQ(defaults.signer().key_pool_max_age_seconds(), 3600);
  EXPECT_THAT(defaults.signer().key_pool_key_types(), ::testing::ElementsAre("EC_P256"));
  c.mutable_signer()->set_key_pool_size(65);
  c.mutable_signer()->set_key_pool_max_age_seconds(59);
  c.mutable_signer()->clear_key_pool_key_types();
  c.mutable_signer()->add_key_pool_key_types("EC_P256");
  c.mutable_signer()->add_key_pool_key_types("EC_P999");
  c.mutable_signer()->add_key_pool_key_types("EC_P256");
  const std::string e = Errors(c);
  EXPECT_THAT(e, HasSubstr("signer.key_pool_size: 65: must be 0..64"));
  EXPECT_THAT(e, HasSubstr("signer.key_pool_max_age_seconds: 59: must be 60..86400"));
  EXPECT_THAT(e, HasSubstr("signer.key_pool_key_types[1]: unknown key type \"EC_P999\""));
  EXPECT_THAT(e, HasSubstr("signer.key_pool_key_types[2]: \"EC_P256\": listed twice"));
}

TEST_F(ConfigTest, ConsentRules) {
  cfg::ServerConfig c = Laptop();
  c.mutable_consent()->clear_pin_pepper_file();
  c.mutable_consent()->set_pin_argon2_t(100);
  c.mutable_consent()->set_pin_argon2_m_kib(4);
  c.mutable_consent()->set_client_secret_file(Path("missing"));
  c.mutable_consent()->set_push_webhook_url("ftp://push");
  const std::string e = Errors(c);
  EXPECT_THAT(e, HasSubstr("consent.pin_pepper_file: required"));
  EXPECT_THAT(e, HasSubstr("consent.pin_argon2_t: 100: must be 1..16"));
  EXPECT_THAT(e, HasSubstr("consent.pin_argon2_m_kib: 4: must be 8.."));
  EXPECT_THAT(e, HasSubstr("consent.client_secret_file: " + Path("missing") + ": cannot open"));
  EXPECT_THAT(e, HasSubstr("consent.push_webhook_url: \"ftp://push\": must start with https://"));

  c = Laptop();
  c.mutable_consent()->set_push_webhook_secret_file(Path("secret"));
  EXPECT_THAT(Errors(c),
              HasSubstr("consent.push_webhook_secret_file: set without consent.push_webhook_url"));
}

TEST_F(ConfigTest, ConsentWithoutLifecycleNeedsItsOwnDeviceCa) {
  cfg::ServerConfig c = Laptop();
  c.clear_lifecycle();
  KeepOwnTokens(c);
  EXPECT_THAT(Errors(c), HasSubstr("consent.device_ca_cert_file: required"));
  c.mutable_consent()->set_device_ca_cert_file(Path("device-ca.der"));
  EXPECT_THAT(Errors(c),
              HasSubstr("consent.device_ca_cert_file: " + Path("device-ca.der") + ": cannot open"));
  c.set_create_missing_keys(true);  // Written there on the first start.
  EXPECT_EQ(Errors(c), "");
  c.set_create_missing_keys(false);
  c.mutable_consent()->clear_device_ca_cert_file();
  c.mutable_peers()->set_lifecycle("dns:///lifecycle.qsign.internal:7443");
  EXPECT_EQ(Errors(c), "");
}

TEST_F(ConfigTest, IdentityRules) {
  cfg::ServerConfig c = Laptop();
  c.mutable_identity()->add_session_key_ids("");
  c.mutable_identity()->set_client_secret_file(Path("empty"));
  const std::string e = Errors(c);
  EXPECT_THAT(e, HasSubstr("identity.session_key_ids[1]: empty"));
  EXPECT_THAT(e, HasSubstr("identity.client_secret_file: " + Path("empty") + ": empty"));
}

TEST_F(ConfigTest, LimitsAndTheClientAddressHeader) {
  cfg::ServerConfig c = Laptop();
  c.mutable_identity()->set_logins_per_account_per_minute(-1);
  c.mutable_consent()->set_authorizations_per_account_per_minute(-1);
  c.mutable_identity()->set_smtp_url("http://mail");
  c.mutable_client_address()->set_header("X-Forwarded-For");
  c.mutable_client_address()->add_trusted_proxies("10.0.0.0/8");
  std::string e = Errors(c);
  EXPECT_THAT(e, HasSubstr("identity.logins_per_account_per_minute"));
  EXPECT_THAT(e, HasSubstr("consent.authorizations_per_account_per_minute"));
  EXPECT_THAT(e, HasSubstr("identity.smtp_url"));
  EXPECT_THAT(e, HasSubstr("client_address.header"));
  c = Laptop();
  c.mutable_client_address()->set_header("x-forwarded-for");
  c.mutable_client_address()->add_trusted_proxies("10.0.0.0/40");
  EXPECT_THAT(Errors(c), HasSubstr("client_address.trusted_proxies[0]"));
  c.mutable_client_address()->set_trusted_proxies(0, "10.0.0.0/8");
  EXPECT_EQ(Errors(c), "");
}

TEST_F(ConfigTest, LifecycleRules) {
  cfg::ServerConfig c = Laptop();
  c.mutable_lifecycle()->set_ca_key_type("DSA_1024");
  c.mutable_lifecycle()->set_public_base_url("ocsp.example");
  c.mutable_lifecycle()->set_smtp_url("mail.example:25");
  c.mutable_lifecycle()->set_client_secret_file(Path("missing"));
  const std::string e = Errors(c);
  EXPECT_THAT(e, HasSubstr("lifecycle.ca_key_type: \"DSA_1024\": unknown key type"));
  EXPECT_THAT(e, HasSubstr("lifecycle.public_base_url: \"ocsp.example\": must start with http://"));
  EXPECT_THAT(e, HasSubstr("lifecycle.smtp_url: \"mail.example:25\": must start with smtp://"));
  EXPECT_THAT(e, HasSubstr("lifecycle.client_secret_file: " + Path("missing") + ": cannot open"));
}

TEST_F(ConfigTest, WebAloneNeedsItsPeersAndTlsUnlessInsecureDev) {
  cfg::ServerConfig c;
  c.mutable_web();
  c.mutable_tls()->set_cert_file(Path("cert.pem"));
  c.mutable_tls()->set_key_file(Path("key.pem"));
  c.mutable_tls()->set_client_ca_file(Path("cert.pem"));
  std::string e = Errors(c);
  EXPECT_THAT(e, HasSubstr("web.http_cert_file: required"));
  EXPECT_THAT(e, HasSubstr("peers.identity: required (web calls identity"));
  EXPECT_THAT(e, HasSubstr("peers.consent: required (web calls consent"));
  EXPECT_THAT(e, HasSubstr("peers.lifecycle: required (web calls lifecycle"));
  EXPECT_THAT(e, HasSubstr("peers.signer: required (web calls signer"));
  EXPECT_THAT(e, Not(HasSubstr("database")));
  c.mutable_peers()->set_identity("identity.qsign.internal:7443");
  c.mutable_peers()->set_consent("consent.qsign.internal:7443");
  c.mutable_peers()->set_lifecycle("lifecycle.qsign.internal:7443");
  c.mutable_peers()->set_signer("signer.qsign.internal:7443");
  c.mutable_web()->set_http_cert_file(Path("cert.pem"));
  c.mutable_web()->set_http_key_file(Path("key.pem"));
  EXPECT_EQ(Errors(c), "");
  EXPECT_EQ(ConfiguredServices(c), std::vector<std::string>{"web"});
  c.mutable_web()->set_tsa_url("http://tsa.qsign.internal:8318/tsa");
  EXPECT_EQ(Errors(c), "");
  // A database: the replicas share their browser sessions through it.
  c.mutable_database()->set_conninfo("host=db dbname=qsign user=web");
  EXPECT_EQ(Errors(c), "");
  c.mutable_database()->set_pool_size(-1);
  EXPECT_THAT(Errors(c), HasSubstr("database.pool_size"));
  c.clear_database();
  c.mutable_web()->set_session_idle_minutes(-1);
  c.mutable_web()->set_http_listen("nowhere");
  c.mutable_web()->set_tsa_url("tsa.qsign.internal");
  e = Errors(c);
  EXPECT_THAT(e, HasSubstr("web.session_idle_minutes: -1: must be 1..720"));
  EXPECT_THAT(e, HasSubstr("web.http_listen: \"nowhere\""));
  EXPECT_THAT(e, HasSubstr("web.tsa_url: \"tsa.qsign.internal\""));
  ApplyConfigDefaults(c);
  EXPECT_EQ(c.web().rpc_timeout_seconds(), 10);
  EXPECT_EQ(c.web().max_upload_bytes(), 20 << 20);
  cfg::ServerConfig fresh;
  fresh.mutable_web();
  ApplyConfigDefaults(fresh);
  EXPECT_EQ(fresh.web().http_listen(), "127.0.0.1:8443");
  EXPECT_EQ(fresh.web().session_idle_minutes(), 30);
}

TEST_F(ConfigTest, GatewayNeedsTlsCertUnlessInsecureDev) {
  cfg::ServerConfig c;
  c.mutable_gateway()->set_client_secret_file(Path("secret"));
  c.mutable_gateway()->set_relying_parties_file(Path("table"));
  c.mutable_peers()->set_signer("signer.qsign.internal:7443");
  c.mutable_peers()->set_consent("dns:///consent.qsign.internal:7443");
  c.mutable_tls()->set_cert_file(Path("cert.pem"));
  c.mutable_tls()->set_key_file(Path("key.pem"));
  c.mutable_tls()->set_client_ca_file(Path("cert.pem"));
  std::string e = Errors(c);
  EXPECT_THAT(e, HasSubstr("gateway.http_cert_file: required"));
  EXPECT_THAT(e, HasSubstr("gateway.http_key_file: required"));
  // A gateway alone needs neither PostgreSQL nor the HSM.
  EXPECT_THAT(e, Not(HasSubstr("database")));
  EXPECT_THAT(e, Not(HasSubstr("hsm")));
  c.mutable_gateway()->set_http_cert_file(Path("cert.pem"));
  c.mutable_gateway()->set_http_key_file(Path("key.pem"));
  EXPECT_EQ(Errors(c), "");
  c.clear_tls();
  c.set_insecure_dev(true);
  c.mutable_gateway()->clear_http_key_file();
  EXPECT_THAT(Errors(c), HasSubstr("gateway.http_key_file: required with the other one"));
  c.mutable_gateway()->clear_http_cert_file();
  EXPECT_EQ(Errors(c), "");
}

TEST_F(ConfigTest, GatewayRules) {
  cfg::ServerConfig c;
  c.set_insecure_dev(true);
  c.mutable_gateway();
  c.mutable_peers()->set_signer("127.0.0.1:7443");
  c.mutable_peers()->set_consent("127.0.0.1:7443");
  std::string e = Errors(c);
  EXPECT_THAT(e, HasSubstr("gateway.client_secret_file: required"));
  EXPECT_THAT(e, HasSubstr("gateway.relying_parties_file: required"));
  cfg::GatewayService& g = *c.mutable_gateway();
  g.set_client_secret_file(Path("secret"));
  g.set_relying_parties_file(Path("table"));
  g.set_token_key_file(Path("secret"));
  g.set_authorize_wait_seconds(60);
  g.set_max_body_bytes(10);
  g.set_http_threads(-1);
  g.set_region("Serbia");
  g.set_public_url("csc.example.rs");
  g.set_http_listen("localhost");
  e = Errors(c);
  EXPECT_THAT(e,
              HasSubstr("gateway.token_key_file: " + Path("secret") + ": shorter than 32 bytes"));
  EXPECT_THAT(e, HasSubstr("gateway.authorize_wait_seconds: 60: must be 1..30"));
  EXPECT_THAT(e, HasSubstr("gateway.max_body_bytes: 10: must be 1024.."));
  EXPECT_THAT(e, HasSubstr("gateway.http_threads: -1: must be 1..1024"));
  EXPECT_THAT(e, HasSubstr("gateway.region: \"Serbia\": ISO 3166-1 alpha-2"));
  EXPECT_THAT(e, HasSubstr("gateway.public_url: \"csc.example.rs\": must start with https://"));
  EXPECT_THAT(e, HasSubstr("gateway.http_listen: \"localhost\": expected host:port"));
}

TEST_F(ConfigTest, ServicesNotHereNeedTheirPeers) {
  cfg::ServerConfig c = Laptop();
  c.clear_signer();
  c.clear_identity();
  KeepOwnTokens(c);
  std::string e = Errors(c);
  EXPECT_THAT(e, HasSubstr("peers.identity: required (consent calls identity, which does not run "
                           "in this process)"));
  EXPECT_THAT(e, HasSubstr("peers.signer: required (consent calls signer"));
  EXPECT_THAT(e, HasSubstr("peers.signer: required (lifecycle calls signer"));

  cfg::ServerConfig identity_only = Laptop();
  identity_only.clear_signer();
  identity_only.clear_consent();
  identity_only.clear_lifecycle();
  KeepOwnTokens(identity_only);
  EXPECT_THAT(Errors(identity_only), HasSubstr("peers.consent: required (identity calls consent"));
  identity_only.mutable_peers()->set_consent("consent.qsign.internal:7443");
  EXPECT_EQ(Errors(identity_only), "");

  cfg::ServerConfig signer_only = Laptop();
  signer_only.clear_consent();
  signer_only.clear_identity();
  signer_only.clear_lifecycle();
  KeepOwnTokens(signer_only);
  EXPECT_EQ(Errors(signer_only), "") << "the signer calls nobody";
}

TEST_F(ConfigTest, PeersAreTargetsOfServicesElsewhere) {
  cfg::ServerConfig c = Laptop();
  c.mutable_peers()->set_signer("127.0.0.1:7443");
  EXPECT_THAT(Errors(c), HasSubstr("peers.signer: signer runs in this process"));
  c.clear_signer();
  KeepOwnTokens(c);
  c.mutable_peers()->set_signer("signer qsign");
  EXPECT_THAT(Errors(c), HasSubstr("peers.signer: \"signer qsign\": expected host:port"));
  for (const char* ok :
       {"dns:///signer.qsign.internal:7443", "unix:/run/qsign/signer.sock", "ipv4:10.0.0.1:7443",
        "signer:7443", "ipv4:10.0.0.1:7443,10.0.0.2:7443", "ipv6:[::1]:7443,[::1]:7444"}) {
    c.mutable_peers()->set_signer(ok);
    EXPECT_EQ(Errors(c), "") << ok;
  }
  // A static list of replicas: every address checked.
  c.mutable_peers()->set_signer("ipv4:10.0.0.1:7443,10.0.0.2");
  EXPECT_THAT(Errors(c), HasSubstr("peers.signer: \"ipv4:10.0.0.1:7443,10.0.0.2\": expected"));
  c.mutable_peers()->set_signer("ipv4:10.0.0.1:7443,10.0.0.2:7443");
  for (const char* ok : {"round_robin", "pick_first"}) {
    c.mutable_peers()->set_load_balancing(ok);
    EXPECT_EQ(Errors(c), "") << ok;
  }
  c.mutable_peers()->set_load_balancing("grpclb");
  EXPECT_THAT(Errors(c), HasSubstr("peers.load_balancing: \"grpclb\": expected \"round_robin\""));
}

TEST_F(ConfigTest, ConfiguredServicesAndRunsHere) {
  cfg::ServerConfig c = Laptop();
  EXPECT_EQ(ConfiguredServices(c),
            (std::vector<std::string>{"signer", "consent", "identity", "lifecycle"}));
  EXPECT_TRUE(RunsHere(c, "consent"));
  EXPECT_FALSE(RunsHere(c, "gateway"));
  c.clear_consent();
  c.mutable_peers()->set_consent("c:1");
  EXPECT_FALSE(RunsHere(c, "consent"));
  EXPECT_EQ(PeerTarget(c, "consent"), "c:1");
}

}  // namespace
}  // namespace qsign
