// An in-memory consent service for identity's tests: requests are decided by the test, as the
// consent app would, and expire on the injected clock.
#ifndef QSIGN_SERVICES_IDENTITY_TESTING_FAKE_CONSENT_CLIENT_H_
#define QSIGN_SERVICES_IDENTITY_TESTING_FAKE_CONSENT_CLIENT_H_

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "services/identity/identity.h"

namespace qsign::identity {

class FakeConsentClient final : public ConsentClient {
 public:
  struct Created {
    ConsentRequestStatus status;
    LoginRequestParams params;
  };

  // `clock` is not owned and must outlive the fake.
  explicit FakeConsentClient(const Clock* clock) : clock_(clock) {}

  // Accounts with an active device; CreateLoginRequest refuses the others.
  void AddDevice(std::string_view account_id);
  // Every CreateLoginRequest fails with `status` (OK to stop).
  void FailCreate(absl::Status status);

  // The phone's decision. NOT_FOUND for an unknown request, FAILED_PRECONDITION once decided.
  absl::Status Approve(std::string_view request_id);
  absl::Status Deny(std::string_view request_id);
  absl::Status Cancel(std::string_view request_id);

  // Requests created so far, oldest first.
  std::vector<Created> created() const;
  int create_calls() const;

  absl::StatusOr<ConsentRequestStatus> CreateLoginRequest(
      const LoginRequestParams& params) override;
  absl::StatusOr<ConsentRequestStatus> AwaitRequest(std::string_view request_id,
                                                    absl::Duration max_wait) override;

 private:
  absl::Status Decide(std::string_view request_id, ConsentState state);

  const Clock* clock_;  // Not owned.
  mutable absl::Mutex mu_;
  std::set<std::string, std::less<>> devices_ ABSL_GUARDED_BY(mu_);
  absl::Status create_error_ ABSL_GUARDED_BY(mu_);
  std::vector<Created> created_ ABSL_GUARDED_BY(mu_);
  int create_calls_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace qsign::identity

#endif  // QSIGN_SERVICES_IDENTITY_TESTING_FAKE_CONSENT_CLIENT_H_
