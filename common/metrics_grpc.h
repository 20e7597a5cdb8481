// A gRPC server interceptor that counts every RPC by method and status code and times it.
#ifndef QSIGN_COMMON_METRICS_GRPC_H_
#define QSIGN_COMMON_METRICS_GRPC_H_

#include <grpcpp/support/server_interceptor.h>

#include <memory>

#include "common/metrics.h"

namespace qsign::metrics {

// Counts and times every RPC into `registry` (not owned): qsign_grpc_requests_total{method,code}
// and qsign_grpc_request_duration_seconds{method}.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewGrpcMetricsInterceptor(
    Registry* registry);

}  // namespace qsign::metrics

#endif  // QSIGN_COMMON_METRICS_GRPC_H_
