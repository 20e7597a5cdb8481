#include "common/db/listener.h"

#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/db/pg.h"
#include "common/log.h"
#include "common/strings.h"

namespace qsign::db {
namespace {

int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A new connection with LISTEN in effect, non-blocking for the heartbeat's queries.
absl::StatusOr<PGconn*> Connect(const std::string& conninfo, const std::string& channel) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  if (conn == nullptr || PQstatus(conn) != CONNECTION_OK) {
    std::string msg = conn != nullptr ? PQerrorMessage(conn) : "out of memory";
    if (conn != nullptr) PQfinish(conn);
    return absl::UnavailableError(absl::StrCat("LISTEN ", channel, ": cannot connect: ", msg));
  }
  // Named in pg_stat_activity (the channel is a plain identifier: no quoting needed).
  PGresult* res =
      PQexec(conn, absl::StrCat("SET application_name TO '", PgListener::ApplicationName(channel),
                                "'; LISTEN ", channel)
                       .c_str());
  const bool ok = res != nullptr && PQresultStatus(res) == PGRES_COMMAND_OK;
  if (res != nullptr) PQclear(res);
  if (!ok) {
    std::string msg = PQerrorMessage(conn);
    PQfinish(conn);
    return absl::UnavailableError(absl::StrCat("LISTEN ", channel, " failed: ", msg));
  }
  return conn;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PgListener>> PgListener::Start(std::string conninfo,
                                                              std::string channel,
                                                              PgListenerCallbacks callbacks,
                                                              absl::Duration heartbeat) {
  if (auto s = ValidateIdentifier(channel); !s.ok()) return s;
  auto first = Connect(conninfo, channel);
  if (!first.ok()) return first.status();
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    PQfinish(*first);
    return absl::InternalError("LISTEN: pipe failed");
  }
  std::unique_ptr<PgListener> listener(
      new PgListener(std::move(conninfo), std::move(channel), std::move(callbacks),
                     std::max(heartbeat, absl::Milliseconds(10)), fds[0], fds[1]));
  PGconn* conn = *first;
  listener->listening_.store(true);
  listener->MarkAlive();
  if (listener->callbacks_.listening) listener->callbacks_.listening();
  listener->thread_ = std::thread([l = listener.get(), conn] { l->Run(conn); });
  return listener;
}

PgListener::PgListener(std::string conninfo, std::string channel, PgListenerCallbacks callbacks,
                       absl::Duration heartbeat, int wake_read, int wake_write)
    : conninfo_(std::move(conninfo)),
      channel_(std::move(channel)),
      callbacks_(std::move(callbacks)),
      heartbeat_(heartbeat),
      wake_read_(wake_read),
      wake_write_(wake_write) {}

PgListener::~PgListener() {
  const char byte = 0;
  if (write(wake_write_, &byte, 1) != 1) {
    Log(LogLevel::kError, "db", "LISTEN: cannot wake the listener thread");
  }
  if (thread_.joinable()) thread_.join();
  close(wake_read_);
  close(wake_write_);
}

std::string PgListener::ApplicationName(std::string_view channel) {
  return absl::StrCat("qsign listen ", Av(channel));
}

bool PgListener::alive() const {
  return listening_.load(std::memory_order_acquire) &&
         SteadyNowNs() < alive_until_ns_.load(std::memory_order_acquire);
}

void PgListener::MarkAlive() {
  alive_until_ns_.store(SteadyNowNs() + absl::ToInt64Nanoseconds(2 * heartbeat_),
                        std::memory_order_release);
}

void PgListener::Run(void* first_conn) {
  auto* conn = static_cast<PGconn*>(first_conn);  // Owned by this loop.
  const int64_t heartbeat_ns = absl::ToInt64Nanoseconds(heartbeat_);
  int64_t next_probe = SteadyNowNs() + heartbeat_ns;
  int64_t probe_sent = 0;  // 0: no heartbeat query outstanding.
  const auto drop = [&](std::string_view why) {
    Log(LogLevel::kWarning, "db", "LISTEN: connection lost; reconnecting",
        {{"channel", channel_}, {"why", why}});
    PQfinish(conn);
    conn = nullptr;
    probe_sent = 0;
    listening_.store(false, std::memory_order_release);
    if (callbacks_.lost) callbacks_.lost();
  };
  while (true) {
    if (conn == nullptr) {
      auto reconnected = Connect(conninfo_, channel_);
      if (reconnected.ok()) {
        conn = *reconnected;
        PQsetnonblocking(conn, 1);
        reconnects_.fetch_add(1, std::memory_order_acq_rel);
        listening_.store(true, std::memory_order_release);
        MarkAlive();
        next_probe = SteadyNowNs() + heartbeat_ns;
        // What was notified while the connection was down is lost: the owner starts afresh.
        if (callbacks_.listening) callbacks_.listening();
      } else {
        Log(LogLevel::kWarning, "db", "LISTEN: reconnect failed",
            {{"channel", channel_}, {"status", reconnected.status().ToString()}});
      }
    } else if (PQisnonblocking(conn) == 0) {
      PQsetnonblocking(conn, 1);
    }
    const int64_t now = SteadyNowNs();
    if (conn != nullptr && probe_sent == 0 && now >= next_probe) {
      // The heartbeat: a round trip proves the connection (and so LISTEN) alive.
      if (PQsendQuery(conn, "SELECT 1") == 0 || PQflush(conn) < 0) {
        drop(PQerrorMessage(conn));
        continue;
      }
      probe_sent = now;
    }
    if (conn != nullptr && probe_sent != 0 && now - probe_sent > 5 * heartbeat_ns) {
      drop("no answer to the heartbeat");
      continue;
    }
    const int64_t wait_ns =
        conn == nullptr ? heartbeat_ns
                        : (probe_sent != 0 ? heartbeat_ns : std::max<int64_t>(0, next_probe - now));
    pollfd fds[2] = {{.fd = wake_read_, .events = POLLIN, .revents = 0},
                     {.fd = conn != nullptr ? PQsocket(conn) : -1, .events = POLLIN, .revents = 0}};
    const int n = poll(fds, conn != nullptr ? 2 : 1, static_cast<int>(wait_ns / 1'000'000) + 1);
    if (n > 0 && (fds[0].revents & POLLIN)) break;
    if (conn == nullptr || n <= 0 || fds[1].revents == 0) continue;
    if (PQconsumeInput(conn) == 0) {
      drop(PQerrorMessage(conn));
      continue;
    }
    bool failed = false;
    while (probe_sent != 0 && PQisBusy(conn) == 0) {
      PGresult* res = PQgetResult(conn);
      if (res == nullptr) {  // The heartbeat query is complete.
        probe_sent = 0;
        next_probe = SteadyNowNs() + heartbeat_ns;
        break;
      }
      if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        MarkAlive();
      } else {
        failed = true;
      }
      PQclear(res);
    }
    if (failed) {
      drop(PQerrorMessage(conn));
      continue;
    }
    while (PGnotify* note = PQnotifies(conn)) {
      if (callbacks_.notify) callbacks_.notify(note->extra);
      PQfreemem(note);
    }
  }
  if (conn != nullptr) PQfinish(conn);
}

}  // namespace qsign::db
