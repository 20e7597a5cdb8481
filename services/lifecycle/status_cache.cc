#include "services/lifecycle/status_cache.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace qsign::lifecycle {

absl::StatusOr<std::unique_ptr<CachedStatusSource>> CachedStatusSource::Start(
    const std::string& conninfo, CertStatusSource* source, size_t max_entries) {
  std::unique_ptr<CachedStatusSource> cache(new CachedStatusSource(source, max_entries));
  CachedStatusSource* self = cache.get();
  auto listener = db::PgListener::Start(conninfo, std::string(kStatusChannel),
                                        {.notify =
                                             [self](std::string_view) {
                                               self->notifications_.fetch_add(1);
                                               self->Clear();
                                             },
                                         .listening = [self] { self->Clear(); },
                                         .lost = [self] { self->Clear(); }});
  if (!listener.ok()) return listener.status();
  cache->listener_ = *std::move(listener);
  return cache;
}

CachedStatusSource::~CachedStatusSource() { listener_.reset(); }

void CachedStatusSource::Clear() {
  absl::MutexLock lock(&mu_);
  ++epoch_;
  entries_.clear();
}

absl::StatusOr<CertStatus> CachedStatusSource::Status(std::string_view ca_name,
                                                      std::string_view serial_hex) {
  const std::string key = absl::StrCat(Av(ca_name), " ", Av(serial_hex));
  uint64_t epoch = 0;
  // A revocation in this process is seen at once (its NOTIFY may still be on its way).
  const uint64_t generation = source_->Generation();
  const bool live = this->live();
  if (live) {
    absl::MutexLock lock(&mu_);
    if (source_generation_ != generation) {
      source_generation_ = generation;
      ++epoch_;
      entries_.clear();
    }
    auto it = entries_.find(key);
    if (it != entries_.end()) return it->second;
    epoch = epoch_;
  }
  misses_.fetch_add(1);
  absl::StatusOr<CertStatus> status = source_->Status(ca_name, serial_hex);
  if (!live || !status.ok()) return status;
  absl::MutexLock lock(&mu_);
  // Not after a Clear that came while the source was read (its answer may predate the change
  // the notification announced), nor when the listener died meanwhile.
  if (epoch_ != epoch || source_generation_ != source_->Generation() || !this->live()) {
    return status;
  }
  if (entries_.size() >= max_entries_) entries_.clear();
  entries_.emplace(key, *status);
  return status;
}

}  // namespace qsign::lifecycle
