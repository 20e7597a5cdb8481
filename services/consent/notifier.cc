#include "services/consent/notifier.h"

#include <openssl/rand.h>

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

absl::StatusOr<std::unique_ptr<PgAccountListener>> PgAccountListener::Start(
    std::string conninfo, std::string channel, AccountNotifier* notifier) {
  auto listener = db::PgListener::Start(
      std::move(conninfo), std::move(channel),
      {.notify =
           [notifier](std::string_view payload) {
             const size_t tab = payload.find(kOriginSeparator);
             // Our own commits were notified in-process already: waking again costs a read each.
             if (tab == std::string_view::npos || payload.substr(tab + 1) != Origin()) {
               notifier->Notify(payload.substr(0, tab));
             }
           },
       // The first call is Start's own (nobody waits yet); every later one is a reconnect.
       .listening =
           [notifier, first = true]() mutable {
             if (!first) notifier->NotifyAll();
             first = false;
           }});
  if (!listener.ok()) return listener.status();
  return std::unique_ptr<PgAccountListener>(new PgAccountListener(*std::move(listener)));
}

}  // namespace qsign::consent
