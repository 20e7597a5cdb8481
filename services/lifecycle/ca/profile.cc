#include "services/lifecycle/ca/profile.h"

#include <openssl/obj_mac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "common/log.h"
#include "common/strings.h"
#include "services/lifecycle/ca/der.h"

namespace qsign::lifecycle {
namespace {

// KeyUsage bits (RFC 5280 4.2.1.3).
constexpr int kDigitalSignature = 0;
constexpr int kNonRepudiation = 1;
constexpr int kKeyCertSign = 5;
constexpr int kCrlSign = 6;

std::string Uri(std::string_view uri) { return der::Tlv(der::ContextPrimitive(6), uri); }

Extension AuthorityInfoAccess(const IssuerUrls& urls) {
  std::vector<std::string> access;
  if (!urls.ocsp.empty()) access.push_back(der::Sequence({der::Oid(oid::kOcsp), Uri(urls.ocsp)}));
  if (!urls.ca_issuers.empty()) {
    access.push_back(der::Sequence({der::Oid(oid::kCaIssuers), Uri(urls.ca_issuers)}));
  }
  return {oid::kAuthorityInfoAccess, false, der::SequenceOf(access)};
}

Extension CrlDistributionPoint(std::string_view url) {
  // DistributionPoint { distributionPoint [0] { fullName [0] GeneralNames { URI } } }
  return {oid::kCrlDistributionPoints, false,
          der::Sequence(
              {der::Sequence({der::Explicit(0, der::Tlv(der::ContextConstructed(0), Uri(url)))})})};
}

Extension Policies(std::string_view policy_oid) {
  return {oid::kCertificatePolicies, false, der::Sequence({der::Sequence({der::Oid(policy_oid)})})};
}

bool IsAsciiDigits(std::string_view s) {
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return !s.empty();
}

bool IsPrintableAscii(std::string_view s) {
  for (char c : s) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return !s.empty();
}

// Subject C, O, CN, the key, serial and validity: what CA and OCSP responder certificates share.
CertificateSpec OrganizationSpec(std::string common_name, std::string organization,
                                 std::string country, std::string public_key_spki,
                                 std::string serial, absl::Time not_before, absl::Time not_after) {
  CertificateSpec spec;
  spec.subject = {{NID_countryName, std::move(country)},
                  {NID_organizationName, std::move(organization)},
                  {NID_commonName, std::move(common_name)}};
  spec.public_key_spki = std::move(public_key_spki);
  spec.serial = std::move(serial);
  spec.not_before = not_before;
  spec.not_after = not_after;
  return spec;
}

}  // namespace

std::string QcStatementsDer(std::string_view pds_url) {
  return der::Sequence({
      // SemanticsInformation { semanticsIdentifier }: how to read serialNumber "PNORS-...".
      der::Sequence(
          {der::Oid(oid::kPkixQcSyntaxV2), der::Sequence({der::Oid(oid::kSemanticsIdNatural)})}),
      der::Sequence({der::Oid(oid::kQcCompliance)}),
      der::Sequence({der::Oid(oid::kQcSscd)}),
      der::Sequence({der::Oid(oid::kQcType), der::Sequence({der::Oid(oid::kQcTypeEsign)})}),
      // PdsLocations: SEQUENCE OF PdsLocation { url IA5String, language PrintableString (2) }.
      der::Sequence(
          {der::Oid(oid::kQcPds),
           der::Sequence({der::Sequence({der::Ia5String(pds_url), der::PrintableString("en")})})}),
  });
}

absl::StatusOr<CertificateSpec> QualifiedCertificateSpec(const NaturalPersonSubject& subject,
                                                         std::string public_key_spki,
                                                         std::string serial, absl::Time not_before,
                                                         const QualifiedProfile& profile) {
  if (subject.given_name.empty() || subject.surname.empty()) {
    return absl::InvalidArgumentError("certificate subject: given name and surname required");
  }
  if (subject.national_id.size() != 13 || !IsAsciiDigits(subject.national_id)) {
    return absl::InvalidArgumentError("certificate subject: national id must be 13 digits");
  }
  CertificateSpec spec;
  spec.subject.push_back({NID_countryName, profile.country});
  if (subject.legal_person.has_value()) {
    if (auto s = ValidatePib(subject.legal_person->pib, "legal_person.pib"); !s.ok()) return s;
    if (subject.legal_person->organization_name.empty()) {
      return absl::InvalidArgumentError("legal_person.organization_name: required");
    }
    spec.subject.push_back({NID_organizationName, subject.legal_person->organization_name});
    spec.subject.push_back(
        {NID_organizationIdentifier, absl::StrCat("VATRS-", subject.legal_person->pib)});
  }
  spec.subject.push_back({NID_surname, subject.surname});
  spec.subject.push_back({NID_givenName, subject.given_name});
  spec.subject.push_back({NID_serialNumber, absl::StrCat("PNORS-", subject.national_id)});
  spec.subject.push_back({NID_commonName, absl::StrCat(subject.given_name, " ", subject.surname)});
  spec.public_key_spki = std::move(public_key_spki);
  spec.serial = std::move(serial);
  spec.not_before = not_before;
  spec.not_after = AddYears(not_before, 5);

  spec.extensions.push_back({oid::kKeyUsage, true, der::NamedBits({kNonRepudiation})});
  spec.extensions.push_back(Policies(oid::kQcpNQscd));
  spec.extensions.push_back({oid::kQcStatements, false, QcStatementsDer(profile.pds_url)});
  spec.extensions.push_back(AuthorityInfoAccess(profile.urls));
  spec.extensions.push_back(CrlDistributionPoint(profile.urls.crl));
  if (!subject.email.empty()) {
    if (!IsPrintableAscii(subject.email) || subject.email.find('@') == std::string::npos) {
      return absl::InvalidArgumentError("certificate e-mail: not an ASCII e-mail address");
    }
    spec.extensions.push_back({oid::kSubjectAltName, false,
                               der::Sequence({der::Tlv(der::ContextPrimitive(1), subject.email)})});
  }
  return spec;
}

CertificateSpec CaCertificateSpec(std::string common_name, std::string organization,
                                  std::string country, std::string public_key_spki,
                                  std::string serial, absl::Time not_before, absl::Time not_after,
                                  std::optional<int> path_len,
                                  const std::optional<IssuerUrls>& parent_urls) {
  CertificateSpec spec =
      OrganizationSpec(std::move(common_name), std::move(organization), std::move(country),
                       std::move(public_key_spki), std::move(serial), not_before, not_after);
  spec.extensions.push_back({oid::kBasicConstraints, true,
                             path_len.has_value()
                                 ? der::Sequence({der::Boolean(true), der::Integer(*path_len)})
                                 : der::Sequence({der::Boolean(true)})});
  spec.extensions.push_back({oid::kKeyUsage, true, der::NamedBits({kKeyCertSign, kCrlSign})});
  if (parent_urls.has_value()) {
    spec.extensions.push_back(Policies(oid::kAnyPolicy));
    IssuerUrls aia = *parent_urls;
    aia.ocsp.clear();  // CA certificates' status comes from the parent's CRL.
    spec.extensions.push_back(AuthorityInfoAccess(aia));
    spec.extensions.push_back(CrlDistributionPoint(parent_urls->crl));
  }
  return spec;
}

CertificateSpec OcspResponderSpec(std::string common_name, std::string organization,
                                  std::string country, std::string public_key_spki,
                                  std::string serial, absl::Time not_before, absl::Time not_after) {
  CertificateSpec spec =
      OrganizationSpec(std::move(common_name), std::move(organization), std::move(country),
                       std::move(public_key_spki), std::move(serial), not_before, not_after);
  spec.extensions.push_back({oid::kKeyUsage, true, der::NamedBits({kDigitalSignature})});
  spec.extensions.push_back(
      {oid::kExtKeyUsage, false, der::Sequence({der::Oid(oid::kOcspSigning)})});
  spec.extensions.push_back({oid::kOcspNoCheck, false, der::Null()});
  return spec;
}

CertificateSpec TsaCertificateSpec(std::string common_name, std::string organization,
                                   std::string country, std::string public_key_spki,
                                   std::string serial, absl::Time not_before, absl::Time not_after,
                                   const IssuerUrls& urls) {
  CertificateSpec spec =
      OrganizationSpec(std::move(common_name), std::move(organization), std::move(country),
                       std::move(public_key_spki), std::move(serial), not_before, not_after);
  spec.extensions.push_back(
      {oid::kKeyUsage, true, der::NamedBits({kDigitalSignature, kNonRepudiation})});
  spec.extensions.push_back(
      {oid::kExtKeyUsage, true, der::Sequence({der::Oid(oid::kTimeStamping)})});
  spec.extensions.push_back(AuthorityInfoAccess(urls));
  spec.extensions.push_back(CrlDistributionPoint(urls.crl));
  return spec;
}

absl::StatusOr<CertificateSpec> DeviceCertificateSpec(std::string device_name,
                                                      std::string device_id, std::string country,
                                                      std::string public_key_spki,
                                                      std::string serial, absl::Time not_before,
                                                      absl::Time not_after,
                                                      const IssuerUrls& urls) {
  if (!IsPrintableAscii(device_id)) {
    return absl::InvalidArgumentError("device_id: printable ASCII without spaces");
  }
  CertificateSpec spec;
  spec.subject = {{NID_countryName, std::move(country)},
                  {NID_commonName, device_name.empty() ? "qsign consent app" : device_name}};
  spec.public_key_spki = std::move(public_key_spki);
  spec.serial = std::move(serial);
  spec.not_before = not_before;
  spec.not_after = not_after;
  spec.extensions.push_back({oid::kKeyUsage, true, der::NamedBits({kDigitalSignature})});
  spec.extensions.push_back({oid::kSubjectAltName, false,
                             der::Sequence({Uri(absl::StrCat("urn:qsign:device:", device_id))})});
  spec.extensions.push_back(AuthorityInfoAccess(urls));
  spec.extensions.push_back(CrlDistributionPoint(urls.crl));
  return spec;
}

absl::Time AddYears(absl::Time t, int years) {
  const absl::CivilSecond cs = absl::ToCivilSecond(t, absl::UTCTimeZone());
  absl::CivilDay day(cs.year() + years, cs.month(), 1);
  const int wanted_day = cs.day();
  // CivilDay would roll 29 February over into March; clamp to the month's last day instead.
  const absl::CivilDay last = absl::CivilDay(absl::CivilMonth(day) + 1) - 1;
  const int d = std::min(wanted_day, last.day());
  const absl::CivilSecond out(day.year(), day.month(), d, cs.hour(), cs.minute(), cs.second());
  return absl::FromCivil(out, absl::UTCTimeZone());
}

std::string RandomSerial() {
  std::string serial(16, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(serial.data()), 16) != 1) {
    // The CSPRNG failing is not something to issue certificates through.
    Log(LogLevel::kError, "ca", "RAND_bytes failed");
    std::abort();
  }
  serial[0] = static_cast<char>((static_cast<uint8_t>(serial[0]) & 0x3f) | 0x40);
  return serial;
}

bool Iso7064Mod1110Valid(std::string_view digits) {
  if (digits.size() < 2 || !IsAsciiDigits(digits)) return false;
  int p = 10;
  for (size_t i = 0; i + 1 < digits.size(); ++i) {
    int s = (p + (digits[i] - '0')) % 10;
    if (s == 0) s = 10;
    p = (2 * s) % 11;
  }
  return (11 - p) % 10 == digits.back() - '0';
}

absl::Status ValidatePib(std::string_view pib, std::string_view field) {
  if (pib.size() != 9 || !IsAsciiDigits(pib)) {
    return absl::InvalidArgumentError(absl::StrCat(Av(field), ": exactly 9 digits"));
  }
  if (!Iso7064Mod1110Valid(pib)) {
    return absl::InvalidArgumentError(
        absl::StrCat(Av(field), ": wrong check digit (ISO 7064 MOD 11,10)"));
  }
  return absl::OkStatus();
}

}  // namespace qsign::lifecycle
