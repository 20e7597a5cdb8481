// The consent app enrols: activation code redeemed, device certificate issued, PIN set.

#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/strings.h"
#include "services/consent/consent.h"
#include "services/consent/consent_internal.h"

namespace qsign::consent {

absl::StatusOr<EnrollResult> Consent::EnrollDevice(const EnrollInput& in,
                                                   const ClientInfo& client) {
  if (auto s = enroll_limiter_.Acquire(auth::KeyAddress(client), Now(),
                                       "too many enrolment attempts from this address");
      !s.ok()) {
    return s;
  }
  // Every check before the activation code is consumed.
  if (auto s = ValidateDeviceKey(in.device_public_key); !s.ok()) return s;
  if (auto s = ValidateText(in.device_name, "device_name", 1, 64); !s.ok()) return s;
  if (auto s = ValidateNewPin(in.pin.value(), "pin"); !s.ok()) return s;
  if (in.push_token.size() > 4096) {
    return absl::InvalidArgumentError("push_token: at most 4096 bytes");
  }
  if (in.activation_code.empty()) return absl::InvalidArgumentError("activation_code: required");
  if (in.activation_code.value().size() > 64) {
    return absl::NotFoundError("activation_code: not valid");
  }
  // Hash the PIN first: the code is spent by the redemption, so nothing may fail after it that
  // a retry with the same key could not repeat.
  auto verifier = deps_.pins->Hash(in.pin.value());
  if (!verifier.ok()) return verifier.status();

  auto redeemed = deps_.identity->RedeemActivationCode(in.activation_code.value(),
                                                       Sha256(in.device_public_key));
  const absl::Status not_valid =
      absl::NotFoundError("activation_code: not valid (unknown, used or expired)");
  if (!redeemed.ok()) {
    if (redeemed.status().code() == absl::StatusCode::kNotFound) return not_valid;
    return redeemed.status();
  }
  const std::string* account = &redeemed->account_id;
  if (redeemed->repeated) {
    // The same code and key again. If that enrolment committed, this is a retry after a lost
    // reply: answer it as it is, never touching the PIN. A code enrols once.
    auto existing = deps_.store->FindDeviceByKey(*account, in.device_public_key);
    if (!existing.ok()) return existing.status();
    if (existing->has_value()) {
      auto answer = RetriedEnrolment(**existing);
      if (!answer.ok()) return answer.status();
      if (!answer->has_value()) return not_valid;
      return **std::move(answer);
    }
    // Not committed before (the first attempt failed after redeeming): enrol now.
  }
  auto device_id = NewId(kDevicePrefix);
  if (!device_id.ok()) return device_id.status();
  const absl::Time now = Now();
  auto chain = deps_.certificates->Issue({.device_id = *device_id,
                                          .account_id = *account,
                                          .device_name = in.device_name,
                                          .public_key_spki = in.device_public_key,
                                          .now = now});
  if (!chain.ok()) return chain.status();
  if (chain->empty()) return absl::InternalError("device certificate issuer answered nothing");

  DeviceRecord device{.device_id = *device_id,
                      .account_id = *account,
                      .name = in.device_name,
                      .public_key_spki = in.device_public_key,
                      .push_token = in.push_token,
                      .certificate_der = (*chain)[0],
                      .active = true,
                      .enrolled_at = now};
  auto replaced = deps_.store->EnrollDevice(
      device, *verifier,
      auth::AuditEventOf(absl::StrCat("device:", *device_id), "device.enroll", *account, client,
                         "ok", absl::StrCat("name \"", in.device_name, "\"")));
  if (!replaced.ok()) return replaced.status();
  deps_.notifier->Notify(*account);  // Ends the replaced device's stream.
  Log(LogLevel::kInfo, "consent", "device enrolled",
      {{"device_id", *device_id},
       {"account_id", *account},
       {"replaced", absl::StrCat(replaced->device_ids.size())}});
  return EnrollResult{.device_id = *std::move(device_id),
                      .account_id = *account,
                      .certificate_chain_der = *std::move(chain)};
}

absl::StatusOr<std::optional<EnrollResult>> Consent::RetriedEnrolment(
    const DeviceRecord& device) const {
  auto pin = deps_.store->GetPin(device.account_id);
  if (!pin.ok()) return pin.status();
  // Only a reply that got lost: the device still the active one, recent, its PIN never tried.
  if (!device.active || Now() - device.enrolled_at > config_.enrollment_retry_window ||
      pin->blocked || pin->failures != 0 || pin->updated_at != device.enrolled_at) {
    return std::optional<EnrollResult>();
  }
  // The device certificate as issued; the CA certificates are not kept here.
  return std::optional<EnrollResult>(
      EnrollResult{.device_id = device.device_id,
                   .account_id = device.account_id,
                   .certificate_chain_der = {device.certificate_der}});
}

}  // namespace qsign::consent
