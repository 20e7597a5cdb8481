#include "services/lifecycle/lifecycle_internal.h"

#include <openssl/rand.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/metrics.h"
#include "common/strings.h"
#include "services/lifecycle/ca/profile.h"

namespace qsign::lifecycle {
std::string TimeText(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

std::string RandomId(std::string_view prefix) {
  unsigned char bytes[16];
  RAND_bytes(bytes, sizeof(bytes));
  return absl::StrCat(
      Av(prefix), absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(bytes), 16)));
}

db::AuditEvent Audit(const Caller& caller, std::string action, std::string target,
                     std::string details) {
  // Lifecycle's methods take no ClientInfo: the address is the gRPC peer.
  return auth::AuditEventOf(caller, std::move(action), target,
                            auth::ClientInfo{.peer = caller.peer}, "ok", std::move(details));
}

size_t Utf8Length(std::string_view s) {
  size_t n = 0;
  for (char c : s) {
    if ((static_cast<unsigned char>(c) & 0xc0) != 0x80) ++n;
  }
  return n;
}

void CountIssued(const CertRecord& r) {
  const bool renewal = !r.renewal_of.empty();
  metrics::Registry::Global().AddCounter(
      renewal ? "qsign_lifecycle_certificates_renewed_total"
              : "qsign_lifecycle_certificates_issued_total",
      renewal ? "Qualified certificates issued as renewals, by CA and key type."
              : "Certificates issued (not counting renewals), by CA and key type.",
      {{"ca", r.ca_name}, {"key_type", std::string(hsm::KeyTypeName(r.key_type))}});
}

void CountRevoked(std::string_view ca_name, std::string_view reason) {
  metrics::Registry::Global().AddCounter(
      "qsign_lifecycle_certificates_revoked_total",
      "Certificates revoked, by CA and RFC 5280 reason.",
      {{"ca", std::string(ca_name)}, {"reason", std::string(reason)}});
}

CertRecord QualifiedIntent(std::string account_id, hsm::KeyType key_type,
                           std::string client_request_id, std::string fingerprint,
                           NaturalPersonSubject subject, absl::Time now) {
  const std::string serial = RandomSerial();
  return CertRecord{.certificate_id = RandomId("qc-"),
                    .account_id = std::move(account_id),
                    .kind = CertKind::kQualified,
                    .state = CertState::kPending,
                    .ca_name = std::string(kQualifiedCa),
                    .serial_hex = absl::AsciiStrToUpper(absl::BytesToHexString(serial)),
                    .key_type = key_type,
                    .client_request_id = std::move(client_request_id),
                    .request_fingerprint = std::move(fingerprint),
                    .subject = std::move(subject),
                    .not_before = now,
                    .not_after = AddYears(now, 5),
                    .created_at = now};
}
}  // namespace qsign::lifecycle
