// SessionKeyCache against a scripted feed, with tokens signed by real OpenSSL P-256 keys and an
// injected clock: the staleness bound without sleeping. The same cache against the real identity
// service over gRPC is tests/session_auth_test.cc.
#include "common/auth/session_key_cache.h"

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/auth/credential_table.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace qsign::auth {
namespace {

using ::testing::HasSubstr;

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);

// A P-256 key in OpenSSL that signs tokens the way identity's HSM key does.
class TestKey {
 public:
  explicit TestKey(std::string id) : id_(std::move(id)) {
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nullptr);
    EVP_PKEY_keygen_init(ctx);
    EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx, NID_X9_62_prime256v1);
    EVP_PKEY_keygen(ctx, &pkey_);
    EVP_PKEY_CTX_free(ctx);
  }
  ~TestKey() { EVP_PKEY_free(pkey_); }

  SessionFeed::Key FeedKey() const {
    unsigned char* der = nullptr;
    const int len = i2d_PUBKEY(pkey_, &der);
    std::string spki(reinterpret_cast<char*>(der), len);
    OPENSSL_free(der);
    return {.key_id = id_, .public_key_spki = spki};
  }

  std::string Mint(SessionClaims claims) const {
    claims.key_id = id_;
    auto payload = SessionTokenPayload(claims);
    EXPECT_TRUE(payload.ok()) << payload.status();
    EVP_MD_CTX* md = EVP_MD_CTX_new();
    size_t len = 0;
    EVP_DigestSignInit(md, nullptr, EVP_sha256(), nullptr, pkey_);
    const auto* data = reinterpret_cast<const unsigned char*>(payload->data());
    EVP_DigestSign(md, nullptr, &len, data, payload->size());
    std::string sig(len, '\0');
    EVP_DigestSign(md, reinterpret_cast<unsigned char*>(sig.data()), &len, data, payload->size());
    sig.resize(len);
    EVP_MD_CTX_free(md);
    return JoinSessionToken(*payload, sig);
  }

 private:
  std::string id_;
  EVP_PKEY* pkey_ = nullptr;  // Owned.
};

// Identity's feed as the test scripts it; `down` makes every call fail as an unreachable peer.
class ScriptedFeed final : public SessionFeed {
 public:
  absl::StatusOr<std::vector<Key>> GetSessionKeys() override {
    absl::MutexLock lock(&mu);
    if (down) return absl::UnavailableError("identity: connection refused");
    return keys;
  }
  absl::StatusOr<Page> ListSessionRevocations(uint64_t after) override {
    absl::MutexLock lock(&mu);
    if (down) return absl::UnavailableError("identity: connection refused");
    ++list_calls;
    Page page{.last_sequence = after};
    for (const auto& r : revocations) {
      if (r.sequence <= after) continue;
      if (page.revocations.size() == 2) break;  // Small pages: paging is exercised.
      page.revocations.push_back(r);
      page.last_sequence = r.sequence;
    }
    return page;
  }

  absl::Mutex mu;
  bool down ABSL_GUARDED_BY(mu) = false;
  int list_calls ABSL_GUARDED_BY(mu) = 0;
  std::vector<Key> keys ABSL_GUARDED_BY(mu);
  std::vector<SessionRevocation> revocations ABSL_GUARDED_BY(mu);
};

SessionClaims Claims(std::string session_id, std::string account_id = "acc-1") {
  return SessionClaims{.session_id = std::move(session_id),
                       .account_id = std::move(account_id),
                       .issued_at = kStart,
                       .auth_time = kStart,
                       .expires_at = kStart + absl::Minutes(15),
                       .assurance_level = 2};
}

constexpr char kSession1[] = "0123456789abcdef0123456789abcdef";
constexpr char kSession2[] = "ffffffffffffffffffffffffffffffff";

class SessionKeyCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    {
      absl::MutexLock lock(&feed_.mu);
      feed_.keys = {key_.FeedKey()};
    }
    auto cache = SessionKeyCache::New(&feed_, &clock_,
                                      {.refresh_interval = absl::Milliseconds(500),
                                       .max_staleness = absl::Seconds(5),
                                       .component = "cache_test"});
    ASSERT_TRUE(cache.ok()) << cache.status();
    cache_ = *std::move(cache);
  }

  FakeClock clock_{kStart};
  TestKey key_{"session-1"};
  ScriptedFeed feed_;
  std::unique_ptr<SessionKeyCache> cache_;
};

TEST_F(SessionKeyCacheTest, OptionsMustBound) {
  EXPECT_EQ(SessionKeyCache::New(
                &feed_, &clock_,
                {.refresh_interval = absl::Seconds(5), .max_staleness = absl::Seconds(5)})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SessionKeyCache::New(&feed_, &clock_, {.refresh_interval = absl::ZeroDuration()})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SessionKeyCacheTest, UnavailableUntilTheKeysAreRead) {
  const std::string token = key_.Mint(Claims(kSession1));
  EXPECT_EQ(cache_->Verify(token, false).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(cache_->FeedAge(), absl::InfiniteDuration());
  ASSERT_TRUE(cache_->Refresh().ok());
  auto claims = cache_->Verify(token, false);
  ASSERT_TRUE(claims.ok()) << claims.status();
  EXPECT_EQ(claims->account_id, "acc-1");
  EXPECT_EQ(claims->session_id, kSession1);
  EXPECT_EQ(claims->key_id, "session-1");
}

TEST_F(SessionKeyCacheTest, RefusesATokenOfAnotherKey) {
  ASSERT_TRUE(cache_->Refresh().ok());
  TestKey rogue("session-1");  // Same id, another key: the signature fails.
  auto forged = cache_->Verify(rogue.Mint(Claims(kSession1)), false);
  EXPECT_EQ(forged.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(forged.status().message(), HasSubstr("signature does not verify"));
  TestKey unknown("session-9");
  auto other = cache_->Verify(unknown.Mint(Claims(kSession1)), false);
  EXPECT_THAT(other.status().message(), HasSubstr("signed by an unknown key"));
}

TEST_F(SessionKeyCacheTest, FollowsTheRevocationFeedPageByPage) {
  ASSERT_TRUE(cache_->Refresh().ok());
  const std::string one = key_.Mint(Claims(kSession1));
  const std::string two = key_.Mint(Claims(kSession2, "acc-2"));
  ASSERT_TRUE(cache_->Verify(one, false).ok());
  {
    absl::MutexLock lock(&feed_.mu);
    // Five entries: three pages of at most two.
    for (uint64_t seq = 1; seq <= 4; ++seq) {
      feed_.revocations.push_back({.sequence = seq,
                                   .session_id = absl::StrCat(std::string(31, 'a'), seq),
                                   .account_id = "acc-x",
                                   .revoked_at = kStart,
                                   .keep_until = kStart + absl::Minutes(20)});
    }
    feed_.revocations.push_back({.sequence = 5,
                                 .session_id = kSession1,
                                 .account_id = "acc-1",
                                 .revoked_at = kStart,
                                 .keep_until = kStart + absl::Minutes(20)});
  }
  ASSERT_TRUE(cache_->Verify(one, false).ok()) << "not read yet";
  ASSERT_TRUE(cache_->Refresh().ok());
  auto refused = cache_->Verify(one, false);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(refused.status().message(), HasSubstr("revoked"));
  EXPECT_TRUE(cache_->Verify(two, false).ok());
  // Revoke-all of acc-2.
  {
    absl::MutexLock lock(&feed_.mu);
    feed_.revocations.push_back({.sequence = 6,
                                 .account_id = "acc-2",
                                 .revoked_at = kStart + absl::Seconds(1),
                                 .keep_until = kStart + absl::Minutes(20)});
  }
  ASSERT_TRUE(cache_->Refresh().ok());
  EXPECT_EQ(cache_->Verify(two, false).status().code(), absl::StatusCode::kUnauthenticated);
  // allow_revoked (identity's Logout) skips only this check.
  EXPECT_TRUE(cache_->Verify(two, true).ok());
}

TEST_F(SessionKeyCacheTest, FailsClosedOnceTheFeedIsOlderThanTheBound) {
  ASSERT_TRUE(cache_->Refresh().ok());
  const std::string token = key_.Mint(Claims(kSession1));
  {
    absl::MutexLock lock(&feed_.mu);
    feed_.down = true;
  }
  clock_.Advance(absl::Seconds(4));
  EXPECT_EQ(cache_->Refresh().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(cache_->Verify(token, false).ok()) << "4 s old, within the 5 s bound";
  EXPECT_EQ(cache_->FeedAge(), absl::Seconds(4));
  clock_.Advance(absl::Seconds(1) + absl::Milliseconds(1));
  auto stale = cache_->Verify(token, false);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(stale.status().message(), HasSubstr("revocation feed was last read 5.001s ago"));
  // Back: accepted again after one successful read.
  {
    absl::MutexLock lock(&feed_.mu);
    feed_.down = false;
  }
  ASSERT_TRUE(cache_->Refresh().ok());
  EXPECT_TRUE(cache_->Verify(token, false).ok());
}

TEST_F(SessionKeyCacheTest, ExportsTheFeedsAge) {
  ASSERT_TRUE(cache_->Refresh().ok());
  clock_.Advance(absl::Milliseconds(2500));
  const std::string text = metrics::Registry::Global().Render();
  EXPECT_THAT(text, HasSubstr("# TYPE qsign_session_feed_age_seconds gauge"));
  EXPECT_THAT(text, HasSubstr("qsign_session_feed_age_seconds{component=\"cache_test\"} 2.5"));
}

TEST_F(SessionKeyCacheTest, RefreshesInTheBackground) {
  cache_->Start();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (cache_->FeedAge() == absl::InfiniteDuration() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_TRUE(cache_->Verify(key_.Mint(Claims(kSession1)), false).ok());
  cache_->Stop();
}

}  // namespace
}  // namespace qsign::auth
