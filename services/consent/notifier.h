// Wake-ups for what waits on an account (open WatchRequests streams and AwaitRequest, which
// listen without a thread (account_wait.h); AwaitAuthorization, a thread that waits): in-process
// after each of our own commits, and from every other replica through PostgreSQL LISTEN/NOTIFY
// (PgAccountListener). Waiters still re-read the database on a slow timer, so a lost notification
// costs latency, never correctness.
#ifndef QSIGN_SERVICES_CONSENT_NOTIFIER_H_
#define QSIGN_SERVICES_CONSENT_NOTIFIER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace qsign::consent {

class AccountNotifier {
 private:
  struct Entry;

 public:
  // Interest in one account, from construction on: a Notify after that is never missed.
  class Subscription {
   public:
    ~Subscription();
    Subscription(const Subscription&) = delete;
    Subscription& operator=(const Subscription&) = delete;

    // Waits until the account was notified since the last Wait (or since the subscription), the
    // notifier is closed, or `deadline` (real time). True when notified or closed.
    bool Wait(absl::Time deadline);

   private:
    friend class AccountNotifier;
    Subscription(AccountNotifier* notifier, std::string account_id, Entry* entry, uint64_t seen)
        : notifier_(notifier), account_id_(std::move(account_id)), entry_(entry), seen_(seen) {}
    AccountNotifier* notifier_;  // Not owned.
    std::string account_id_;
    Entry* entry_;  // Owned by the notifier; alive while it has subscribers.
    uint64_t seen_;
  };

  // Interest in one account without a waiting thread: `wake` runs after each Notify of the
  // account and at Close (at once when closed already), until the Listener is destroyed. It runs
  // under the notifier's lock, so it must only hand the work over (TaskRunner::Post), never
  // block or call the notifier.
  class Listener {
   public:
    ~Listener();
    Listener(const Listener&) = delete;
    Listener& operator=(const Listener&) = delete;

   private:
    friend class AccountNotifier;
    Listener(AccountNotifier* notifier, std::string account_id, Entry* entry,
             absl::AnyInvocable<void()> wake)
        : notifier_(notifier),
          account_id_(std::move(account_id)),
          entry_(entry),
          wake_(std::move(wake)) {}
    AccountNotifier* notifier_;  // Not owned.
    std::string account_id_;
    Entry* entry_;  // Owned by the notifier; alive while it has subscribers.
    absl::AnyInvocable<void()> wake_;
  };

  AccountNotifier();
  ~AccountNotifier();

  std::unique_ptr<Subscription> Subscribe(std::string_view account_id);
  std::unique_ptr<Listener> Listen(std::string_view account_id, absl::AnyInvocable<void()> wake);
  void Notify(std::string_view account_id);
  // Wakes every waiter for good (server shutdown); later Waits return at once.
  void Close();
  bool closed() const;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// The NOTIFY payload for `account_id`: the account id, a tab, and this process's origin tag
// (random, drawn once). PgAccountListener skips payloads of its own origin, because Consent
// already notified in-process after that commit; every other replica's wake the account. So
// run one Consent per process: a second one in the same process, on the same database, would
// see the first one's changes only at its poll interval.
std::string NotifyPayload(std::string_view account_id);

// A dedicated libpq connection that LISTENs on a channel and calls notifier->Notify(payload) for
// each notification from another process (a payload without an origin tag counts as another
// process's), reconnecting after errors. Stops in the destructor.
class PgAccountListener {
 public:
  // `notifier` must outlive the listener. Fails when the first connection cannot be made.
  static absl::StatusOr<std::unique_ptr<PgAccountListener>> Start(std::string conninfo,
                                                                  std::string channel,
                                                                  AccountNotifier* notifier);
  ~PgAccountListener();

 private:
  PgAccountListener(std::string conninfo, std::string channel, AccountNotifier* notifier,
                    int wake_fd_read, int wake_fd_write)
      : conninfo_(std::move(conninfo)),
        channel_(std::move(channel)),
        notifier_(notifier),
        wake_read_(wake_fd_read),
        wake_write_(wake_fd_write) {}
  void Run(void* first_conn);

  const std::string conninfo_;
  const std::string channel_;
  AccountNotifier* notifier_;  // Not owned.
  int wake_read_;              // A pipe that ends the loop when written to.
  int wake_write_;
  std::thread thread_;
};

}  // namespace qsign::consent

#endif  // QSIGN_SERVICES_CONSENT_NOTIFIER_H_
