// A fixed set of logged-in PKCS#11 sessions shared by threads. Internal to hsm/.
#ifndef QSIGN_HSM_SESSION_POOL_H_
#define QSIGN_HSM_SESSION_POOL_H_

#include <p11-kit/pkcs11.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/metrics.h"
#include "common/secret.h"

namespace qsign::hsm {

// True for the errors after which a session cannot be used again but a fresh one may work:
// CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_DEVICE_REMOVED, CKR_USER_NOT_LOGGED_IN.
bool IsSessionLost(const absl::Status& status);

class SessionPool {
 public:
  // Opens `size` R/W sessions on `slot` and logs in as CKU_USER. `fns` and `pin` are not owned
  // and must outlive the pool. `token_description` names the token (and where the PIN came
  // from) in error messages; it must not contain the PIN. `token_label` labels the pool's
  // metrics (qsign_hsm_session_pool_size, qsign_hsm_sessions_in_use,
  // qsign_hsm_sessions_reopened_total in metrics::Registry::Global()).
  static absl::StatusOr<std::unique_ptr<SessionPool>> New(const CK_FUNCTION_LIST* fns,
                                                          CK_SLOT_ID slot,
                                                          std::string token_description,
                                                          const SecretString* pin, int size,
                                                          std::string_view token_label = "");

  SessionPool(const SessionPool&) = delete;
  SessionPool& operator=(const SessionPool&) = delete;
  // Closes every session. No Run may be in progress.
  ~SessionPool();

  // Runs `fn` on a session nobody else is using, waiting for one if all are busy. No lock is
  // held while `fn` runs. If `fn` fails with IsSessionLost, that session is closed, a new one is
  // opened and logged in, and `fn` runs once more on it; `fn` must be safe to repeat.
  absl::Status Run(absl::FunctionRef<absl::Status(CK_SESSION_HANDLE)> fn);

  // How many sessions have been replaced after IsSessionLost errors.
  int64_t sessions_reopened() const;

 private:
  struct Slot {
    CK_SESSION_HANDLE handle = CK_INVALID_HANDLE;  // CK_INVALID_HANDLE: open on next use.
    bool leased = false;
  };

  SessionPool(const CK_FUNCTION_LIST* fns, CK_SLOT_ID slot, std::string token_description,
              const SecretString* pin, int size, std::string_view token_label);

  size_t Acquire(CK_SESSION_HANDLE* handle);
  void Release(size_t index);
  absl::StatusOr<CK_SESSION_HANDLE> OpenAndLogin();
  // Puts a freshly opened session into slot `index`.
  void Install(size_t index, CK_SESSION_HANDLE fresh);
  // Closes `broken` if slot `index` still holds it; the slot opens a new one on next use.
  void Discard(size_t index, CK_SESSION_HANDLE broken);
  // Discard, then open a new session into the slot now.
  absl::StatusOr<CK_SESSION_HANDLE> Reopen(size_t index, CK_SESSION_HANDLE broken);

  const CK_FUNCTION_LIST* const fns_;  // Not owned; outlives the pool.
  const CK_SLOT_ID slot_;
  const std::string token_description_;
  const SecretString* const pin_;  // Not owned; outlives the pool.
  // Not owned: handles in metrics::Registry::Global(), which outlives every pool.
  metrics::Gauge* const size_gauge_;
  metrics::Gauge* const in_use_gauge_;
  metrics::Counter* const reopened_counter_;

  mutable absl::Mutex mu_;
  absl::CondVar slot_freed_;
  std::vector<Slot> slots_ ABSL_GUARDED_BY(mu_);
  size_t free_slots_ ABSL_GUARDED_BY(mu_);
  int64_t sessions_reopened_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace qsign::hsm

#endif  // QSIGN_HSM_SESSION_POOL_H_
