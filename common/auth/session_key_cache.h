// Local verification of users' session tokens, for every service but identity: the public
// session keys (Identity.GetSessionKeys) and a copy of the revocation feed
// (Identity.ListSessionRevocations), refreshed in the background.
//
// Security contract: a logout or revoke-all at identity is refused here at most `max_staleness`
// later. When the feed cannot be read for longer than that, every Bearer call fails closed with
// UNAVAILABLE; the feed's age is the gauge qsign_session_feed_age_seconds{component}.
#ifndef QSIGN_COMMON_AUTH_SESSION_KEY_CACHE_H_
#define QSIGN_COMMON_AUTH_SESSION_KEY_CACHE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/auth/authenticator.h"
#include "common/auth/session_token.h"
#include "common/clock.h"
#include "common/metrics.h"

namespace qsign::auth {

// What the cache reads from identity: GrpcSessionFeed (session_feed_grpc.h), or a fake that
// injects failures.
class SessionFeed {
 public:
  struct Key {
    std::string key_id;
    std::string public_key_spki;  // DER, EC P-256.
  };
  struct Page {
    std::vector<SessionRevocation> revocations;
    uint64_t last_sequence = 0;
  };
  virtual ~SessionFeed() = default;
  virtual absl::StatusOr<std::vector<Key>> GetSessionKeys() = 0;
  virtual absl::StatusOr<Page> ListSessionRevocations(uint64_t after_sequence) = 0;
};

struct SessionKeyCacheOptions {
  // How often the keys and the feed are read.
  absl::Duration refresh_interval = absl::Milliseconds(500);
  // Longest the local copy may lag behind identity before Bearer calls fail with UNAVAILABLE.
  absl::Duration max_staleness = absl::Seconds(5);
  // The metric label and log component ("consent", "lifecycle").
  std::string component;
};

class SessionKeyCache final : public SessionVerifier {
 public:
  // `feed` and `clock` are not owned and must outlive the cache. INVALID_ARGUMENT unless
  // 0 < refresh_interval < max_staleness.
  static absl::StatusOr<std::unique_ptr<SessionKeyCache>> New(SessionFeed* feed, const Clock* clock,
                                                              SessionKeyCacheOptions options);
  ~SessionKeyCache() override;

  // Starts refreshing every refresh_interval on a thread of its own (the first read at once).
  // Once; Stop (or the destructor) ends it.
  void Start();
  void Stop();

  // Reads the keys and every new feed entry now. The feed's age restarts only on success.
  absl::Status Refresh();

  absl::StatusOr<SessionClaims> Verify(std::string_view token, bool allow_revoked) override;

  // How long ago the last successful Refresh began; InfiniteDuration before the first.
  absl::Duration FeedAge() const;

 private:
  SessionKeyCache(SessionFeed* feed, const Clock* clock, SessionKeyCacheOptions options);
  void Loop();

  SessionFeed* const feed_;   // Not owned.
  const Clock* const clock_;  // Not owned.
  const SessionKeyCacheOptions options_;
  const absl::Time created_at_;
  SessionRevocationList revocations_;
  metrics::Counter* const errors_;  // Owned by the global registry.
  metrics::Registry::CollectorId collector_;

  absl::Mutex refresh_mu_ ABSL_ACQUIRED_BEFORE(mu_);  // One Refresh at a time.
  std::vector<SessionFeed::Key> keys_ ABSL_GUARDED_BY(refresh_mu_);
  bool failing_ ABSL_GUARDED_BY(refresh_mu_) = false;

  mutable absl::Mutex mu_;
  std::shared_ptr<const SessionTokenVerifier> verifier_ ABSL_GUARDED_BY(mu_);
  absl::Time synced_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace qsign::auth

#endif  // QSIGN_COMMON_AUTH_SESSION_KEY_CACHE_H_
