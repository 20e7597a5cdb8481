#include "common/metrics.h"

#include <grpcpp/support/interceptor.h>

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/strings.h"

namespace qsign::metrics {
namespace {

std::string FormatValue(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return absl::StrFormat("%.0f", v);
  return absl::StrFormat("%.9g", v);
}

std::string Escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out.append("\\n");
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// Adds le="..." to an already rendered label set.
std::string WithLe(const std::string& rendered, const std::string& le) {
  std::string inner = rendered.empty() ? "" : rendered.substr(1, rendered.size() - 2) + ",";
  return absl::StrCat("{", inner, "le=\"", le, "\"}");
}

class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(Registry* registry, std::string method)
      : registry_(registry), method_(std::move(method)), start_(absl::Now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      const double seconds = absl::ToDoubleSeconds(absl::Now() - start_);
      registry_->AddCounter("qsign_grpc_requests_total", "gRPC requests by method and status.",
                            {{"method", method_}, {"code", CodeName(status.error_code())}});
      registry_->Observe("qsign_grpc_request_duration_seconds",
                         "gRPC request latency by method.", {{"method", method_}}, seconds);
    }
    methods->Proceed();
  }

 private:
  static std::string CodeName(grpc::StatusCode code) {
    static const char* const kNames[] = {
        "OK",           "CANCELLED",          "UNKNOWN",        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED", "NOT_FOUND",     "ALREADY_EXISTS", "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
        "UNIMPLEMENTED", "INTERNAL",          "UNAVAILABLE",    "DATA_LOSS",
        "UNAUTHENTICATED"};
    int i = static_cast<int>(code);
    return i >= 0 && i < 17 ? kNames[i] : "UNKNOWN";
  }

  Registry* registry_;  // Not owned.
  std::string method_;
  absl::Time start_;
};

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(Registry* registry) : registry_(registry) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new MetricsInterceptor(registry_, info->method());
  }

 private:
  Registry* registry_;  // Not owned.
};

}  // namespace

std::string RenderLabels(const Labels& labels) {
  if (labels.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    absl::StrAppend(&out, i == 0 ? "" : ",", labels[i].first, "=\"", Escape(labels[i].second),
                    "\"");
  }
  out.push_back('}');
  return out;
}

const std::vector<double>& Registry::DefaultLatencyBuckets() {
  static const std::vector<double>* const buckets = new std::vector<double>{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  return *buckets;
}

Registry& Registry::Global() {
  static Registry* const registry = new Registry();
  return *registry;
}

Registry::Family& Registry::FamilyLocked(std::string_view name, std::string_view type,
                                         std::string_view help) {
  auto it = families_.find(name);
  if (it == families_.end()) {
    it = families_.emplace(std::string(name), Family{std::string(type), std::string(help)}).first;
  }
  return it->second;
}

void Registry::AddCounter(std::string_view name, std::string_view help, const Labels& labels,
                          double value) {
  std::string key = RenderLabels(labels);
  absl::MutexLock lock(&mu_);
  FamilyLocked(name, "counter", help).values[key] += value;
}

void Registry::SetGauge(std::string_view name, std::string_view help, const Labels& labels,
                        double value) {
  std::string key = RenderLabels(labels);
  absl::MutexLock lock(&mu_);
  FamilyLocked(name, "gauge", help).values[key] = value;
}

void Registry::Observe(std::string_view name, std::string_view help, const Labels& labels,
                       double value, const std::vector<double>& buckets) {
  std::string key = RenderLabels(labels);
  absl::MutexLock lock(&mu_);
  Histogram& h = FamilyLocked(name, "histogram", help).histograms[key];
  if (h.counts.empty()) {
    h.bounds = buckets;
    h.counts.assign(buckets.size() + 1, 0);
  }
  size_t i = 0;
  while (i < h.bounds.size() && value > h.bounds[i]) ++i;
  ++h.counts[i];
  h.sum += value;
  ++h.count;
}

void Registry::AddCollector(std::function<void(Registry&)> collector) {
  absl::MutexLock lock(&mu_);
  collectors_.push_back(std::move(collector));
}

std::string Registry::Render() {
  std::vector<std::function<void(Registry&)>> collectors;
  {
    absl::MutexLock lock(&mu_);
    collectors = collectors_;
  }
  for (auto& c : collectors) c(*this);
  absl::MutexLock lock(&mu_);
  std::string out;
  for (const auto& [name, f] : families_) {
    absl::StrAppend(&out, "# HELP ", name, " ", Av(f.help), "\n# TYPE ", name, " ", f.type, "\n");
    for (const auto& [labels, v] : f.values) {
      absl::StrAppend(&out, name, labels, " ", FormatValue(v), "\n");
    }
    for (const auto& [labels, h] : f.histograms) {
      uint64_t cumulative = 0;
      for (size_t i = 0; i < h.bounds.size(); ++i) {
        cumulative += h.counts[i];
        absl::StrAppend(&out, name, "_bucket", WithLe(labels, FormatValue(h.bounds[i])), " ",
                        cumulative, "\n");
      }
      absl::StrAppend(&out, name, "_bucket", WithLe(labels, "+Inf"), " ", h.count, "\n");
      absl::StrAppend(&out, name, "_sum", labels, " ", FormatValue(h.sum), "\n");
      absl::StrAppend(&out, name, "_count", labels, " ", h.count, "\n");
    }
  }
  return out;
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewGrpcMetricsInterceptor(
    Registry* registry) {
  return std::make_unique<MetricsInterceptorFactory>(registry);
}

}  // namespace qsign::metrics
