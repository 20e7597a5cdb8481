#include "common/metrics_grpc.h"

#include <grpcpp/support/interceptor.h>

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace qsign::metrics {
namespace {

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
      registry_->Observe("qsign_grpc_request_duration_seconds", "gRPC request latency by method.",
                         {{"method", method_}}, seconds);
    }
    methods->Proceed();
  }

 private:
  // gRPC's codes are the canonical codes, which absl names.
  static std::string CodeName(grpc::StatusCode code) {
    std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
    return name.empty() ? "UNKNOWN" : name;
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

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewGrpcMetricsInterceptor(
    Registry* registry) {
  return std::make_unique<MetricsInterceptorFactory>(registry);
}

}  // namespace qsign::metrics
