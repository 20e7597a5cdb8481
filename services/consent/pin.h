// The consent PIN: the rules a new PIN must follow, and the verifier stored in place of it.
//
// Security contract: the database never holds anything from which a PIN can be guessed offline
// without the pepper, a secret kept outside the database (a file named in the config). The
// verifier is Argon2id(HMAC-SHA256(pepper, pin), 16-byte random salt), so a thief who also has
// the pepper still pays a memory-hard hash per guess per account. docs/consent.md gives the cost.
#ifndef QSIGN_SERVICES_CONSENT_PIN_H_
#define QSIGN_SERVICES_CONSENT_PIN_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/secret.h"

namespace qsign::consent {

// OK when `pin` is 6..8 ASCII digits, not one repeated digit and not an ascending or descending
// run, wrapping around ("123456", "876543", "890123"). INVALID_ARGUMENT naming `field` otherwise;
// the PIN is never echoed.
absl::Status ValidateNewPin(std::string_view pin, std::string_view field);

// The defaults cost ~1.4 ms of one core per check on the development machine, so that PIN
// checks take a small share of the 500 logins/s budget; docs/consent.md has the trade-off.
struct PinHashParams {
  uint32_t time_cost = 1;      // Argon2 passes.
  uint32_t memory_kib = 1024;  // Argon2 memory per hash.
  uint32_t parallelism = 1;
};

class PinHasher {
 public:
  // `pepper_id` names the pepper inside each verifier (so that it can be rotated): 1..16
  // characters of [A-Za-z0-9_-]. `pepper` must be at least 16 bytes. At most `max_concurrent`
  // hashes run at once (each needs memory_kib), further callers wait.
  static absl::StatusOr<std::unique_ptr<PinHasher>> New(std::string pepper_id, SecretString pepper,
                                                        PinHashParams params, int max_concurrent);

  // A new verifier for `pin`, with a fresh salt and the current parameters:
  // "argon2id$t=<t>$m=<kib>$p=<p>$<pepper id>$<salt hex>$<hash hex>".
  absl::StatusOr<std::string> Hash(std::string_view pin) const;

  // Whether `pin` matches `verifier` (with the parameters recorded in it), compared in constant
  // time. INTERNAL for a malformed verifier or an unknown pepper id.
  absl::StatusOr<bool> Verify(std::string_view pin, std::string_view verifier) const;

  const PinHashParams& params() const { return params_; }

 private:
  PinHasher(std::string pepper_id, SecretString pepper, PinHashParams params, int max_concurrent)
      : pepper_id_(std::move(pepper_id)),
        pepper_(std::move(pepper)),
        params_(params),
        max_concurrent_(max_concurrent) {}
  absl::StatusOr<std::string> Compute(std::string_view pin, std::string_view salt,
                                      const PinHashParams& params) const;

  const std::string pepper_id_;
  const SecretString pepper_;
  const PinHashParams params_;
  const int max_concurrent_;
  mutable absl::Mutex mu_;
  mutable int running_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace qsign::consent

#endif  // QSIGN_SERVICES_CONSENT_PIN_H_
