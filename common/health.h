// Keeps grpc.health.v1 truthful: NOT_SERVING while a dependency (PostgreSQL, the HSM) fails its
// probe, SERVING again when it recovers. Transitions are logged.
#ifndef QSIGN_COMMON_HEALTH_H_
#define QSIGN_COMMON_HEALTH_H_

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/grpc_server.h"

namespace qsign {

struct HealthCheck {
  std::string name;                   // "postgresql", "hsm"
  std::function<absl::Status()> probe;  // Cheap; called from the prober thread.
};

class HealthProber {
 public:
  // `server` is not owned and must outlive the prober. Probes once before returning, so the
  // status is right from the first health call.
  HealthProber(GrpcServer* server, std::vector<HealthCheck> checks, absl::Duration period);
  ~HealthProber();

  // Runs every probe now and updates the server's status; true when all pass.
  bool ProbeOnce();

 private:
  void Loop();

  GrpcServer* server_;  // Not owned.
  const std::vector<HealthCheck> checks_;
  const absl::Duration period_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<bool> healthy_;  // Only touched by ProbeOnce callers, serialised by probe_mu_.
  absl::Mutex probe_mu_;
  std::thread thread_;
};

}  // namespace qsign

#endif  // QSIGN_COMMON_HEALTH_H_
