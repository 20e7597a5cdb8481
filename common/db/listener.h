// A dedicated libpq connection that LISTENs on one PostgreSQL channel and tells its owner, on its
// own thread, what it hears: each notification's payload, when the channel is being listened to
// (first connection and every reconnect: notifications sent while it was down are lost, so the
// owner must assume anything changed), and when it is not (connection lost). A heartbeat round
// trip on the connection every `heartbeat` proves it alive: `alive()` is false when no round
// trip succeeded within 2 × heartbeat (a connection that died silently, a hung server), so that
// a cache kept exact by the notifications can stop trusting itself before TCP notices.
#ifndef QSIGN_COMMON_DB_LISTENER_H_
#define QSIGN_COMMON_DB_LISTENER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace qsign::db {

struct PgListenerCallbacks {
  // A notification on the channel (from any session, this process's included).
  absl::AnyInvocable<void(std::string_view payload)> notify;
  // LISTEN is in effect (the first connection, or a reconnect after `lost`).
  absl::AnyInvocable<void()> listening;
  // The connection is gone: notifications are lost until `listening` again.
  absl::AnyInvocable<void()> lost;
};

class PgListener {
 public:
  // Connects to `conninfo`, LISTENs on `channel` (a plain identifier), calls
  // callbacks.listening, then serves the callbacks on its thread until destroyed. Fails when the
  // first connection or LISTEN fails. The callbacks run one at a time: the first `listening` in
  // Start, on the caller's thread, every later call on the listener's thread.
  static absl::StatusOr<std::unique_ptr<PgListener>> Start(
      std::string conninfo, std::string channel, PgListenerCallbacks callbacks,
      absl::Duration heartbeat = absl::Seconds(1));
  ~PgListener();
  PgListener(const PgListener&) = delete;
  PgListener& operator=(const PgListener&) = delete;

  // LISTEN in effect and a round trip on the connection within 2 × heartbeat (steady clock).
  bool alive() const;
  // The connection's application_name in pg_stat_activity ("qsign listen <channel>"), so that an
  // operator (or a test) can tell the listener apart.
  static std::string ApplicationName(std::string_view channel);

  // How many times the connection was re-established after a loss (tests wait on it).
  uint64_t reconnects() const { return reconnects_.load(std::memory_order_acquire); }

 private:
  PgListener(std::string conninfo, std::string channel, PgListenerCallbacks callbacks,
             absl::Duration heartbeat, int wake_read, int wake_write);
  void Run(void* first_conn);
  void MarkAlive();

  const std::string conninfo_;
  const std::string channel_;
  PgListenerCallbacks callbacks_;
  const absl::Duration heartbeat_;
  const int wake_read_;  // A pipe that ends the loop when written to.
  const int wake_write_;
  std::atomic<bool> listening_{false};
  std::atomic<int64_t> alive_until_ns_{0};  // Steady clock, nanoseconds.
  std::atomic<uint64_t> reconnects_{0};
  std::thread thread_;
};

}  // namespace qsign::db

#endif  // QSIGN_COMMON_DB_LISTENER_H_
