// An Hsm whose PKCS#11 module fails calls on demand (fault injection through the module's
// function list, hsm/pkcs11_module.h FunctionListPatch), for tests of what a service records
// when the HSM fails: each switch makes the matching calls answer CKR_DEVICE_ERROR
// (UNAVAILABLE). It can also be slow, and counts the signatures in progress. One faulty module
// per process at a time.
#ifndef QSIGN_HSM_TESTING_FAULTY_HSM_H_
#define QSIGN_HSM_TESTING_FAULTY_HSM_H_

#include <atomic>
#include <memory>

#include "absl/status/statusor.h"
#include "hsm/hsm.h"

namespace qsign::hsm::testing {

struct HsmFaults {
  std::atomic<bool> sign{false};      // Every other signing C_Sign fails (its signature lost).
  std::atomic<bool> generate{false};  // C_GenerateKeyPair fails.
  std::atomic<bool> destroy{false};   // C_DestroyObject fails.
  std::atomic<int> failed_calls{0};   // How many calls were made to fail.
  std::atomic<int> sign_delay_ms{0};  // Every C_Sign takes this much longer (a slow HSM).
  std::atomic<int> signing{0};        // C_Sign calls in progress now,
  std::atomic<int> max_signing{0};    // and the most there were at once.
};

// The token of `config` (the module loaded exclusively: nothing else in this process may have
// it open) with `faults` (not owned; outlives the Hsm) applied to every call.
absl::StatusOr<std::unique_ptr<Hsm>> NewFaultyPkcs11Hsm(const Pkcs11Config& config,
                                                        HsmFaults* faults);

}  // namespace qsign::hsm::testing

#endif  // QSIGN_HSM_TESTING_FAULTY_HSM_H_
