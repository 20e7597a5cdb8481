#include "services/consent/notifier.h"

#include <fcntl.h>
#include <libpq-fe.h>
#include <openssl/rand.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/db/pg.h"
#include "common/log.h"
#include "common/strings.h"

namespace qsign::consent {
namespace {

constexpr char kOriginSeparator = '\t';

// Random per process, so that two replicas never share one.
const std::string& Origin() {
  static const std::string* origin = [] {
    unsigned char b[8];
    if (RAND_bytes(b, sizeof(b)) != 1) std::abort();  // The OS CSPRNG does not fail.
    return new std::string(
        absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(b), sizeof(b))));
  }();
  return *origin;
}

}  // namespace

std::string NotifyPayload(std::string_view account_id) {
  return absl::StrCat(Av(account_id), std::string(1, kOriginSeparator), Origin());
}

// ---- AccountNotifier ----

struct AccountNotifier::Entry {
  std::vector<Listener*> listeners;  // Not owned.
};

AccountNotifier::AccountNotifier() = default;
AccountNotifier::~AccountNotifier() = default;

size_t AccountNotifier::Slot(std::string_view account_id) {
  return absl::HashOf(Av(account_id)) % kVersionSlots;
}

AccountNotifier::Versions AccountNotifier::Snapshot() const {
  Versions out;
  for (size_t i = 0; i < kVersionSlots; ++i) out[i] = versions_[i].load(std::memory_order_acquire);
  return out;
}

std::unique_ptr<AccountNotifier::Listener> AccountNotifier::Listen(std::string_view account_id,
                                                                   Wake wake) {
  absl::MutexLock lock(&mu_);
  auto& slot = entries_[Av(account_id)];
  if (!slot) slot = std::make_unique<Entry>();
  std::unique_ptr<Listener> listener(
      new Listener(this, std::string(account_id), slot.get(), std::move(wake)));
  slot->listeners.push_back(listener.get());
  if (closed_) listener->wake_(nullptr);
  return listener;
}

std::unique_ptr<AccountNotifier::Listener> AccountNotifier::Listen(std::string_view account_id,
                                                                   Wake wake, uint64_t read_at) {
  auto listener = Listen(account_id, std::move(wake));
  absl::MutexLock lock(&mu_);
  // Notify bumps the version under mu_: a notification before the listener was in place shows.
  if (!closed_ && versions_[Slot(account_id)].load(std::memory_order_acquire) != read_at) {
    listener->wake_(nullptr);
  }
  return listener;
}

AccountNotifier::Listener::~Listener() {
  absl::MutexLock lock(&notifier_->mu_);
  auto& listeners = entry_->listeners;
  listeners.erase(std::find(listeners.begin(), listeners.end(), this));
  if (listeners.empty()) notifier_->entries_.erase(account_id_);
}

uint64_t AccountNotifier::Notify(std::string_view account_id,
                                 std::shared_ptr<const AccountEvent> event) {
  absl::MutexLock lock(&mu_);
  const uint64_t version = versions_[Slot(account_id)].fetch_add(1, std::memory_order_acq_rel) + 1;
  auto it = entries_.find(Av(account_id));
  if (it == entries_.end()) return version;
  for (Listener* l : it->second->listeners) l->wake_(event);
  return version;
}

void AccountNotifier::NotifyAll() {
  absl::MutexLock lock(&mu_);
  for (auto& v : versions_) v.fetch_add(1, std::memory_order_acq_rel);
  for (auto& [id, entry] : entries_) {
    for (Listener* l : entry->listeners) l->wake_(nullptr);
  }
}

void AccountNotifier::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
  for (auto& [id, entry] : entries_) {
    for (Listener* l : entry->listeners) l->wake_(nullptr);
  }
}

bool AccountNotifier::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

// ---- PgAccountListener ----

namespace {

absl::StatusOr<PGconn*> ConnectAndListen(const std::string& conninfo, const std::string& channel) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  if (conn == nullptr || PQstatus(conn) != CONNECTION_OK) {
    std::string msg = conn ? PQerrorMessage(conn) : "out of memory";
    if (conn) PQfinish(conn);
    return absl::UnavailableError(absl::StrCat("listener: cannot connect: ", msg));
  }
  PGresult* res = PQexec(conn, absl::StrCat("LISTEN ", channel).c_str());
  const bool ok = res != nullptr && PQresultStatus(res) == PGRES_COMMAND_OK;
  if (res) PQclear(res);
  if (!ok) {
    std::string msg = PQerrorMessage(conn);
    PQfinish(conn);
    return absl::UnavailableError(absl::StrCat("listener: LISTEN failed: ", msg));
  }
  return conn;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PgAccountListener>> PgAccountListener::Start(
    std::string conninfo, std::string channel, AccountNotifier* notifier) {
  if (auto s = db::ValidateIdentifier(channel); !s.ok()) return s;
  auto first = ConnectAndListen(conninfo, channel);
  if (!first.ok()) return first.status();
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    PQfinish(*first);
    return absl::InternalError("listener: pipe failed");
  }
  std::unique_ptr<PgAccountListener> listener(
      new PgAccountListener(std::move(conninfo), std::move(channel), notifier, fds[0], fds[1]));
  PGconn* conn = *first;
  listener->thread_ = std::thread([l = listener.get(), conn] { l->Run(conn); });
  return listener;
}

PgAccountListener::~PgAccountListener() {
  const char byte = 0;
  if (write(wake_write_, &byte, 1) != 1) {
    Log(LogLevel::kError, "consent", "listener: cannot wake the listener thread");
  }
  if (thread_.joinable()) thread_.join();
  close(wake_read_);
  close(wake_write_);
}

void PgAccountListener::Run(void* first_conn) {
  auto* conn = static_cast<PGconn*>(first_conn);  // Owned by this loop.
  while (true) {
    if (conn == nullptr) {
      auto reconnected = ConnectAndListen(conninfo_, channel_);
      if (reconnected.ok()) {
        conn = *reconnected;
        // What other replicas notified while this connection was down is lost: everyone reads.
        notifier_->NotifyAll();
      } else {
        Log(LogLevel::kWarning, "consent", "listener: reconnect failed",
            {{"status", reconnected.status().ToString()}});
      }
    }
    pollfd fds[2] = {{.fd = wake_read_, .events = POLLIN, .revents = 0},
                     {.fd = conn ? PQsocket(conn) : -1, .events = POLLIN, .revents = 0}};
    const int n = poll(fds, conn ? 2 : 1, 1000);
    if (n > 0 && (fds[0].revents & POLLIN)) break;
    if (conn == nullptr || n <= 0) continue;
    if (PQconsumeInput(conn) == 0) {
      Log(LogLevel::kWarning, "consent", "listener: connection lost; reconnecting",
          {{"error", PQerrorMessage(conn)}});
      PQfinish(conn);
      conn = nullptr;
      continue;
    }
    while (PGnotify* note = PQnotifies(conn)) {
      std::string_view payload(note->extra);
      const size_t tab = payload.find(kOriginSeparator);
      // Our own commits were notified in-process already: waking again costs a read each.
      if (tab == std::string_view::npos || payload.substr(tab + 1) != Origin()) {
        notifier_->Notify(payload.substr(0, tab));
      }
      PQfreemem(note);
    }
  }
  if (conn) PQfinish(conn);
}

}  // namespace qsign::consent
