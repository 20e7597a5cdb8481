// What this process made lately, kept for the call that usually follows it (a wait on a request
// just created, a login just started), so that call need not read it back from the database.
// Each entry is taken once; at most `capacity` are kept, the oldest dropped first. A miss only
// means a read: callers must never depend on a hit. Thread-safe.
#ifndef QSIGN_COMMON_RECENT_MAP_H_
#define QSIGN_COMMON_RECENT_MAP_H_

#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace qsign {

template <typename V>
class RecentMap {
 public:
  explicit RecentMap(size_t capacity) : capacity_(capacity) {}

  void Add(std::string key, V value) {
    absl::MutexLock lock(&mu_);
    order_.push_back(key);
    entries_.insert_or_assign(std::move(key), std::move(value));
    while (order_.size() > capacity_) {
      entries_.erase(order_.front());
      order_.pop_front();
    }
  }

  // The entry, removed; nullopt when there is none (never added, taken, or dropped).
  std::optional<V> Take(std::string_view key) {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(absl::string_view(key.data(), key.size()));
    if (it == entries_.end()) return std::nullopt;
    std::optional<V> out(std::move(it->second));
    entries_.erase(it);
    return out;
  }

 private:
  const size_t capacity_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, V> entries_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> order_ ABSL_GUARDED_BY(mu_);  // Oldest first; may name taken keys.
};

}  // namespace qsign

#endif  // QSIGN_COMMON_RECENT_MAP_H_
