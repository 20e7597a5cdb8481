// The consent app's stream of pending requests, opened with a signed one-time challenge.

#include <openssl/rand.h>

#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "services/consent/consent.h"
#include "services/consent/consent_internal.h"

namespace qsign::consent {

absl::StatusOr<ChallengeResult> Consent::GetChallenge(std::string_view device_id) {
  if (auto s = ValidateDeviceId(device_id); !s.ok()) return s;
  std::string nonce(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(nonce.data()), 32) != 1) {
    return absl::InternalError("no randomness");
  }
  const absl::Time now = Now();
  const absl::Time expires_at = now + config_.challenge_lifetime;
  std::string challenge = EncodeChallenge(device_id, expires_at, nonce);
  // Unknown and inactive devices get one too: WatchRequests refuses them.
  if (auto s = deps_.store->AddChallenge(Sha256(challenge), device_id, ChallengePurpose::kWatch, "",
                                         expires_at, now);
      !s.ok()) {
    return s;
  }
  return ChallengeResult{.challenge = std::move(challenge), .expires_at = expires_at};
}

absl::Status Consent::WatchRequests(std::string_view device_id, std::string_view challenge,
                                    std::string_view signature, absl::FunctionRef<void()> opened,
                                    absl::FunctionRef<bool(const PendingRequest&)> send,
                                    absl::FunctionRef<bool()> cancelled) {
  if (auto s = ValidateDeviceId(device_id); !s.ok()) return s;
  if (challenge.empty() || challenge.size() > 1024) {
    return absl::InvalidArgumentError("challenge: required, as received from GetChallenge");
  }
  if (signature.empty()) return absl::InvalidArgumentError("signature: required");
  auto expires_at = deps_.store->TakeChallenge(Sha256(challenge), device_id);
  if (!expires_at.ok()) {
    if (expires_at.status().code() == absl::StatusCode::kNotFound) {
      return absl::UnauthenticatedError("challenge: not issued to this device, or used before");
    }
    return expires_at.status();
  }
  if (Now() >= *expires_at) return absl::UnauthenticatedError("challenge: expired");
  auto device = deps_.store->GetDevice(device_id);
  if (!device.ok()) {
    if (device.status().code() == absl::StatusCode::kNotFound) {
      return absl::UnauthenticatedError("device_id: not an active device");
    }
    return device.status();
  }
  if (!VerifyDeviceSignature(device->public_key_spki, challenge, signature)) {
    return absl::UnauthenticatedError("signature: does not verify with the device key");
  }
  if (!device->active) return absl::UnauthenticatedError("device_id: not an active device");
  opened();

  absl::flat_hash_set<std::string> sent;
  bool deactivated = false;
  absl::Status send_status;
  absl::Status st = WaitOnAccount(
      device->account_id, absl::InfiniteFuture(), cancelled, [&]() -> absl::StatusOr<bool> {
        auto snap = deps_.store->Watch(device_id, Now());
        if (!snap.ok()) return snap.status();
        if (!snap->device_active) {
          deactivated = true;
          return true;
        }
        absl::flat_hash_set<std::string> still_pending;
        for (RequestRecord& r : snap->pending) {
          still_pending.insert(r.request_id);
          if (sent.contains(r.request_id)) continue;
          auto decoded = DecodeStatement(r.statement);
          if (!decoded.ok()) {
            return absl::InternalError(absl::StrCat("stored statement of ", r.request_id, ": ",
                                                    decoded.status().message()));
          }
          if (!send(PendingRequest{.statement_bytes = std::move(r.statement),
                                   .statement = *std::move(decoded)})) {
            send_status = absl::CancelledError("the device went away");
            return true;
          }
          sent.insert(r.request_id);
        }
        sent = std::move(still_pending);
        return false;
      });
  if (!st.ok()) return st;
  if (!send_status.ok()) return send_status;
  if (deactivated) {
    return absl::PermissionDeniedError(
        "device_id: the device was deactivated (replaced or revoked)");
  }
  return absl::OkStatus();
}

}  // namespace qsign::consent
