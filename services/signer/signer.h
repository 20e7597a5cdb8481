// The signing core (signature activation module): the only code that asks the HSM to sign with
// a user's key, and it does so only for hashes a valid, unused SAD covers. No gRPC types here.
#ifndef QSIGN_SERVICES_SIGNER_SIGNER_H_
#define QSIGN_SERVICES_SIGNER_SIGNER_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "consent/sad.h"
#include "hsm/hsm.h"
#include "services/signer/key_pool.h"
#include "services/signer/signer_store.h"

namespace qsign::signer {

struct SignerConfig {
  // Most hashes one SignHash call may carry.
  int max_batch = 100;
  // Most hashes one authorization (SAD) may cover; reported to clients as "multisign".
  int max_hashes_per_authorization = 100;
};

struct SignHashInput {
  std::string credential_id;
  std::string hash_algorithm_oid;
  std::string sign_algorithm_oid;
  std::vector<std::string> hashes;
  std::string sad;
  bool ecdsa_raw_signature = false;
  // Who asked (peer address), for the signing journal.
  std::string caller;
};

// Who performs an administrative act (lifecycle's identity), for the audit record.
struct Actor {
  std::string name;
  std::string address;
};

class Signer {
 public:
  // None of the pointers is owned; all must outlive the Signer. With a `key_pool`, CreateKey
  // takes a pre-generated key from it (renamed to the user's key id) when one is ready.
  Signer(hsm::Hsm* hsm, SignerStore* store, const consent::SadVerifier* sad_verifier,
         const Clock* clock, SignerConfig config, KeyPool* key_pool = nullptr);

  absl::StatusOr<std::vector<Credential>> ListCredentials(std::string_view account_id,
                                                          bool only_active);
  absl::StatusOr<Credential> GetCredentialInfo(std::string_view credential_id);

  // Every check of the SAD and the request happens before the key is touched; the SAD is
  // consumed (recorded as used, for every replica) just before signing, and released again if
  // the HSM then fails (the error goes back; the SAD may be sent again).
  absl::StatusOr<std::vector<std::string>> SignHash(const SignHashInput& input);

  absl::StatusOr<Credential> CreateKey(std::string_view credential_id, std::string_view account_id,
                                       hsm::KeyType key_type, const Actor& actor);
  absl::StatusOr<Credential> SetCertificate(std::string_view credential_id,
                                            std::vector<std::string> chain_der, const Actor& actor);
  // From its return on, no replica signs with the credential (its key stays). Idempotent.
  absl::StatusOr<Credential> DisableCredential(std::string_view credential_id, const Actor& actor);
  // Why a key is destroyed: revoked or abandoned (DISABLED), or its certificate ended (EXPIRED,
  // refused before valid_to has passed).
  enum class DestroyReason { kRevoked, kExpired };
  // Disables (or expires) the credential, then destroys its HSM key. Idempotent.
  absl::StatusOr<Credential> DestroyKey(std::string_view credential_id, const Actor& actor,
                                        DestroyReason reason = DestroyReason::kRevoked);

  // Destroys the user keys in the HSM that have no credential record, left by a CreateKey
  // interrupted between the key generation and its record (a crash, a lost database). A key is
  // destroyed only if it was unrecorded at the previous sweep too, so a CreateKey in flight on
  // any replica is never touched as long as sweeps are further apart than a CreateKey takes.
  // Also destroys pool keys ("pool/...") older than twice the pool's max_age, which no running
  // pool keeps (a process that stopped without destroying its pool); a live pool's keys are
  // never touched. Each destruction is audited (signer.destroy_orphan_key) before the key goes.
  // The number destroyed.
  absl::StatusOr<int> SweepOrphanKeys();

  const SignerConfig& config() const { return config_; }

 private:
  // The immutable part of a credential, cached so that signing needs no credential query.
  struct KeyRef {
    std::string account_id;
    hsm::KeyType key_type;
    // The certificate's validity; cached only once a certificate is attached.
    std::optional<absl::Time> valid_from;
    std::optional<absl::Time> valid_to;
  };
  absl::StatusOr<KeyRef> LookupKey(std::string_view credential_id);
  // The new key of a credential under `key_id`: a pool key renamed to it when one is ready, else
  // generated now. A stale key under `key_id` (an attempt that crashed before its record) is
  // destroyed first, never reused.
  absl::StatusOr<hsm::PublicKey> NewUserKey(const std::string& key_id, hsm::KeyType key_type);
  // Destroys `key_id` after auditing it as an orphan; false (and `error` updated) when either
  // fails.
  bool DestroyOrphan(const std::string& key_id, const std::string& target, std::string_view why,
                     absl::Status& error);

  hsm::Hsm* hsm_;                             // Not owned.
  SignerStore* store_;                        // Not owned.
  const consent::SadVerifier* sad_verifier_;  // Not owned.
  const Clock* clock_;                        // Not owned.
  const SignerConfig config_;
  KeyPool* const key_pool_;  // Not owned; may be null.

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, KeyRef> keys_ ABSL_GUARDED_BY(mu_);
  absl::Mutex sweep_mu_;
  // Key ids without a credential record at the last sweep.
  absl::flat_hash_set<std::string> orphan_suspects_ ABSL_GUARDED_BY(sweep_mu_);
};

// "credential_id: ..." unless 1..64 characters of [A-Za-z0-9._-].
absl::Status ValidateCredentialId(std::string_view credential_id);

// The HSM key id of a credential's key: "user/<credential_id>". Users' keys live in their own
// namespace: a credential id cannot contain '/' and no infrastructure key id (SAD, session, CA
// keys) starts with "user/", so nothing a caller names can reach an infrastructure key.
std::string UserKeyId(std::string_view credential_id);

}  // namespace qsign::signer

#endif  // QSIGN_SERVICES_SIGNER_SIGNER_H_
