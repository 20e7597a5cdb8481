// Hsm over a PKCS#11 module (SoftHSM2 in tests, a network HSM in production). Internal to hsm/:
// the rest of qsign uses NewPkcs11Hsm from hsm.h; tests in hsm/ use this header to inject
// faults into the module's function list and to inspect token objects.
#ifndef QSIGN_HSM_PKCS11_HSM_H_
#define QSIGN_HSM_PKCS11_HSM_H_

#include <p11-kit/pkcs11.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/secret.h"
#include "hsm/hsm.h"
#include "hsm/pkcs11_module.h"
#include "hsm/session_pool.h"

namespace qsign::hsm {

class Pkcs11Hsm final : public Hsm {
 public:
  // See NewPkcs11Hsm. `patch`, if set, may replace entries of the module's function list
  // before it is initialised (tests only).
  static absl::StatusOr<std::unique_ptr<Pkcs11Hsm>> New(const Pkcs11Config& config,
                                                        const FunctionListPatch& patch = nullptr);
  // One token of a module that is already loaded (OpenPkcs11Tokens): shares `module`.
  static absl::StatusOr<std::unique_ptr<Pkcs11Hsm>> OnModule(std::shared_ptr<Pkcs11Module> module,
                                                             const Pkcs11TokenConfig& token);

  Pkcs11Hsm(const Pkcs11Hsm&) = delete;
  Pkcs11Hsm& operator=(const Pkcs11Hsm&) = delete;
  // Closes the sessions, finalises and unloads the module. No call may be in progress.
  ~Pkcs11Hsm() override;

  absl::StatusOr<PublicKey> GenerateKeyPair(std::string_view key_id, KeyType type) override;
  absl::StatusOr<PublicKey> GetPublicKey(std::string_view key_id) override;
  absl::Status DestroyKeyPair(std::string_view key_id) override;
  absl::Status RenameKeyPair(std::string_view from_id, std::string_view to_id) override;
  absl::StatusOr<std::vector<std::string>> ListKeyIds(std::string_view prefix) override;
  absl::StatusOr<std::vector<std::string>> SignDigests(
      std::string_view key_id, const SignParams& params,
      std::span<const std::string> digests) override;

  // How many sessions were replaced after the module reported them lost.
  int64_t sessions_reopened() const { return pool_->sessions_reopened(); }

  // Test hooks: run `fn` on a pooled, logged-in session with the (patched) function list.
  absl::Status RunWithSessionForTesting(
      absl::FunctionRef<absl::Status(const CK_FUNCTION_LIST&, CK_SESSION_HANDLE)> fn);
  // The private key object of `key_id`, as the signing path sees it.
  absl::StatusOr<CK_OBJECT_HANDLE> PrivateKeyHandleForTesting(std::string_view key_id);

 private:
  // What signing needs to know about a key, found once and then cached.
  struct KeyInfo {
    CK_OBJECT_HANDLE private_key = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE public_key = CK_INVALID_HANDLE;  // CK_INVALID_HANDLE: no public object.
    KeyType type = KeyType::kEcP256;
  };

  Pkcs11Hsm(std::string token_label, SecretString pin, std::shared_ptr<Pkcs11Module> module);

  const CK_FUNCTION_LIST& fns() const { return module_->fns(); }

  // The cached KeyInfo, or one found with C_FindObjects on `session` (and then cached).
  absl::StatusOr<KeyInfo> ResolveKey(CK_SESSION_HANDLE session, std::string_view key_id);
  absl::StatusOr<KeyInfo> FindKey(CK_SESSION_HANDLE session, std::string_view key_id);
  // Runs `fn` with the key's KeyInfo; if the module says a cached handle is stale, drops it,
  // looks the key up again and runs `fn` once more.
  absl::Status WithKey(CK_SESSION_HANDLE session, std::string_view key_id,
                       absl::FunctionRef<absl::Status(const KeyInfo&)> fn);
  void ForgetKey(std::string_view key_id);
  absl::StatusOr<std::string> PublicKeySpki(CK_SESSION_HANDLE session, const KeyInfo& key);
  // SignDigests without counting its errors (SignDigests counts them once).
  absl::StatusOr<std::vector<std::string>> SignDigestsUncounted(
      std::string_view key_id, const SignParams& params, std::span<const std::string> digests);
  // Signs digests[out->size()...] in order, appending to `out`, so a retry resumes.
  absl::Status SignBatch(CK_SESSION_HANDLE session, const KeyInfo& key, const SignParams& params,
                         std::span<const std::string> digests, std::vector<std::string>* out);

  const std::string token_label_;
  const SecretString pin_;  // Kept to log in again after a lost session; wiped on destruction.
  // Shared by the tokens of one process; finalised when the last of them goes.
  std::shared_ptr<Pkcs11Module> module_;
  std::unique_ptr<SessionPool> pool_;  // Declared after module_ and pin_: destroyed first.

  absl::Mutex keys_mu_;
  absl::flat_hash_map<std::string, KeyInfo> keys_ ABSL_GUARDED_BY(keys_mu_);
  // Ids with a GenerateKeyPair in flight, so two concurrent calls cannot both create one.
  absl::flat_hash_set<std::string> generating_ ABSL_GUARDED_BY(keys_mu_);
};

// NewPkcs11Hsm with a hook that may replace entries of the module's CK_FUNCTION_LIST, e.g.
// a C_Sign that fails once with CKR_SESSION_HANDLE_INVALID.
absl::StatusOr<std::unique_ptr<Pkcs11Hsm>> NewPkcs11HsmForTesting(const Pkcs11Config& config,
                                                                  FunctionListPatch patch);

}  // namespace qsign::hsm

#endif  // QSIGN_HSM_PKCS11_HSM_H_
