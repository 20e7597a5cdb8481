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

absl::StatusOr<DeviceRecord> Consent::AuthenticateWatch(std::string_view device_id,
                                                        std::string_view challenge,
                                                        std::string_view signature) {
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
  return device;
}

std::shared_ptr<WaitHandle> Consent::WatchRequests(std::string device_id, std::string challenge,
                                                   std::string signature, RequestStream* stream) {
  auto handle = std::make_shared<WaitHandle>();
  deps_.runner->Post([this, handle, stream, device_id = std::move(device_id),
                      challenge = std::move(challenge), signature = std::move(signature)] {
    if (handle->cancelled()) return stream->Done(absl::CancelledError("the caller went away"));
    auto device = AuthenticateWatch(device_id, challenge, signature);
    if (!device.ok()) return stream->Done(device.status());
    stream->Opened();
    // Requests sent and still pending; only the one running look uses it.
    auto look = [this, stream, device_id, sent = absl::flat_hash_set<std::string>()](
                    const AccountWake& wake) mutable -> absl::StatusOr<bool> {
      // What this process created for this device, and decided, needs no read.
      bool read = wake.read;
      for (const auto& event : wake.events) {
        if (event->kind == AccountEvent::Kind::kRequestCreated &&
            event->active_device_id != device_id) {
          read = true;  // Created for another device of the account: this one was replaced.
        }
      }
      if (!read) {
        absl::flat_hash_set<std::string> decided;
        for (const auto& event : wake.events) {
          if (event->kind == AccountEvent::Kind::kRequestDecided) {
            decided.insert(event->request.request_id);
          }
        }
        for (const auto& event : wake.events) {
          const RequestRecord& r = event->request;
          if (event->kind != AccountEvent::Kind::kRequestCreated ||
              decided.contains(r.request_id) || !sent.insert(r.request_id).second) {
            continue;
          }
          auto decoded = DecodeStatement(r.statement);
          if (!decoded.ok()) {
            return absl::InternalError(
                absl::StrCat("statement of ", r.request_id, ": ", decoded.status().message()));
          }
          stream->Send(
              PendingRequest{.statement_bytes = r.statement, .statement = *std::move(decoded)});
        }
        for (const std::string& id : decided) sent.erase(id);
        return false;
      }
      auto snap = deps_.store->Watch(device_id, Now());
      if (!snap.ok()) return snap.status();
      if (!snap->device_active) {
        return absl::PermissionDeniedError(
            "device_id: the device was deactivated (replaced or revoked)");
      }
      absl::flat_hash_set<std::string> still_pending;
      for (RequestRecord& r : snap->pending) {
        still_pending.insert(r.request_id);
        if (sent.contains(r.request_id)) continue;
        auto decoded = DecodeStatement(r.statement);
        if (!decoded.ok()) {
          return absl::InternalError(
              absl::StrCat("stored statement of ", r.request_id, ": ", decoded.status().message()));
        }
        stream->Send(PendingRequest{.statement_bytes = std::move(r.statement),
                                    .statement = *std::move(decoded)});
      }
      sent = std::move(still_pending);
      return false;
    };
    handle->Attach(AccountWait::Start(deps_.notifier, deps_.runner, device->account_id,
                                      absl::InfiniteFuture(), config_.stream_poll_interval,
                                      std::move(look),
                                      [stream](absl::Status st) { stream->Done(std::move(st)); }));
  });
  return handle;
}

}  // namespace qsign::consent
