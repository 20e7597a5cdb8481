// Session tokens: what a user presents as `authorization: Bearer <token>` to every qsign service.
// The identity service mints them with an ECDSA P-256 key held in the HSM
// (services/identity/session_token.h); any service verifies them here with only the public keys
// (Identity.GetSessionKeys) and a local copy of the revocation feed
// (Identity.ListSessionRevocations), without a database round trip.
//
// Format: base64url(payload) "." base64url(signature), no padding. The payload is
//   "qst1" | u8 len, key_id | u8 len, session_id | u8 len, account_id |
//   i64 issued_at | i64 auth_time | i64 expires_at (Unix microseconds, big-endian) |
//   u8 assurance_level
// and the signature is ECDSA P-256 over SHA-256(payload), DER encoded. Parsing is strict: every
// length checked, no trailing bytes. The key id inside the payload is covered by the signature.
#ifndef QSIGN_COMMON_AUTH_SESSION_TOKEN_H_
#define QSIGN_COMMON_AUTH_SESSION_TOKEN_H_

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace qsign::auth {

inline constexpr absl::Duration kDefaultFreshLoginWindow = absl::Minutes(5);
// Replicas' clocks may differ by this much; a token issued further in the future is refused.
inline constexpr absl::Duration kMaxClockSkew = absl::Seconds(30);

struct SessionClaims {
  // 32 lower-case hex characters (128 random bits).
  std::string session_id;
  std::string account_id;
  absl::Time issued_at;
  // When the login was approved on the phone; freshness is measured from here.
  absl::Time auth_time;
  absl::Time expires_at;
  // A qsign.v1.AssuranceLevel value, as the account had when the session was issued.
  int assurance_level = 0;
  // The session key that signed the token; set by the minter and by the verifier.
  std::string key_id;
};

// The login behind the session was approved at most `window` ago.
bool IsFresh(const SessionClaims& claims, absl::Time now,
             absl::Duration window = kDefaultFreshLoginWindow);

// The payload the minter signs for `claims` (key_id included). INVALID_ARGUMENT for claims that
// do not fit the format (empty ids, expiry not after issue).
absl::StatusOr<std::string> SessionTokenPayload(const SessionClaims& claims);
// The token from a payload and its DER signature.
std::string JoinSessionToken(std::string_view payload, std::string_view signature_der);

// One entry of the revocation feed.
struct SessionRevocation {
  uint64_t sequence = 0;
  // One session (logout). Empty: every session of account_id issued at or before revoked_at.
  std::string session_id;
  std::string account_id;
  absl::Time revoked_at;
  // No token the entry covers is valid after this; the entry may be forgotten then.
  absl::Time keep_until;
};

// A service's local copy of the revocation feed. Thread-safe.
class SessionRevocationList {
 public:
  // Adds entries in feed order; entries at or below last_sequence() are ignored, so a page
  // applied twice does no harm.
  void Apply(std::span<const SessionRevocation> entries);
  // Drops entries whose keep_until has passed.
  void Forget(absl::Time now);
  bool IsRevoked(const SessionClaims& claims) const;
  // Pass as ListSessionRevocationsRequest.after_sequence.
  uint64_t last_sequence() const;

 private:
  struct AccountCutoff {
    absl::Time revoked_at;
    absl::Time keep_until;
  };
  mutable absl::Mutex mu_;
  uint64_t last_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  // session id -> keep_until.
  absl::flat_hash_map<std::string, absl::Time> sessions_ ABSL_GUARDED_BY(mu_);
  // account id -> the latest account-wide revocation.
  absl::flat_hash_map<std::string, AccountCutoff> accounts_ ABSL_GUARDED_BY(mu_);
};

// Verifies tokens against a fixed set of session public keys. Thread-safe.
class SessionTokenVerifier {
 public:
  // `keys`: key id -> SubjectPublicKeyInfo DER (EC P-256), as GetSessionKeys lists them.
  static absl::StatusOr<std::unique_ptr<SessionTokenVerifier>> New(
      const std::map<std::string, std::string>& keys);
  ~SessionTokenVerifier();

  // Decodes the token and checks, in this order: format, known key, signature, expiry, issue
  // time not in the future (beyond kMaxClockSkew), and, when `revocations` is given, that it is
  // not revoked. Every failure is UNAUTHENTICATED with a message starting "session token:".
  absl::StatusOr<SessionClaims> Verify(std::string_view token, absl::Time now,
                                       const SessionRevocationList* revocations = nullptr) const;

 private:
  struct Key;
  explicit SessionTokenVerifier(std::map<std::string, std::unique_ptr<Key>, std::less<>> keys);
  std::map<std::string, std::unique_ptr<Key>, std::less<>> keys_;
};

}  // namespace qsign::auth

#endif  // QSIGN_COMMON_AUTH_SESSION_TOKEN_H_
