// Device certificates for enrolled consent apps, from the device CA (the consent service asks).
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/ossl.h"
#include "common/strings.h"
#include "services/lifecycle/ca/certificate.h"
#include "services/lifecycle/lifecycle.h"
#include "services/lifecycle/lifecycle_internal.h"

namespace qsign::lifecycle {
namespace {

bool IsP256Spki(std::string_view spki) {
  OsslPtr<EVP_PKEY> key = ParsePublicKey(spki);
  if (key == nullptr || EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_EC) return false;
  char curve[64] = {0};
  size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(key.get(), "group", curve, sizeof(curve), &len) != 1) {
    return false;
  }
  return std::string_view(curve, len) == "prime256v1" || std::string_view(curve, len) == "P-256";
}

}  // namespace

absl::StatusOr<CertView> Lifecycle::IssueDeviceCertificate(const Caller& caller,
                                                           std::string_view account_id,
                                                           std::string_view device_id,
                                                           std::string_view device_public_key,
                                                           std::string_view device_name) {
  if (caller.kind != CallerKind::kService || caller.id != config_.consent_client_id) {
    return absl::PermissionDeniedError("IssueDeviceCertificate: the consent service only");
  }
  if (auto s = ValidateRequestId(device_id, "device_id"); !s.ok()) return s;
  if (!IsP256Spki(device_public_key)) {
    return absl::InvalidArgumentError("device_public_key: a P-256 SubjectPublicKeyInfo (DER)");
  }
  if (Utf8Length(device_name) > 64) {
    return absl::InvalidArgumentError("device_name: at most 64 characters");
  }
  auto account = ResolveAccount(caller, account_id);
  if (!account.ok()) return account.status();
  auto existing = store_->FindDeviceCertificate(*account, device_id, device_public_key);
  if (!existing.ok()) return existing.status();
  if (existing->has_value()) return View(**std::move(existing));

  const Ca& ca = cas_->device();
  const absl::Time now = Now();
  const std::string serial = RandomSerial();
  auto spec = DeviceCertificateSpec(std::string(device_name), std::string(device_id),
                                    cas_->config().country, std::string(device_public_key), serial,
                                    now, AddYears(now, config_.device_certificate_years),
                                    cas_->UrlsFor(kDeviceCa));
  if (!spec.ok()) return spec.status();
  auto issued = IssueCertificate(ca.key(), ca.cert(), *spec);
  if (!issued.ok()) return issued.status();
  CertRecord record{.certificate_id = RandomId("dc-"),
                    .account_id = *account,
                    .kind = CertKind::kDevice,
                    .state = CertState::kIssued,
                    .ca_name = std::string(kDeviceCa),
                    .serial_hex = SerialHex(issued->cert.get()),
                    .key_type = hsm::KeyType::kEcP256,
                    .device_id = std::string(device_id),
                    .device_name = std::string(device_name),
                    .device_public_key = std::string(device_public_key),
                    .certificate_der = issued->der,
                    .subject_dn = NameText(X509_get_subject_name(issued->cert.get())),
                    .not_before = spec->not_before,
                    .not_after = spec->not_after,
                    .created_at = now,
                    .attached = true,
                    .key_destroyed = true};  // No key of ours: it lives on the phone.
  auto superseded = store_->InsertDeviceCertificate(
      record, Audit(caller, "device_certificate.issue", record.serial_hex,
                    absl::StrCat("account=", *account, " device_id=", Av(device_id))));
  if (!superseded.ok()) return superseded.status();
  CountIssued(record);
  for (size_t i = 0; i < superseded->size(); ++i) {
    CountRevoked(kDeviceCa, RevocationReasonName(4));  // The new enrolment supersedes them.
  }
  if (!superseded->empty()) {
    status_source_.Changed();
    if (auto s = IssueCrl(kDeviceCa); !s.ok()) {
      Log(LogLevel::kError, "lifecycle", "CRL after device re-enrolment failed",
          {{"status", s.ToString()}});
    }
  }
  return View(std::move(record));
}

}  // namespace qsign::lifecycle
