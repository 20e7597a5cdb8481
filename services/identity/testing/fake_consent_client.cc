#include "services/identity/testing/fake_consent_client.h"

#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace qsign::identity {

void FakeConsentClient::AddDevice(std::string_view account_id) {
  absl::MutexLock lock(&mu_);
  devices_.emplace(account_id);
}

void FakeConsentClient::FailCreate(absl::Status status) {
  absl::MutexLock lock(&mu_);
  create_error_ = std::move(status);
}

absl::Status FakeConsentClient::Approve(std::string_view request_id) {
  return Decide(request_id, ConsentState::kApproved);
}
absl::Status FakeConsentClient::Deny(std::string_view request_id) {
  return Decide(request_id, ConsentState::kDenied);
}
absl::Status FakeConsentClient::Cancel(std::string_view request_id) {
  return Decide(request_id, ConsentState::kCancelled);
}

absl::Status FakeConsentClient::Decide(std::string_view request_id, ConsentState state) {
  absl::MutexLock lock(&mu_);
  for (auto& c : created_) {
    if (c.status.request_id != request_id) continue;
    if (c.status.state != ConsentState::kPending) {
      return absl::FailedPreconditionError("already decided");
    }
    c.status.state = state;
    if (state != ConsentState::kCancelled) c.status.decided_at = clock_->Now();
    return absl::OkStatus();
  }
  return absl::NotFoundError(absl::StrCat("no request ", Av(request_id)));
}

std::vector<FakeConsentClient::Created> FakeConsentClient::created() const {
  absl::MutexLock lock(&mu_);
  return created_;
}

int FakeConsentClient::create_calls() const {
  absl::MutexLock lock(&mu_);
  return create_calls_;
}

absl::StatusOr<ConsentRequestStatus> FakeConsentClient::CreateLoginRequest(
    const LoginRequestParams& params) {
  absl::MutexLock lock(&mu_);
  ++create_calls_;
  if (!create_error_.ok()) return create_error_;
  if (!devices_.contains(params.account_id)) {
    return absl::FailedPreconditionError("account has no active device");
  }
  Created c;
  c.params = params;
  c.status.request_id = absl::StrCat("req-", created_.size() + 1);
  c.status.account_id = params.account_id;
  c.status.state = ConsentState::kPending;
  c.status.expires_at = clock_->Now() + params.lifetime;
  created_.push_back(c);
  return c.status;
}

absl::StatusOr<ConsentRequestStatus> FakeConsentClient::AwaitRequest(std::string_view request_id,
                                                                     absl::Duration max_wait) {
  absl::MutexLock lock(&mu_);
  Created* found = nullptr;
  for (auto& c : created_) {
    if (c.status.request_id == request_id) found = &c;
  }
  if (found == nullptr) return absl::NotFoundError(absl::StrCat("no request ", Av(request_id)));
  const size_t index = found - created_.data();
  auto decided = [this, index]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return created_[index].status.state != ConsentState::kPending;
  };
  mu_.AwaitWithTimeout(absl::Condition(&decided), max_wait);
  ConsentRequestStatus& s = created_[index].status;
  if (s.state == ConsentState::kPending && clock_->Now() >= s.expires_at) {
    s.state = ConsentState::kExpired;
  }
  return s;
}

}  // namespace qsign::identity
