// The timestamp authority's certificate, from the qualified CA (the tsa service asks).
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/ossl.h"
#include "common/strings.h"
#include "services/lifecycle/ca/certificate.h"
#include "services/lifecycle/lifecycle.h"
#include "services/lifecycle/lifecycle_internal.h"

namespace qsign::lifecycle {
namespace {

// The key type of an SPKI a TSA may use: EC P-256/P-384, RSA of 3072 or 4096 bits.
absl::StatusOr<hsm::KeyType> TsaKeyType(std::string_view spki) {
  const absl::Status refused = absl::InvalidArgumentError(
      "public_key: an EC P-256/P-384 or RSA 3072/4096 SubjectPublicKeyInfo (DER)");
  OsslPtr<EVP_PKEY> key = ParsePublicKey(spki);
  if (key == nullptr) return refused;
  if (EVP_PKEY_get_base_id(key.get()) == EVP_PKEY_RSA) {
    const int bits = EVP_PKEY_get_bits(key.get());
    if (bits == 3072) return hsm::KeyType::kRsa3072;
    if (bits == 4096) return hsm::KeyType::kRsa4096;
    return refused;
  }
  if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_EC) return refused;
  char curve[64] = {0};
  size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(key.get(), "group", curve, sizeof(curve), &len) != 1) {
    return refused;
  }
  const std::string_view name(curve, len);
  if (name == "prime256v1" || name == "P-256") return hsm::KeyType::kEcP256;
  if (name == "secp384r1" || name == "P-384") return hsm::KeyType::kEcP384;
  return refused;
}

}  // namespace

absl::StatusOr<CertView> Lifecycle::IssueTsaCertificate(const Caller& caller,
                                                        std::string_view public_key,
                                                        std::string_view name) {
  if (caller.kind != CallerKind::kService || caller.id != config_.tsa_client_id) {
    return absl::PermissionDeniedError("IssueTsaCertificate: the tsa service only");
  }
  auto key_type = TsaKeyType(public_key);
  if (!key_type.ok()) return key_type.status();
  const size_t name_length = Utf8Length(name);
  if (name_length < 1 || name_length > 64) {
    return absl::InvalidArgumentError("name: 1..64 characters");
  }
  const absl::Time now = Now();
  auto existing = store_->FindServiceCertificate(CertKind::kTsa, public_key);
  if (!existing.ok()) return existing.status();
  if (existing->has_value() && (*existing)->not_after > now) return View(**std::move(existing));

  const Ca& ca = cas_->qualified();
  const std::string serial = RandomSerial();
  CertificateSpec spec =
      TsaCertificateSpec(std::string(name), cas_->config().organization, cas_->config().country,
                         std::string(public_key), serial, now,
                         AddYears(now, config_.tsa_certificate_years), cas_->UrlsFor(kQualifiedCa));
  auto issued = IssueCertificate(ca.key(), ca.cert(), spec);
  if (!issued.ok()) return issued.status();
  CertRecord record{.certificate_id = RandomId("tsa-"),
                    .account_id = "",
                    .kind = CertKind::kTsa,
                    .state = CertState::kIssued,
                    .ca_name = std::string(kQualifiedCa),
                    .serial_hex = SerialHex(issued->cert.get()),
                    .key_type = *key_type,
                    .device_public_key = std::string(public_key),
                    .certificate_der = issued->der,
                    .subject_dn = NameText(X509_get_subject_name(issued->cert.get())),
                    .not_before = spec.not_before,
                    .not_after = spec.not_after,
                    .created_at = now,
                    .attached = true,
                    .key_destroyed = true};  // No key of ours: it lives in the TSA's token.
  if (auto s = store_->InsertServiceCertificate(
          record, Audit(caller, "tsa_certificate.issue", record.serial_hex,
                        absl::StrCat("subject=", record.subject_dn)));
      !s.ok()) {
    return s;
  }
  CountIssued(record);
  return View(std::move(record));
}

}  // namespace qsign::lifecycle
