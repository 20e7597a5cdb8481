// Key separation (issue 11, docs/security-model.md): one HSM token per role, each with its own
// PIN. With another role's token and PIN no citizen key can be found or used, and the signer
// trusts only the SAD key pinned in its config, never a key it finds in any token.
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "common/refusal.h"
#include "consent/sad.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsm/hsm.h"
#include "qsign/v1/signer.grpc.pb.h"
#include "tests/testing/service_test.h"
#include "tests/testing/stacks.h"
#include "tests/testing/test_data.h"
#include "tests/testing/test_pki.h"

namespace qsign {
namespace {

namespace pb = ::qsign::v1;
using ::testing::HasSubstr;

constexpr char kSha256[] = "2.16.840.1.101.3.4.2.1";
constexpr char kEcdsaSha256[] = "1.2.840.10045.4.3.2";
constexpr const char* kOtherRoles[] = {"consent", "identity", "lifecycle"};

class KeySeparationTest : public testing::ServiceTest {
 protected:
  // A citizen's credential made and certified through the signer, as lifecycle does.
  pb::CredentialInfo MakeCredential(pb::Signer::Stub& signer, const std::string& id) {
    pb::CreateKeyRequest create;
    create.set_credential_id(id);
    create.set_account_id("alice");
    create.set_key_algorithm(pb::KEY_ALGORITHM_EC_P256);
    pb::CredentialInfo created;
    {
      grpc::ClientContext ctx;
      ctx.AddMetadata("authorization", testing::ServiceAuthorization("lifecycle"));
      grpc::Status s = signer.CreateKey(&ctx, create, &created);
      EXPECT_TRUE(s.ok()) << s.error_message();
    }
    pb::SetCertificateRequest set;
    set.set_credential_id(id);
    set.add_certificate_chain_der(testing::CertificateFor(created.public_key_spki()));
    pb::CredentialInfo active;
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", testing::ServiceAuthorization("lifecycle"));
    grpc::Status s = signer.SetCertificate(&ctx, set, &active);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return active;
  }

  static pb::SignHashRequest Request(const std::string& credential, const std::string& hash,
                                     const std::string& sad) {
    pb::SignHashRequest req;
    req.set_credential_id(credential);
    req.set_hash_algorithm_oid(kSha256);
    req.set_sign_algorithm_oid(kEcdsaSha256);
    req.add_hashes(hash);
    req.set_sad(sad);
    return req;
  }

  // SignHash of `hash` with a SAD minted by `key_id` in `role`'s token.
  grpc::Status SignWithSadFrom(pb::Signer::Stub& signer, const std::string& role,
                               const std::string& key_id, const std::string& credential,
                               const std::string& hash, pb::SignHashResponse* resp) {
    grpc::ClientContext ctx;
    return signer.SignHash(&ctx, Request(credential, hash, SadFrom(role, key_id, credential, hash)),
                           resp);
  }

  // A SAD for `hash` minted with `key_id` in `role`'s token.
  std::string SadFrom(const std::string& role, const std::string& key_id,
                      const std::string& credential, const std::string& hash) {
    auto minter = consent::SadMinter::New(&hsm(role), key_id);
    EXPECT_TRUE(minter.ok()) << minter.status();
    if (!minter.ok()) return "";
    auto sad = (*minter)->Mint({.account_id = "alice",
                                .credential_id = credential,
                                .hash_algorithm_oid = kSha256,
                                .hashes = {hash}},
                               absl::Now());
    EXPECT_TRUE(sad.ok()) << sad.status();
    return sad.ok() ? *sad : "";
  }
};

// Every service in its stack, as qsignd runs them: the keys each makes land in its own token;
// the citizen's key is in the signer's token and nowhere else, and the signer's token holds no
// infrastructure key.
TEST_F(KeySeparationTest, EachRoleSeesOnlyItsOwnKeys) {
  auto stacks =
      testing::Stacks::Start(env(), {.services = {"signer", "consent", "identity", "lifecycle"}});
  ASSERT_TRUE(stacks.ok()) << stacks.status();
  auto signer = pb::Signer::NewStub((*stacks)->channel());
  const pb::CredentialInfo cred = MakeCredential(*signer, "cred-ks");
  ASSERT_EQ(cred.status(), pb::CREDENTIAL_STATUS_ACTIVE);

  // The signer can use it (control).
  const std::string hash(32, '\x11');
  pb::SignHashResponse signed_hash;
  grpc::Status s =
      SignWithSadFrom(*signer, "consent", "qsign-sad-1", "cred-ks", hash, &signed_hash);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(signed_hash.signatures_size(), 1);
  EXPECT_TRUE(testing::VerifyDigestSignature(cred.public_key_spki(), hash,
                                             signed_hash.signatures(0), EVP_sha256()));

  // With any other role's token and PIN, under any id it may have, the key is not there.
  for (const char* role : kOtherRoles) {
    for (const std::string id : {"cred-ks", "user/cred-ks"}) {
      SCOPED_TRACE(absl::StrCat(role, " ", id));
      EXPECT_EQ(hsm(role).GetPublicKey(id).status().code(), absl::StatusCode::kNotFound);
      hsm::SignParams params;
      EXPECT_EQ(hsm(role).SignDigest(id, params, hash).status().code(),
                absl::StatusCode::kNotFound);
      EXPECT_EQ(hsm(role).DestroyKeyPair(id).code(), absl::StatusCode::kNotFound);
    }
  }

  // The infrastructure keys are in their roles' tokens, and not in the signer's.
  const std::vector<std::pair<std::string, std::string>> infrastructure = {
      {"consent", "qsign-sad-1"},       {"identity", "qsign-session-1"},
      {"lifecycle", "qsign-ca-root"},   {"lifecycle", "qsign-ca-qualified"},
      {"lifecycle", "qsign-ca-device"}, {"lifecycle", "qsign-ca-qualified-ocsp"}};
  for (const auto& [role, key] : infrastructure) {
    SCOPED_TRACE(key);
    EXPECT_TRUE(hsm(role).GetPublicKey(key).ok()) << role;
    EXPECT_EQ(hsm("signer").GetPublicKey(key).status().code(), absl::StatusCode::kNotFound);
    for (const char* other : kOtherRoles) {
      if (other == role) continue;
      EXPECT_EQ(hsm(other).GetPublicKey(key).status().code(), absl::StatusCode::kNotFound) << other;
    }
  }
}

// Another role's PIN does not open the signer's token, and the signer's PIN opens no other.
TEST_F(KeySeparationTest, AnotherRolesPinDoesNotOpenATokenOfAnother) {
  const hsm::Pkcs11TokensConfig tokens = env().TokensConfig(1);
  env().CloseHsm();  // SoftHSM2: one module user at a time in this process.
  auto token_of = [&](const std::string& role) {
    for (const hsm::Pkcs11TokenConfig& t : tokens.tokens) {
      if (t.role == role) return t;
    }
    ADD_FAILURE() << "no token of role " << role;
    return hsm::Pkcs11TokenConfig{};
  };
  const hsm::Pkcs11TokenConfig signer = token_of("signer");
  for (const char* role : kOtherRoles) {
    SCOPED_TRACE(role);
    hsm::Pkcs11TokenConfig mixed = signer;
    mixed.pin_file = token_of(role).pin_file;
    auto opened = hsm::OpenPkcs11Tokens({.module_path = tokens.module_path, .tokens = {mixed}});
    ASSERT_FALSE(opened.ok());
    EXPECT_THAT(std::string(opened.status().message()), HasSubstr("C_Login"));
    hsm::Pkcs11TokenConfig other = token_of(role);
    other.pin_file = signer.pin_file;
    opened = hsm::OpenPkcs11Tokens({.module_path = tokens.module_path, .tokens = {other}});
    ASSERT_FALSE(opened.ok());
    EXPECT_THAT(std::string(opened.status().message()), HasSubstr("C_Login"));
  }
  // Two roles on one token are refused before anything is opened.
  hsm::Pkcs11TokenConfig shared = token_of("consent");
  shared.role = "signer";
  auto opened =
      hsm::OpenPkcs11Tokens({.module_path = tokens.module_path,
                             .tokens = {token_of("consent"), token_of("identity"), shared}});
  ASSERT_FALSE(opened.ok());
  EXPECT_THAT(std::string(opened.status().message()), HasSubstr("every role its own token"));
  ASSERT_TRUE(OpenHsm(1).ok());
}

// The signer verifies SADs with the public key pinned in its config: a SAD signed by a key with
// the right key id anywhere else (its own token, another role's) is refused.
TEST_F(KeySeparationTest, SignerTrustsOnlyThePinnedSadKey) {
  auto stacks = testing::Stacks::Start(env(), {.services = {"signer"}});
  ASSERT_TRUE(stacks.ok()) << stacks.status();
  auto signer = pb::Signer::NewStub((*stacks)->channel());
  const pb::CredentialInfo cred = MakeCredential(*signer, "cred-pinned");
  ASSERT_EQ(cred.status(), pb::CREDENTIAL_STATUS_ACTIVE);
  const std::string hash(32, '\x22');

  // Keys with the SAD key's id, made where an attacker of the signer or of identity could.
  for (const char* role : {"signer", "identity"}) {
    SCOPED_TRACE(role);
    ASSERT_TRUE(hsm(role).GenerateKeyPair("qsign-sad-1", hsm::KeyType::kEcP256).ok());
    pb::SignHashResponse resp;
    grpc::Status s = SignWithSadFrom(*signer, role, "qsign-sad-1", "cred-pinned", hash, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("sad"));
    EXPECT_EQ(RefusalReason(FromGrpcStatus(s)), pb::Refusal::SAD_BAD_SIGNATURE);
    EXPECT_EQ(resp.signatures_size(), 0);
  }

  // A SAD key id the config does not pin is refused whoever signed it.
  ASSERT_TRUE(hsm("consent").GenerateKeyPair("qsign-sad-2", hsm::KeyType::kEcP256).ok());
  {
    pb::SignHashResponse resp;
    grpc::Status s = SignWithSadFrom(*signer, "consent", "qsign-sad-2", "cred-pinned", hash, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
    EXPECT_EQ(RefusalReason(FromGrpcStatus(s)), pb::Refusal::SAD_UNKNOWN_KEY);
  }

  // consent's key, the pinned one, is accepted.
  pb::SignHashResponse resp;
  grpc::Status s = SignWithSadFrom(*signer, "consent", "qsign-sad-1", "cred-pinned", hash, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.signatures_size(), 1);
  EXPECT_TRUE(testing::VerifyDigestSignature(cred.public_key_spki(), hash, resp.signatures(0),
                                             EVP_sha256()));
}

}  // namespace
}  // namespace qsign
