// Plain PKCS#11 loops and checks for benchmarks and tests outside hsm/, which may not include
// the PKCS#11 header. They share an already initialised module (a live Pkcs11Hsm) and leave
// it initialised; otherwise they initialise and finalise it themselves.
#ifndef QSIGN_HSM_TESTING_BARE_PKCS11_H_
#define QSIGN_HSM_TESTING_BARE_PKCS11_H_

#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hsm/hsm.h"

namespace qsign::hsm::testing {

// The ceiling under Pkcs11Hsm: `threads` threads, one session each, each looping
// C_SignInit + C_Sign for `duration` on a fixed digest (CKM_ECDSA on 32 bytes for EC keys,
// CKM_RSA_PKCS on a SHA-256 DigestInfo for RSA keys). The key handle is found once, before the
// loop, and each session signs once before the clock (set-up, not rate). Returns signatures per
// second over all threads.
absl::StatusOr<double> BarePkcs11SignRate(const Pkcs11Config& config, std::string_view key_id,
                                          int threads, absl::Duration duration);

// What the token says about its private keys.
struct PrivateKeyCensus {
  int total = 0;
  int sensitive = 0;          // CKA_SENSITIVE true.
  int extractable = 0;        // CKA_EXTRACTABLE true.
  int always_sensitive = 0;   // CKA_ALWAYS_SENSITIVE true.
  int never_extractable = 0;  // CKA_NEVER_EXTRACTABLE true.
  int can_decrypt = 0;        // CKA_DECRYPT, CKA_UNWRAP or CKA_DERIVE true.
};
absl::StatusOr<PrivateKeyCensus> CountPrivateKeys(const Pkcs11Config& config);
// Every private key counted is sensitive, always was, never was extractable and cannot decrypt,
// unwrap or derive: what hsm/ promises for every key it makes.
inline bool AllSensitiveSignOnly(const PrivateKeyCensus& c) {
  return c.sensitive == c.total && c.always_sensitive == c.total &&
         c.never_extractable == c.total && c.extractable == 0 && c.can_decrypt == 0;
}

}  // namespace qsign::hsm::testing

#endif  // QSIGN_HSM_TESTING_BARE_PKCS11_H_
