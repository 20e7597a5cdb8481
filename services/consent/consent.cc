#include "services/consent/consent.h"

#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "common/strings.h"

namespace qsign::consent {

absl::StatusOr<std::unique_ptr<Consent>> Consent::New(ConsentDeps deps, CredentialTable operators,
                                                      CredentialTable services,
                                                      ConsentConfig config) {
  if (!deps.store || !deps.notifier || !deps.pins || !deps.sad_minter || !deps.certificates ||
      !deps.identity || !deps.credentials || !deps.clock) {
    return absl::InvalidArgumentError("consent: a required dependency is missing");
  }
  if (config.max_pin_failures < 1 || config.poll_interval <= absl::ZeroDuration() ||
      config.stream_poll_interval <= absl::ZeroDuration() ||
      config.login_lifetime <= absl::ZeroDuration() ||
      config.sign_lifetime <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("consent: bad configuration");
  }
  return std::unique_ptr<Consent>(
      new Consent(deps, std::move(operators), std::move(services), config));
}

absl::Time Consent::Now() const { return TruncateToMicros(deps_.clock->Now()); }

RequestState Consent::EffectiveState(const RequestRecord& r, absl::Time now) const {
  if (r.state == RequestState::kPending && now >= r.expires_at) return RequestState::kExpired;
  return r.state;
}

RequestStatus Consent::StatusOf(const RequestRecord& r, absl::Time now) const {
  RequestStatus s{.request_id = r.request_id,
                  .account_id = r.account_id,
                  .kind = r.kind,
                  .state = EffectiveState(r, now),
                  .created_at = r.created_at,
                  .expires_at = r.expires_at};
  if (s.state == RequestState::kApproved || s.state == RequestState::kDenied) {
    s.decided_at = r.decided_at;
    s.device_id = r.decided_by_device;
  }
  return s;
}

absl::StatusOr<Caller> Consent::Authenticate(std::string_view authorization) {
  return authenticator_.Authenticate(authorization);
}

void Consent::Shutdown() { deps_.notifier->Close(); }

}  // namespace qsign::consent
