// A throwaway PostgreSQL server for tests: its own temporary directory, a Unix socket in that
// directory and no TCP, fsync off, trust authentication for the superuser "postgres".
//
// As root (containers, CI) the server runs as the system user "postgres" through runuser, since
// initdb and postgres refuse to run as root. A watchdog process stops the server and removes the
// directory if the test process dies without running the destructor; it also covers a server
// started again by Restart.
//
// The directory is under $TMPDIR if set, else /dev/shm when it is a tmpfs with 2 GiB free, else
// /tmp. The first server of a user and PostgreSQL build runs initdb (~1.2 s) and keeps the result
// there as qsign-pg-template-*; later ones copy it (~0.2 s to ready). QSIGN_PG_NO_TEMPLATE=1
// always runs initdb. QSIGN_PG_SETTINGS="name=value name=value" adds server settings (`-c`),
// for profiling runs only (bench_login --pg_stat_statements).
#ifndef QSIGN_COMMON_DB_TESTING_PG_SERVER_H_
#define QSIGN_COMMON_DB_TESTING_PG_SERVER_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace qsign::db::testing {

class PgServer {
 public:
  struct Database {
    std::string name;
    std::string conninfo;  // "host=<socket dir> port=5432 dbname=<name> user=postgres"
  };

  // Creates the data directory, starts postgres and waits until it accepts connections.
  static absl::StatusOr<std::unique_ptr<PgServer>> Start();
  // Stops the server (immediate mode) and removes its directory.
  ~PgServer();
  PgServer(const PgServer&) = delete;
  PgServer& operator=(const PgServer&) = delete;

  // A new, empty database for one test. Thread-safe.
  absl::StatusOr<Database> CreateDatabase();

  // Outages, for tests of what clients do while the database is gone. Neither is thread-safe
  // (call them from the test's own thread, never alongside each other or CreateDatabase).
  //
  // Stops the server with a fast shutdown: open sessions are ended, committed data stays in
  // the directory, the socket disappears. OK if it is already stopped.
  absl::Status Stop();
  // Starts the server again on the same directory and socket and waits until it accepts
  // connections. FAILED_PRECONDITION if it is running.
  absl::Status Restart();
  // kill -9 of the postmaster and every server process (a crashed container): no shutdown
  // checkpoint, crash recovery on Restart. Committed transactions survive only with
  // synchronous_commit on for them (the server's default here is off: `ALTER DATABASE ... SET
  // synchronous_commit = on` for a test that counts acknowledged writes).
  absl::Status Kill();
  bool running() const { return server_pid_ > 0; }

  // The superuser's connection to the "postgres" maintenance database.
  std::string AdminConninfo() const;
  const std::string& dir() const { return dir_; }

 private:
  explicit PgServer(std::string dir) : dir_(std::move(dir)) {}
  absl::Status Init();
  // Spawns postgres on dir_/data and waits until it accepts connections.
  absl::Status StartPostgres();
  // Signals the postmaster and reaps it; escalates to SIGKILL after `patience`.
  absl::Status StopPostgres(int signal, absl::Duration patience);
  std::string Conninfo(const std::string& dbname) const;

  const std::string dir_;  // Holds data/, the socket and the logs.
  pid_t server_pid_ = -1;  // postgres, or runuser running it.
  int watchdog_fd_ = -1;   // Write end of the pipe whose EOF tells the watchdog to clean up.
  pid_t watchdog_pid_ = -1;
  absl::Mutex mu_;
  int next_database_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace qsign::db::testing

#endif  // QSIGN_COMMON_DB_TESTING_PG_SERVER_H_
