// Wake-ups for what waits on an account (open WatchRequests streams, AwaitRequest and
// AwaitAuthorization, which listen without a thread: account_wait.h): in-process after each of
// our own commits, and from every other replica through PostgreSQL LISTEN/NOTIFY
// (PgAccountListener). An in-process wake-up may say what changed (AccountEvent), so that a
// waiter can act without reading the database; every other wake-up means "read again". Waiters
// still re-read the database on a slow timer, and the listener wakes every waiter after it
// reconnects, so a lost notification costs latency, never correctness.
#ifndef QSIGN_SERVICES_CONSENT_NOTIFIER_H_
#define QSIGN_SERVICES_CONSENT_NOTIFIER_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/db/listener.h"
#include "services/consent/consent_store.h"

namespace qsign::consent {

// What this process committed on an account, told to its waiters with the wake-up.
struct AccountEvent {
  enum class Kind {
    // `request` was inserted PENDING (every field as stored) while `active_device_id` was the
    // account's active device.
    kRequestCreated,
    // `request` (request_id, state, decided_at, decided_by_device, sad, sad_expires_at as
    // stored) left PENDING: APPROVED or DENIED.
    kRequestDecided,
  };
  Kind kind = Kind::kRequestCreated;
  RequestRecord request;
  std::string active_device_id;
};

// What woke a waiter since its last look: events in commit order, or (read) something that
// only a read of the database tells: another replica's commit, a change without an event, the
// listener's reconnect, shutdown.
struct AccountWake {
  bool read = false;
  std::vector<std::shared_ptr<const AccountEvent>> events;
};

class AccountNotifier {
 private:
  struct Entry;

 public:
  // Interest in one account without a waiting thread: `wake` runs after each Notify of the
  // account (with its event, or null: read again) and at Close (null), until the Listener is
  // destroyed. It runs under the notifier's lock, so it must only hand the work over
  // (TaskRunner::Post), never block or call the notifier.
  using Wake = absl::AnyInvocable<void(std::shared_ptr<const AccountEvent>)>;
  class Listener {
   public:
    ~Listener();
    Listener(const Listener&) = delete;
    Listener& operator=(const Listener&) = delete;

   private:
    friend class AccountNotifier;
    Listener(AccountNotifier* notifier, std::string account_id, Entry* entry, Wake wake)
        : notifier_(notifier),
          account_id_(std::move(account_id)),
          entry_(entry),
          wake_(std::move(wake)) {}
    AccountNotifier* notifier_;  // Not owned.
    std::string account_id_;
    Entry* entry_;  // Owned by the notifier; alive while it has listeners.
    Wake wake_;
  };

  AccountNotifier();
  ~AccountNotifier();

  // Numbers that change whenever an account is notified: take them before reading the
  // database (when the account is not known yet), then pass the account's (VersionOf) to Listen,
  // which wakes at once (null event) if the account was notified between the read and the
  // listening. (Accounts share numbers by hash: another's notification may wake too.)
  static constexpr size_t kVersionSlots = 1024;
  using Versions = std::array<uint64_t, kVersionSlots>;
  Versions Snapshot() const;
  static uint64_t VersionOf(const Versions& versions, std::string_view account_id) {
    return versions[Slot(account_id)];
  }
  // The account's version now.
  uint64_t Version(std::string_view account_id) const {
    return versions_[Slot(account_id)].load(std::memory_order_acquire);
  }
  std::unique_ptr<Listener> Listen(std::string_view account_id, Wake wake);
  std::unique_ptr<Listener> Listen(std::string_view account_id, Wake wake, uint64_t read_at);
  // `event`, if any, must be what this process just committed on the account. Answers the
  // account's version (VersionOf) right after this notification.
  uint64_t Notify(std::string_view account_id, std::shared_ptr<const AccountEvent> event = nullptr);
  // Wakes every listener of every account (null event): notifications may have been lost
  // (PgAccountListener after a reconnect).
  void NotifyAll();
  // Wakes every listener for good (server shutdown); later listeners are woken at once.
  void Close();
  bool closed() const;

 private:
  static size_t Slot(std::string_view account_id);

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
  // Snapshot(): one counter per hash slot of account ids, bumped by Notify under mu_.
  std::array<std::atomic<uint64_t>, kVersionSlots> versions_{};
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// The NOTIFY payload for `account_id`: the account id, a tab, and this process's origin tag
// (random, drawn once). PgAccountListener skips payloads of its own origin, because Consent
// already notified in-process after that commit; every other replica's wake the account. So
// run one Consent per process: a second one in the same process, on the same database, would
// see the first one's changes only at its poll interval.
std::string NotifyPayload(std::string_view account_id);

// LISTENs on a channel (a db::PgListener: its own connection, reconnects, heartbeat) and calls
// notifier->Notify(payload) for each notification from another process (a payload without an
// origin tag counts as another process's). After a reconnect it wakes every waiter
// (notifier->NotifyAll): what was notified while the connection was down is lost. Stops in the
// destructor.
class PgAccountListener {
 public:
  // `notifier` must outlive the listener. Fails when the first connection cannot be made.
  static absl::StatusOr<std::unique_ptr<PgAccountListener>> Start(std::string conninfo,
                                                                  std::string channel,
                                                                  AccountNotifier* notifier);

 private:
  explicit PgAccountListener(std::unique_ptr<db::PgListener> listener)
      : listener_(std::move(listener)) {}

  std::unique_ptr<db::PgListener> listener_;
};

}  // namespace qsign::consent

#endif  // QSIGN_SERVICES_CONSENT_NOTIFIER_H_
