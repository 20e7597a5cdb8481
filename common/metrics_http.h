// Serves GET /metrics (Prometheus text format) from a Registry on its own HTTP port.
#ifndef QSIGN_COMMON_METRICS_HTTP_H_
#define QSIGN_COMMON_METRICS_HTTP_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/metrics.h"

namespace httplib {
class Server;
}

namespace qsign::metrics {

class MetricsHttpServer {
 public:
  // `listen` is host:port; port 0 picks a free one. `registry` is not owned.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& listen,
                                                                   Registry* registry);
  ~MetricsHttpServer();
  int port() const { return port_; }

 private:
  MetricsHttpServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace qsign::metrics

#endif  // QSIGN_COMMON_METRICS_HTTP_H_
