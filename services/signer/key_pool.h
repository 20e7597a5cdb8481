// Key pairs generated ahead of need, so that CreateKey (one per certificate issued) does not wait
// for the HSM's key generation. Every pool key is generated in the HSM like any user key (private
// half sensitive, never extractable, sign only), lives under a key id of its own namespace
// ("pool/<type>/<unix seconds made>/<random>"), is handed out at most once (Take removes it under
// a lock), and becomes a user's key only by being renamed to that user's key id. A key unused
// for max_age is destroyed and replaced; Stop destroys every key still in the pool. Keys another
// process left behind (a crash) are destroyed by the signer's orphan-key sweep once they are
// older than twice max_age, which no live pool keeps a key for.
#ifndef QSIGN_SERVICES_SIGNER_KEY_POOL_H_
#define QSIGN_SERVICES_SIGNER_KEY_POOL_H_

#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "hsm/hsm.h"

namespace qsign::signer {

struct KeyPoolConfig {
  // Keys kept ready per key type; 0: no pool (CreateKey generates on the request path).
  int size = 0;
  std::vector<hsm::KeyType> types = {hsm::KeyType::kEcP256};
  // A key unused this long is destroyed and replaced.
  absl::Duration max_age = absl::Hours(1);
};

struct PooledKey {
  std::string key_id;  // "pool/..."; the caller renames it to the user's key id.
  hsm::PublicKey public_key;
};

class KeyPool {
 public:
  // `hsm` and `clock` must outlive the pool. Nothing is generated before Start.
  KeyPool(hsm::Hsm* hsm, const Clock* clock, KeyPoolConfig config);
  ~KeyPool();  // Stop().
  KeyPool(const KeyPool&) = delete;
  KeyPool& operator=(const KeyPool&) = delete;

  // Starts the thread that keeps `size` keys of each type ready.
  void Start();
  // Stops that thread and destroys every key still in the pool. Idempotent.
  void Stop();

  // A ready key of `type`, removed from the pool (no caller ever gets it again); nullopt when
  // none is ready (the caller generates one itself). Wakes the refill.
  std::optional<PooledKey> Take(hsm::KeyType type);

  // Keys of `type` ready now.
  int Ready(hsm::KeyType type);
  // Generates until every type has `size` keys ready (or a generation fails); for tests and
  // benchmarks that must not race the refill thread.
  absl::Status FillNow();

  const KeyPoolConfig& config() const { return config_; }

  // "pool/"
  static std::string_view Prefix();
  // When a pool key id says its key was made; nullopt when `key_id` is not a pool key id.
  static std::optional<absl::Time> MadeAt(std::string_view key_id);

 private:
  struct Ready_ {
    PooledKey key;
    absl::Time made_at;
  };
  // One generation for `type`; false when the HSM refused (logged).
  absl::Status GenerateOne(hsm::KeyType type);
  // Destroys the keys of this pool older than max_age.
  void ExpireOld();
  void Run();
  bool Woken() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || wake_; }

  hsm::Hsm* hsm_;       // Not owned.
  const Clock* clock_;  // Not owned.
  const KeyPoolConfig config_;

  absl::Mutex mu_;
  std::map<hsm::KeyType, std::deque<Ready_>> ready_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  std::thread refill_;
};

}  // namespace qsign::signer

#endif  // QSIGN_SERVICES_SIGNER_KEY_POOL_H_
