#include "consent/sad.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"
#include "hsm/testing/softhsm_token.h"
#include "qsign/v1/sad.pb.h"

namespace qsign::consent {
namespace {

constexpr char kSha256Oid[] = "2.16.840.1.101.3.4.2.1";
const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

class SadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto token = hsm::testing::SoftHsmToken::Create();
    ASSERT_TRUE(token.ok()) << token.status();
    token_ = *std::move(token);
    auto hsm = hsm::NewPkcs11Hsm(token_->config());
    ASSERT_TRUE(hsm.ok()) << hsm.status();
    hsm_ = *std::move(hsm);
    ASSERT_TRUE(hsm_->GenerateKeyPair("sad-1", hsm::KeyType::kEcP256).ok());
    auto minter = SadMinter::New(hsm_.get(), "sad-1");
    ASSERT_TRUE(minter.ok()) << minter.status();
    minter_ = *std::move(minter);
    auto verifier = SadVerifier::New({{"sad-1", minter_->public_key_spki()}});
    ASSERT_TRUE(verifier.ok()) << verifier.status();
    verifier_ = *std::move(verifier);
  }

  SadGrant Grant() {
    SadGrant g;
    g.account_id = "acct-1";
    g.credential_id = "cred-1";
    g.hash_algorithm_oid = kSha256Oid;
    g.hashes = {std::string(32, 'a'), std::string(32, 'b')};
    g.consent_request_id = "req-1";
    return g;
  }

  std::unique_ptr<hsm::testing::SoftHsmToken> token_;
  std::unique_ptr<hsm::Hsm> hsm_;
  std::unique_ptr<SadMinter> minter_;
  std::unique_ptr<SadVerifier> verifier_;
};

TEST_F(SadTest, MintedSadVerifiesWithEveryClaim) {
  auto sad = minter_->Mint(Grant(), kNow);
  ASSERT_TRUE(sad.ok()) << sad.status();
  auto grant = verifier_->Verify(*sad, kNow + absl::Minutes(1));
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_EQ(grant->account_id, "acct-1");
  EXPECT_EQ(grant->credential_id, "cred-1");
  EXPECT_EQ(grant->hash_algorithm_oid, kSha256Oid);
  EXPECT_EQ(grant->hashes, Grant().hashes);
  EXPECT_EQ(grant->num_signatures, 2u);
  EXPECT_EQ(grant->issued_at, kNow);
  EXPECT_EQ(grant->expires_at, kNow + kDefaultSadLifetime);
  EXPECT_EQ(grant->sad_id.size(), 16u);
  EXPECT_EQ(grant->consent_request_id, "req-1");
}

TEST_F(SadTest, EverySadHasItsOwnId) {
  auto a = verifier_->Verify(*minter_->Mint(Grant(), kNow), kNow);
  auto b = verifier_->Verify(*minter_->Mint(Grant(), kNow), kNow);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->sad_id, b->sad_id);
}

TEST_F(SadTest, ExpiredSadIsRefused) {
  auto sad = minter_->Mint(Grant(), kNow, absl::Minutes(5));
  ASSERT_TRUE(sad.ok());
  auto grant = verifier_->Verify(*sad, kNow + absl::Minutes(5));
  EXPECT_EQ(grant.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(grant.status().message().find("expired"), std::string::npos);
}

TEST_F(SadTest, AlteredClaimsAreRefused) {
  auto sad = minter_->Mint(Grant(), kNow);
  ASSERT_TRUE(sad.ok());
  std::string raw;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(*sad, &raw));
  qsign::v1::SignedSad signed_sad;
  ASSERT_TRUE(signed_sad.ParseFromString(raw));
  qsign::v1::SadClaims claims;
  ASSERT_TRUE(claims.ParseFromString(signed_sad.claims()));
  claims.set_hashes(0, std::string(32, 'z'));
  signed_sad.set_claims(claims.SerializeAsString());
  auto grant = verifier_->Verify(absl::WebSafeBase64Escape(signed_sad.SerializeAsString()), kNow);
  EXPECT_EQ(grant.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(grant.status().message().find("signature does not verify"), std::string::npos);
}

TEST_F(SadTest, SadFromAnotherKeyIsRefused) {
  ASSERT_TRUE(hsm_->GenerateKeyPair("rogue", hsm::KeyType::kEcP256).ok());
  auto rogue = SadMinter::New(hsm_.get(), "rogue");
  ASSERT_TRUE(rogue.ok());
  // Claims the trusted key id but is signed by another key.
  auto sad = (*rogue)->Mint(Grant(), kNow);
  ASSERT_TRUE(sad.ok());
  EXPECT_EQ(verifier_->Verify(*sad, kNow).status().code(), absl::StatusCode::kPermissionDenied);
  std::string raw;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(*sad, &raw));
  qsign::v1::SignedSad signed_sad;
  ASSERT_TRUE(signed_sad.ParseFromString(raw));
  signed_sad.set_key_id("sad-1");
  auto forged = verifier_->Verify(absl::WebSafeBase64Escape(signed_sad.SerializeAsString()), kNow);
  EXPECT_EQ(forged.status().code(), absl::StatusCode::kPermissionDenied);
}

// The verifier reuses its OpenSSL verify contexts across calls and threads: a context that
// just refused a forged or garbled signature must still accept a genuine one, and a context that
// accepted must still refuse. Four threads interleave genuine, forged (claims altered) and
// garbled-signature SADs; every verdict must be the right one.
TEST_F(SadTest, VerdictsStayRightWhenVerifyContextsAreReusedAcrossThreads) {
  auto genuine = minter_->Mint(Grant(), kNow);
  ASSERT_TRUE(genuine.ok());
  std::string raw;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(*genuine, &raw));
  qsign::v1::SignedSad signed_sad;
  ASSERT_TRUE(signed_sad.ParseFromString(raw));
  qsign::v1::SignedSad altered = signed_sad;
  qsign::v1::SadClaims claims;
  ASSERT_TRUE(claims.ParseFromString(altered.claims()));
  claims.set_account_id("acct-2");
  altered.set_claims(claims.SerializeAsString());
  qsign::v1::SignedSad garbled = signed_sad;
  garbled.set_signature("\x30\x03\x02\x01");  // Not a DER ECDSA signature.
  const std::string forged = absl::WebSafeBase64Escape(altered.SerializeAsString());
  const std::string bad_der = absl::WebSafeBase64Escape(garbled.SerializeAsString());
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        if (!verifier_->Verify(*genuine, kNow).ok()) ++wrong;
        if (verifier_->Verify(forged, kNow).status().code() !=
            absl::StatusCode::kPermissionDenied) {
          ++wrong;
        }
        if (verifier_->Verify(bad_der, kNow).status().code() !=
            absl::StatusCode::kPermissionDenied) {
          ++wrong;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST_F(SadTest, GarbageAndEmptyAreInvalidArgument) {
  EXPECT_EQ(verifier_->Verify("", kNow).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(verifier_->Verify("not base64 !!", kNow).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(verifier_->Verify(absl::WebSafeBase64Escape("junk"), kNow).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SadTest, MintRefusesIncompleteGrants) {
  SadGrant g = Grant();
  g.hashes.clear();
  EXPECT_EQ(minter_->Mint(g, kNow).status().code(), absl::StatusCode::kInvalidArgument);
  g = Grant();
  g.credential_id.clear();
  EXPECT_EQ(minter_->Mint(g, kNow).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CheckSadCoversTest, EachMismatchIsNamed) {
  SadGrant g;
  g.account_id = "acct-1";
  g.credential_id = "cred-1";
  g.hash_algorithm_oid = kSha256Oid;
  g.hashes = {std::string(32, 'a'), std::string(32, 'b')};
  g.num_signatures = 2;
  const std::vector<std::string> a = {std::string(32, 'a')};
  EXPECT_TRUE(CheckSadCovers(g, "acct-1", "cred-1", kSha256Oid, a).ok());
  EXPECT_TRUE(CheckSadCovers(g, "acct-1", "cred-1", kSha256Oid, g.hashes).ok());

  auto msg = [](const absl::Status& s) { return std::string(s.message()); };
  EXPECT_EQ(msg(CheckSadCovers(g, "acct-1", "cred-2", kSha256Oid, a)),
            "sad: issued for another credential");
  EXPECT_EQ(msg(CheckSadCovers(g, "acct-2", "cred-1", kSha256Oid, a)),
            "sad: issued for another account");
  EXPECT_NE(msg(CheckSadCovers(g, "acct-1", "cred-1", "2.16.840.1.101.3.4.2.2", a))
                .find("hash algorithm"),
            std::string::npos);
  EXPECT_EQ(msg(CheckSadCovers(g, "acct-1", "cred-1", kSha256Oid, {std::string(32, 'c')})),
            "sad: hashes[0] is not one the user approved");
  EXPECT_NE(msg(CheckSadCovers(g, "acct-1", "cred-1", kSha256Oid,
                               {std::string(32, 'a'), std::string(32, 'b'), std::string(32, 'a')}))
                .find("authorizes 2 signatures, 3 requested"),
            std::string::npos);
}

}  // namespace
}  // namespace qsign::consent
