// Certificate statuses for OCSP answers signed on demand (requests with a nonce), kept in this
// process and exact up to PostgreSQL's NOTIFY latency: every change of a certificate's status,
// by any replica, is announced on kStatusChannel by a trigger in the same transaction
// (lifecycle schema migration 8), and each notification empties the cache. The cache answers
// only while its LISTEN connection is alive (db::PgListener: connected, LISTEN in effect, a
// heartbeat round trip within the last two seconds); otherwise every lookup goes to the source,
// and a reconnect starts from an empty cache, since notifications sent while it was down are
// lost. Good, revoked and unknown are kept alike (a new certificate row is a change like any other:
// an unknown serial stays unknown only until the issuance commits and notifies); a lookup error is
// never cached. docs/PERFORMANCE.md ("the status cache") has the
// freshness argument.
#ifndef QSIGN_SERVICES_LIFECYCLE_STATUS_CACHE_H_
#define QSIGN_SERVICES_LIFECYCLE_STATUS_CACHE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/db/listener.h"
#include "services/lifecycle/ca/ocsp.h"

namespace qsign::lifecycle {

// The channel lifecycle's trigger notifies (payload: "<ca_name> <serial_hex>").
inline constexpr std::string_view kStatusChannel = "lifecycle_cert_status";

class CachedStatusSource final : public CertStatusSource {
 public:
  // Listens on `conninfo`'s database. `source` (not owned) must outlive this; its Generation
  // (a revocation in this process) also empties the cache, without waiting for the NOTIFY.
  static absl::StatusOr<std::unique_ptr<CachedStatusSource>> Start(const std::string& conninfo,
                                                                   CertStatusSource* source,
                                                                   size_t max_entries = 100'000);
  ~CachedStatusSource() override;

  absl::StatusOr<CertStatus> Status(std::string_view ca_name, std::string_view serial_hex) override;
  uint64_t Generation() const override { return source_->Generation(); }

  // For tests: the cache answers (its listener is alive); lookups the source answered;
  // notifications and reconnects seen so far.
  bool live() const { return listener_ != nullptr && listener_->alive(); }
  uint64_t misses() const { return misses_.load(); }
  uint64_t notifications() const { return notifications_.load(); }
  uint64_t reconnects() const { return listener_ != nullptr ? listener_->reconnects() : 0; }

 private:
  CachedStatusSource(CertStatusSource* source, size_t max_entries)
      : source_(source), max_entries_(max_entries) {}
  // Empties the cache; lookups that started before cannot fill it afterwards.
  void Clear();

  CertStatusSource* const source_;
  const size_t max_entries_;
  std::unique_ptr<db::PgListener> listener_;  // Set once by Start.
  absl::Mutex mu_;
  // Bumped by Clear: a lookup fills the cache only if no Clear came since it began.
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t source_generation_ ABSL_GUARDED_BY(mu_) = 0;  // source_->Generation() of the entries.
  // Key: ca_name, a space, serial_hex.
  absl::flat_hash_map<std::string, CertStatus> entries_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> misses_{0};
  std::atomic<uint64_t> notifications_{0};
};

}  // namespace qsign::lifecycle

#endif  // QSIGN_SERVICES_LIFECYCLE_STATUS_CACHE_H_
