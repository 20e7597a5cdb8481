// Prometheus text exposition (format 0.0.4) for counters, gauges and histograms with labels.
// Label values are ours (method names, status codes, outcomes, key types), never user data or
// secrets. No gRPC here: hsm/ and every service record into it; metrics_grpc.h counts RPCs and
// metrics_http.h serves it.
#ifndef QSIGN_COMMON_METRICS_H_
#define QSIGN_COMMON_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace qsign::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

// One labelled counter. Updates are a relaxed atomic add: cheap enough for the sign path.
class Counter {
 public:
  void Increment(double by = 1) { value_.fetch_add(by, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// One labelled gauge; lock-free like Counter.
class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double by) { value_.fetch_add(by, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// One labelled histogram; Observe is a few relaxed atomic adds.
class Histogram {
 public:
  // `bounds` are upper bounds, ascending.
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);

  const std::vector<double>& bounds() const { return bounds_; }
  // Per bound (not cumulative), then +Inf.
  std::vector<uint64_t> BucketCounts() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1 entries.
  std::atomic<double> sum_{0};
};

class Registry {
 public:
  // Handles for hot paths: looked up once (under the registry's lock), then updated without it.
  // A handle lives as long as the registry. `name` must be a valid metric name, `help` one line;
  // a name is one type for the life of the process (asking for it as another type crashes).
  Counter* GetCounter(std::string_view name, std::string_view help, const Labels& labels);
  Gauge* GetGauge(std::string_view name, std::string_view help, const Labels& labels);
  Histogram* GetHistogram(std::string_view name, std::string_view help, const Labels& labels,
                          const std::vector<double>& buckets = DefaultLatencyBuckets());

  // One-off updates (a lookup each time) for paths where that cost does not matter.
  void AddCounter(std::string_view name, std::string_view help, const Labels& labels,
                  double value = 1);
  void SetGauge(std::string_view name, std::string_view help, const Labels& labels, double value);
  // Observations in seconds (or any unit); `buckets` are upper bounds, ascending, and only used
  // the first time a label set is seen.
  void Observe(std::string_view name, std::string_view help, const Labels& labels, double value,
               const std::vector<double>& buckets = DefaultLatencyBuckets());
  // Called at every Render, for values read from elsewhere (pool sizes, sessions in use).
  // Whatever a collector reads must outlive it: RemoveCollector before that goes away.
  using CollectorId = int;
  CollectorId AddCollector(std::function<void(Registry&)> collector);
  // After it returns the collector is gone and no Render is still running it.
  void RemoveCollector(CollectorId id);

  // The whole registry in the Prometheus text format, families sorted by name.
  std::string Render();

  static const std::vector<double>& DefaultLatencyBuckets();
  // The process-wide registry that the gRPC interceptor and services write to.
  static Registry& Global();

 private:
  struct Family {
    std::string type;  // "counter", "gauge", "histogram"
    std::string help;
    // Rendered label set -> value; only the map of `type` is used.
    std::map<std::string, std::unique_ptr<Counter>> counters;
    std::map<std::string, std::unique_ptr<Gauge>> gauges;
    std::map<std::string, std::unique_ptr<Histogram>> histograms;
  };
  Family& FamilyLocked(std::string_view name, std::string_view type, std::string_view help)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Held while collectors run (they take mu_ themselves), so that RemoveCollector waits for them.
  absl::Mutex collect_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  absl::Mutex mu_;
  std::map<std::string, Family, std::less<>> families_ ABSL_GUARDED_BY(mu_);
  std::map<CollectorId, std::function<void(Registry&)>> collectors_ ABSL_GUARDED_BY(mu_);
  CollectorId next_collector_ ABSL_GUARDED_BY(mu_) = 0;
};

// {a="x",b="y"} with Prometheus escaping; "" for no labels.
std::string RenderLabels(const Labels& labels);

}  // namespace qsign::metrics

#endif  // QSIGN_COMMON_METRICS_H_
