// Prometheus text exposition (format 0.0.4) for counters, gauges and histograms with labels, and
// a gRPC server interceptor that counts every RPC by method and status code and times it.
// Label values are ours (method names, status codes, outcomes), never user data or secrets.
#ifndef QSIGN_COMMON_METRICS_H_
#define QSIGN_COMMON_METRICS_H_

#include <grpcpp/support/server_interceptor.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace qsign::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Registry {
 public:
  // `name` must be a valid metric name; `help` one line.
  void AddCounter(std::string_view name, std::string_view help, const Labels& labels,
                  double value = 1);
  void SetGauge(std::string_view name, std::string_view help, const Labels& labels, double value);
  // Observations in seconds (or any unit); `buckets` are upper bounds, ascending.
  void Observe(std::string_view name, std::string_view help, const Labels& labels, double value,
               const std::vector<double>& buckets = DefaultLatencyBuckets());
  // Called at every Render, for values read from elsewhere (pool sizes, sessions in use).
  void AddCollector(std::function<void(Registry&)> collector);

  // The whole registry in the Prometheus text format, families sorted by name.
  std::string Render();

  static const std::vector<double>& DefaultLatencyBuckets();
  // The process-wide registry that the gRPC interceptor and services write to.
  static Registry& Global();

 private:
  struct Histogram {
    std::vector<double> bounds;
    std::vector<uint64_t> counts;  // Per bound, not cumulative; one more for +Inf.
    double sum = 0;
    uint64_t count = 0;
  };
  struct Family {
    std::string type;  // "counter", "gauge", "histogram"
    std::string help;
    std::map<std::string, double> values;        // Rendered label set -> value.
    std::map<std::string, Histogram> histograms;  // Rendered label set -> histogram.
  };
  Family& FamilyLocked(std::string_view name, std::string_view type, std::string_view help)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::map<std::string, Family, std::less<>> families_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void(Registry&)>> collectors_ ABSL_GUARDED_BY(mu_);
};

// {a="x",b="y"} with Prometheus escaping; "" for no labels.
std::string RenderLabels(const Labels& labels);

// Counts and times every RPC into `registry`: qsign_grpc_requests_total{method,code} and
// qsign_grpc_request_duration_seconds{method}.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewGrpcMetricsInterceptor(
    Registry* registry);

}  // namespace qsign::metrics

#endif  // QSIGN_COMMON_METRICS_H_
