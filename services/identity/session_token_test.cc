// Session tokens minted with a real SoftHSM2 key and verified with plain OpenSSL, as another
// service would.
#include "services/identity/session_token.h"

#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/auth/credential_table.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsm/hsm.h"
#include "tests/testing/service_test.h"

namespace qsign::identity {
namespace {

using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

class SessionTokenTest : public qsign::testing::ServiceTest {
 protected:
  SessionTokenTest() : ServiceTest({.database = false, .hsm_sessions = 2}) {}

  void SetUp() override {
    ServiceTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(hsm("identity").GenerateKeyPair("session-1", hsm::KeyType::kEcP256).ok());
    auto minter = SessionTokenMinter::New(&hsm("identity"), "session-1");
    ASSERT_TRUE(minter.ok()) << minter.status();
    minter_ = *std::move(minter);
    auto verifier = SessionTokenVerifier::New({{"session-1", minter_->public_key_spki()}});
    ASSERT_TRUE(verifier.ok()) << verifier.status();
    verifier_ = *std::move(verifier);
  }

  static SessionClaims Claims() {
    return SessionClaims{.session_id = "0123456789abcdef0123456789abcdef",
                         .account_id = "acc-1",
                         .issued_at = kNow,
                         .auth_time = kNow - absl::Seconds(2),
                         .expires_at = kNow + absl::Minutes(15),
                         .assurance_level = 3};
  }

  std::string Mint(SessionClaims c = Claims()) {
    auto t = minter_->Mint(std::move(c));
    EXPECT_TRUE(t.ok()) << t.status();
    return t.value_or("");
  }

  void ExpectRefused(std::string_view token, absl::Time now, std::string_view why,
                     const SessionRevocationList* revocations = nullptr) {
    auto c = verifier_->Verify(token, now, revocations);
    EXPECT_EQ(c.status().code(), absl::StatusCode::kUnauthenticated) << c.status();
    EXPECT_THAT(c.status().message(), HasSubstr(why));
  }

  std::unique_ptr<SessionTokenMinter> minter_;
  std::unique_ptr<SessionTokenVerifier> verifier_;
};

TEST_F(SessionTokenTest, RoundTripsEveryClaim) {
  const std::string token = Mint();
  auto c = verifier_->Verify(token, kNow + absl::Minutes(1));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->session_id, "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(c->account_id, "acc-1");
  EXPECT_EQ(c->issued_at, kNow);
  EXPECT_EQ(c->auth_time, kNow - absl::Seconds(2));
  EXPECT_EQ(c->expires_at, kNow + absl::Minutes(15));
  EXPECT_EQ(c->assurance_level, 3);
  EXPECT_EQ(c->key_id, "session-1");
  // Printable in an HTTP/2 header as is.
  for (char ch : token) EXPECT_TRUE(absl::ascii_isalnum(ch) || ch == '-' || ch == '_' || ch == '.');
}

TEST_F(SessionTokenTest, RefusesExpiredAndFutureTokens) {
  const std::string token = Mint();
  EXPECT_TRUE(verifier_->Verify(token, kNow + absl::Minutes(15) - absl::Microseconds(1)).ok());
  ExpectRefused(token, kNow + absl::Minutes(15), "session token: expired");
  ExpectRefused(token, kNow - kMaxClockSkew - absl::Seconds(1), "issued in the future");
  EXPECT_TRUE(verifier_->Verify(token, kNow - kMaxClockSkew).ok());
}

TEST_F(SessionTokenTest, RefusesEveryTamperedByte) {
  const std::string token = Mint();
  const size_t dot = token.find('.');
  std::string payload;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(token.substr(0, dot), &payload));
  for (size_t i = 0; i < payload.size(); ++i) {
    std::string p = payload;
    p[i] ^= 0x01;
    std::string forged = absl::StrCat(absl::WebSafeBase64Escape(p), token.substr(dot));
    auto c = verifier_->Verify(forged, kNow);
    EXPECT_EQ(c.status().code(), absl::StatusCode::kUnauthenticated) << "byte " << i;
  }
  std::string sig;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(token.substr(dot + 1), &sig));
  sig[sig.size() - 1] ^= 0x01;
  ExpectRefused(absl::StrCat(token.substr(0, dot + 1), absl::WebSafeBase64Escape(sig)), kNow,
                "signature does not verify");
  // Lengthening the expiry is the attack that matters.
  SessionClaims longer = Claims();
  longer.expires_at += absl::Hours(24);
  const std::string other = Mint(longer);
  ExpectRefused(absl::StrCat(other.substr(0, other.find('.')), token.substr(dot)), kNow,
                "signature does not verify");
}

TEST_F(SessionTokenTest, RefusesMalformedTokens) {
  ExpectRefused("", kNow, "session token: missing");
  ExpectRefused("abc", kNow, "session token: malformed");
  ExpectRefused("abc.def", kNow, "malformed");
  ExpectRefused("!!!.???", kNow, "malformed");
  const std::string token = Mint();
  ExpectRefused(token.substr(0, token.find('.') + 1), kNow, "malformed");
  ExpectRefused(std::string(5000, 'a'), kNow, "malformed");
  // Trailing bytes after the payload.
  std::string payload;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(token.substr(0, token.find('.')), &payload));
  ExpectRefused(
      absl::StrCat(absl::WebSafeBase64Escape(payload + "x"), token.substr(token.find('.'))), kNow,
      "malformed");
}

TEST_F(SessionTokenTest, RefusesTokensOfAnotherKey) {
  ASSERT_TRUE(hsm("identity").GenerateKeyPair("session-2", hsm::KeyType::kEcP256).ok());
  auto other = SessionTokenMinter::New(&hsm("identity"), "session-2");
  ASSERT_TRUE(other.ok());
  auto token = (*other)->Mint(Claims());
  ASSERT_TRUE(token.ok());
  ExpectRefused(*token, kNow, "session token: signed by an unknown key");
  // Trusting both keys (a rotation) accepts both.
  auto both = SessionTokenVerifier::New(
      {{"session-1", minter_->public_key_spki()}, {"session-2", (*other)->public_key_spki()}});
  ASSERT_TRUE(both.ok());
  EXPECT_TRUE((*both)->Verify(*token, kNow).ok());
  EXPECT_TRUE((*both)->Verify(Mint(), kNow).ok());
  // A key listed under the wrong id does not verify.
  auto swapped = SessionTokenVerifier::New({{"session-1", (*other)->public_key_spki()}});
  ASSERT_TRUE(swapped.ok());
  auto c = (*swapped)->Verify(Mint(), kNow);
  EXPECT_THAT(c.status().message(), HasSubstr("signature does not verify"));
}

TEST_F(SessionTokenTest, KeysMustBeP256) {
  ASSERT_TRUE(hsm("identity").GenerateKeyPair("p384", hsm::KeyType::kEcP384).ok());
  EXPECT_EQ(SessionTokenMinter::New(&hsm("identity"), "p384").status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto pub = hsm("identity").GetPublicKey("p384");
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(SessionTokenVerifier::New({{"p384", pub->spki_der}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SessionTokenVerifier::New({{"junk", "not a key"}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SessionTokenMinter::New(&hsm("identity"), "missing").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SessionTokenTest, MinterRefusesClaimsThatDoNotFit) {
  SessionClaims c = Claims();
  c.session_id = "short";
  EXPECT_EQ(minter_->Mint(c).status().code(), absl::StatusCode::kInvalidArgument);
  c = Claims();
  c.account_id.clear();
  EXPECT_EQ(minter_->Mint(c).status().code(), absl::StatusCode::kInvalidArgument);
  c = Claims();
  c.expires_at = c.issued_at;
  EXPECT_EQ(minter_->Mint(c).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SessionTokenTest, RevocationListCoversOneSessionOrAWholeAccount) {
  SessionRevocationList list;
  const std::string token = Mint();
  EXPECT_TRUE(verifier_->Verify(token, kNow, &list).ok());

  const SessionRevocation logout{.sequence = 1,
                                 .session_id = "0123456789abcdef0123456789abcdef",
                                 .account_id = "acc-1",
                                 .revoked_at = kNow,
                                 .keep_until = kNow + absl::Minutes(15)};
  list.Apply({&logout, 1});
  EXPECT_EQ(list.last_sequence(), 1u);
  ExpectRefused(token, kNow, "session token: revoked", &list);
  // Another session of the account is untouched.
  SessionClaims other = Claims();
  other.session_id = "ffffffffffffffffffffffffffffffff";
  EXPECT_TRUE(verifier_->Verify(Mint(other), kNow, &list).ok());

  // Revoke-all covers what was issued at or before it, not later logins.
  const SessionRevocation all{.sequence = 2,
                              .account_id = "acc-1",
                              .revoked_at = kNow + absl::Seconds(1),
                              .keep_until = kNow + absl::Minutes(16)};
  list.Apply({&all, 1});
  ExpectRefused(Mint(other), kNow + absl::Seconds(2), "revoked", &list);
  SessionClaims later = other;
  later.issued_at = kNow + absl::Seconds(2);
  later.expires_at = later.issued_at + absl::Minutes(15);
  EXPECT_TRUE(verifier_->Verify(Mint(later), kNow + absl::Seconds(2), &list).ok());

  // A page applied twice changes nothing; an older sequence is ignored.
  list.Apply({&logout, 1});
  EXPECT_EQ(list.last_sequence(), 2u);

  // Entries are forgotten once nothing they cover can still be valid.
  list.Forget(kNow + absl::Minutes(15));
  SessionClaims again = Claims();
  EXPECT_TRUE(list.IsRevoked(again)) << "account-wide entry kept until +16 min";
  list.Forget(kNow + absl::Minutes(16));
  EXPECT_FALSE(list.IsRevoked(again));
}

TEST(FreshnessTest, FreshForFiveMinutesAfterTheApproval) {
  SessionClaims c{.auth_time = kNow};
  EXPECT_TRUE(IsFresh(c, kNow + absl::Minutes(5)));
  EXPECT_FALSE(IsFresh(c, kNow + absl::Minutes(5) + absl::Seconds(1)));
  EXPECT_TRUE(IsFresh(c, kNow + absl::Minutes(9), absl::Minutes(10)));
}

// The header a token travels in is parsed once, by common/auth (was BearerToken here).
TEST(BearerTokenTest, ParsesTheHeader) {
  auto bearer = auth::ParseAuthorization("Bearer abc.def");
  ASSERT_TRUE(bearer.ok()) << bearer.status();
  EXPECT_EQ(bearer->scheme, auth::PresentedCredential::Scheme::kBearer);
  EXPECT_EQ(bearer->secret.value(), "abc.def");
  EXPECT_EQ(auth::ParseAuthorization("bearer abc").status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth::ParseAuthorization("Bearer ").status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth::ParseAuthorization("")->scheme, auth::PresentedCredential::Scheme::kNone);
}

}  // namespace
}  // namespace qsign::identity
