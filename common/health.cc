#include "common/health.h"

#include <utility>

#include "common/log.h"

namespace qsign {

HealthProber::HealthProber(GrpcServer* server, std::vector<HealthCheck> checks,
                           absl::Duration period)
    : server_(server),
      checks_(std::move(checks)),
      period_(period),
      healthy_(checks_.size(), true) {
  ProbeOnce();
  thread_ = std::thread([this] { Loop(); });
}

HealthProber::~HealthProber() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

bool HealthProber::ProbeOnce() {
  absl::MutexLock lock(&probe_mu_);
  bool all = true;
  for (size_t i = 0; i < checks_.size(); ++i) {
    absl::Status s = checks_[i].probe();
    if (s.ok() != healthy_[i]) {
      healthy_[i] = s.ok();
      if (s.ok()) {
        Log(LogLevel::kInfo, "health", "dependency recovered", {{"dependency", checks_[i].name}});
      } else {
        Log(LogLevel::kError, "health", "dependency failing",
            {{"dependency", checks_[i].name}, {"status", s.ToString()}});
      }
    }
    all = all && s.ok();
  }
  server_->SetServing(all);
  return all;
}

void HealthProber::Loop() {
  absl::MutexLock lock(&mu_);
  while (!mu_.AwaitWithTimeout(absl::Condition(&stop_), period_)) {
    mu_.Unlock();
    ProbeOnce();
    mu_.Lock();
  }
}

}  // namespace qsign
