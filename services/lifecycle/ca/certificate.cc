#include "services/lifecycle/ca/certificate.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>

#include <ctime>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/oids.h"
#include "common/strings.h"
#include "services/lifecycle/ca/der.h"

namespace qsign::lifecycle {
namespace {

absl::Status AddExtension(X509* cert, std::string_view oid, bool critical,
                          std::string_view value_der) {
  OsslPtr<ASN1_OBJECT> obj(OBJ_txt2obj(std::string(oid).c_str(), /*no_name=*/1));
  OsslPtr<ASN1_OCTET_STRING> value(ASN1_OCTET_STRING_new());
  if (obj == nullptr || value == nullptr ||
      ASN1_OCTET_STRING_set(value.get(), Bytes(value_der), static_cast<int>(value_der.size())) !=
          1) {
    return absl::InternalError(absl::StrCat("certificate: extension ", Av(oid)));
  }
  OsslPtr<X509_EXTENSION> ext(
      X509_EXTENSION_create_by_OBJ(nullptr, obj.get(), critical ? 1 : 0, value.get()));
  if (ext == nullptr || X509_add_ext(cert, ext.get(), -1) != 1) {
    return absl::InternalError(absl::StrCat("certificate: extension ", Av(oid)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> KeyIdentifier(std::string_view spki_der) {
  auto spki = der::ReadAll(spki_der);
  if (!spki.ok()) return spki.status();
  auto parts = der::Children(spki->content);
  if (!parts.ok()) return parts.status();
  if (parts->size() != 2 || (*parts)[1].tag != der::kBitString || (*parts)[1].content.empty()) {
    return absl::InvalidArgumentError("public key: not a SubjectPublicKeyInfo");
  }
  std::string_view key = (*parts)[1].content.substr(1);  // After the unused-bits byte.
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(key.data(), key.size(), md, &len, EVP_sha1(), nullptr) != 1) {
    return absl::InternalError("SHA-1 failed");
  }
  return std::string(reinterpret_cast<char*>(md), len);
}

absl::StatusOr<IssuedCertificate> IssueCertificate(const CaKey& key, const X509* issuer,
                                                   const CertificateSpec& spec) {
  if (spec.serial.empty() || (static_cast<uint8_t>(spec.serial[0]) & 0x80) ||
      spec.serial.find_first_not_of('\0') == std::string::npos) {
    return absl::InternalError("certificate: serial must be positive");
  }
  OsslPtr<EVP_PKEY> subject_key = ParsePublicKey(spec.public_key_spki);
  if (subject_key == nullptr) {
    return absl::InvalidArgumentError("public key: not a SubjectPublicKeyInfo");
  }
  OsslPtr<EVP_PKEY> issuer_key = ParsePublicKey(key.spki_der());
  if (issuer_key == nullptr) return absl::InternalError("certificate: bad CA public key");
  if (issuer == nullptr && EVP_PKEY_eq(subject_key.get(), issuer_key.get()) != 1) {
    return absl::InternalError("self-signed certificate for a key other than the CA key");
  }

  OsslPtr<X509> cert(X509_new());
  if (cert == nullptr || X509_set_version(cert.get(), X509_VERSION_3) != 1) {
    return absl::InternalError("certificate: X509_new");
  }
  OsslPtr<BIGNUM> serial_bn(
      BN_bin2bn(Bytes(spec.serial), static_cast<int>(spec.serial.size()), nullptr));
  OsslPtr<ASN1_INTEGER> serial(BN_to_ASN1_INTEGER(serial_bn.get(), nullptr));
  if (serial == nullptr || X509_set_serialNumber(cert.get(), serial.get()) != 1) {
    return absl::InternalError("certificate: serial");
  }

  OsslPtr<X509_NAME> subject(X509_NAME_new());
  for (const NameAttribute& a : spec.subject) {
    if (X509_NAME_add_entry_by_NID(subject.get(), a.nid, MBSTRING_UTF8, Bytes(a.value),
                                   static_cast<int>(a.value.size()), -1, 0) != 1) {
      ERR_clear_error();
      return absl::InvalidArgumentError(
          absl::StrCat("certificate subject: ", OBJ_nid2ln(a.nid), " \"", a.value,
                       "\" does not fit the attribute (too long or characters it cannot hold)"));
    }
  }
  if (X509_set_subject_name(cert.get(), subject.get()) != 1 ||
      X509_set_issuer_name(
          cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : subject.get()) != 1) {
    return absl::InternalError("certificate: names");
  }

  OsslPtr<ASN1_TIME> not_before(ASN1_TIME_set(nullptr, absl::ToTimeT(spec.not_before)));
  OsslPtr<ASN1_TIME> not_after(ASN1_TIME_set(nullptr, absl::ToTimeT(spec.not_after)));
  if (not_before == nullptr || not_after == nullptr ||
      X509_set1_notBefore(cert.get(), not_before.get()) != 1 ||
      X509_set1_notAfter(cert.get(), not_after.get()) != 1) {
    return absl::InternalError("certificate: validity");
  }
  if (X509_set_pubkey(cert.get(), subject_key.get()) != 1) {
    return absl::InternalError("certificate: public key");
  }

  // Identified by the key as this certificate encodes it.
  auto ski = KeyIdentifier(ToDer(X509_get_X509_PUBKEY(cert.get()), i2d_X509_PUBKEY));
  if (!ski.ok()) return ski.status();
  std::string aki_id = *ski;
  if (issuer != nullptr) {
    aki_id = SubjectKeyId(issuer);
    if (aki_id.empty()) {
      return absl::InternalError("certificate: the issuer has no subject key identifier");
    }
  }
  // subjectKeyIdentifier (2.5.29.14) and authorityKeyIdentifier (2.5.29.35) [0] keyIdentifier.
  if (auto s = AddExtension(cert.get(), oid::kSubjectKeyIdentifier, false, der::OctetString(*ski));
      !s.ok()) {
    return s;
  }
  if (auto s = AddExtension(cert.get(), oid::kAuthorityKeyIdentifier, false,
                            der::Sequence({der::Tlv(der::ContextPrimitive(0), aki_id)}));
      !s.ok()) {
    return s;
  }
  for (const Extension& e : spec.extensions) {
    if (auto s = AddExtension(cert.get(), e.oid, e.critical, e.value_der); !s.ok()) return s;
  }

  if (auto s = key.SetTbsSignatureAlgorithm(cert.get()); !s.ok()) return s;
  const std::string tbs = ToDer(cert.get(), i2d_re_X509_tbs);
  if (tbs.empty()) return absl::InternalError("certificate: encoding the TBSCertificate");
  auto signed_der = key.SignStructure(tbs);
  if (!signed_der.ok()) return signed_der.status();

  IssuedCertificate out{.cert = ParseCertificate(*signed_der), .der = *std::move(signed_der)};
  if (out.cert == nullptr) return absl::InternalError("certificate: the result does not parse");
  if (X509_verify(out.cert.get(), issuer_key.get()) != 1) {
    ERR_clear_error();
    return absl::InternalError("certificate: the HSM signature does not verify");
  }
  return out;
}

std::string SerialHex(const X509* cert) {
  OsslPtr<BIGNUM> bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
  if (bn == nullptr) return "";
  OsslPtr<char> hex(BN_bn2hex(bn.get()));
  return hex == nullptr ? "" : absl::AsciiStrToUpper(hex.get());
}

std::string NameText(const X509_NAME* name) {
  OsslPtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
    return "";
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

absl::Time Asn1TimeToAbsl(const ASN1_TIME* t) {
  struct tm tm = {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return absl::InfinitePast();
  return absl::FromTM(tm, absl::UTCTimeZone());
}

}  // namespace qsign::lifecycle
