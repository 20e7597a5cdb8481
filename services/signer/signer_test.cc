// The signer over real gRPC on loopback, with a real SoftHSM2 token and a real PostgreSQL.
#include "services/signer/signer.h"

#include <grpcpp/grpcpp.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <algorithm>
#include <atomic>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/db/audit.h"
#include "common/db/pg.h"
#include "common/grpc_server.h"
#include "common/grpc_status.h"
#include "common/metrics.h"
#include "common/oids.h"
#include "common/ossl.h"
#include "common/refusal.h"
#include "consent/sad.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsm/hsm.h"
#include "hsm/testing/bare_pkcs11.h"
#include "hsm/testing/faulty_hsm.h"
#include "qsign/v1/sad.pb.h"
#include "qsign/v1/signer.grpc.pb.h"
#include "services/signer/algorithms.h"
#include "services/signer/key_pool.h"
#include "services/signer/signer_grpc.h"
#include "services/signer/signer_store.h"
#include "tests/testing/metrics.h"
#include "tests/testing/service_test.h"
#include "tests/testing/test_pki.h"

namespace qsign::signer {
namespace {

namespace pb = ::qsign::v1;
using ::testing::HasSubstr;

// What the lifecycle service presents to the signer's administrative RPCs.
constexpr char kLifecycle[] = "Service lifecycle.lifecycle-secret";

constexpr const char* kEcdsaSha256 = oid::kEcdsaWithSha256;
constexpr const char* kEcdsaSha384 = oid::kEcdsaWithSha384;
constexpr const char* kRsaSha256 = oid::kSha256WithRsa;
constexpr const char* kRsaPss = oid::kRsassaPss;
const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);

// Counts the signing calls that reach the HSM, to prove that refused requests never do.
class CountingHsm final : public hsm::Hsm {
 public:
  explicit CountingHsm(hsm::Hsm* inner) : inner_(inner) {}
  absl::StatusOr<hsm::PublicKey> GenerateKeyPair(std::string_view id, hsm::KeyType t) override {
    return inner_->GenerateKeyPair(id, t);
  }
  absl::StatusOr<hsm::PublicKey> GetPublicKey(std::string_view id) override {
    return inner_->GetPublicKey(id);
  }
  absl::Status DestroyKeyPair(std::string_view id) override { return inner_->DestroyKeyPair(id); }
  absl::Status RenameKeyPair(std::string_view from, std::string_view to) override {
    return inner_->RenameKeyPair(from, to);
  }
  absl::StatusOr<std::vector<std::string>> ListKeyIds(std::string_view prefix) override {
    return inner_->ListKeyIds(prefix);
  }
  absl::StatusOr<std::vector<std::string>> SignDigests(std::string_view id,
                                                       const hsm::SignParams& p,
                                                       std::span<const std::string> d) override {
    ++sign_calls;
    return inner_->SignDigests(id, p, d);
  }
  std::atomic<int> sign_calls{0};

 private:
  hsm::Hsm* inner_;  // Not owned.
};

OsslPtr<EVP_PKEY> ParseSpki(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  return OsslPtr<EVP_PKEY>(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
}

using ::qsign::testing::CertificateFor;
using ::qsign::testing::MetricValue;
using ::qsign::testing::VerifyDigestSignature;

bool VerifyDigest(const std::string& spki, const std::string& digest, const std::string& sig,
                  const EVP_MD* md, int rsa_padding = RSA_PKCS1_PADDING) {
  return VerifyDigestSignature(spki, digest, sig, md, rsa_padding);
}

std::string Hash(char fill, size_t len = 32) { return std::string(len, fill); }

class SignerTest : public qsign::testing::ServiceTest {
 protected:
  explicit SignerTest(qsign::testing::ServiceEnvOptions options = {.pool_size = 4})
      : ServiceTest(options) {}

  // The signer's token as the signer sees it, and the one consent's SAD key is in (both the
  // module patched with faults in SignerHsmFaultTest).
  virtual hsm::Hsm& SignerToken() { return hsm("signer"); }
  virtual hsm::Hsm& SadToken() { return hsm("consent"); }

  void SetUp() override {
    ServiceTest::SetUp();
    if (HasFatalFailure()) return;
    StartSigner(SignerConfig{.max_batch = 8});
  }

  void StartSigner(SignerConfig config) {
    counting_ = std::make_unique<CountingHsm>(&SignerToken());
    ASSERT_TRUE(MigrateSignerSchema(pool()).ok());
    store_ = NewPostgresSignerStore(&pool());

    // consent's key, in consent's token: the signer only knows its public key.
    ASSERT_TRUE(SadToken().GenerateKeyPair("sad-key", hsm::KeyType::kEcP256).ok());
    auto minter = consent::SadMinter::New(&SadToken(), "sad-key");
    ASSERT_TRUE(minter.ok()) << minter.status();
    minter_ = *std::move(minter);
    auto verifier = consent::SadVerifier::New({{"sad-key", minter_->public_key_spki()}});
    ASSERT_TRUE(verifier.ok());
    verifier_ = *std::move(verifier);

    signer_ =
        std::make_unique<Signer>(counting_.get(), store_.get(), verifier_.get(), &clock_, config);
    ASSERT_TRUE(services_.AddSecret("lifecycle", "lifecycle-secret").ok());
    grpc_ = std::make_unique<SignerGrpc>(signer_.get(), SignerAccess{.services = &services_});
    auto server = GrpcServer::Start({}, {grpc_.get()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = pb::Signer::NewStub(
        grpc::CreateChannel(server_->local_target(), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    if (server_) server_->Shutdown(absl::ZeroDuration());
  }

  // CreateKey over gRPC as the lifecycle service: a PENDING credential.
  grpc::Status CreateKey(const std::string& id, const std::string& account,
                         pb::CredentialInfo* created) {
    pb::CreateKeyRequest create;
    create.set_credential_id(id);
    create.set_account_id(account);
    create.set_key_algorithm(pb::KEY_ALGORITHM_EC_P256);
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", kLifecycle);
    return stub_->CreateKey(&ctx, create, created);
  }

  // CreateKey + SetCertificate over gRPC: an ACTIVE credential.
  pb::CredentialInfo ActiveCredential(const std::string& id, const std::string& account,
                                      pb::KeyAlgorithm algorithm = pb::KEY_ALGORITHM_EC_P256) {
    pb::CreateKeyRequest create;
    create.set_credential_id(id);
    create.set_account_id(account);
    create.set_key_algorithm(algorithm);
    pb::CredentialInfo created;
    grpc::ClientContext ctx1;
    ctx1.AddMetadata("authorization", kLifecycle);
    grpc::Status s = stub_->CreateKey(&ctx1, create, &created);
    EXPECT_TRUE(s.ok()) << s.error_message();
    pb::SetCertificateRequest set;
    set.set_credential_id(id);
    set.add_certificate_chain_der(CertificateFor(created.public_key_spki()));
    pb::CredentialInfo active;
    grpc::ClientContext ctx2;
    ctx2.AddMetadata("authorization", kLifecycle);
    s = stub_->SetCertificate(&ctx2, set, &active);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return active;
  }

  std::string Sad(const std::string& account, const std::string& credential,
                  std::vector<std::string> hashes, uint32_t num_signatures = 0,
                  const std::string& hash_oid = oid::kSha256) {
    consent::SadGrant grant{.account_id = account,
                            .credential_id = credential,
                            .hash_algorithm_oid = hash_oid,
                            .hashes = std::move(hashes),
                            .num_signatures = num_signatures,
                            .consent_request_id = "req-1"};
    auto sad = minter_->Mint(grant, clock_.Now());
    EXPECT_TRUE(sad.ok()) << sad.status();
    return sad.value_or("");
  }

  pb::SignHashRequest Request(const std::string& credential, std::vector<std::string> hashes,
                              const std::string& sad, const std::string& sign_oid = kEcdsaSha256,
                              const std::string& hash_oid = oid::kSha256) {
    pb::SignHashRequest req;
    req.set_credential_id(credential);
    req.set_hash_algorithm_oid(hash_oid);
    req.set_sign_algorithm_oid(sign_oid);
    for (auto& h : hashes) req.add_hashes(h);
    req.set_sad(sad);
    return req;
  }

  grpc::Status Disable(const std::string& id, pb::CredentialInfo* out) {
    pb::DisableCredentialRequest req;
    req.set_credential_id(id);
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", kLifecycle);
    return stub_->DisableCredential(&ctx, req, out);
  }
  grpc::Status DestroyExpired(const std::string& id, pb::CredentialInfo* out) {
    pb::DestroyKeyRequest req;
    req.set_credential_id(id);
    req.set_reason(pb::DestroyKeyRequest::REASON_EXPIRED);
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", kLifecycle);
    return stub_->DestroyKey(&ctx, req, out);
  }

  grpc::Status Sign(const pb::SignHashRequest& req, pb::SignHashResponse* resp) {
    grpc::ClientContext ctx;
    return stub_->SignHash(&ctx, req, resp);
  }

  // Expects a refusal with `code` and `message_part`, and that no key was touched.
  void ExpectRefused(const pb::SignHashRequest& req, grpc::StatusCode code,
                     const std::string& message_part) {
    int before = counting_->sign_calls.load();
    pb::SignHashResponse resp;
    grpc::Status s = Sign(req, &resp);
    EXPECT_EQ(s.error_code(), code) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(message_part));
    EXPECT_EQ(resp.signatures_size(), 0);
    EXPECT_EQ(counting_->sign_calls.load(), before) << "a refused request reached the HSM";
  }

  FakeClock clock_{kStart};
  std::unique_ptr<CountingHsm> counting_;
  std::unique_ptr<SignerStore> store_;
  std::unique_ptr<consent::SadMinter> minter_;
  std::unique_ptr<consent::SadVerifier> verifier_;
  std::unique_ptr<Signer> signer_;
  auth::CredentialTable services_;  // The lifecycle service's credential (kLifecycle).
  std::unique_ptr<SignerGrpc> grpc_;
  std::unique_ptr<GrpcServer> server_;
  std::unique_ptr<pb::Signer::Stub> stub_;
};

TEST_F(SignerTest, NewCredentialIsPendingThenActiveWithItsChain) {
  pb::CreateKeyRequest create;
  create.set_credential_id("cred-1");
  create.set_account_id("alice");
  create.set_key_algorithm(pb::KEY_ALGORITHM_EC_P256);
  pb::CredentialInfo created;
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", kLifecycle);
  ASSERT_TRUE(stub_->CreateKey(&ctx, create, &created).ok());
  EXPECT_EQ(created.status(), pb::CREDENTIAL_STATUS_PENDING);
  EXPECT_EQ(created.key_bits(), 256u);
  EXPECT_NE(ParseSpki(created.public_key_spki()), nullptr);

  pb::CredentialInfo active = ActiveCredential("cred-1", "alice");
  EXPECT_EQ(active.status(), pb::CREDENTIAL_STATUS_ACTIVE);
  EXPECT_EQ(active.certificate_chain_der_size(), 1);
  EXPECT_EQ(active.scal(), "2");
  EXPECT_EQ(active.max_hashes_per_authorization(), 100u);
  EXPECT_GT(active.valid_to().seconds(), active.valid_from().seconds());
  EXPECT_EQ(active.public_key_spki(), created.public_key_spki());

  pb::ListCredentialsRequest list;
  list.set_account_id("alice");
  pb::ListCredentialsResponse listed;
  grpc::ClientContext ctx2;
  ASSERT_TRUE(stub_->ListCredentials(&ctx2, list, &listed).ok());
  ASSERT_EQ(listed.credentials_size(), 1);
  EXPECT_EQ(listed.credentials(0).credential_id(), "cred-1");
  EXPECT_EQ(listed.credentials(0).certificate_chain_der(0), active.certificate_chain_der(0));
}

TEST_F(SignerTest, OnlyTheLifecycleServiceCreatesCertifiesAndDestroysKeys) {
  auth::CredentialTable services;
  ASSERT_TRUE(services.AddSecret("lifecycle", "lifecycle-secret").ok());
  ASSERT_TRUE(services.AddSecret("gateway", "gateway-secret").ok());
  SignerGrpc guarded(signer_.get(), {.services = &services});
  auto server = GrpcServer::Start({}, {&guarded});
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = pb::Signer::NewStub(
      grpc::CreateChannel((*server)->local_target(), grpc::InsecureChannelCredentials()));
  pb::CreateKeyRequest create;
  create.set_credential_id("cred-guarded");
  create.set_account_id("alice");
  create.set_key_algorithm(pb::KEY_ALGORITHM_EC_P256);
  auto call = [&](const std::string& authorization) {
    grpc::ClientContext ctx;
    if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
    pb::CredentialInfo out;
    return stub->CreateKey(&ctx, create, &out);
  };
  grpc::Status s = call("");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  EXPECT_EQ(call("Service lifecycle.wrong").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  s = call("Service gateway.gateway-secret");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("only the lifecycle service"));
  EXPECT_EQ(hsm("signer").GetPublicKey(UserKeyId("cred-guarded")).status().code(),
            absl::StatusCode::kNotFound)
      << "a refused CreateKey generated a key";
  s = call("Service lifecycle.lifecycle-secret");
  ASSERT_TRUE(s.ok()) << s.error_message();
  // The audit record names the authenticated caller.
  auto rows = pool().Exec("SELECT actor FROM signer.audit_log WHERE target = 'cred-guarded'");
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->rows(), 1);
  EXPECT_EQ(rows->Get(0, 0), "lifecycle");
  (*server)->Shutdown(absl::ZeroDuration());
}

// Without a service credential table (services_file missing or empty) the administrative RPCs
// are refused to everyone, never open.
TEST_F(SignerTest, AdministrativeRpcsRefusedWithoutServiceCredentials) {
  auth::CredentialTable empty;
  for (const auth::CredentialTable* table : {static_cast<const auth::CredentialTable*>(nullptr),
                                             static_cast<const auth::CredentialTable*>(&empty)}) {
    SCOPED_TRACE(table == nullptr ? "no table" : "empty table");
    SignerGrpc unguarded(signer_.get(), {.services = table});
    auto server = GrpcServer::Start({}, {&unguarded});
    ASSERT_TRUE(server.ok()) << server.status();
    auto stub = pb::Signer::NewStub(
        grpc::CreateChannel((*server)->local_target(), grpc::InsecureChannelCredentials()));
    for (const std::string authorization : {"", kLifecycle}) {
      pb::CreateKeyRequest create;
      create.set_credential_id("cred-open");
      create.set_account_id("alice");
      create.set_key_algorithm(pb::KEY_ALGORITHM_EC_P256);
      pb::CredentialInfo out;
      grpc::ClientContext c1, c2, c3;
      if (!authorization.empty()) {
        for (grpc::ClientContext* c : {&c1, &c2, &c3})
          c->AddMetadata("authorization", authorization);
      }
      grpc::Status s = stub->CreateKey(&c1, create, &out);
      EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
      EXPECT_THAT(s.error_message(), HasSubstr("no service credentials"));
      pb::SetCertificateRequest set;
      set.set_credential_id("cred-open");
      set.add_certificate_chain_der("x");
      EXPECT_EQ(stub->SetCertificate(&c2, set, &out).error_code(),
                grpc::StatusCode::FAILED_PRECONDITION);
      pb::DestroyKeyRequest destroy;
      destroy.set_credential_id("cred-open");
      EXPECT_EQ(stub->DestroyKey(&c3, destroy, &out).error_code(),
                grpc::StatusCode::FAILED_PRECONDITION);
    }
    (*server)->Shutdown(absl::ZeroDuration());
  }
  EXPECT_EQ(hsm("signer").GetPublicKey(UserKeyId("cred-open")).status().code(),
            absl::StatusCode::kNotFound);
  auto rows = pool().Exec("SELECT count(*) FROM signer.credentials");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->Get(0, 0), "0");
}

// A credential id is a name in the user namespace: even a key that should never be in the
// signer's token, under an infrastructure key's id, is out of CreateKey's reach (before, a
// CreateKey with that id found it "left over", destroyed it and made its own).
TEST_F(SignerTest, CreateKeyNeverTouchesAnInfrastructureKey) {
  auto infrastructure = hsm("signer").GenerateKeyPair("qsign-sad-1", hsm::KeyType::kEcP256);
  ASSERT_TRUE(infrastructure.ok()) << infrastructure.status();
  pb::CredentialInfo created;
  grpc::Status s = CreateKey("qsign-sad-1", "mallory", &created);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_NE(created.public_key_spki(), infrastructure->spki_der);
  auto still = hsm("signer").GetPublicKey("qsign-sad-1");
  ASSERT_TRUE(still.ok()) << "CreateKey destroyed an infrastructure key: " << still.status();
  EXPECT_EQ(still->spki_der, infrastructure->spki_der);
  auto user = hsm("signer").GetPublicKey(UserKeyId("qsign-sad-1"));
  ASSERT_TRUE(user.ok()) << user.status();
  EXPECT_EQ(user->spki_der, created.public_key_spki());
  // Destroying the credential destroys its own key only.
  pb::DestroyKeyRequest destroy;
  destroy.set_credential_id("qsign-sad-1");
  grpc::ClientContext ctx2;
  ctx2.AddMetadata("authorization", kLifecycle);
  ASSERT_TRUE(stub_->DestroyKey(&ctx2, destroy, &created).ok());
  EXPECT_TRUE(hsm("signer").GetPublicKey("qsign-sad-1").ok());
  EXPECT_EQ(hsm("signer").GetPublicKey(UserKeyId("qsign-sad-1")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(UserKeyId("cred-1"), "user/cred-1");
}

TEST_F(SignerTest, RetriedCreateKeyReturnsTheSameKey) {
  pb::CreateKeyRequest create;
  create.set_credential_id("cred-1");
  create.set_account_id("alice");
  create.set_key_algorithm(pb::KEY_ALGORITHM_EC_P256);
  pb::CredentialInfo first, second;
  grpc::ClientContext c1, c2, c3;
  c1.AddMetadata("authorization", kLifecycle);
  ASSERT_TRUE(stub_->CreateKey(&c1, create, &first).ok());
  c2.AddMetadata("authorization", kLifecycle);
  ASSERT_TRUE(stub_->CreateKey(&c2, create, &second).ok());
  EXPECT_EQ(first.public_key_spki(), second.public_key_spki());
  create.set_account_id("mallory");
  pb::CredentialInfo third;
  c3.AddMetadata("authorization", kLifecycle);
  EXPECT_EQ(stub_->CreateKey(&c3, create, &third).error_code(), grpc::StatusCode::ALREADY_EXISTS);
}

TEST_F(SignerTest, OrphanKeysAreDestroyedAtTheSecondSweepAndAudited) {
  // A CreateKey that died between the key generation and its record left "user/cred-lost".
  ASSERT_TRUE(hsm("signer").GenerateKeyPair(UserKeyId("cred-lost"), hsm::KeyType::kEcP256).ok());
  pb::CredentialInfo kept;
  ASSERT_TRUE(CreateKey("cred-kept", "alice", &kept).ok());
  // Infrastructure keys are outside the user namespace: never swept.
  ASSERT_TRUE(hsm("signer").GenerateKeyPair("qsign-other", hsm::KeyType::kEcP256).ok());
  auto listed = hsm("signer").ListKeyIds("user/");
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_THAT(*listed, ::testing::ElementsAre("user/cred-kept", "user/cred-lost"));

  // First sweep: only suspected (it could be a CreateKey in flight).
  auto first = signer_->SweepOrphanKeys();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first, 0);
  EXPECT_TRUE(hsm("signer").GetPublicKey(UserKeyId("cred-lost")).ok());
  auto second = signer_->SweepOrphanKeys();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(*second, 1);
  EXPECT_EQ(hsm("signer").GetPublicKey(UserKeyId("cred-lost")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(hsm("signer").GetPublicKey(UserKeyId("cred-kept")).ok());
  EXPECT_TRUE(hsm("signer").GetPublicKey("qsign-other").ok());
  auto audited = pool().Exec(
      "SELECT count(*) FROM signer.audit_log WHERE action = 'signer.destroy_orphan_key' AND "
      "target = 'cred-lost'");
  ASSERT_TRUE(audited.ok()) << audited.status();
  EXPECT_EQ(audited->GetInt64(0, 0).value_or(0), 1);
  // Nothing left to do.
  auto third = signer_->SweepOrphanKeys();
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(*third, 0);
}

// The signer's token as a plain PKCS#11 config, for checks that read the token directly.
hsm::Pkcs11Config SignerTokenConfig(qsign::testing::ServiceEnv& env) {
  hsm::Pkcs11Config config{.module_path = env.TokensConfig().module_path};
  for (const hsm::Pkcs11TokenConfig& t : env.TokensConfig().tokens) {
    if (t.role != "signer") continue;
    config.token_label = t.token_label;
    config.pin_file = t.pin_file;
  }
  return config;
}

TEST_F(SignerTest, PoolKeysAreHandedOutOnceAndBecomeTheCredentialsKeys) {
  KeyPool key_pool(&hsm("signer"), &clock_, {.size = 2});
  ASSERT_TRUE(key_pool.FillNow().ok());
  auto pool_ids = hsm("signer").ListKeyIds(KeyPool::Prefix());
  ASSERT_TRUE(pool_ids.ok()) << pool_ids.status();
  ASSERT_EQ(pool_ids->size(), 2u);
  std::set<std::string> pool_spkis;
  for (const std::string& id : *pool_ids) {
    auto pub = hsm("signer").GetPublicKey(id);
    ASSERT_TRUE(pub.ok()) << pub.status();
    pool_spkis.insert(pub->spki_der);
  }
  Signer pooled(counting_.get(), store_.get(), verifier_.get(), &clock_, {}, &key_pool);
  const Actor lifecycle{.name = "lifecycle"};
  std::set<std::string> spkis;
  for (const char* id : {"cred-p1", "cred-p2", "cred-p3"}) {
    auto cred = pooled.CreateKey(id, "alice", hsm::KeyType::kEcP256, lifecycle);
    ASSERT_TRUE(cred.ok()) << cred.status();
    // The credential's key is the key in the HSM under the user's key id.
    auto in_token = hsm("signer").GetPublicKey(UserKeyId(id));
    ASSERT_TRUE(in_token.ok()) << in_token.status();
    EXPECT_EQ(in_token->spki_der, cred->public_key_spki);
    spkis.insert(cred->public_key_spki);
  }
  // Three different keys: the two pool keys (each once), then one generated on the spot.
  EXPECT_EQ(spkis.size(), 3u);
  int from_pool = 0;
  for (const std::string& spki : spkis) from_pool += pool_spkis.count(spki);
  EXPECT_EQ(from_pool, 2);
  EXPECT_EQ(key_pool.Ready(hsm::KeyType::kEcP256), 0);
  auto left = hsm("signer").ListKeyIds(KeyPool::Prefix());
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty());
  // A retried CreateKey finds its credential and takes nothing from the pool.
  ASSERT_TRUE(key_pool.FillNow().ok());
  auto again = pooled.CreateKey("cred-p1", "alice", hsm::KeyType::kEcP256, lifecycle);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(spkis.contains(again->public_key_spki));
  EXPECT_EQ(key_pool.Ready(hsm::KeyType::kEcP256), 2);
}

TEST_F(SignerTest, PoolKeysAreSensitiveNeverExtractableAndSignOnly) {
  KeyPool key_pool(&hsm("signer"), &clock_, {.size = 3});
  ASSERT_TRUE(key_pool.FillNow().ok());
  Signer pooled(counting_.get(), store_.get(), verifier_.get(), &clock_, {}, &key_pool);
  ASSERT_TRUE(
      pooled.CreateKey("cred-p1", "alice", hsm::KeyType::kEcP256, {.name = "lifecycle"}).ok());
  // What the token itself says about every private key in it: the pool's and the renamed one.
  auto census = hsm::testing::CountPrivateKeys(SignerTokenConfig(env()));
  ASSERT_TRUE(census.ok()) << census.status();
  EXPECT_EQ(census->total, 3);
  EXPECT_TRUE(hsm::testing::AllSensitiveSignOnly(*census))
      << census->sensitive << " sensitive, " << census->always_sensitive << " always sensitive, "
      << census->never_extractable << " never extractable, " << census->extractable
      << " extractable, " << census->can_decrypt << " can decrypt";
}

TEST_F(SignerTest, TakeNeverHandsOutAKeyTwiceAcrossThreads) {
  KeyPool key_pool(&hsm("signer"), &clock_, {.size = 12});
  ASSERT_TRUE(key_pool.FillNow().ok());
  std::vector<std::string> taken[4];
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      while (auto key = key_pool.Take(hsm::KeyType::kEcP256)) taken[t].push_back(key->key_id);
    });
  }
  for (auto& t : threads) t.join();
  std::set<std::string> distinct;
  size_t total = 0;
  for (const auto& list : taken) {
    total += list.size();
    distinct.insert(list.begin(), list.end());
  }
  EXPECT_EQ(total, 12u);
  EXPECT_EQ(distinct.size(), 12u);
  for (const std::string& id : distinct) (void)hsm("signer").DestroyKeyPair(id);
}

TEST_F(SignerTest, PoolKeysPastTheirAgeAreNeverHandedOutAndStopDestroysTheRest) {
  KeyPool key_pool(&hsm("signer"), &clock_, {.size = 2, .max_age = absl::Hours(1)});
  ASSERT_TRUE(key_pool.FillNow().ok());
  clock_.Advance(absl::Minutes(61));
  EXPECT_FALSE(key_pool.Take(hsm::KeyType::kEcP256).has_value());
  auto left = hsm("signer").ListKeyIds(KeyPool::Prefix());
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty());  // Destroyed, not just skipped.
  ASSERT_TRUE(key_pool.FillNow().ok());
  key_pool.Stop();
  left = hsm("signer").ListKeyIds(KeyPool::Prefix());
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty());
}

TEST_F(SignerTest, TheSweepKeepsLivePoolKeysAndDestroysLeftoversAndTrueOrphans) {
  KeyPool key_pool(&hsm("signer"), &clock_, {.size = 2, .max_age = absl::Hours(1)});
  ASSERT_TRUE(key_pool.FillNow().ok());
  auto live = hsm("signer").ListKeyIds(KeyPool::Prefix());
  ASSERT_TRUE(live.ok());
  ASSERT_EQ(live->size(), 2u);
  // Left by a process that died 3 hours ago with its pool, and a CreateKey that died too.
  const std::string leftover =
      absl::StrCat("pool/EC_P256/", absl::ToUnixSeconds(clock_.Now() - absl::Hours(3)), "/00aa");
  ASSERT_TRUE(hsm("signer").GenerateKeyPair(leftover, hsm::KeyType::kEcP256).ok());
  ASSERT_TRUE(hsm("signer").GenerateKeyPair(UserKeyId("cred-lost"), hsm::KeyType::kEcP256).ok());
  Signer pooled(counting_.get(), store_.get(), verifier_.get(), &clock_, {}, &key_pool);
  auto first = pooled.SweepOrphanKeys();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first, 1);  // The leftover; the user key only at the second sweep.
  auto second = pooled.SweepOrphanKeys();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(*second, 1);
  auto after = hsm("signer").ListKeyIds(KeyPool::Prefix());
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*after, *live);
  EXPECT_EQ(hsm("signer").GetPublicKey(UserKeyId("cred-lost")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(key_pool.Ready(hsm::KeyType::kEcP256), 2);
  auto audited = pool().Exec(
      "SELECT count(*) FROM signer.audit_log WHERE action = 'signer.destroy_orphan_key' AND "
      "target = $1",
      {db::Param::Text(leftover)});
  ASSERT_TRUE(audited.ok()) << audited.status();
  EXPECT_EQ(audited->GetInt64(0, 0).value_or(0), 1);
}

TEST_F(SignerTest, SetCertificateRefusesACertificateForAnotherKey) {
  pb::CredentialInfo a = ActiveCredential("cred-a", "alice");
  pb::CreateKeyRequest create;
  create.set_credential_id("cred-b");
  create.set_account_id("alice");
  create.set_key_algorithm(pb::KEY_ALGORITHM_EC_P256);
  pb::CredentialInfo b;
  grpc::ClientContext c1, c2;
  c1.AddMetadata("authorization", kLifecycle);
  ASSERT_TRUE(stub_->CreateKey(&c1, create, &b).ok());
  pb::SetCertificateRequest set;
  set.set_credential_id("cred-b");
  set.add_certificate_chain_der(a.certificate_chain_der(0));
  pb::CredentialInfo out;
  c2.AddMetadata("authorization", kLifecycle);
  grpc::Status s = stub_->SetCertificate(&c2, set, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("not the credential's key"));
}

TEST_F(SignerTest, SignsABatchOfHashesInOrderAndEachVerifies) {
  pb::CredentialInfo cred = ActiveCredential("cred-1", "alice");
  std::vector<std::string> hashes = {Hash('a'), Hash('b'), Hash('c')};
  pb::SignHashResponse resp;
  grpc::Status s = Sign(Request("cred-1", hashes, Sad("alice", "cred-1", hashes)), &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.signatures_size(), 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(VerifyDigest(cred.public_key_spki(), hashes[i], resp.signatures(i), EVP_sha256()))
        << i;
  }
  // In input order: signature 0 is not a signature over hash 1.
  EXPECT_FALSE(VerifyDigest(cred.public_key_spki(), hashes[1], resp.signatures(0), EVP_sha256()));
  EXPECT_EQ(counting_->sign_calls.load(), 1);
}

TEST_F(SignerTest, SignsASubsetOfTheApprovedHashes) {
  pb::CredentialInfo cred = ActiveCredential("cred-1", "alice");
  std::string sad = Sad("alice", "cred-1", {Hash('a'), Hash('b'), Hash('c')});
  pb::SignHashResponse resp;
  ASSERT_TRUE(Sign(Request("cred-1", {Hash('b')}, sad), &resp).ok());
  ASSERT_EQ(resp.signatures_size(), 1);
  EXPECT_TRUE(VerifyDigest(cred.public_key_spki(), Hash('b'), resp.signatures(0), EVP_sha256()));
}

TEST_F(SignerTest, EcdsaRawSignatureIsRAndS) {
  pb::CredentialInfo cred = ActiveCredential("cred-1", "alice");
  auto req = Request("cred-1", {Hash('a')}, Sad("alice", "cred-1", {Hash('a')}));
  req.set_ecdsa_raw_signature(true);
  pb::SignHashResponse resp;
  ASSERT_TRUE(Sign(req, &resp).ok());
  ASSERT_EQ(resp.signatures(0).size(), 64u);
  EXPECT_TRUE(VerifyDigest(cred.public_key_spki(), Hash('a'),
                           ::qsign::testing::EcdsaRawToDer(resp.signatures(0)), EVP_sha256()));
}

TEST_F(SignerTest, P384WithSha384) {
  pb::CredentialInfo cred = ActiveCredential("cred-384", "alice", pb::KEY_ALGORITHM_EC_P384);
  EXPECT_EQ(cred.key_bits(), 384u);
  std::string h = Hash('q', 48);
  pb::SignHashResponse resp;
  ASSERT_TRUE(Sign(Request("cred-384", {h}, Sad("alice", "cred-384", {h}, 0, oid::kSha384),
                           kEcdsaSha384, oid::kSha384),
                   &resp)
                  .ok());
  EXPECT_TRUE(VerifyDigest(cred.public_key_spki(), h, resp.signatures(0), EVP_sha384()));
}

TEST_F(SignerTest, Rsa3072Pkcs1AndPss) {
  pb::CredentialInfo cred = ActiveCredential("cred-rsa", "alice", pb::KEY_ALGORITHM_RSA_3072);
  EXPECT_EQ(cred.key_bits(), 3072u);
  pb::SignHashResponse pkcs1, pss;
  ASSERT_TRUE(
      Sign(Request("cred-rsa", {Hash('r')}, Sad("alice", "cred-rsa", {Hash('r')}), kRsaSha256),
           &pkcs1)
          .ok());
  EXPECT_EQ(pkcs1.signatures(0).size(), 384u);
  EXPECT_TRUE(VerifyDigest(cred.public_key_spki(), Hash('r'), pkcs1.signatures(0), EVP_sha256()));
  grpc::Status s =
      Sign(Request("cred-rsa", {Hash('p')}, Sad("alice", "cred-rsa", {Hash('p')}), kRsaPss), &pss);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(VerifyDigest(cred.public_key_spki(), Hash('p'), pss.signatures(0), EVP_sha256(),
                           RSA_PKCS1_PSS_PADDING));
  // An ECDSA algorithm does not fit an RSA key.
  ExpectRefused(Request("cred-rsa", {Hash('e')}, Sad("alice", "cred-rsa", {Hash('e')})),
                grpc::StatusCode::INVALID_ARGUMENT, "does not fit the credential's RSA_3072 key");
}

TEST_F(SignerTest, RefusesRequestWithoutSad) {
  ActiveCredential("cred-1", "alice");
  ExpectRefused(Request("cred-1", {Hash('a')}, ""), grpc::StatusCode::INVALID_ARGUMENT,
                "sad: required");
}

TEST_F(SignerTest, RefusesSadWithInvalidSignature) {
  ActiveCredential("cred-1", "alice");
  std::string raw;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(Sad("alice", "cred-1", {Hash('a')}), &raw));
  pb::SignedSad signed_sad;
  ASSERT_TRUE(signed_sad.ParseFromString(raw));
  std::string sig = signed_sad.signature();
  sig[sig.size() - 1] ^= 0x01;
  signed_sad.set_signature(sig);
  ExpectRefused(
      Request("cred-1", {Hash('a')}, absl::WebSafeBase64Escape(signed_sad.SerializeAsString())),
      grpc::StatusCode::PERMISSION_DENIED, "sad: signature does not verify");
  ExpectRefused(Request("cred-1", {Hash('a')}, "garbage!"), grpc::StatusCode::INVALID_ARGUMENT,
                "sad: not a SAD");
}

TEST_F(SignerTest, RefusesExpiredSad) {
  ActiveCredential("cred-1", "alice");
  std::string sad = Sad("alice", "cred-1", {Hash('a')});
  clock_.Advance(consent::kDefaultSadLifetime);
  ExpectRefused(Request("cred-1", {Hash('a')}, sad), grpc::StatusCode::PERMISSION_DENIED,
                "sad: expired");
}

TEST_F(SignerTest, RefusesSadForAnotherCredentialOrAccount) {
  ActiveCredential("cred-1", "alice");
  ActiveCredential("cred-2", "bob");
  ExpectRefused(Request("cred-1", {Hash('a')}, Sad("bob", "cred-2", {Hash('a')})),
                grpc::StatusCode::PERMISSION_DENIED, "sad: issued for another credential");
  // A SAD naming alice's credential but minted for bob's account.
  ExpectRefused(Request("cred-1", {Hash('a')}, Sad("bob", "cred-1", {Hash('a')})),
                grpc::StatusCode::PERMISSION_DENIED, "sad: issued for another account");
}

TEST_F(SignerTest, RefusesHashNotInSad) {
  ActiveCredential("cred-1", "alice");
  ExpectRefused(Request("cred-1", {Hash('b')}, Sad("alice", "cred-1", {Hash('a')})),
                grpc::StatusCode::PERMISSION_DENIED, "sad: hashes[0] is not one the user approved");
}

TEST_F(SignerTest, RefusesMoreHashesThanAuthorized) {
  ActiveCredential("cred-1", "alice");
  ExpectRefused(
      Request("cred-1", {Hash('a'), Hash('b')}, Sad("alice", "cred-1", {Hash('a'), Hash('b')}, 1)),
      grpc::StatusCode::PERMISSION_DENIED, "sad: authorizes 1 signatures, 2 requested");
}

TEST_F(SignerTest, SadIsSingleUseAcrossReplicas) {
  ActiveCredential("cred-1", "alice");
  std::string sad = Sad("alice", "cred-1", {Hash('a'), Hash('b')});
  pb::SignHashResponse resp;
  ASSERT_TRUE(Sign(Request("cred-1", {Hash('a')}, sad), &resp).ok());
  ExpectRefused(Request("cred-1", {Hash('b')}, sad), grpc::StatusCode::FAILED_PRECONDITION,
                "sad: already used");

  // A second replica: its own HSM session pool, DB pool, store and server, same database.
  auto pool = NewPool(2);
  ASSERT_TRUE(pool.ok());
  auto store = NewPostgresSignerStore(pool->get());
  Signer replica(counting_.get(), store.get(), verifier_.get(), &clock_, SignerConfig{});
  int before = counting_->sign_calls.load();
  auto result = replica.SignHash({.credential_id = "cred-1",
                                  .hash_algorithm_oid = oid::kSha256,
                                  .sign_algorithm_oid = kEcdsaSha256,
                                  .hashes = {Hash('b')},
                                  .sad = sad});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(result.status().message(), "sad: already used");
  EXPECT_EQ(counting_->sign_calls.load(), before);
}

TEST_F(SignerTest, MetricsCountHashesSignedAndSadRefusalsByReason) {
  ActiveCredential("cred-1", "alice");
  const std::string signed_ec = "qsign_signer_signatures_total{key_type=\"EC_P256\"}";
  const auto refused = [](const char* reason) {
    return absl::StrCat("qsign_signer_sad_refusals_total{reason=\"", reason, "\"}");
  };
  const double signed_before = MetricValue(signed_ec);
  const double invalid_before = MetricValue(refused("invalid"));
  const double mismatch_before = MetricValue(refused("mismatch"));
  const double used_before = MetricValue(refused("used"));

  std::string sad = Sad("alice", "cred-1", {Hash('a'), Hash('b'), Hash('c')});
  pb::SignHashResponse resp;
  ASSERT_TRUE(Sign(Request("cred-1", {Hash('a'), Hash('b')}, sad), &resp).ok());
  ExpectRefused(Request("cred-1", {Hash('c')}, sad), grpc::StatusCode::FAILED_PRECONDITION,
                "sad: already used");
  ExpectRefused(Request("cred-1", {Hash('a')}, "garbage!"), grpc::StatusCode::INVALID_ARGUMENT,
                "sad: not a SAD");
  ExpectRefused(Request("cred-1", {Hash('d')}, Sad("alice", "cred-1", {Hash('e')})),
                grpc::StatusCode::PERMISSION_DENIED, "sad: hashes[0]");

  EXPECT_EQ(MetricValue(signed_ec) - signed_before, 2);
  EXPECT_EQ(MetricValue(refused("invalid")) - invalid_before, 1);
  EXPECT_EQ(MetricValue(refused("mismatch")) - mismatch_before, 1);
  EXPECT_EQ(MetricValue(refused("used")) - used_before, 1);
  // The HSM's own view of the same signatures.
  EXPECT_NE(metrics::Registry::Global().Render().find(
                "qsign_hsm_sign_duration_seconds_count{key_type=\"EC_P256\",scheme=\"ECDSA\"}"),
            std::string::npos);
}

TEST_F(SignerTest, ConcurrentUsesOfOneSadSignExactlyOnce) {
  ActiveCredential("cred-1", "alice");
  ActiveCredential("cred-2", "bob");
  const std::string contested = Sad("alice", "cred-1", {Hash('a')});
  std::vector<std::string> fresh;
  for (int i = 0; i < 8; ++i) fresh.push_back(Sad("bob", "cred-2", {Hash('0' + i)}));
  // 8 threads race on one SAD while 8 others use their own: the group commit must record the
  // contested SAD once and every fresh one once.
  std::atomic<int> contested_ok{0}, contested_used{0}, fresh_ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      pb::SignHashResponse resp;
      grpc::Status s = Sign(Request("cred-1", {Hash('a')}, contested), &resp);
      if (s.ok()) ++contested_ok;
      if (s.error_message() == "sad: already used") ++contested_used;
    });
    threads.emplace_back([&, i] {
      pb::SignHashResponse resp;
      if (Sign(Request("cred-2", {Hash('0' + i)}, fresh[i]), &resp).ok()) ++fresh_ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(contested_ok.load(), 1);
  EXPECT_EQ(contested_used.load(), 7);
  EXPECT_EQ(fresh_ok.load(), 8);
  auto rows = pool().Exec("SELECT count(*) FROM signer.sad_uses");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->Get(0, 0), "9");
}

TEST_F(SignerTest, ARefusedRequestDoesNotUseUpTheSad) {
  ActiveCredential("cred-1", "alice");
  std::string sad = Sad("alice", "cred-1", {Hash('a')});
  ExpectRefused(Request("cred-1", {Hash('a', 31)}, sad), grpc::StatusCode::INVALID_ARGUMENT,
                "hashes[0]: 31 bytes, the hash algorithm needs 32");
  pb::SignHashResponse resp;
  EXPECT_TRUE(Sign(Request("cred-1", {Hash('a')}, sad), &resp).ok());
}

TEST_F(SignerTest, RefusesMalformedRequests) {
  ActiveCredential("cred-1", "alice");
  std::string sad = Sad("alice", "cred-1", {Hash('a')});
  ExpectRefused(Request("cred-1", {}, sad), grpc::StatusCode::INVALID_ARGUMENT,
                "hashes: at least one hash required");
  ExpectRefused(Request("cred-1", {Hash('a'), Hash('a')}, sad), grpc::StatusCode::INVALID_ARGUMENT,
                "hashes[1]: duplicate");
  std::vector<std::string> nine;
  for (char c = 'a'; c < 'a' + 9; ++c) nine.push_back(Hash(c));
  ExpectRefused(Request("cred-1", nine, sad), grpc::StatusCode::INVALID_ARGUMENT,
                "hashes: at most 8 per request, got 9");
  ExpectRefused(Request("cred-1", {Hash('a')}, sad, kEcdsaSha256, "1.2.3"),
                grpc::StatusCode::INVALID_ARGUMENT, "hash_algorithm_oid: '1.2.3' is not supported");
  ExpectRefused(Request("cred-1", {Hash('a')}, sad, "1.2.3"), grpc::StatusCode::INVALID_ARGUMENT,
                "sign_algorithm_oid: '1.2.3' is not supported");
  ExpectRefused(Request("cred-1", {Hash('a')}, sad, kEcdsaSha384),
                grpc::StatusCode::INVALID_ARGUMENT, "its hash differs from hash_algorithm_oid");
  ExpectRefused(Request("cred-1", {Hash('a')}, sad, kRsaSha256), grpc::StatusCode::INVALID_ARGUMENT,
                "does not fit the credential's EC_P256 key");
  ExpectRefused(Request("", {Hash('a')}, sad), grpc::StatusCode::INVALID_ARGUMENT,
                "credential_id: required");
  ExpectRefused(Request("no such/cred", {Hash('a')}, sad), grpc::StatusCode::INVALID_ARGUMENT,
                "credential_id: only letters");
  // None of these used the SAD up.
  pb::SignHashResponse resp;
  EXPECT_TRUE(Sign(Request("cred-1", {Hash('a')}, sad), &resp).ok());
}

TEST_F(SignerTest, RefusesUnknownAndPendingCredentials) {
  ExpectRefused(Request("cred-x", {Hash('a')}, Sad("alice", "cred-x", {Hash('a')})),
                grpc::StatusCode::NOT_FOUND, "credential_id: no credential cred-x");
  pb::CreateKeyRequest create;
  create.set_credential_id("cred-p");
  create.set_account_id("alice");
  create.set_key_algorithm(pb::KEY_ALGORITHM_EC_P256);
  pb::CredentialInfo created;
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", kLifecycle);
  ASSERT_TRUE(stub_->CreateKey(&ctx, create, &created).ok());
  ExpectRefused(Request("cred-p", {Hash('a')}, Sad("alice", "cred-p", {Hash('a')})),
                grpc::StatusCode::FAILED_PRECONDITION, "credential is PENDING");
}

TEST_F(SignerTest, DestroyedKeyNeverSignsAgain) {
  ActiveCredential("cred-1", "alice");
  pb::DestroyKeyRequest destroy;
  destroy.set_credential_id("cred-1");
  pb::CredentialInfo out;
  grpc::ClientContext c1, c2;
  c1.AddMetadata("authorization", kLifecycle);
  ASSERT_TRUE(stub_->DestroyKey(&c1, destroy, &out).ok());
  EXPECT_EQ(out.status(), pb::CREDENTIAL_STATUS_DISABLED);
  EXPECT_EQ(hsm("signer").GetPublicKey(UserKeyId("cred-1")).status().code(),
            absl::StatusCode::kNotFound);
  // Idempotent.
  c2.AddMetadata("authorization", kLifecycle);
  EXPECT_TRUE(stub_->DestroyKey(&c2, destroy, &out).ok());
  ExpectRefused(Request("cred-1", {Hash('a')}, Sad("alice", "cred-1", {Hash('a')})),
                grpc::StatusCode::FAILED_PRECONDITION, "credential is DISABLED");
}

TEST_F(SignerTest, AdministrativeActsAreInTheAuditChain) {
  ActiveCredential("cred-1", "alice");
  pb::DestroyKeyRequest destroy;
  destroy.set_credential_id("cred-1");
  pb::CredentialInfo out;
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", kLifecycle);
  ASSERT_TRUE(stub_->DestroyKey(&ctx, destroy, &out).ok());
  auto rows = pool().Exec("SELECT action, target FROM signer.audit_log ORDER BY seq");
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->rows(), 4);
  EXPECT_EQ(rows->Get(0, 0), "signer.create_key");
  EXPECT_EQ(rows->Get(1, 0), "signer.set_certificate");
  EXPECT_EQ(rows->Get(2, 0), "signer.disable");
  EXPECT_EQ(rows->Get(3, 0), "signer.destroy_key");
  EXPECT_EQ(rows->Get(3, 1), "cred-1");
  EXPECT_TRUE(db::VerifyAuditChain(pool(), "signer").ok());
}

// --- Validity: a certificate that ended (or has not begun) cannot sign ---------------------------

TEST_F(SignerTest, RefusesToSignOutsideTheCertificatesValidity) {
  pb::CredentialInfo info = ActiveCredential("cred-1", "alice");
  const absl::Time valid_from = absl::FromUnixSeconds(info.valid_from().seconds());
  const absl::Time valid_to = absl::FromUnixSeconds(info.valid_to().seconds());
  pb::SignHashResponse resp;

  // notAfter itself is still inside (RFC 5280: inclusive).
  clock_.Set(valid_to);
  ASSERT_TRUE(
      Sign(Request("cred-1", {Hash('a')}, Sad("alice", "cred-1", {Hash('a')})), &resp).ok());

  clock_.Set(valid_to + absl::Seconds(1));
  auto expired = Request("cred-1", {Hash('b')}, Sad("alice", "cred-1", {Hash('b')}));
  ExpectRefused(expired, grpc::StatusCode::FAILED_PRECONDITION,
                "credential_id: credential cred-1 expired at ");
  grpc::ClientContext ctx;
  grpc::Status s = stub_->SignHash(&ctx, expired, &resp);
  EXPECT_EQ(RefusalReason(FromGrpcStatus(s)), pb::Refusal::CREDENTIAL_EXPIRED);
  EXPECT_THAT(s.error_message(), HasSubstr("it signs no more"));

  // Callers see it expired at once (consent's Authorize and the CSC gateway read this).
  pb::GetCredentialInfoRequest get;
  get.set_credential_id("cred-1");
  pb::CredentialInfo now_info;
  grpc::ClientContext ctx2;
  ASSERT_TRUE(stub_->GetCredentialInfo(&ctx2, get, &now_info).ok());
  EXPECT_EQ(now_info.status(), pb::CREDENTIAL_STATUS_EXPIRED);
  pb::ListCredentialsRequest list;
  list.set_account_id("alice");
  list.set_only_active(true);
  pb::ListCredentialsResponse listed;
  grpc::ClientContext ctx3;
  ASSERT_TRUE(stub_->ListCredentials(&ctx3, list, &listed).ok());
  EXPECT_EQ(listed.credentials_size(), 0);

  clock_.Set(valid_from - absl::Seconds(1));
  auto early = Request("cred-1", {Hash('c')}, Sad("alice", "cred-1", {Hash('c')}));
  ExpectRefused(early, grpc::StatusCode::FAILED_PRECONDITION, "is not yet valid");
  grpc::ClientContext ctx4;
  EXPECT_EQ(RefusalReason(FromGrpcStatus(stub_->SignHash(&ctx4, early, &resp))),
            pb::Refusal::CREDENTIAL_NOT_YET_VALID);
}

TEST_F(SignerTest, TheSingleUseStatementRefusesAnExpiredCredentialToo) {
  // The check beside the SAD journal holds on its own (another replica's cache, a stale one).
  pb::CredentialInfo info = ActiveCredential("cred-1", "alice");
  const absl::Time valid_to = absl::FromUnixSeconds(info.valid_to().seconds());
  auto s = store_->ConsumeSad({.sad_id = "sad-after-expiry",
                               .credential_id = "cred-1",
                               .account_id = "alice",
                               .consent_request_id = "req-1",
                               .num_hashes = 1,
                               .used_at = valid_to + absl::Seconds(1),
                               .sad_expires_at = valid_to + absl::Minutes(5),
                               .caller = "test"});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(RefusalReason(s), pb::Refusal::CREDENTIAL_EXPIRED);
  auto rows = pool().Exec("SELECT 1 FROM signer.sad_uses");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->rows(), 0);
}

TEST_F(SignerTest, DisableCredentialStopsSigningAtOnceAndKeepsTheKey) {
  ActiveCredential("cred-1", "alice");
  pb::CredentialInfo out;
  ASSERT_TRUE(Disable("cred-1", &out).ok());
  EXPECT_EQ(out.status(), pb::CREDENTIAL_STATUS_DISABLED);
  EXPECT_TRUE(hsm("signer").GetPublicKey(UserKeyId("cred-1")).ok());
  ExpectRefused(Request("cred-1", {Hash('a')}, Sad("alice", "cred-1", {Hash('a')})),
                grpc::StatusCode::FAILED_PRECONDITION, "credential is DISABLED");
  EXPECT_TRUE(Disable("cred-1", &out).ok());  // Idempotent.
  EXPECT_EQ(Disable("cred-none", &out).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(SignerTest, AnExpiredCredentialsKeyIsDestroyedOnlyAfterNotAfter) {
  pb::CredentialInfo info = ActiveCredential("cred-1", "alice");
  pb::CredentialInfo out;
  grpc::Status s = DestroyExpired("cred-1", &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("has not expired"));
  EXPECT_TRUE(hsm("signer").GetPublicKey(UserKeyId("cred-1")).ok());

  clock_.Set(absl::FromUnixSeconds(info.valid_to().seconds()) + absl::Seconds(1));
  ASSERT_TRUE(DestroyExpired("cred-1", &out).ok());
  EXPECT_EQ(out.status(), pb::CREDENTIAL_STATUS_EXPIRED);
  EXPECT_EQ(hsm("signer").GetPublicKey(UserKeyId("cred-1")).status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(DestroyExpired("cred-1", &out).ok());  // Idempotent.
  auto rows = pool().Exec("SELECT action FROM signer.audit_log ORDER BY seq");
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->rows(), 4);
  EXPECT_EQ(rows->Get(2, 0), "signer.expire");
  EXPECT_EQ(rows->Get(3, 0), "signer.destroy_key");
  EXPECT_TRUE(db::VerifyAuditChain(pool(), "signer").ok());
}

TEST_F(SignerTest, EverySignatureIsJournaledWithItsSad) {
  ActiveCredential("cred-1", "alice");
  pb::SignHashResponse resp;
  ASSERT_TRUE(Sign(Request("cred-1", {Hash('a'), Hash('b')},
                           Sad("alice", "cred-1", {Hash('a'), Hash('b')})),
                   &resp)
                  .ok());
  auto rows = pool().Exec(
      "SELECT account_id, num_hashes, consent_request_id FROM signer.sad_uses "
      "WHERE credential_id = 'cred-1'");
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->rows(), 1);
  EXPECT_EQ(rows->Get(0, 0), "alice");
  EXPECT_EQ(rows->Get(0, 1), "2");
  EXPECT_EQ(rows->Get(0, 2), "req-1");
}

// ---- The HSM failing calls (hsm/'s function-list patch): errors are answered, and nothing is
// recorded as done that the HSM did not do. ----

// The signer on its token with a faulty module (hsm/testing/faulty_hsm.h; the only module user
// of this process: no other token is opened, the SAD key lives in the same token).
class SignerHsmFaultTest : public SignerTest {
 protected:
  SignerHsmFaultTest() : SignerTest({.pool_size = 8, .hsm_sessions = 0}) {}

  void SetUp() override {
    ServiceTest::SetUp();
    if (HasFatalFailure()) return;
    for (const hsm::Pkcs11TokenConfig& t : env().TokensConfig(4).tokens) {
      if (t.role != "signer") continue;
      auto patched =
          hsm::testing::NewFaultyPkcs11Hsm({.module_path = env().TokensConfig().module_path,
                                            .token_label = t.token_label,
                                            .pin_file = t.pin_file,
                                            // More sessions than the bound: see
                                            // ConcurrentCallsSignOnTwoThreadsPerCpuInSoftHsm2.
                                            .session_pool_size = SigningBound() + 4},
                                           &faults_);
      ASSERT_TRUE(patched.ok()) << patched.status();
      patched_ = *std::move(patched);
    }
    ASSERT_NE(patched_, nullptr);
    StartSigner(SignerConfig{.max_batch = 8});
  }
  hsm::Hsm& SignerToken() override { return *patched_; }
  hsm::Hsm& SadToken() override { return *patched_; }

  bool Journaled(const std::string& sad) {
    auto decoded = verifier_->Verify(sad, clock_.Now());
    EXPECT_TRUE(decoded.ok()) << decoded.status();
    if (!decoded.ok()) return false;
    auto rows = pool().Exec("SELECT 1 FROM signer.sad_uses WHERE sad_id = $1",
                            {db::Param::Bytes(decoded->sad_id)});
    EXPECT_TRUE(rows.ok()) << rows.status();
    return rows.ok() && rows->rows() == 1;
  }

  // hsm/'s bound on threads signing inside SoftHSM2 at once: two a CPU.
  static int SigningBound() {
    return 2 * std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  }

  hsm::testing::HsmFaults faults_;
  std::unique_ptr<hsm::Hsm> patched_;
};

// Many callers at once, more sessions than the bound, a slow C_Sign: every caller gets signatures
// that verify, and SoftHSM2 never has more than two threads a CPU signing inside it (more only
// contend for its locks and caches: docs/PERFORMANCE.md, "Signer at batch 100").
TEST_F(SignerHsmFaultTest, ConcurrentCallsSignOnTwoThreadsPerCpuInSoftHsm2) {
  const int callers = SigningBound() + 4;
  const pb::CredentialInfo cred = ActiveCredential("cred-c", "alice");
  std::vector<pb::SignHashRequest> requests;
  for (int i = 0; i < callers; ++i) {
    const std::vector<std::string> hashes = {Hash(static_cast<char>('a' + i)),
                                             Hash(static_cast<char>('A' + i))};
    requests.push_back(Request("cred-c", hashes, Sad("alice", "cred-c", hashes)));
  }
  faults_.sign_delay_ms = 2;  // Each caller is inside C_Sign long enough to meet the others.
  faults_.max_signing = 0;
  std::vector<pb::SignHashResponse> responses(requests.size());
  std::vector<grpc::Status> statuses(requests.size());
  std::vector<std::thread> threads;
  for (int i = 0; i < callers; ++i) {
    threads.emplace_back([&, i] { statuses[i] = Sign(requests[i], &responses[i]); });
  }
  for (std::thread& t : threads) t.join();
  faults_.sign_delay_ms = 0;
  for (int i = 0; i < callers; ++i) {
    ASSERT_TRUE(statuses[i].ok()) << statuses[i].error_message();
    ASSERT_EQ(responses[i].signatures_size(), 2);
    for (int h = 0; h < 2; ++h) {
      EXPECT_TRUE(VerifyDigest(cred.public_key_spki(), requests[i].hashes(h),
                               responses[i].signatures(h), EVP_sha256()));
    }
  }
  EXPECT_GE(faults_.max_signing, 1);
  EXPECT_LE(faults_.max_signing, SigningBound());
}

TEST_F(SignerHsmFaultTest, FailedSignaturesAreAnsweredAndTheirSadsStayUnused) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 10;
  const pb::CredentialInfo cred = ActiveCredential("cred-f", "alice");
  // SADs first: minting signs in the same (soon failing) token.
  std::vector<pb::SignHashRequest> requests;
  for (int i = 0; i < kThreads * kPerThread; ++i) {
    const std::string h = Hash(static_cast<char>('A' + i));
    requests.push_back(Request("cred-f", {h}, Sad("alice", "cred-f", {h})));
  }
  faults_.sign = true;
  std::vector<std::vector<std::pair<int, grpc::Status>>> outcomes(kThreads);
  std::vector<pb::SignHashResponse> responses(requests.size());
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t * kPerThread; i < (t + 1) * kPerThread; ++i) {
        outcomes[t].emplace_back(i, Sign(requests[i], &responses[i]));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  faults_.sign = false;

  int acknowledged = 0, verified = 0, refused = 0, released = 0, signed_on_retry = 0, lost = 0;
  for (const auto& mine : outcomes) {
    for (const auto& [i, status] : mine) {
      const pb::SignHashRequest& req = requests[i];
      if (status.ok()) {
        ++acknowledged;
        if (responses[i].signatures_size() == 1 &&
            VerifyDigest(cred.public_key_spki(), req.hashes(0), responses[i].signatures(0),
                         EVP_sha256())) {
          ++verified;
        }
        if (!Journaled(req.sad())) ++lost;
        continue;
      }
      ++refused;
      EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
      // Not recorded as used: the relying party sends the same SAD again and gets its signature.
      if (!Journaled(req.sad())) ++released;
      pb::SignHashResponse again;
      grpc::Status s = Sign(req, &again);
      if (s.ok() && again.signatures_size() == 1 &&
          VerifyDigest(cred.public_key_spki(), req.hashes(0), again.signatures(0), EVP_sha256())) {
        ++signed_on_retry;
      }
    }
  }
  EXPECT_GT(refused, 0) << "the patched module failed nothing";
  EXPECT_GT(acknowledged, 0);
  EXPECT_EQ(verified, acknowledged);
  EXPECT_EQ(released, refused);
  EXPECT_EQ(signed_on_retry, refused);
  EXPECT_EQ(lost, 0);
  std::cout << "[ counts   ] HSM failing C_Sign: acknowledged=" << acknowledged
            << " verified=" << verified << " refused=" << refused
            << " (SAD not recorded used: " << released << ", signed on retry: " << signed_on_retry
            << ") lost=" << lost << "\n";
}

TEST_F(SignerHsmFaultTest, FailedKeyGenerationKeepsNothing) {
  faults_.generate = true;
  pb::CredentialInfo created;
  grpc::Status s = CreateKey("cred-g", "alice", &created);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  auto rows = pool().Exec("SELECT 1 FROM signer.credentials WHERE credential_id = 'cred-g'");
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(rows->rows(), 0);
  auto keys = patched_->ListKeyIds("user/");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_TRUE(keys->empty());
  faults_.generate = false;
  EXPECT_TRUE(CreateKey("cred-g", "alice", &created).ok());
}

TEST_F(SignerHsmFaultTest, FailedKeyDestructionIsNotRecordedAsDone) {
  ActiveCredential("cred-d", "alice");
  faults_.destroy = true;
  pb::DestroyKeyRequest destroy;
  destroy.set_credential_id("cred-d");
  pb::CredentialInfo out;
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", kLifecycle);
    grpc::Status s = stub_->DestroyKey(&ctx, destroy, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  }
  const auto destroyed_at = [&] {
    auto rows = pool().Exec(
        "SELECT status, key_destroyed_at IS NOT NULL FROM signer.credentials "
        "WHERE credential_id = 'cred-d'");
    EXPECT_TRUE(rows.ok() && rows->rows() == 1);
    return rows.ok() && rows->rows() == 1
               ? absl::StrCat(std::string(rows->Get(0, 0)), " ",
                              rows->GetBool(0, 1).value_or(false) ? 1 : 0)
               : std::string("?");
  };
  // Disabled first (it signs no more), but the key is there and not recorded as destroyed.
  EXPECT_EQ(destroyed_at(), "DISABLED 0");
  EXPECT_TRUE(patched_->GetPublicKey(UserKeyId("cred-d")).ok());
  faults_.destroy = false;
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", kLifecycle);
    grpc::Status s = stub_->DestroyKey(&ctx, destroy, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  EXPECT_EQ(destroyed_at(), "DISABLED 1");
  EXPECT_EQ(patched_->GetPublicKey(UserKeyId("cred-d")).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace qsign::signer
