#include "hsm/testing/faulty_hsm.h"

#include <p11-kit/pkcs11.h>

#include <chrono>
#include <thread>

#include "hsm/pkcs11_hsm.h"

namespace qsign::hsm::testing {
namespace {

// The patched functions are plain C function pointers: they reach the faults and the module's
// own functions through these.
CK_FUNCTION_LIST real;
std::atomic<HsmFaults*> active{nullptr};
std::atomic<int> sign_calls{0};

bool Fail(std::atomic<bool> HsmFaults::*which) {
  HsmFaults* f = active.load();
  if (f == nullptr || !(f->*which).load()) return false;
  if (which == &HsmFaults::sign && ++sign_calls % 2 != 0) return false;
  ++f->failed_calls;
  return true;
}

// Counts the C_Sign calls in progress (and the most at once), each made `sign_delay_ms` slower.
class Signing {
 public:
  Signing() : faults_(active.load()) {
    if (faults_ == nullptr) return;
    const int now = ++faults_->signing;
    int most = faults_->max_signing.load();
    while (now > most && !faults_->max_signing.compare_exchange_weak(most, now)) {
    }
    if (const int ms = faults_->sign_delay_ms.load(); ms > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    }
  }
  ~Signing() {
    if (faults_ != nullptr) --faults_->signing;
  }

 private:
  HsmFaults* const faults_;  // Not owned.
};

CK_RV Sign(CK_SESSION_HANDLE session, CK_BYTE* data, CK_ULONG data_len, CK_BYTE* signature,
           CK_ULONG* signature_len) {
  const Signing counted;
  const CK_RV rv = real.C_Sign(session, data, data_len, signature, signature_len);
  // A length query (no buffer) goes through: the failure comes on the call that signs, which
  // (as PKCS#11 says of every failed C_Sign) has ended the operation, the signature lost.
  if (signature != nullptr && rv == CKR_OK && Fail(&HsmFaults::sign)) return CKR_DEVICE_ERROR;
  return rv;
}

CK_RV GenerateKeyPair(CK_SESSION_HANDLE session, CK_MECHANISM* mechanism,
                      CK_ATTRIBUTE* public_template, CK_ULONG public_count,
                      CK_ATTRIBUTE* private_template, CK_ULONG private_count,
                      CK_OBJECT_HANDLE* public_key, CK_OBJECT_HANDLE* private_key) {
  if (Fail(&HsmFaults::generate)) return CKR_DEVICE_ERROR;
  return real.C_GenerateKeyPair(session, mechanism, public_template, public_count, private_template,
                                private_count, public_key, private_key);
}

CK_RV DestroyObject(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object) {
  if (Fail(&HsmFaults::destroy)) return CKR_DEVICE_ERROR;
  return real.C_DestroyObject(session, object);
}

void Patch(CK_FUNCTION_LIST* functions) {
  real = *functions;
  functions->C_Sign = &Sign;
  functions->C_GenerateKeyPair = &GenerateKeyPair;
  functions->C_DestroyObject = &DestroyObject;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Hsm>> NewFaultyPkcs11Hsm(const Pkcs11Config& config,
                                                        HsmFaults* faults) {
  active.store(faults);
  sign_calls.store(0);
  auto hsm = NewPkcs11HsmForTesting(config, &Patch);
  if (!hsm.ok()) return hsm.status();
  return std::unique_ptr<Hsm>(*std::move(hsm));
}

}  // namespace qsign::hsm::testing
